"""Distances d(x, A(x)) between an image batch and its augmented copy, and their registry.

A distance maps two (N, C, H, W) float batches in [0, 1] to N non-negative values. Users add
their own with `register_distance` (or the `pytest_psa_distances` hook inside pytest).

Beyond a plain ``fn(x, y)``, a `Distance` may

- return a `DistanceOutput` with per-image ``details`` (``l2_aligned`` reports the winning
  alignment of every draw, and the audit keeps them as (N, K) arrays);
- compare representations: with ``encode`` set, ``fn`` gets ``encode(x)`` and ``encode(y)``, and
  the audit encodes each clean chunk once, not once per draw (``feature``); ``prepare`` likewise
  precomputes what the clean side needs, once per chunk (``l2_aligned``: Fourier transforms);
- depend on the audited data: the audit calls ``binder(distance, context)`` once and measures
  with the distance it returns (``feature`` finds or trains its default encoder for the audited
  data set; ``l2_aligned`` fixes its radius for the image size and records it);
- take parameters by name: ``variant(**params)`` builds a configured copy, which is what
  ``"l2_aligned(radius=2, flips=False)"`` resolves to wherever a distance name is accepted.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Mapping
from typing import Any, cast

import torch

from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.density.distance_types import Distance, DistanceContext, DistanceFn, DistanceOutput
from pytest_psa.measure.density.distances_aligned import aligned_distance
from pytest_psa.measure.density.distances_feature import feature_distance


def l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Normalized L2: root mean square pixel difference, ‖x − y‖₂ / √D (≈ σ of added Gaussian noise)."""
    d = (x - y).flatten(1)
    return d.mul_(d).mean(1).sqrt()  # squared in place: bit-identical to pow(2), one allocation fewer


