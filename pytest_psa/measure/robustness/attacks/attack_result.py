"""`AttackResult`: what one attack run measured, on what, with which settings, at what cost."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_psa._stats import ProportionInterval, proportion_interval
from pytest_psa.errors import PsaUsageError, PSAViolation, PsaWarning
from pytest_psa.measure.robustness.attacks.checks import CheckOutcome
from pytest_psa._specs.attacks import AttackSettings
from pytest_psa.measure.robustness.error_stats import _check_alpha

DEFAULT_ALPHA = 0.05


@dataclass(frozen=True, eq=False)
class AttackResult:
    """Per-sample clean and adversarial correctness of one attack run, with its settings and costs.

    A sample counts as robust when it is classified correctly clean and no evaluated iterate of
    any restart fooled the model. With self-checks on, fooling iterates are re-checked by a separate
    forward pass; one that this pass classifies correctly still counts as not robust (robust
    accuracy is never raised by bookkeeping), and `reverify_mismatches` counts them.
    `settings.config` names the configuration that ran ("autoattack-apgd-ce"), "" for settings
    given one by one. `forwards`/`backwards` count per-sample passes (a batch of 250 adds 250),
    the clean pass and the self-checks included; `images_per_s` is n over the whole wall time.
    `adversarial` holds the images only when asked for (`keep_images=True`, as `attack()` does).
    """

    settings: AttackSettings
    clean_correct: np.ndarray
    robust_correct: np.ndarray
    batch_size: int
    device: str
    dtype: str
    forwards: int
    backwards: int
    model_calls: int
    seconds: float
    max_perturbation: float
    tolerance: float
    checks: tuple[CheckOutcome, ...]
    zero_gradient_samples: int = 0
    reverify_mismatches: int = 0  # fooling images classified correctly on re-verification; counted as not robust
    alpha: float = DEFAULT_ALPHA
    label: str = ""
    adversarial: Any = field(default=None, repr=False)

    # -- the numbers -----------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(len(self.clean_correct))

    @property
    def clean_accuracy(self) -> float:
        return float(np.mean(self.clean_correct))

    @property
    def robust_accuracy(self) -> float:
        return float(np.mean(self.robust_correct))

    @property
    def robust_error(self) -> float:
        return 1.0 - self.robust_accuracy

    @property
    def config(self) -> str:
        """The named configuration that ran ("autoattack-apgd-ce"), or "" for settings given one by one."""
        return self.settings.config

    @property
    def images_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("nan")

    def robust_interval(self, alpha: float | None = None, side: str = "two-sided") -> ProportionInterval:
        """Confidence interval for the robust accuracy over the population the images were drawn from."""
        a = self.alpha if alpha is None else alpha
        _check_alpha(a)
        hits = self.robust_correct.astype(np.float64)
        return proportion_interval(hits, np.ones_like(hits), a, side)

    def error_interval(self, alpha: float | None = None) -> ProportionInterval:
        iv = self.robust_interval(alpha)
        return ProportionInterval(1 - iv.estimate, 1 - iv.high, 1 - iv.low, iv.confidence, iv.n_draws, iv.n_units)

    # -- assertion ---------------------------------------------------------------------------
    def assert_robust(self, min_accuracy: float | None = None, *, max_error: float | None = None,
                      alpha: float = 1e-3) -> AttackResult:
        """Fail when the data show robust accuracy below `min_accuracy` (or error above `max_error`):
        the one-sided (1 − alpha) upper bound of the robust accuracy is below the budget. A shortfall
        the data do not show (estimate below, bound above) passes with a PsaWarning."""
        __tracebackhide__ = True
        if (min_accuracy is None) == (max_error is None):
            raise PsaUsageError("give exactly one of min_accuracy and max_error",
                                observed=f"min_accuracy={min_accuracy}, max_error={max_error}",
                                fix="e.g. result.assert_robust(0.2) or result.assert_robust(max_error=0.8)")
        budget = min_accuracy if min_accuracy is not None else 1 - float(max_error)  # type: ignore[arg-type]
        if not 0 <= budget <= 1:
            raise PsaUsageError("the budget must lie in [0, 1]", observed=budget)
        iv = self.robust_interval(alpha, "upper")
        if iv.high < budget:
            what = (f"robust accuracy {self.robust_accuracy:.4f} < min_accuracy={budget:g}" if max_error is None
                    else f"robust error {self.robust_error:.4f} > max_error={max_error:g}")
            raise PSAViolation(f"adversarial budget violated: {what} (upper bound {iv.high:.4f} at alpha="
                               f"{alpha:g})\n{self.summary()}", result=self)
        if self.robust_accuracy < budget:
            warnings.warn(PsaWarning(
                f"robust accuracy {self.robust_accuracy:.4f} is below {budget:g} but within noise "
                f"(upper bound {iv.high:.4f} at alpha={alpha:g}, n={self.n}); attack more images to decide"),
                stacklevel=2)
        return self

    # -- reporting ---------------------------------------------------------------------------
    def summary(self) -> str:
        iv = self.robust_interval()
        s = self.settings
        lines = [
            f"  attack: {s.describe()}{' (' + self.label + ')' if self.label else ''}",
            f"  n={self.n} | clean accuracy {self.clean_accuracy:.4f} | robust accuracy {self.robust_accuracy:.4f} "
            f"[{iv.low:.4f}, {iv.high:.4f}] ({100 * iv.confidence:g}% interval)",
            f"  max perturbation {self.max_perturbation:.6g} (allowed {self.tolerance:.6g}) | batch {self.batch_size} "
            f"on {self.device} {self.dtype}"
            + (f" | {self.reverify_mismatches} fooling image(s) correct on re-verification, counted as not robust"
               if self.reverify_mismatches else ""),
            f"  cost: {self.forwards} forward + {self.backwards} backward sample-passes in {self.model_calls} calls, "
            f"{self.seconds:.2f} s, {self.images_per_s:.1f} images/s",
            "  self-checks: " + "; ".join(f"{c.name}: {'ok' if c.passed else 'FAILED'}" for c in self.checks),
        ]
        return "\n".join(lines)

    def to_dict(self, per_sample: bool = False) -> dict[str, Any]:
        """JSON-safe summary; `per_sample=True` adds the 0/1 clean and robust correctness lists."""
        iv = self.robust_interval()
        out = {
            "settings": self.settings.to_dict(),
            "config": self.config,
            "n": self.n,
            "batch_size": self.batch_size,
            "device": self.device,
            "dtype": self.dtype,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "robust_error": self.robust_error,
            "robust_interval": iv.to_dict(),
            "alpha": self.alpha,
            "forwards": int(self.forwards),
            "backwards": int(self.backwards),
            "model_calls": int(self.model_calls),
            "seconds": float(self.seconds),
            "images_per_s": float(self.images_per_s),
            "max_perturbation": float(self.max_perturbation),
            "tolerance": float(self.tolerance),
            "zero_gradient_samples": int(self.zero_gradient_samples),
            "reverify_mismatches": int(self.reverify_mismatches),
            "checks": [c.to_dict() for c in self.checks],
            "label": self.label,
        }
        if per_sample:
            out["clean_correct"] = self.clean_correct.astype(int).tolist()
            out["robust_correct"] = self.robust_correct.astype(int).tolist()
        return out
