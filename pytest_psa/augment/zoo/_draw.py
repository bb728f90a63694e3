"""Drawing helpers shared by the zoo: every random choice comes from torch's global generator,
which the adapter seeds once per draw, so a draw is a function of (image, seed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch

from pytest_psa.augment.adapters import Augmentation, as_augmentation
from pytest_psa.errors import PsaUsageError

T = TypeVar("T")
_SEED_HIGH = (1 << 62) - 1


def uniform(low: float = 0.0, high: float = 1.0) -> float:
    """One U(low, high) draw."""
    return low + (high - low) * float(torch.rand(()))


def coin(p: float = 0.5) -> bool:
    """True with probability `p`."""
    return float(torch.rand(())) < p


def integer(low: int, high: int) -> int:
    """One draw of U{low, ..., high - 1}."""
    return int(torch.randint(low, high, ()))


def choice(options: Sequence[T]) -> T:
    """One of `options`, uniformly."""
    return options[integer(0, len(options))]


def sub_seed() -> int:
    """A 62-bit seed for a nested draw (a part of a composite, a redraw), taken from torch's
    generator: deterministic given the state the adapter set, and independent between calls."""
    return int(torch.randint(0, _SEED_HIGH, ()))


def part(obj: Any, role: str) -> Augmentation:
    """`obj` under the image contract (an `Augmentation` is kept as it is); names are refused here,
    because resolving them belongs to `pytest_psa.augment.resolve_augmentation`."""
    if isinstance(obj, str):
        raise PsaUsageError(f"{role} is a name ({obj!r}), not an augmentation",
                            fix=f"pass pytest_psa.augment.resolve_augmentation({obj!r}) or the transform itself")
    return as_augmentation(obj)


def draw_with(aug: Augmentation, image: torch.Tensor, seed: int) -> torch.Tensor:
    """One draw of `aug` on one (C, H, W) image, seeded by `seed` through its own adapter (which
    seeds every generator it draws from and restores them)."""
    return aug.apply(image[None], [seed])[0]


def part_name(aug: Augmentation) -> str:
    """The short name of a part: a zoo object's own name, else the adapter's."""
    return str(getattr(aug.fn, "name", None) or aug.name)
