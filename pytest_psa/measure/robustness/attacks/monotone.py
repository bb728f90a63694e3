"""Checks that need more than one attack run: ε = 0 on every image, and "a stronger attack is never
weaker" (more steps, or APGD vs PGD) up to sampling noise.

The comparison is paired: on the same images, b = samples robust under the stronger attack but
fooled by the weaker one, c = the reverse. If the stronger attack is at least as strong, each
discordant sample is a b with probability at most 1/2, so the one-sided exact binomial (sign)
test P(Bin(b + c, 1/2) ≥ b) < alpha rejects it with probability at most alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from pytest_psa.measure.robustness.attacks.checks import AttackSelfCheckError
from pytest_psa.measure.robustness.attacks.harness import Model, run_attack
from pytest_psa.measure.robustness.attacks.attack_result import AttackResult

DEFAULT_MONOTONE_ALPHA = 1e-3


@dataclass(frozen=True, eq=False)
class AttackComparison:
    """A weaker and a stronger attack on the same images, and the paired sign test between them."""

    weaker: AttackResult
    stronger: AttackResult
    only_stronger_failed: int  # b: robust under the stronger attack, fooled by the weaker one
    only_weaker_failed: int    # c: fooled by the stronger attack only
    p_value: float
    alpha: float

    @property
    def passed(self) -> bool:
        return self.p_value >= self.alpha

    def describe(self) -> str:
        w, s = self.weaker, self.stronger
        return (f"{s.settings.describe()}: robust {s.robust_accuracy:.4f} vs {w.settings.describe()}: "
                f"{w.robust_accuracy:.4f} on n={w.n}; robust only under the stronger attack: "
                f"{self.only_stronger_failed}, only under the weaker: {self.only_weaker_failed}; "
                f"sign test p = {self.p_value:.3g} (alpha {self.alpha:g})")

    def to_dict(self) -> dict[str, Any]:
        return {"weaker": self.weaker.to_dict(), "stronger": self.stronger.to_dict(),
                "only_stronger_failed": self.only_stronger_failed,
                "only_weaker_failed": self.only_weaker_failed, "p_value": self.p_value, "alpha": self.alpha,
                "passed": self.passed}

    def assert_monotone(self) -> AttackComparison:
        __tracebackhide__ = True
        if not self.passed:
            raise AttackSelfCheckError(
                "a stronger attack left more images robust than a weaker one, beyond sampling noise",
                observed=self.describe(),
                fix="the loss surface is probably masked or the model is non-deterministic: check for "
                    "randomness and non-differentiable layers; otherwise report the settings as a bug")
        return self


def compare_attacks(weaker: AttackResult, stronger: AttackResult,
                    alpha: float = DEFAULT_MONOTONE_ALPHA) -> AttackComparison:
    """The paired sign test of the module docstring for two runs on the same images."""
    if weaker.n != stronger.n or not np.array_equal(weaker.clean_correct, stronger.clean_correct):
        raise AttackSelfCheckError("the two attack runs do not share their images (clean correctness differs)",
                                   observed=f"n = {weaker.n} vs {stronger.n}",
                                   fix="compare runs on the same images, labels and model")
    b = int((stronger.robust_correct & ~weaker.robust_correct).sum())
    c = int((~stronger.robust_correct & weaker.robust_correct).sum())
    p = 1.0 if b == 0 else float(stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue)
    return AttackComparison(weaker, stronger, b, c, p, alpha)


def check_monotone(model: Model, images: torch.Tensor, labels: torch.Tensor, *, norm: str = "linf",
                   eps: float | None = None, short_steps: int = 7, long_steps: int = 20,
                   method: str = "pgd", seed: int = 0, alpha: float = DEFAULT_MONOTONE_ALPHA,
                   raise_on_fail: bool = True, **kwargs: Any) -> AttackComparison:
    """Run the attack with `short_steps` and with `long_steps` (same seed, default step sizes) and
    require the longer one to leave no more images robust, up to the sign test at `alpha`."""
    short = run_attack(model, images, labels, norm=norm, eps=eps, steps=short_steps, method=method, seed=seed,
                       label=f"{short_steps} steps", **kwargs)
    long = run_attack(model, images, labels, norm=norm, eps=eps, steps=long_steps, method=method, seed=seed,
                      label=f"{long_steps} steps", **kwargs)
    comparison = compare_attacks(short, long, alpha)
    return comparison.assert_monotone() if raise_on_fail else comparison


def check_attack(model: Model, images: torch.Tensor, labels: torch.Tensor, *, norm: str = "linf",
                 eps: float | None = None, steps: int = 20, method: str = "pgd", seed: int = 0,
                 alpha: float = DEFAULT_MONOTONE_ALPHA, **kwargs: Any) -> AttackComparison:
    """The multi-run self-checks on every image: the attack at ε = 0 classifies exactly the clean-correct
    images correctly, and `steps` steps leave no more images robust than ⌈0.35·steps⌉ (PGD-7 vs PGD-20)."""
    zero = run_attack(model, images, labels, norm=norm, eps=0.0, steps=1, method=method, seed=seed, **kwargs)
    if not np.array_equal(zero.robust_correct, zero.clean_correct):
        bad = int((zero.robust_correct != zero.clean_correct).sum())
        raise AttackSelfCheckError("ε = 0 does not reproduce clean accuracy",
                                   observed=f"{bad} of {zero.n} images differ (clean {zero.clean_accuracy:.4f}, "
                                            f"ε = 0 {zero.robust_accuracy:.4f})",
                                   fix="make the model's eval-mode forward deterministic and per-sample")
    short = max(1, math.ceil(0.35 * steps))
    return check_monotone(model, images, labels, norm=norm, eps=eps, short_steps=short, long_steps=steps,
                          method=method, seed=seed, alpha=alpha, **kwargs)
