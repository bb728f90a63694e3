"""`without_proximal(aug, delta)`: any augmentation with its proximal region removed, the controlled
ablation of the PSA condition.

A draw within δ of the original image (d(x, A(x)) ≤ δ) is redrawn until it is not, so the
proximal density is F(γ) = 0 for every γ ≤ δ while the rest of the distribution is kept (it is
the original distribution conditioned on d > δ). Redraws are deterministic: the wrapper takes one
seed from torch's generator (which the adapter set for this draw) and gives the inner augmentation
the seeds (s, s+1, s+2, ...) through its own adapter.

The distance is one of the pixel distances of `pytest_psa.measure.density` by name ("l2",
"linf", "l2_raw", "l2_255": the same formulas, here because the augment layer may not import
the measure layer; a test holds them equal) or any callable on two (N, C, H, W) batches returning
N distances. Distances that need the audited data set ("l2_aligned", "feature") are refused.

`redraws` counts what it cost: `stats.draws` images, `stats.redraws` extra draws, `stats.most`
redraws for one image. Counts are per process (DataLoader workers keep their own). When
`max_redraws` redraws of one image all land within δ it raises `AugmentationContractError` naming δ.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from pytest_psa.augment.adapters import Augmentation
from pytest_psa.augment.zoo._draw import draw_with, part, part_name, sub_seed
from pytest_psa.errors import AugmentationContractError, PsaUsageError

DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_SEED_MASK = (1 << 63) - 1


def _l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).flatten(1).pow(2).mean(1).sqrt()


def _linf(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).flatten(1).abs().amax(1)


def _l2_raw(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).flatten(1).pow(2).sum(1).sqrt()


def _l2_255(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _l2_raw(x, y) * 255.0


# the pixel distances of pytest_psa.measure.density.distances, by the same names
PIXEL_DISTANCES: dict[str, DistanceFn] = {"l2": _l2, "linf": _linf, "l2_raw": _l2_raw, "l2_255": _l2_255}


@dataclass
class RedrawStats:
    """What the redraws cost so far, in this process."""

    draws: int = 0  # images drawn
    redraws: int = 0  # extra draws, over all images
    most: int = 0  # the most redraws one image needed
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def rate(self) -> float:
        """Extra draws per image."""
        return self.redraws / self.draws if self.draws else 0.0

    def add(self, redraws: int) -> None:
        with self._lock:
            self.draws += 1
            self.redraws += redraws
            self.most = max(self.most, redraws)

    def reset(self) -> None:
        with self._lock:
            self.draws = self.redraws = self.most = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"draws": self.draws, "redraws": self.redraws, "most": self.most}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class WithoutProximal:
    """`aug` conditioned on d(x, aug(x)) > `delta` by redrawing (see the module docstring)."""

    def __init__(self, aug: Any, delta: float, *, distance: str | DistanceFn = "l2", max_redraws: int = 100) -> None:
        if not float(delta) > 0:
            raise PsaUsageError(f"delta must be > 0, got {delta}", fix="give the radius of the region to empty, "
                                "e.g. delta=0.1 under the normalized l2 distance")
        if int(max_redraws) < 1:
            raise PsaUsageError(f"max_redraws must be >= 1, got {max_redraws}")
        self.inner: Augmentation = part(aug, "the augmentation to wrap")
        self.transforms = (self.inner.fn,)  # what the adapter's generator search walks into
        self.delta = float(delta)
        self.max_redraws = int(max_redraws)
        self.distance_name, self._distance = _resolve_distance(distance)
        self.stats = RedrawStats()

    @property
    def name(self) -> str:
        return f"{part_name(self.inner)}-without-proximal"

    @property
    def redraws(self) -> int:
        """Extra draws so far (`stats` has the details)."""
        return self.stats.redraws

    def __repr__(self) -> str:
        return (f"WithoutProximal({part_name(self.inner)}, delta={self.delta:g}, distance={self.distance_name!r}, "
                f"max_redraws={self.max_redraws})")

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        __tracebackhide__ = True
        x = image.to(torch.float32)
        base = sub_seed()
        for attempt in range(self.max_redraws + 1):
            y = draw_with(self.inner, x, (base + attempt) & _SEED_MASK)
            if float(self._distance(x[None], y[None])[0]) > self.delta:
                self.stats.add(attempt)
                return y
        raise AugmentationContractError(
            f"{self.max_redraws + 1} draws of {part_name(self.inner)} in a row landed within delta={self.delta:g} "
            f"({self.distance_name}) of the image", property="redraws", observed=f"max_redraws={self.max_redraws}",
            fix=f"lower delta below {self.delta:g}, raise max_redraws, or check that the augmentation can move this "
                "image that far (a constant image is left unchanged by many operations)", augmentation=self.name)


def without_proximal(aug: Any, delta: float, distance: str | DistanceFn = "l2", max_redraws: int = 100) -> WithoutProximal:
    """`aug` with its draws within `delta` (under `distance`) redrawn: F(γ) = 0 for γ ≤ δ."""
    return WithoutProximal(aug, delta, distance=distance, max_redraws=max_redraws)


def _resolve_distance(distance: str | DistanceFn) -> tuple[str, DistanceFn]:
    if isinstance(distance, str):
        key = distance.strip()
        if key not in PIXEL_DISTANCES:
            raise PsaUsageError(
                f"without_proximal cannot use the distance {distance!r}",
                observed=f"pixel distances by name: {', '.join(PIXEL_DISTANCES)}",
                fix="name a pixel distance, or pass a callable (x, y) -> distances on (N, C, H, W) batches; "
                    "distances that depend on the audited data set (l2_aligned, feature) need that data set")
        return key, PIXEL_DISTANCES[key]
    if callable(distance):
        return getattr(distance, "__name__", type(distance).__name__), distance
    raise PsaUsageError(f"distance must be a name or a callable, not {type(distance).__name__}")
