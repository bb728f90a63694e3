"""`FlatnessComparison`: ERM vs augmented flatness per metric over k seeds, and the flatter-than-ERM verdict.

Both models of a seed are measured on the same fixed, un-augmented subset of the images they
were trained on, in eval mode, with the same measurement seed (common random numbers). Every
metric here is "lower is flatter" (PAC-Bayes in 1/σ², LPF as the loss *increase* under noise,
ε-sharpness, λ_max, trace), and the comparison is the per-seed relative improvement
1 − aug/ERM, paired over seeds. "Flatter" is a measurement, never proof of robustness
(arXiv 2511.03548: flat minima can generalize badly).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from pytest_psa._validation import check_alpha
from pytest_psa.errors import PsaUsageError, PSAViolation
from pytest_psa.results.checks import Checked, pick
from pytest_psa.measure.flatness.flatness_report import FlatnessReport

DEFAULT_METRICS = ("pac_bayes", "lpf", "eps_sharpness")  # the seed paper's Table 2 trio
DEFAULT_SEEDS = 3
DEFAULT_ALPHA = 0.05
DEFAULT_MEASURE_IMAGES = 1000  # 1k and 2k images agreed within 1 % (measured on CIFAR-10)


def compared_value(report: FlatnessReport, metric: str) -> float:
    """The number compared for `metric` (lower is flatter): LPF uses the increase over L0."""
    r = report[metric]
    return float(r.increase) if metric == "lpf" else float(r.value)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class MetricComparison:
    """One metric over k seeds: ERM and augmented values, per-seed improvements and their interval."""

    metric: str
    erm: tuple[float, ...]
    augmented: tuple[float, ...]
    improvement: tuple[float, ...]  # 1 - aug / erm per seed: > 0 means the augmented model is flatter
    mean: float
    low: float  # one-sided (1 - alpha) lower bound of the mean improvement (t over seeds)
    high: float
    alpha: float
    p_value: float  # one-sided test of "no improvement" (mean <= 0)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class FlatnessVerdict:
    """The decision of one `assert_flatter` call on one metric."""

    metric: str
    min_rel_improvement: float
    alpha: float
    mean: float
    low: float
    outcome: str  # "pass" or "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "min_rel_improvement": self.min_rel_improvement, "alpha": self.alpha,
                "mean": self.mean, "low": self.low, "outcome": self.outcome}


@dataclass(frozen=True, eq=False)
class FlatnessComparison(Checked):
    """ERM vs augmented flatness per metric, with the training records and raw reports behind it."""

    augmentation: str
    metrics: dict[str, MetricComparison]
    seeds: tuple[int, ...]
    erm_reports: tuple[FlatnessReport, ...]
    augmented_reports: tuple[FlatnessReport, ...]
    training: dict[str, list[dict[str, Any]]]
    data: dict[str, Any]
    settings: dict[str, Any]
    repro: str = ""
    assert_defaults: Mapping[str, Any] = field(default_factory=dict)  # thresholds, e.g. a marker's (`with_defaults`)
    audit_kind = "flatness"

    @property
    def subject(self) -> str:
        """The audited augmentation by name."""
        return self.augmentation

    def __getitem__(self, metric: str) -> MetricComparison:
        return self.metrics[metric]

    def assert_flatter(self, metric: str | None = None, min_rel_improvement: float | None = None,
                       alpha: float | None = None) -> FlatnessComparison:
        """Assert the augmented model is flatter than ERM on `metric` by at least `min_rel_improvement`.

        Passes only when the one-sided (1 − alpha) lower confidence bound of the mean per-seed
        improvement 1 − aug/ERM exceeds `min_rel_improvement`: the claim "flatter" must be shown,
        and a model that is not flatter passes with probability at most alpha.
        """
        __tracebackhide__ = True
        d = self.assert_defaults
        metric = metric or d.get("metric") or next(iter(self.metrics))
        min_rel = float(pick(min_rel_improvement, d.get("min_rel_improvement"), 0.0))
        if metric not in self.metrics:
            raise PsaUsageError(f"metric {metric!r} was not measured", observed=list(self.metrics),
                                fix="pass it in metrics=[...] to flatness(), or assert on a measured one")
        comp = self.metrics[metric]
        if alpha is not None and alpha != comp.alpha:
            comp = compare_metric(metric, comp.erm, comp.augmented, alpha)
        passed = comp.low > min_rel
        self._log_verdicts([FlatnessVerdict(metric, min_rel, comp.alpha, comp.mean, comp.low,
                                            "pass" if passed else "fail")])
        if not passed:
            raise PSAViolation(self.failure_message(metric, min_rel, comp), result=self)
        return self

    def failure_message(self, metric: str, min_rel: float, comp: MetricComparison) -> str:
        lines = [
            f"not shown flatter than ERM: {self.augmentation} on {metric}",
            f"  need the {100 * (1 - comp.alpha):.0f}% lower bound of the mean improvement 1 − aug/ERM > {min_rel:g}; "
            f"got mean {comp.mean:+.3f}, lower bound {comp.low:+.3f} over seeds {list(self.seeds)}",
            "", self.table(), "",
            "  note: a flatter minimum is a measurement, not proof of robustness (arXiv 2511.03548).",
        ]
        if self.repro:
            lines.append(f"  reproduce: {self.repro}")
        return "\n".join(lines)

    def table(self) -> str:
        rows = [("metric", "ERM (mean)", "augmented (mean)", "improvement", f"{100 * (1 - self._alpha()):.0f}% lower",
                 "p (one-sided)")]
        for name, c in self.metrics.items():
            rows.append((name, f"{np.mean(c.erm):.4g}", f"{np.mean(c.augmented):.4g}", f"{c.mean:+.3f}",
                         f"{c.low:+.3f}", f"{c.p_value:.3g}"))
        acc = self.training
        rows.append(("L0 (train loss)", f"{np.mean([r.loss0 for r in self.erm_reports]):.4g}",
                     f"{np.mean([r.loss0 for r in self.augmented_reports]):.4g}", "", "", ""))
        rows.append(("test accuracy", _mean_of(acc["erm"], "test_accuracy"), _mean_of(acc["augmented"], "test_accuracy"),
                     "", "", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def _alpha(self) -> float:
        return next(iter(self.metrics.values())).alpha

    def headline(self) -> dict[str, dict[str, Any]]:
        """Headline numbers for reports and baselines: ``improvement(<metric>)`` = mean per-seed
        1 − aug/ERM with its t-interval (each side one-sided at alpha; None with one seed)."""
        def finite(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {f"improvement({k})": {"estimate": finite(c.mean), "low": finite(c.low), "high": finite(c.high),
                                      "better": "higher", "unit": "relative", "confidence": 1 - 2 * c.alpha,
                                      "n": len(c.improvement)} for k, c in self.metrics.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "flatness", "augmentation": self.augmentation, "seeds": list(self.seeds),
                "comparisons": {k: v.to_dict() for k, v in self.metrics.items()}, "metrics": self.headline(),
                "training": self.training,
                "data": self.data, "settings": self.settings,
                "erm_reports": [r.to_dict() for r in self.erm_reports],
                "augmented_reports": [r.to_dict() for r in self.augmented_reports]}


def compare_metric(metric: str, erm: tuple[float, ...], augmented: tuple[float, ...], alpha: float) -> MetricComparison:
    check_alpha(alpha)
    e, a = np.asarray(erm), np.asarray(augmented)
    if np.any(e <= 0):
        raise PsaUsageError(
            f"{metric}: the ERM value is not positive ({e.min():.3g}), so a relative improvement is undefined",
            fix="compare on another metric, or raise the measurement's noise level (e.g. lpf_sigma)")
    imp = 1.0 - a / e
    k, mean = len(imp), float(imp.mean())
    if k >= 2:
        sd = float(imp.std(ddof=1))
        se = sd / math.sqrt(k)
        t = float(stats.t.ppf(1 - alpha, k - 1))
        low, high = mean - t * se, mean + t * se
        p = float(stats.t.sf(mean / se, k - 1)) if se > 0 else (0.0 if mean > 0 else 1.0)
    else:  # one seed: no spread to judge by, so no claim can be shown
        low, high, p = -math.inf, math.inf, float("nan")
    return MetricComparison(metric, tuple(map(float, e)), tuple(map(float, a)), tuple(map(float, imp)),
                            mean, low, high, alpha, p)


def _mean_of(records: list[dict[str, Any]], key: str) -> str:
    values = [v for v in (r.get(key) for r in records) if v is not None]
    return f"{np.mean(values):.4f}" if values else "n/a"
