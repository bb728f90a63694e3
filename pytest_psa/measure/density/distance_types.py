"""The types every distance is made of: `Distance`, its output and the context it is bound to.

(Separate from the registry in `distances` so that the built-in distances defined in their own
modules can use them while the registry imports those modules.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from pytest_psa.errors import PsaUsageError


class DistanceOutput(NamedTuple):
    """N distances, plus optional per-image details (tensors of shape (N,), e.g. the winning shift)."""

    values: torch.Tensor
    details: dict[str, torch.Tensor]


DistanceFn = Callable[[torch.Tensor, torch.Tensor], Any]  # -> (N,) tensor or DistanceOutput


@dataclass(frozen=True)
class DistanceContext:
    """What a distance may need besides two batches: the audited images and where data and models live."""

    images: Any  # the audited ImageData (subset)
    data: Any = None  # the data specification as given to `density` (None = synthetic)
    split: str = "test"
    data_root: Any = None
    cache_dir: Any = None
    allow_download: bool = False


@dataclass(frozen=True)
class Distance:
    """A named distance with the γ grid its reports use by default (see the module docstring)."""

    name: str
    fn: DistanceFn
    description: str = ""
    gammas: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    params: Mapping[str, Any] = field(default_factory=dict)
    encode: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)
    prepare: Callable[[torch.Tensor], Any] | None = field(default=None, repr=False)  # clean side only
    binder: Callable[[Distance, DistanceContext], Distance] | None = field(default=None, repr=False)
    variant: Callable[..., Distance] | None = field(default=None, repr=False)
    spec: str | None = None  # how to ask for it by name, e.g. "l2_aligned(radius=2)" (for repro lines)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.measure(self.reference(x), y).values

    def reference(self, x: torch.Tensor) -> Any:
        """What `measure` compares against, computed once per clean chunk: the batch itself, its
        encoding, or whatever `prepare` precomputes from it (``l2_aligned``: its Fourier transforms)."""
        if self.prepare is not None:
            return self.prepare(x)
        return self.encode(x) if self.encode is not None else x

    def measure(self, reference: Any, y: torch.Tensor) -> DistanceOutput:
        """Distances between the clean batch (as `reference` returned it) and its augmented copy `y`."""
        n = y.shape[0]
        out = self.fn(reference, self.encode(y) if self.encode is not None else y)
        values, details = (out.values, dict(out.details)) if isinstance(out, DistanceOutput) else (out, {})
        if not isinstance(values, torch.Tensor) or values.shape != (n,):
            raise PsaUsageError(
                f"distance {self.name!r} must return one value per image",
                observed=f"{type(values).__name__} {tuple(getattr(values, 'shape', ()))} for {n} images",
                fix="reduce over every dimension but the first, e.g. (x - y).flatten(1).norm(dim=1)",
            )
        return DistanceOutput(values, details)

    def bind(self, context: DistanceContext) -> Distance:
        """The distance ready to measure on `context`'s data (itself, unless it needs the data)."""
        return self if self.binder is None else self.binder(self, context)

    def with_params(self, **params: Any) -> Distance:
        """A copy configured with `params` (for distances that take any)."""
        if self.variant is None:
            raise PsaUsageError(f"distance {self.name!r} takes no parameters", observed=params,
                                fix=f"ask for it by its plain name, {self.name!r}")
        return self.variant(**params)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "params": dict(self.params),
                **({"spec": self.spec} if self.spec else {})}