def linf(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L∞: the largest absolute pixel difference."""
    return (x - y).flatten(1).abs_().amax(1)


def l2_raw(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Raw L2 norm ‖x − y‖₂ over all pixels (grows with image size; 55.4 × l2 for 32×32 RGB)."""
    return cast(torch.Tensor, (x - y).flatten(1).norm(dim=1))  # Tensor.norm has no return annotation in torch


def l2_255(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Raw L2 norm over all pixels on the 0–255 scale, 255 · ‖x − y‖₂: the scale of the paper's Table 1."""
    return l2_raw(x, y) * 255.0


# The scale of arXiv 2505.24592's Table 1 (its proximal-density eCDF). The extracted text lost the
# symbols of the distance and of the γ values; a raw L2 norm on 0–255 pixel values over all pixels,
# read at γ = 1, 5, 10, 50, reproduces three of its four CIFAR-100 AugMix values on CIFAR-10
# (docs/density.md, "Two scales"). On 32×32 RGB, γ = 1 is an RMS change of 1/√3072 ≈ 0.018
# levels of 255, so F(1) is nearly the share of draws that return the image (almost) unchanged.
PAPER_DISTANCE = "l2_255"
PAPER_GAMMAS: tuple[float, ...] = (1.0, 5.0, 10.0, 50.0)
PAPER_SCALE = "L2 on 0-255 pixel values, all pixels; arXiv 2505.24592 Table 1"
# the tool's own default: RMS on [0, 1], read at a grid around the PSA verdict's γ = 0.05
TOOL_DISTANCE = "l2"
TOOL_GAMMAS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
TOOL_SCALE = "RMS over all pixel values in [0, 1] (this tool's scale, not the paper's Table 1)"
# named (distance, γ grid) pairs, as `psa audit --scale NAME` offers them
SCALES: dict[str, tuple[str, tuple[float, ...]]] = {"tool": (TOOL_DISTANCE, TOOL_GAMMAS),
                                                     "paper": (PAPER_DISTANCE, PAPER_GAMMAS)}


_REGISTRY: dict[str, Distance] = {}
# pixel distances with d(x, x) == 0 exactly: a draw at d > 0 changed the image (the audit's identity test)
ZERO_ON_EQUAL: frozenset[DistanceFn] = frozenset({l2, linf, l2_raw, l2_255})


def register_distance(
    name: str, fn: DistanceFn | Distance | None = None, *, description: str = "",
    gammas: tuple[float, ...] | None = None, params: Mapping[str, Any] | None = None, replace: bool = False,
) -> Any:
    """Register a distance under `name`; usable directly or as a decorator.

    `fn` is a function ``(x, y) -> (N,)`` or a configured `Distance` (e.g.
    ``pytest_psa.feature_distance(my_encoder)``), which is then known by `name`.

    >>> @register_distance("l1_mean", gammas=(0.01, 0.05))
    ... def l1_mean(x, y):
    ...     return (x - y).abs().flatten(1).mean(1)
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise PsaUsageError(f"a distance name must be an identifier-like string, got {name!r}")

    def add(f: DistanceFn | Distance) -> DistanceFn | Distance:
        if not callable(f):
            raise PsaUsageError(f"distance {name!r} must be callable (x, y) -> per-image values")
        existing = _REGISTRY.get(name)
        same = existing is not None and (existing is f or existing.fn is f)
        if existing is not None and not same and not replace:
            raise PsaUsageError(
                f"a distance named {name!r} is already registered",
                fix="choose another name, or pass replace=True to override it on purpose",
            )
        if isinstance(f, Distance):
            changes: dict[str, Any] = {"name": name, "spec": None}
            if description:
                changes["description"] = description
            if gammas:
                changes["gammas"] = tuple(gammas)
            if params:
                changes["params"] = {**f.params, **params}
            _REGISTRY[name] = dataclasses.replace(f, **changes)
            return f
        doc = description or next(iter((f.__doc__ or "").strip().splitlines()), "")
        _REGISTRY[name] = Distance(name, f, doc, tuple(gammas) if gammas else Distance.gammas, dict(params or {}))
        return f

    return add(fn) if fn is not None else add


def get_distance(spec: str | Distance | DistanceFn) -> Distance:
    """The `Distance` for a registered name (optionally with parameters, ``"l2_aligned(radius=2)"``),
    a `Distance`, or a bare callable."""
    if isinstance(spec, Distance):
        return spec
    if callable(spec):
        return Distance(getattr(spec, "__name__", "custom"), spec, (spec.__doc__ or "").strip())
    if isinstance(spec, str) and spec in _REGISTRY:
        return _REGISTRY[spec]
    if isinstance(spec, str) and "(" in spec:
        name, params = _parse_call(spec)
        if name in _REGISTRY:
            base = _REGISTRY[name]
            return dataclasses.replace(base.with_params(**params), name=base.name, spec=spec.strip())
    raise PsaUsageError(
        f"unknown distance {spec!r}", observed=f"registered: {', '.join(available_distances())}",
        fix="use one of the registered names, or register yours with pytest_psa.register_distance "
            "(or the pytest_psa_distances hook in conftest.py)",
    )


def _parse_call(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name(a=1, b='x')"`` -> ("name", {"a": 1, "b": "x"}); only literal keyword values."""
    try:
        node = ast.parse(spec.strip(), mode="eval").body
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args):
            raise ValueError("not name(key=value, ...)")
        params = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise ValueError("no **kwargs")
            params[kw.arg] = ast.literal_eval(kw.value)
        return node.func.id, params
    except (SyntaxError, ValueError) as exc:
        raise PsaUsageError(
            f"cannot read the distance {spec!r}", observed=str(exc),
            fix="write a registered name, optionally with literal keyword parameters: \"l2_aligned(radius=2, "
                "flips=False)\"",
        ) from None


def available_distances() -> list[str]:
    """Names of every registered distance."""
    return sorted(_REGISTRY)


register_distance("l2", l2, gammas=TOOL_GAMMAS, params={"scale": TOOL_SCALE})
register_distance("linf", linf, gammas=(1 / 255, 4 / 255, 8 / 255, 16 / 255, 0.1, 0.25),
                  params={"scale": "largest absolute pixel difference, pixel values in [0, 1]"})
register_distance("l2_raw", l2_raw, gammas=(0.5, 1.0, 2.0, 5.0),
                  params={"scale": "L2 on pixel values in [0, 1], all pixels"})
register_distance(PAPER_DISTANCE, l2_255, gammas=PAPER_GAMMAS, params={"scale": PAPER_SCALE})
register_distance("l2_aligned", aligned_distance())
register_distance("feature", feature_distance())

__all__ = ["PAPER_DISTANCE", "PAPER_GAMMAS", "PAPER_SCALE", "SCALES", "TOOL_DISTANCE", "TOOL_GAMMAS", "TOOL_SCALE",
           "ZERO_ON_EQUAL", "Distance", "DistanceContext", "DistanceFn", "DistanceOutput", "aligned_distance",
           "available_distances", "feature_distance", "get_distance", "l2", "l2_255", "l2_raw", "linf",
           "register_distance"]
