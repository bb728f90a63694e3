"""Distances d(x, A(x)) between an image batch and its augmented copy, and their registry.

A distance maps two (N, C, H, W) float batches in [0, 1] to N non-negative values. Users add
their own with `register_distance` (or the `pytest_psa_distances` hook inside pytest).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from pytest_psa.errors import PsaUsageError

DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Distance:
    """A named distance with the γ grid its reports use by default."""

    name: str
    fn: DistanceFn
    description: str = ""
    gammas: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    params: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = self.fn(x, y)
        if not isinstance(d, torch.Tensor) or d.shape != (x.shape[0],):
            raise PsaUsageError(
                f"distance {self.name!r} must return one value per image",
                observed=f"{type(d).__name__} {tuple(getattr(d, 'shape', ()))} for {x.shape[0]} images",
                fix="reduce over every dimension but the first, e.g. (x - y).flatten(1).norm(dim=1)",
            )
        return d

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "params": dict(self.params)}


def l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Normalized L2: root mean square pixel difference, ‖x − y‖₂ / √D (≈ σ of added Gaussian noise)."""
    return (x - y).flatten(1).pow(2).mean(1).sqrt()


def linf(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L∞: the largest absolute pixel difference."""
    return (x - y).flatten(1).abs().amax(1)


def l2_raw(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Raw L2 norm ‖x − y‖₂ over all pixels (grows with image size; 55.4 × l2 for 32×32 RGB)."""
    return (x - y).flatten(1).norm(dim=1)


_REGISTRY: dict[str, Distance] = {}


def register_distance(
    name: str, fn: DistanceFn | None = None, *, description: str = "",
    gammas: tuple[float, ...] | None = None, params: Mapping[str, Any] | None = None, replace: bool = False,
) -> Any:
    """Register a distance under `name`; usable directly or as a decorator.

    >>> @register_distance("l1_mean", gammas=(0.01, 0.05))
    ... def l1_mean(x, y):
    ...     return (x - y).abs().flatten(1).mean(1)
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise PsaUsageError(f"a distance name must be an identifier-like string, got {name!r}")

    def add(f: DistanceFn) -> DistanceFn:
        if not callable(f):
            raise PsaUsageError(f"distance {name!r} must be callable (x, y) -> per-image values")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.fn is not f and not replace:
            raise PsaUsageError(
                f"a distance named {name!r} is already registered",
                fix="choose another name, or pass replace=True to override it on purpose",
            )
        doc = description or (f.__doc__ or "").strip().splitlines()[0:1]
        _REGISTRY[name] = Distance(
            name, f, doc if isinstance(doc, str) else (doc[0] if doc else ""),
            tuple(gammas) if gammas else Distance.gammas, dict(params or {}),
        )
        return f

    return add(fn) if fn is not None else add


def get_distance(spec: str | Distance | DistanceFn) -> Distance:
    """The `Distance` for a registered name, a `Distance`, or a bare callable."""
    if isinstance(spec, Distance):
        return spec
    if callable(spec):
        return Distance(getattr(spec, "__name__", "custom"), spec, (spec.__doc__ or "").strip())
    try:
        return _REGISTRY[spec]
    except (KeyError, TypeError):
        raise PsaUsageError(
            f"unknown distance {spec!r}", observed=f"registered: {', '.join(available_distances())}",
            fix="use one of the registered names, or register yours with pytest_psa.register_distance "
                "(or the pytest_psa_distances hook in conftest.py)",
        ) from None


def available_distances() -> list[str]:
    """Names of every registered distance."""
    return sorted(_REGISTRY)


register_distance("l2", l2, gammas=(0.01, 0.02, 0.05, 0.1, 0.2))
register_distance("linf", linf, gammas=(1 / 255, 4 / 255, 8 / 255, 16 / 255, 0.1, 0.25))
register_distance("l2_raw", l2_raw, gammas=(0.5, 1.0, 2.0, 5.0))

