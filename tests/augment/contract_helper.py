"""A shared contract check for augmentations, in the spirit of torchvision's ``check_transform``.

`check_augmentation(obj)` wraps any augmentation object with `pytest_psa.as_augmentation` (or takes
an `Augmentation` built with an explicit adapter), applies it to synthetic images with explicit
seeds, and checks the image contract the density audit relies on:

- float32 output, the input's shape, values in [0, 1], finite;
- deterministic: the same (image, seed) gives the same output, call after call;
- independent of batch composition: an image's output depends only on (image, seed), not on its
  position or on the other images of the call (per-image kinds; a batched module is seeded once
  per call, as `Augmentation.apply` documents, so only its determinism is checked);
- the global RNG states of torch, numpy and `random` are left untouched, and the input is not
  modified in place;
- optionally (``stochastic=True``) that different seeds really give different draws, so a
  broken seeding that returns the same draw every time cannot pass unnoticed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import pytest_psa
from pytest_psa import Augmentation, as_augmentation

DEFAULT_SEEDS = (11, 12, 13, 14, 15, 16)


@dataclass
class ContractReport:
    augmentation: Augmentation
    images: torch.Tensor
    seeds: tuple[int, ...]
    outputs: torch.Tensor


def synthetic_images(n: int = 6, *, channels: int = 3) -> torch.Tensor:
    """n canonical float images (N, C, 32, 32) in [0, 1] from the embedded synthetic set."""
    x = pytest_psa.synthetic("test", n=n).float_images()
    if channels == 1:
        x = x.mean(1, keepdim=True)
        x = (x * 255).round() / 255  # keep exact uint8 levels, like every other input
    return x


def _rng_states() -> tuple[torch.Tensor, tuple, object]:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _assert_same_rng(before: tuple[torch.Tensor, tuple, object], where: str) -> None:
    t, n, p = before
    assert torch.equal(torch.get_rng_state(), t), f"{where}: the global torch RNG state changed"
    now = np.random.get_state()
    assert n[0] == now[0] and np.array_equal(n[1], now[1]) and n[2:] == now[2:], \
        f"{where}: the global numpy RNG state changed"
    assert random.getstate() == p, f"{where}: the global `random` state changed"


def check_augmentation(
    obj: Any,
    *,
    kind: str | None = None,
    images: torch.Tensor | None = None,
    seeds: tuple[int, ...] = DEFAULT_SEEDS,
    stochastic: bool = True,
) -> ContractReport:
    """Check `obj` against the image contract (see the module docstring); return what was seen."""
    __tracebackhide__ = True
    aug = as_augmentation(obj)
    if kind is not None:
        assert aug.kind == kind, f"{aug!r}: expected the {kind!r} adapter, got {aug.kind!r}"
    x = synthetic_images(len(seeds)) if images is None else images
    assert len(x) == len(seeds)
    pristine = x.clone()
    before = _rng_states()

    y = aug.apply(x, list(seeds))

    # -- the canonical form --------------------------------------------------------------------
    assert isinstance(y, torch.Tensor), f"{aug!r}: apply() returned {type(y).__name__}"
    assert y.dtype == torch.float32, f"{aug!r}: dtype {y.dtype}"
    assert y.shape == x.shape, f"{aug!r}: shape {tuple(y.shape)} for input {tuple(x.shape)}"
    assert bool(torch.isfinite(y).all()), f"{aug!r}: non-finite output"
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0, \
        f"{aug!r}: values in [{float(y.min())}, {float(y.max())}]"
    assert torch.equal(x, pristine), f"{aug!r}: apply() modified its input in place"

    # -- determinism ---------------------------------------------------------------------------
    again = aug.apply(x, list(seeds))
    assert torch.equal(y, again), f"{aug!r}: the same images and seeds gave different outputs"

    # -- independent of batch composition (per-image kinds) ------------------------------------
    if aug.kind != "batched":
        for i in (0, len(x) - 1):
            alone = aug.apply(x[i:i + 1], [seeds[i]])[0]
            assert torch.equal(alone, y[i]), f"{aug!r}: image {i} differs when applied alone"
        order = list(reversed(range(len(x))))
        rev = aug.apply(x[order], [seeds[i] for i in order])
        assert torch.equal(rev, y[order]), f"{aug!r}: outputs depend on the order of the batch"
        mixed = torch.cat([synthetic_images(len(x) + 3, channels=x.shape[1])[len(x):], x[:2]])
        mixed_out = aug.apply(mixed, [101, 102, 103, seeds[0], seeds[1]])
        assert torch.equal(mixed_out[3:], y[:2]), f"{aug!r}: outputs depend on the other images of the batch"

    # -- different seeds, different draws -------------------------------------------------------
    if stochastic:
        same_image = x[:1].expand(8, *x.shape[1:]).clone()
        draws = aug.apply(same_image, list(range(1000, 1008)))
        assert any(not torch.equal(draws[0], draws[j]) for j in range(1, 8)), \
            f"{aug!r}: eight seeds gave eight identical draws (is the augmentation seeded at all?)"

    _assert_same_rng(before, repr(aug))
    return ContractReport(aug, x, tuple(seeds), y)
