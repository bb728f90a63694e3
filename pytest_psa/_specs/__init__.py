"""What an audit can be asked to measure, declared once and without torch.

`attacks`: the attack spec grammar (``"norm:eps[:steps[:method]]"`` and dicts), its defaults and
validation; `names`: the corruption, perturbation and flatness-metric names and the vs_erm keys.
The measurement code and the psa marker validation (`pytest_psa._settings`) both use these, so
the marker accepts exactly what the measurement does. Standard library and `pytest_psa.errors` only.
"""

from __future__ import annotations

from pytest_psa._specs.attacks import (
    ATTACK_KEYS,
    DEFAULT_ATTACKS,
    DEFAULT_EPS,
    METHODS,
    NORMS,
    AttackSettings,
    AttackSpec,
    default_step_size,
    eps_text,
    parse_attack,
    resolve_attacks,
    resolve_settings,
)
from pytest_psa._specs.names import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTION_NAMES,
    CORRUPTION_SETS,
    FLATNESS_METRICS,
    PERTURBATION_NAMES,
    PERTURBATION_SET_ALIASES,
    PERTURBATION_SETS,
    VALIDATION_CORRUPTIONS,
    VS_ERM_KEYS,
)

__all__ = [
    "ATTACK_KEYS",
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTION_NAMES",
    "CORRUPTION_SETS",
    "DEFAULT_ATTACKS",
    "DEFAULT_EPS",
    "FLATNESS_METRICS",
    "METHODS",
    "NORMS",
    "PERTURBATION_NAMES",
    "PERTURBATION_SETS",
    "PERTURBATION_SET_ALIASES",
    "VALIDATION_CORRUPTIONS",
    "VS_ERM_KEYS",
    "AttackSettings",
    "AttackSpec",
    "default_step_size",
    "eps_text",
    "parse_attack",
    "resolve_attacks",
    "resolve_settings",
]
