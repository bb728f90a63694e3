"""The embedded default data set: procedurally drawn shapes, 32x32 RGB, 10 classes.

Each class is a shape (disk, square, ring, ...) drawn at a random position, size, tilt
and colour over a random gradient background with noise. The class depends on the shape
alone, so crops, flips, small rotations and colour changes preserve labels, which is what
label-preserving augmentations assume. Image i depends only on (seed, split, i, variant):
any subset is the same whatever `n` is asked for.

Variants: ``"cluttered"`` (the default) draws smaller shapes at a lower, varying contrast
among soft background blobs, with a background-coloured bar occluding part of the shape in
half of the images, and more noise: the smoke preset's ERM model does not reach 100 % test
accuracy on it (measured numbers in docs/data.md), so flatness and robustness have room to
differ between an augmented model and ERM. ``"clean"`` is the earlier, easy set
(bit-identical to it): large high-contrast shapes, which ERM learns perfectly.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from typing import Any, Literal

from pytest_psa.data.image_data import ImageData
from pytest_psa.errors import PsaUsageError

CLASSES: tuple[str, ...] = (
    "disk", "square", "triangle", "ring", "plus", "hstripes", "vstripes", "checker", "pair", "cross",
)
DEFAULT_SIZE: dict[str, int] = {"train": 10_000, "test": 2_000}
_BLOCK = 500  # images generated per independently seeded block
_SPLIT_SALT = {"train": 1, "test": 2}
Variant = Literal["cluttered", "clean"]
VARIANTS: tuple[Variant, ...] = ("cluttered", "clean")


def synthetic(split: str = "test", n: int | None = None, *, seed: int = 0, size: int = 32,
              variant: Variant = "cluttered") -> ImageData:
    """The synthetic shapes set (`split` "train" or "test", `n` images, deterministic from `seed`).

    variant: "cluttered" (default: low contrast, clutter, occluders) or "clean" (the easy set).
    """
    if split not in _SPLIT_SALT:
        raise PsaUsageError(f"unknown split {split!r} for the synthetic data set", fix="use 'train' or 'test'")
    if variant not in VARIANTS:
        raise PsaUsageError(f"unknown synthetic variant {variant!r}", observed=variant,
                            fix=f"use one of {list(VARIANTS)}")
    n = DEFAULT_SIZE[split] if n is None else int(n)
    if n < 1 or size < 8:
        raise PsaUsageError("the synthetic set needs n >= 1 and size >= 8", observed=f"n={n}, size={size}")
    images, labels = _generate(split, n, seed, size, variant)
    source = f"embedded(seed={seed}, size={size})" if variant == "clean" else \
        f"embedded(seed={seed}, size={size}, variant={variant})"
    return ImageData(
        torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()), CLASSES, "synthetic", split, source,
    )


@functools.lru_cache(maxsize=8)  # callers get copies, so the cached arrays stay pristine
def _generate(split: str, n: int, seed: int, size: int, variant: Variant) -> tuple[np.ndarray, np.ndarray]:
    block = _block if variant == "clean" else _cluttered_block
    blocks = [block(seed, _SPLIT_SALT[split], b, size) for b in range((n + _BLOCK - 1) // _BLOCK)]
    images = np.concatenate([b[0] for b in blocks])[:n]
    labels = np.concatenate([b[1] for b in blocks])[:n]
    return images, labels


def placed_shapes(rng: np.random.Generator, m: int, size: int, n_classes: int, *, min_radius: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, masks, pixel-centre grid) of `m` class-balanced shapes of the first `n_classes`, near the
    centre, radius in [min_radius, 10.5] px at 32 px (scaled with `size`), tilted up to 20 degrees; the
    draws come from `rng` in a fixed order (the clean synthetic set and the domain styles share it)."""
    labels = rng.permutation(np.arange(m) % n_classes).astype(np.int64)
    s = size / 32.0
    cx = size / 2 + rng.uniform(-5, 5, m) * s
    cy = size / 2 + rng.uniform(-5, 5, m) * s
    r = rng.uniform(min_radius, 10.5, m) * s
    tilt = np.deg2rad(rng.uniform(-20, 20, m))
    grid = np.arange(size, dtype=np.float64) + 0.5
    _, _, mask = _shape_masks(labels, cx, cy, r, tilt, grid)
    return labels, mask, grid


def _block(seed: int, salt: int, block: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64([seed, salt, block]))
    m = _BLOCK
    labels, mask, grid = placed_shapes(rng, m, size, len(CLASSES), min_radius=6.5)
    # background: a dark or bright colour with a gentle gradient; foreground on the other side
    bright = rng.random(m) < 0.5
    bg = rng.uniform(0.0, 0.45, (m, 3)) + np.where(bright, 0.5, 0.0)[:, None]
    fg = rng.uniform(0.0, 0.45, (m, 3)) + np.where(bright, 0.0, 0.55)[:, None]
    slope = rng.uniform(-0.15, 0.15, (m, 2))
    ramp = (slope[:, 0, None, None] * (grid[None, None, :] / size - 0.5)
            + slope[:, 1, None, None] * (grid[None, :, None] / size - 0.5))
    img = bg[:, :, None, None] + ramp[:, None] + mask[:, None] * (fg - bg)[:, :, None, None]
    img += rng.normal(0.0, 0.02, img.shape)
    return (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8), labels


