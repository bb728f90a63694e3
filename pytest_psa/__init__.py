"""pytest-psa: put an image augmentation's robustness claims under test.

The public names are re-exported here and loaded on first use, so that
``import pytest_psa`` (and loading the pytest plugin) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pytest_psa.errors import (
    AugmentationContractError,
    CacheError,
    DataSourceError,
    FlakyMeasurement,
    PsaError,
    PsaSanityError,
    PsaUsageError,
    PSAViolation,
    PsaWarning,
    TimeBudgetExceeded,
)

from pytest_psa._version import __version__

# public name -> module that defines it (imported lazily)
_LAZY: dict[str, str] = {
    "density": "pytest_psa.audits.density",
    "DensityResult": "pytest_psa.results.density",
    "measure_flatness": "pytest_psa.measure.flatness.measure",
    "flatness": "pytest_psa.audits.flatness",
    "FlatnessComparison": "pytest_psa.results.flatness",
    "FlatnessReport": "pytest_psa.measure.flatness.flatness_report",
    "register_distance": "pytest_psa.measure.density.distances",
    "available_distances": "pytest_psa.measure.density.distances",
    "aligned_distance": "pytest_psa.measure.density.distances",
    "feature_distance": "pytest_psa.measure.density.distances",
    "Augmentation": "pytest_psa.augment.adapters",
    "as_augmentation": "pytest_psa.augment.adapters",
    "pil_augmentation": "pytest_psa.augment.adapters",
    "tensor_augmentation": "pytest_psa.augment.adapters",
    "numpy_augmentation": "pytest_psa.augment.adapters",
    "batched_augmentation": "pytest_psa.augment.adapters",
    "check_contract": "pytest_psa.augment.check",
    "ImageData": "pytest_psa.data.image_data",
    "load_data": "pytest_psa.data.sources",
    "register_data_source": "pytest_psa.data.sources",
    "from_arrays": "pytest_psa.data.image_data",
    "synthetic": "pytest_psa.data.synthetic",
    "corrupt": "pytest_psa.measure.robustness.corruptions",
    "available_corruptions": "pytest_psa.measure.robustness.corruptions",
    "attack": "pytest_psa.measure.robustness.attacks",
    "robustness": "pytest_psa.audits.robustness",
    "RobustnessResult": "pytest_psa.results.robustness",
    "domain_generalization": "pytest_psa.audits.domain",
    "DomainResult": "pytest_psa.results.domain",
    "DomainData": "pytest_psa.data.domains",
    "load_domains": "pytest_psa.data.domains",
    "synthetic_domains": "pytest_psa.data.domains",
    "PixMix": "pytest_psa.augment.zoo",
    "arm": "pytest_psa.train.arm",
    "training_recipe": "pytest_psa.train.recipe",
    "TrainingRecipeError": "pytest_psa.train.recipe",
    "DeepAugmentStandin": "pytest_psa.augment.zoo",
    "RandConvStandin": "pytest_psa.augment.zoo",
    "without_proximal": "pytest_psa.augment.zoo",
    "compose": "pytest_psa.augment.zoo",
    "chain": "pytest_psa.augment.zoo",
    "reproduce": "pytest_psa.reproduce.main",
}

__all__ = [
    "AugmentationContractError",
    "CacheError",
    "DataSourceError",
    "FlakyMeasurement",
    "PSAViolation",
    "PsaError",
    "PsaSanityError",
    "PsaUsageError",
    "PsaWarning",
    "TimeBudgetExceeded",
    "__version__",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_psa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from pytest_psa.augment.adapters import (
        Augmentation,
        as_augmentation,
        batched_augmentation,
        numpy_augmentation,
        pil_augmentation,
        tensor_augmentation,
    )
    from pytest_psa.augment.check import check_contract
    from pytest_psa.data.image_data import ImageData, from_arrays
    from pytest_psa.data.sources import load_data, register_data_source
    from pytest_psa.data.synthetic import synthetic
    from pytest_psa.audits.density import density
    from pytest_psa.measure.density.distances import (
        aligned_distance,
        available_distances,
        feature_distance,
        register_distance,
    )
    from pytest_psa.results.density import DensityResult
    from pytest_psa.audits.flatness import flatness
    from pytest_psa.results.flatness import FlatnessComparison
    from pytest_psa.measure.flatness.measure import measure_flatness
    from pytest_psa.measure.flatness.flatness_report import FlatnessReport
    from pytest_psa.measure.robustness.attacks import attack
    from pytest_psa.audits.robustness import robustness
    from pytest_psa.audits.domain import domain_generalization
    from pytest_psa.results.domain import DomainResult
    from pytest_psa.data.domains import DomainData, load_domains, synthetic_domains
    from pytest_psa.measure.robustness.corruptions import available_corruptions, corrupt
    from pytest_psa.results.robustness import RobustnessResult
    from pytest_psa.reproduce.main import reproduce
    from pytest_psa.train.recipe import TrainingRecipeError, training_recipe
