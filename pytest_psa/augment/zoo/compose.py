"""Compositions of augmentations: a mixture (`compose`) and a sequence (`chain`).

`compose(a, b, p=0.5)` draws from `a` with probability p, else from `b`: the seed paper's pairings
("DeepAug + AugMix", Table 7), whose proximal density is p·F_a + (1 − p)·F_b. `chain(a, b, ...)`
applies them in turn. Each part keeps its own adapter (PIL, numpy, albumentations ...), and gets
its seed from torch's generator, which the adapter seeded for this draw: the composite is as
deterministic as its parts. Names come from the parts: "deepaugment-standin|augmix" for a
mixture, "cropflip>augmix" for a chain (0.5 is left out of a mixture's name).
"""

from __future__ import annotations

from typing import Any

import torch

from pytest_psa.augment.adapters import Augmentation
from pytest_psa.augment.zoo._draw import coin, draw_with, part, part_name, sub_seed
from pytest_psa.errors import PsaUsageError


class Compose:
    """A mixture: one draw of `a` with probability `p`, else one of `b`."""

    def __init__(self, a: Any, b: Any, p: float = 0.5) -> None:
        if not 0.0 <= float(p) <= 1.0:
            raise PsaUsageError(f"p must be in [0, 1], got {p}", fix="p is the probability of drawing from the first part")
        self.parts: tuple[Augmentation, Augmentation] = (part(a, "the first part"), part(b, "the second part"))
        self.transforms = tuple(x.fn for x in self.parts if x.fn is not None)  # what the adapter's generator search walks into
        self.p = float(p)

    @property
    def name(self) -> str:
        a, b = (part_name(x) for x in self.parts)
        return f"{a}|{b}" if self.p == 0.5 else f"{a}|{b}(p={self.p:g})"

    def __repr__(self) -> str:
        a, b = (part_name(x) for x in self.parts)
        return f"Compose({a}, {b}, p={self.p:g})"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        __tracebackhide__ = True
        x = image.to(torch.float32)
        chosen = self.parts[0] if coin(self.p) else self.parts[1]
        return draw_with(chosen, x, sub_seed())


class Chain:
    """A sequence: each part applied to the previous one's output."""

    def __init__(self, *augs: Any) -> None:
        if len(augs) < 2:
            raise PsaUsageError(f"chain needs at least two augmentations, got {len(augs)}",
                                fix="pass the augmentations to apply in order: chain(a, b, ...)")
        self.parts: tuple[Augmentation, ...] = tuple(part(a, f"part {i + 1}") for i, a in enumerate(augs))
        self.transforms = tuple(x.fn for x in self.parts if x.fn is not None)

    @property
    def name(self) -> str:
        return ">".join(part_name(x) for x in self.parts)

    def __repr__(self) -> str:
        return f"Chain({', '.join(part_name(x) for x in self.parts)})"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        __tracebackhide__ = True
        y = image.to(torch.float32)
        seeds = [sub_seed() for _ in self.parts]  # all drawn first: part i's seed does not depend on part j's draws
        for aug, seed in zip(self.parts, seeds):
            y = draw_with(aug, y, seed)
        return y


def compose(a: Any, b: Any, p: float = 0.5) -> Compose:
    """Draw from `a` with probability `p`, else from `b` (a mixture of the two distributions)."""
    return Compose(a, b, p)


def chain(*augs: Any) -> Chain:
    """Apply `augs` in order."""
    return Chain(*augs)
