"""The corruption registry: one :class:`Corruption` record per name, collected from the family modules.

Each family module (noise, digital, blur, glass, motion, weather, elastic) exposes a list
``CORRUPTIONS_<FAMILY>`` of records holding its kernels and their severity tables, so nobody edits
another's module. ``CORRUPTIONS`` is assembled on first access (PEP 562 module ``__getattr__``), which
lets a family module import :class:`Corruption` from here without a circular-import trap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# the names, in their canonical order, are declared (torch-free) in pytest_psa/_specs/names.py
from pytest_psa._specs.names import BENCHMARK_CORRUPTIONS as BENCHMARK
from pytest_psa._specs.names import VALIDATION_CORRUPTIONS as VALIDATION

if TYPE_CHECKING:
    import torch

    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

__all__ = ["BENCHMARK", "CORRUPTIONS", "FAMILIES", "RESOLUTIONS", "VALIDATION", "Corruption", "registered"]

Kernel = Callable[["torch.Tensor", tuple[Any, ...], "CounterRNG"], "torch.Tensor"]

#: Image sizes with a severity table: CIFAR (32), Tiny ImageNet (64), ImageNet (224).
RESOLUTIONS: tuple[int, ...] = (32, 64, 224)
FAMILIES: tuple[str, ...] = ("noise", "blur", "weather", "digital")

# Family modules, in this package; each defines ``CORRUPTIONS_<NAME>``.
_MODULES: tuple[str, ...] = ("noise", "digital", "blur", "glass", "motion", "weather", "elastic")


@dataclass(frozen=True)
class Corruption:
    """One corruption: its batched kernel and one 5-row severity table per resolution.

    ``kernel(x, params, rng)`` takes float NCHW in [0, 1], one table row ``params`` and a
    :class:`CounterRNG`, and returns the corrupted batch (same shape, clamped to [0, 1]).
    """

    name: str
    family: str
    kernel: Kernel
    tables: dict[int, tuple[tuple[Any, ...], ...]]
    stochastic: bool
    validation: bool = False
    deviation: str = ""  # one line on how it differs from the reference scripts; '' if it does not
    # Optional kernel for compat="hendrycks" where the reference's own arithmetic differs (e.g. PIL's
    # uint8 intermediates); the output is truncated to uint8 levels either way.
    compat_kernel: Kernel | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name}: family {self.family!r} is not one of {FAMILIES}")
        for size, rows in self.tables.items():
            if len(rows) != 5 or not all(isinstance(row, tuple) for row in rows):
                raise ValueError(f"{self.name}: the {size} px table needs 5 tuple rows, got {rows!r}")

    def params(self, severity: int, resolution: int) -> tuple[Any, ...]:
        """The parameter row for ``severity`` (1..5) in the ``resolution`` table."""
        return self.tables[resolution][severity - 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "stochastic": self.stochastic,
            "validation": self.validation,
            "deviation": self.deviation,
            "tables": {str(size): [list(row) for row in rows] for size, rows in self.tables.items()},
        }


_REGISTRY: dict[str, Corruption] | None = None


def _collect() -> dict[str, Corruption]:
    found: dict[str, Corruption] = {}
    for module_name in _MODULES:
        module = importlib.import_module(f"{__package__}.{module_name}")
        records = getattr(module, f"CORRUPTIONS_{module_name.upper()}")
        for record in records:
            if record.name in found:
                raise RuntimeError(f"corruption {record.name!r} is registered twice")
            found[record.name] = record
    # Benchmark names first in their canonical order, then validation, then anything else.
    order = [*BENCHMARK, *VALIDATION]
    ranked = sorted(found, key=lambda name: (order.index(name) if name in order else len(order), name))
    return {name: found[name] for name in ranked}


def registered() -> dict[str, Corruption]:
    """``CORRUPTIONS``, typed: every record by name, collected on the first call."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _collect()
    return _REGISTRY


def __getattr__(name: str) -> Any:
    if name == "CORRUPTIONS":
        return registered()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