def _cluttered_block(seed: int, salt: int, block: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    # its own generator stream (salt + 16): the clean variant's images stay bit-identical
    rng = np.random.Generator(np.random.PCG64([seed, salt + 16, block]))
    m = _BLOCK
    labels = rng.permutation(np.arange(m) % len(CLASSES)).astype(np.int64)
    s = size / 32.0
    cx = size / 2 + rng.uniform(-6, 6, m) * s
    cy = size / 2 + rng.uniform(-6, 6, m) * s
    r = rng.uniform(CLUTTER["radius"][0], CLUTTER["radius"][1], m) * s
    tilt = np.deg2rad(rng.uniform(-20, 20, m))
    grid = np.arange(size, dtype=np.float64) + 0.5
    gx, gy = grid[None, None, :], grid[None, :, None]
    x, y, mask = _shape_masks(labels, cx, cy, r, tilt, grid)
    # occluder: a background-coloured bar across the shape's neighbourhood in half of the images
    occluded = rng.random(m) < CLUTTER["occluded"]
    angle = rng.uniform(0, np.pi, m)[:, None, None]
    offset = (rng.uniform(-0.8, 0.8, m) * r)[:, None, None]
    width = (rng.uniform(1.5, 3.0, m) * s)[:, None, None]
    across = np.abs(np.cos(angle) * x + np.sin(angle) * y - offset)
    bar = np.clip(0.5 * width + 0.5 - across, 0.0, 1.0) * occluded[:, None, None]
    mask *= 1.0 - bar
    # colours: any background; the shape differs from it by a contrast of varying sign and size
    bg = rng.uniform(0.1, 0.9, (m, 3))
    lum = bg.mean(1)
    sign = np.where(lum > 0.5, -1.0, 1.0) * np.where(rng.random(m) < 0.25, -1.0, 1.0)
    contrast = rng.uniform(CLUTTER["contrast"][0], CLUTTER["contrast"][1], m)
    fg = bg + (sign * contrast)[:, None] + rng.uniform(-0.15, 0.15, (m, 3))
    slope = rng.uniform(-0.3, 0.3, (m, 2))
    ramp = (slope[:, 0, None, None] * (gx / size - 0.5) + slope[:, 1, None, None] * (gy / size - 0.5))
    img = bg[:, :, None, None] + ramp[:, None] + mask[:, None] * (fg - bg)[:, :, None, None]
    # clutter: soft blobs of random colour anywhere, carrying no class information
    for _ in range(CLUTTER["blobs"]):
        bx, by = rng.uniform(0, size, (2, m))
        sigma = rng.uniform(1.5, 4.0, m) * s
        d2 = (gx - bx[:, None, None]) ** 2 + (gy - by[:, None, None]) ** 2
        blob = np.exp(-d2 / (2 * sigma[:, None, None] ** 2))
        img += blob[:, None] * rng.uniform(-0.35, 0.35, (m, 3))[:, :, None, None]
    img += rng.normal(0.0, CLUTTER["noise"], img.shape)
    return (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8), labels


CLUTTER: dict[str, Any] = {"radius": (4.5, 9.0), "occluded": 0.5, "contrast": (0.06, 0.4), "blobs": 3, "noise": 0.06}


def _shape_masks(labels: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, tilt: np.ndarray,
                 grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image's shape coverage (M, S, S) at its centre, radius and tilt, with the pixel offsets
    (x, y) from the centre that later layers (occluders) reuse."""
    x = grid[None, None, :] - cx[:, None, None]
    y = grid[None, :, None] - cy[:, None, None]
    c, sn = np.cos(tilt)[:, None, None], np.sin(tilt)[:, None, None]
    u, v = (c * x + sn * y) / r[:, None, None], (-sn * x + c * y) / r[:, None, None]
    mask = np.zeros((len(labels), len(grid), len(grid)))
    for k in range(len(CLASSES)):
        sel = labels == k
        if sel.any():
            mask[sel] = _shape(k, u[sel], v[sel], r[sel, None, None])
    return x, y, mask


def _shape(k: int, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of shape `k` at normalized coordinates (u, v); edges anti-aliased over ~1 px."""
    def fill(sd: np.ndarray) -> np.ndarray:  # signed distance in radius units -> coverage
        return np.asarray(np.clip(0.5 - sd * r, 0.0, 1.0))  # numpy types ndarray arithmetic as Any

    rad = np.hypot(u, v)
    box = np.maximum(np.abs(u), np.abs(v)) - 0.8
    name = CLASSES[k]
    if name == "disk":
        return fill(rad - 0.85)
    if name == "square":
        return fill(box)
    if name == "triangle":
        h = np.sqrt(3) / 2
        return fill(np.maximum.reduce([v - 0.5, h * u - 0.5 * v - 0.5, -h * u - 0.5 * v - 0.5]))
    if name == "ring":
        return fill(np.abs(rad - 0.7) - 0.2)
    if name in ("plus", "cross"):
        if name == "cross":
            u, v = (u + v) / np.sqrt(2), (v - u) / np.sqrt(2)
        return fill(np.minimum(np.maximum(np.abs(u) - 0.22, np.abs(v) - 0.95),
                               np.maximum(np.abs(v) - 0.22, np.abs(u) - 0.95)))
    if name in ("hstripes", "vstripes", "checker"):
        period = 0.55
        sv, su = np.sin(2 * np.pi * v / period), np.sin(2 * np.pi * u / period)
        wave = {"hstripes": sv, "vstripes": su, "checker": sv * su}[name]
        return fill(box) * np.clip(0.5 + 2.0 * wave, 0.0, 1.0)
    if name == "pair":
        return fill(np.minimum(np.hypot(u - 0.5, v), np.hypot(u + 0.5, v)) - 0.38)
    raise AssertionError(k)
