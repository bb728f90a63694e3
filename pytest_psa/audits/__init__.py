"""Audits: what to train, with which seeds, and what to measure on it; the layer above the kernels.

- `density.py`: proximal density of an augmentation (`pytest_psa.density`);
- `flatness.py`: flatness of augmented vs ERM models per seed (`pytest_psa.flatness`);
- `robustness.py`: corruption, perturbation and adversarial errors (`pytest_psa.robustness`,
  and its two entry points `robustness_of_model` and `robustness_of_augmentation`), evaluated
  by `robustness_evaluation.py` and cached by `evaluation_cache.py`;
- `train_pair` / `PairSpec` / `TrainedPair` / `seed_list`: the audited augmentation's and its
  baseline's models per seed, shared by every augmentation audit (`trained_pair.py`).

The measurements themselves live in `pytest_psa.measure` (stateless kernels, no caches, no
training); the results they build in `pytest_psa.results`. The names below are loaded on first
use, so importing one audit module does not import the others.

`density`, `flatness` and `robustness` are not re-exported here: the submodules of the same
names would shadow them (``import pytest_psa.audits.robustness as audit`` must stay the module).
Reach them as `pytest_psa.density`, `pytest_psa.flatness` and `pytest_psa.robustness`, or from
their modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it (imported lazily)
_LAZY: dict[str, str] = {
    "robustness_of_model": "pytest_psa.audits.robustness",
    "robustness_of_augmentation": "pytest_psa.audits.robustness",
    "is_trained_model": "pytest_psa.audits.robustness",
    "PairSpec": "pytest_psa.audits.trained_pair",
    "TrainedPair": "pytest_psa.audits.trained_pair",
    "seed_list": "pytest_psa.audits.trained_pair",
    "train_pair": "pytest_psa.audits.trained_pair",
}

__all__ = [
    "PairSpec",
    "TrainedPair",
    "is_trained_model",
    "robustness_of_augmentation",
    "robustness_of_model",
    "seed_list",
    "train_pair",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_psa.audits' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:
    from pytest_psa.audits.robustness import is_trained_model, robustness_of_augmentation, robustness_of_model
    from pytest_psa.audits.trained_pair import PairSpec, TrainedPair, seed_list, train_pair
