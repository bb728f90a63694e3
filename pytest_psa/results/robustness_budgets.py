"""Budgets of `RobustnessResult.assert_budget`: which number each budget bounds, and the verdict on it.

A budget is a ceiling on a "lower is better" number. Its verdict uses the one-sided lower
confidence bound at level alpha / m (m budgets in the call, Bonferroni):

- fail: the lower bound is above the budget (the data show it is exceeded);
- inconclusive: the estimate is above the budget, the lower bound is not (passes, with a warning);
- pass: the estimate is within the budget.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

from pytest_psa._specs.budgets import bare_number_message, budget_line, format_value, vs_erm_entries
from pytest_psa._specs.names import DEPRECATED_VS_ERM_KEYS, deprecated_key_message
from pytest_psa._validation import check_alpha
from pytest_psa.errors import PsaUsageError, PsaWarning
from pytest_psa.measure.robustness.specs import attack_label

# vs_erm dict keys -> the metric they bound (differences are audited - baseline; the others are ratios)
_VS_KEYS = {"mce": "delta_mce", "clean_error": "delta_clean_error", "mfp": "delta_mfp",
            "mce_ratio": "mce_ratio", "hd_relative_mce": "hd_relative_mce", "rel_mfp": "rel_mfp"}
# the measurement each metric needs: corruptions ("mce") or perturbation sequences ("mfp")
_NEEDS = {"mce": "mce", "delta_mce": "mce", "mce_ratio": "mce", "hd_relative_mce": "mce",
          "mfp": "mfp", "delta_mfp": "mfp", "rel_mfp": "mfp"}


@dataclass(frozen=True)
class BudgetVerdict:
    name: str  # the budget as the user wrote it, e.g. "max_mce" or "vs_erm[mce]"
    metric: str  # the metric it bounds, e.g. "mce", "delta_mce" or "mce_ratio"
    budget: float  # in the metric's own terms: a fraction (differences too: +0.5pp is 0.005) or a ratio
    estimate: float
    low: float | None  # one-sided lower bound at level `alpha`
    high: float | None  # one-sided upper bound at level `alpha`
    alpha: float
    outcome: str  # pass | inconclusive | fail
    unit: str = "fraction"  # how it is written and printed: "pp" | "ratio" | "fraction" (_specs/budgets.py)

    @property
    def limit_text(self) -> str:
        """The limit as the user would write it: ``+0.50pp``, ``x1.02``, ``30.0%``."""
        return format_value(self.budget, self.unit, exact=True)

    def line(self) -> str:
        """``vs_erm[mce] = +0.60pp ≤ +0.50pp: fail``: the one way every report prints this budget."""
        return budget_line(self.name, self.estimate, self.budget, self.unit, self.outcome)

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "metric": self.metric, "budget": self.budget, "limit": self.budget,
                "unit": self.unit, "limit_text": self.limit_text, "estimate": self.estimate,
                "low": self.low, "high": self.high, "alpha": self.alpha, "outcome": self.outcome}


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PsaUsageError(f"budget {name} must be a finite number (a fraction: 0.3 is 30.0%)", observed=value)
    return float(value)


_warned_bare: set[tuple[str, float]] = set()  # bare vs_erm numbers warned about in this process


def _warn_bare(key: str, value: float, bounded: str) -> None:
    if (key, value) not in _warned_bare:
        _warned_bare.add((key, value))
        warnings.warn(PsaWarning(bare_number_message(key, value, bounded)), stacklevel=5)


def budget_targets(result: Any, budgets: dict[str, Any]) -> list[tuple[str, str, float, str]]:
    """(budget name, metric name, budget value, unit) for every budget given; unknown or unmeasured ones raise."""
    specs = result.attacks
    out: list[tuple[str, str, float, str]] = []

    def need(metric: str, what: str, fix: str) -> None:
        base = _NEEDS.get(metric)  # delta_mce / mce_ratio / hd_relative_mce / mce -> mce
        if base == "mce" and not result.corruptions or base == "mfp" and not result.perturbations:
            raise PsaUsageError(f"{what} needs {base}, which was not measured", fix=fix)

    if budgets.get("max_mce") is not None:
        need("mce", "max_mce", 'run with corruptions="cifar10-c" (or a list)')
        out.append(("max_mce", "mce", _number("max_mce", budgets["max_mce"]), "fraction"))
    if budgets.get("max_clean_error") is not None:
        out.append(("max_clean_error", "clean_error", _number("max_clean_error", budgets["max_clean_error"]), "fraction"))
    if budgets.get("max_mfp") is not None:
        need("mfp", "max_mfp", 'run with perturbations="cifar10-p"')
        out.append(("max_mfp", "mfp", _number("max_mfp", budgets["max_mfp"]), "fraction"))
    adv = budgets.get("max_adv_error")
    if adv is not None:
        if not specs:
            raise PsaUsageError("max_adv_error needs attacks, and none were run", fix='run with attacks="default"')
        items = adv.items() if isinstance(adv, dict) else [(s.label, adv) for s in specs]
        for key, value in items:
            label = attack_label(str(key), specs)
            out.append((f"max_adv_error[{label}]", f"adv_error({label})", _number("max_adv_error", value), "fraction"))
    vs = budgets.get("vs_erm")
    if vs is not None:
        if result.baseline_samples is None:
            raise PsaUsageError("vs_erm needs a baseline, and this result has none",
                                fix="audit an augmentation (compared with ERM), or pass baseline=<model> for a model")
        entries = vs_erm_entries(vs)  # parses every spelling; unknown keys and units raise here
        written = [w for w, _, _ in entries]
        bounds = [DEPRECATED_VS_ERM_KEYS.get(b, b) for _, b, _ in entries]
        for b in set(bounds):
            same = [w for w, x in zip(written, bounds) if x == b]
            if len(same) > 1 and not set(same) & set(DEPRECATED_VS_ERM_KEYS):
                raise PsaUsageError(f"vs_erm gives {', '.join(map(repr, same))}, which all bound {b}",
                                    fix="keep one of them")
        for key, bounded, limit in entries:
            if key in DEPRECATED_VS_ERM_KEYS:
                warnings.warn(PsaWarning(f"vs_erm: {deprecated_key_message(key)}"), stacklevel=4)
                new = DEPRECATED_VS_ERM_KEYS[key]
                if new in written:
                    raise PsaUsageError(f"vs_erm gives both {key!r} and {new!r}, which are the same budget",
                                        fix=f"keep {new!r} only")
                bounded = key = new
            if not limit.explicit:
                _warn_bare(key, limit.value, bounded)
            name = f"vs_erm[{key}]"  # as written: {"mce": "x1.02"} reads vs_erm[mce] = x0.98 ≤ x1.02
            if bounded in _VS_KEYS:
                metric = _VS_KEYS[bounded]
                need(metric, name, "measure it, or drop that budget")
                out.append((name, metric, limit.value, limit.unit))
            elif bounded == "adv_error":
                for s in specs:
                    out.append((f"vs_erm[adv_error({s.label})]", f"delta_adv_error({s.label})", limit.value, limit.unit))
            else:
                label = attack_label(bounded, specs)
                out.append((f"vs_erm[adv_error({label})]", f"delta_adv_error({label})", limit.value, limit.unit))
    return out


def evaluate_budgets(result: Any, budgets: dict[str, Any], alpha: float) -> list[BudgetVerdict]:
    """One verdict per budget (see the module docstring); raises PsaUsageError when none is given."""
    check_alpha(alpha, 0.5)
    targets = budget_targets(result, budgets)
    if not targets:
        raise PsaUsageError("assert_budget() got no budget to check",
                            fix="give e.g. max_mce=0.3, max_adv_error=0.9 or vs_erm={'mce': '+0.5pp'} "
                                "(or set them on the psa marker)")
    a = alpha / len(targets)
    metrics = result.metrics(2 * a)  # two-sided at 2a: each side is a one-sided bound at level a
    out = []
    for name, metric, budget, unit in targets:
        e = metrics[metric]
        if e.low is not None and e.low > budget:
            outcome = "fail"
        elif e.estimate > budget:
            outcome = "inconclusive"
        else:
            outcome = "pass"
        out.append(BudgetVerdict(name, metric, budget, float(e.estimate), e.low, e.high, a, outcome, unit))
    return out


__all__ = ["BudgetVerdict", "budget_targets", "evaluate_budgets"]
