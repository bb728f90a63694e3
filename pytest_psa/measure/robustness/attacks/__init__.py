"""Self-checking adversarial attacks: PGD (L∞, L2) and APGD-CE with per-sample early stopping.

    adv = pytest_psa.attack(model, images, labels)                    # PGD-20 L∞ 8/255, step 2/255
    res = run_attack(model, images, labels, norm="l2", eps=0.5, steps=7)
    res = run_attack(model, images, labels, config="autoattack-apgd-ce")  # AutoAttack's APGD-CE (100 steps)
    res.robust_accuracy, res.robust_interval(), res.forwards, res.images_per_s, res.checks

Every run checks itself (eval mode, buffers, ε-bound, finite logits, logits not probabilities,
deterministic outputs, ε = 0, zero gradients) and raises `AttackSelfCheckError` on a violation;
`check_attack` / `check_monotone` add the multi-run checks. See docs/attacks.md.
"""

from __future__ import annotations

from pytest_psa._specs.attacks import (
    CONFIGS,
    DEFAULT_EPS,
    METHODS,
    NORMS,
    AttackSettings,
    default_step_size,
    resolve_settings,
)
from pytest_psa.measure.robustness.attacks.checks import AttackSelfCheckError, CheckOutcome
from pytest_psa.measure.robustness.attacks.harness import attack, run_attack
from pytest_psa.measure.robustness.attacks.monotone import (
    AttackComparison,
    check_attack,
    check_monotone,
    compare_attacks,
)
from pytest_psa.measure.robustness.attacks.attack_result import AttackResult

__all__ = [
    "CONFIGS",
    "DEFAULT_EPS",
    "METHODS",
    "NORMS",
    "AttackComparison",
    "AttackResult",
    "AttackSelfCheckError",
    "AttackSettings",
    "CheckOutcome",
    "attack",
    "check_attack",
    "check_monotone",
    "compare_attacks",
    "default_step_size",
    "resolve_settings",
    "run_attack",
]
