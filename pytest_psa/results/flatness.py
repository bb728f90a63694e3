"""`FlatnessComparison`: ERM vs augmented flatness per metric over k seeds, and the flatter-than-ERM verdict.

Both models of a seed are measured on the same fixed, un-augmented subset of the images they
were trained on, in eval mode, with the same measurement seed (common random numbers). Every
metric here is "lower is flatter" (PAC-Bayes in 1/σ², LPF as the loss *increase* under noise,
ε-sharpness, λ_max, trace). The verdict is judged on the per-seed log ratios d_i = log(ERM_i/aug_i),
paired over seeds, and the improvement is reported as 1 − exp(−mean d) (one minus the geometric-mean
ratio aug/ERM); the per-seed 1 − aug/ERM are kept for display. Two tests, named in every result:

- "sign-flip (exact)": the paired permutation test, all 2^k sign patterns of the d_i enumerated.
  Exact when ERM and augmented values are exchangeable within a seed (no effect), whatever their
  spread across seeds; its smallest p-value is 2^-k, so it needs k ≥ log2(1/α) seeds (5 at α = 0.05).
- "log-ratio t (assumes lognormal)": a one-sided t test on the d_i (k − 1 d.o.f.), exact when the
  metric is lognormal across seeds (then d_i is normal); used when k is too small for the exact test.

"Flatter" is a measurement, never proof of robustness (arXiv 2511.03548: flat minima can generalize badly).
The false-pass rates of both tests, and of the old t on 1 − aug/ERM, are simulated in
benchmarks/bench_flatness_alpha.py (numbers in docs/flatness.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special

from pytest_psa._validation import check_alpha
from pytest_psa.errors import PsaUsageError, PSAViolation
from pytest_psa.results.checks import Checked, pick
from pytest_psa.measure.flatness.flatness_report import FlatnessReport, caveat_lines

DEFAULT_METRICS = ("pac_bayes", "lpf", "eps_sharpness")  # the seed paper's Table 2 trio
DEFAULT_SEEDS = 3
DEFAULT_ALPHA = 0.05
DEFAULT_MEASURE_IMAGES = 1000  # 1k and 2k images agreed within 1 % (measured on CIFAR-10)


def compared_value(report: FlatnessReport, metric: str) -> float:
    """The number compared for `metric` (lower is flatter): LPF uses the increase over L0."""
    r = report[metric]
    return float(r.increase) if metric == "lpf" else float(r.value)  # type: ignore[attr-defined]


SIGN_FLIP = "sign-flip (exact)"
LOG_T = "log-ratio t (assumes lognormal)"
NO_TEST = "none (one seed)"
MAX_EXACT_SEEDS = 20  # 2^20 sign patterns; beyond that the log-ratio t is used (and named)


def exact_min_seeds(alpha: float) -> int:
    """The fewest paired seeds with which the exact sign-flip test can reach `alpha` (smallest p is 2^-k)."""
    k = 1
    while math.floor(alpha * 2 ** k) < 1:
        k += 1
    return max(k, 2)


def choose_test(k: int, alpha: float) -> str:
    """The test a comparison of `k` paired seeds at level `alpha` is judged by."""
    if k < 2:
        return NO_TEST
    return SIGN_FLIP if exact_min_seeds(alpha) <= k <= MAX_EXACT_SEEDS else LOG_T


@dataclass(frozen=True)
class LogRatioBounds:
    """One-sided bounds and p-values on the mean log ratio, one entry per row of `d` (`log_ratio_bounds`)."""

    test: str
    mean: np.ndarray  # mean of d over seeds
    low: np.ndarray  # one-sided (1 - alpha) lower bound of the mean log ratio (the test inverted)
    high: np.ndarray  # one-sided (1 - alpha) upper bound
    p_value: np.ndarray  # one-sided p-value of "no improvement" (mean log ratio <= 0)


def log_ratio_bounds(d: np.ndarray, alpha: float, test: str | None = None) -> LogRatioBounds:
    """Bounds of the mean log ratio d = log(ERM/aug) for each row of `d` (rows: comparisons, columns: seeds).

    The verdict "improvement > m" passes exactly when ``low > -log(1 - m)``, that is when the
    one-sided level-alpha test of "mean log ratio <= -log(1 - m)" rejects. `test` defaults to
    `choose_test`; "sign-flip (exact)" inverts the paired permutation test over all 2^k sign
    patterns: with ``S`` the seeds whose sign is flipped, a pattern reaches the observed statistic
    at margin δ exactly when the mean of d over ``S`` is <= δ, so the p-value at δ is
    (1 + #{S ≠ ∅: mean_S(d) <= δ}) / 2^k and the lower bound is the floor(alpha·2^k)-th smallest
    subset mean. "log-ratio t (assumes lognormal)" is the t bound with k − 1 d.o.f. Vectorized
    over rows: the simulation in benchmarks/bench_flatness_alpha.py calls it with 100,000 rows.
    """
    d = np.atleast_2d(np.asarray(d, dtype=float))
    n, k = d.shape
    test = test or choose_test(k, alpha)
    mean = d.mean(axis=1)
    if test == NO_TEST or k < 2:  # one seed: no spread to judge by, so no claim can be shown
        full = np.full(n, np.inf)
        return LogRatioBounds(NO_TEST, mean, -full, full, np.full(n, np.nan))
    if test == SIGN_FLIP:
        m = math.floor(alpha * 2 ** k)
        if m < 1 or k > MAX_EXACT_SEEDS:
            raise PsaUsageError(f"the exact sign-flip test cannot reach alpha={alpha:g} with {k} seeds",
                                fix=f"use {exact_min_seeds(alpha)} to {MAX_EXACT_SEEDS} seeds, or the log-ratio t")
        sums, sizes = np.zeros((n, 1)), np.zeros(1)
        for i in range(k):  # all 2^k subsets by doubling: sums of d over S and |S|
            sums = np.concatenate([sums, sums + d[:, i:i + 1]], axis=1)
            sizes = np.concatenate([sizes, sizes + 1])
        means = sums[:, 1:] / sizes[1:]  # the 2^k - 1 non-empty subsets
        low = np.partition(means, m - 1, axis=1)[:, m - 1]
        high = -np.partition(-means, m - 1, axis=1)[:, m - 1]
        p = (1 + (means <= 0).sum(axis=1)) / 2 ** k
        return LogRatioBounds(SIGN_FLIP, mean, low, high, p)
    if test != LOG_T:
        raise PsaUsageError(f"unknown test {test!r}", fix=f"choose {SIGN_FLIP!r} or {LOG_T!r}")
    se = d.std(axis=1, ddof=1) / math.sqrt(k)
    t = float(special.stdtrit(k - 1, 1 - alpha))  # stats.t.ppf(1 - alpha, k - 1), as a plain ufunc
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, special.stdtr(k - 1, -mean / se), np.where(mean > 0, 0.0, 1.0))  # t.sf(mean/se)
    return LogRatioBounds(LOG_T, mean, mean - t * se, mean + t * se, p)


def improvement_of(log_ratio: Any) -> Any:
    """1 − exp(−d): the relative improvement 1 − aug/ERM that a log ratio d = log(ERM/aug) stands for."""
    return -np.expm1(-np.asarray(log_ratio, dtype=float))


@dataclass(frozen=True)
class MetricComparison:
    """One metric over k seeds: ERM and augmented values, per-seed improvements, the test and its bounds.

    `mean`, `low` and `high` are on the improvement scale 1 − exp(−mean d), d_i = log(ERM_i/aug_i):
    one minus the geometric-mean ratio aug/ERM, and the test's one-sided (1 − alpha) bounds of it.
    """

    metric: str
    erm: tuple[float, ...]
    augmented: tuple[float, ...]
    improvement: tuple[float, ...]  # 1 - aug / erm per seed (display): > 0 means the augmented model is flatter
    mean: float  # 1 - exp(-mean log(erm / aug)): the improvement of the geometric-mean ratio
    low: float  # one-sided (1 - alpha) lower bound of `mean` by `test` (-inf with one seed)
    high: float  # one-sided (1 - alpha) upper bound
    alpha: float
    p_value: float  # one-sided p-value of "no improvement" (mean log ratio <= 0) by `test`
    test: str = LOG_T  # SIGN_FLIP, LOG_T or NO_TEST: what the bounds and the verdict rest on

    @property
    def log_ratio(self) -> tuple[float, ...]:
        """d_i = log(ERM_i / aug_i) per seed: what the test is computed on."""
        return tuple(float(v) for v in np.log(np.asarray(self.erm) / np.asarray(self.augmented)))

    @property
    def assumption(self) -> str:
        """What the verdict's false-pass rate <= alpha rests on, in words."""
        k = len(self.erm)
        if self.test == SIGN_FLIP:
            return ("exact when ERM and augmented values are exchangeable within a seed (no effect), "
                    "for any spread across seeds")
        if self.test == NO_TEST:
            return "one seed has no spread to judge by: no claim can be shown"
        if k > MAX_EXACT_SEEDS:
            return f"assumes lognormal spread across seeds (more than {MAX_EXACT_SEEDS} seeds: no exact enumeration)"
        return (f"assumes lognormal spread across seeds; the exact sign-flip test needs ≥ "
                f"{exact_min_seeds(self.alpha)} seeds at α = {self.alpha:g}")

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

        Passes only when the one-sided (1 − alpha) lower bound of the improvement 1 − exp(−mean d),
        d_i = log(ERM_i/aug_i), exceeds `min_rel_improvement`, i.e. when the level-alpha test of
        "mean log ratio <= −log(1 − min_rel_improvement)" rejects. The test is the exact sign-flip
        test when the seeds allow it at `alpha` (5 seeds at 0.05), else the log-ratio t, which
        assumes lognormal spread across seeds; `MetricComparison.test` and the messages name it.
        """
        __tracebackhide__ = True
        metric, min_rel, comp = self._resolve(metric, min_rel_improvement, alpha)
        passed = comp.low > min_rel
        self._log_verdicts([FlatnessVerdict(metric, min_rel, comp.alpha, comp.mean, comp.low,
                                            "pass" if passed else "fail")])
        if not passed:
            raise PSAViolation(self.failure_message(metric, min_rel, comp), result=self)
        return self

    def _resolve(self, metric: str | None, min_rel_improvement: float | None,
                 alpha: float | None) -> tuple[str, float, MetricComparison]:
        d = self.assert_defaults
        metric = metric or d.get("metric") or next(iter(self.metrics))
        min_rel = float(pick(min_rel_improvement, d.get("min_rel_improvement"), 0.0))
        if metric not in self.metrics:
            raise PsaUsageError(f"metric {metric!r} was not measured", observed=list(self.metrics),
                                fix="pass it in metrics=[...] to flatness(), or assert on a measured one")
        comp = self.metrics[metric]
        if alpha is not None and alpha != comp.alpha:
            comp = compare_metric(metric, comp.erm, comp.augmented, alpha)
        return metric, min_rel, comp

    def verdict_text(self, metric: str | None = None, min_rel_improvement: float | None = None,
                     alpha: float | None = None) -> str:
        """What `assert_flatter` with these arguments decides, and on which test, in words (pass or fail)."""
        metric, min_rel, comp = self._resolve(metric, min_rel_improvement, alpha)
        shown = "shown" if comp.low > min_rel else "not shown"
        return "\n".join([f"{shown} flatter than ERM: {self.augmentation} on {metric}",
                          *self._verdict_lines(min_rel, comp)])

    def _verdict_lines(self, min_rel: float, comp: MetricComparison) -> list[str]:
        level = f"{100 * (1 - comp.alpha):.0f}%"
        return [
            f"  test: {comp.test}: {comp.assumption}",
            f"  need the {level} lower bound of the improvement 1 − exp(−mean log(ERM/aug)) > {min_rel:g}; "
            f"got {comp.mean:+.3f}, lower bound {comp.low:+.3f}, p (no improvement) {comp.p_value:.3g} "
            f"over seeds {list(self.seeds)}",
            *caveat_lines(comp.metric, self.erm_reports, self.augmented_reports),  # e.g. an unconverged λ_max
            *training_loss_lines(self.settings.get("training_loss")),  # a flatter model that trained less far
        ]

    def failure_message(self, metric: str, min_rel: float, comp: MetricComparison) -> str:
        lines = [
            f"not shown flatter than ERM: {self.augmentation} on {metric}",
            *self._verdict_lines(min_rel, comp),
            "", self.table(), "",
            "  note: a flatter minimum is a measurement, not proof of robustness (arXiv 2511.03548).",
        ]
        if self.repro:
            lines.append(f"  reproduce: {self.repro}")
        return "\n".join(lines)

    def table(self) -> str:
        rows = [("metric", "ERM (mean)", "augmented (mean)", "improvement", f"{100 * (1 - self._alpha()):.0f}% lower",
                 "p (one-sided)", "test")]
        for name, c in self.metrics.items():
            rows.append((name, f"{np.mean(c.erm):.4g}", f"{np.mean(c.augmented):.4g}", f"{c.mean:+.3f}",
                         f"{c.low:+.3f}", f"{c.p_value:.3g}", c.test))
        acc = self.training
        rows.append(("L0 (train loss)", f"{np.mean([r.loss0 for r in self.erm_reports]):.4g}",
                     f"{np.mean([r.loss0 for r in self.augmented_reports]):.4g}", "", "", "", ""))
        rows.append(("test accuracy", _mean_of(acc["erm"], "test_accuracy"), _mean_of(acc["augmented"], "test_accuracy"),
                     "", "", "", ""))
        rows.append(("clean train loss (nats)", _mean_of(acc["erm"], "train_loss"), _mean_of(acc["augmented"], "train_loss"),
                     "", "", "", ""))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def _alpha(self) -> float:
        return next(iter(self.metrics.values())).alpha

    def headline(self) -> dict[str, dict[str, Any]]:
        """Headline numbers for reports and baselines: ``improvement(<metric>)`` = 1 − exp(−mean d),
        d_i = log(ERM_i/aug_i), with the bounds of its test (each side one-sided at alpha; None with
        one seed) and the test under ``method`` (absent with one seed: no interval, no test)."""
        def finite(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {f"improvement({k})": {"estimate": finite(c.mean), "low": finite(c.low), "high": finite(c.high),
                                      "better": "higher", "unit": "relative", "confidence": 1 - 2 * c.alpha,
                                      "n": len(c.improvement), **({"method": c.test} if c.test != NO_TEST else {})}
                for k, c in self.metrics.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "flatness", "augmentation": self.augmentation, "seeds": list(self.seeds),
                "comparisons": {k: v.to_dict() for k, v in self.metrics.items()}, "metrics": self.headline(),
                "training": self.training,
                "data": self.data, "settings": self.settings,
                "erm_reports": [r.to_dict() for r in self.erm_reports],
                "augmented_reports": [r.to_dict() for r in self.augmented_reports]}


def compare_metric(metric: str, erm: tuple[float, ...], augmented: tuple[float, ...], alpha: float) -> MetricComparison:
    """Compare one metric over paired seeds: `log_ratio_bounds` of d_i = log(ERM_i/aug_i), by `choose_test`."""
    check_alpha(alpha)
    e, a = np.asarray(erm, dtype=float), np.asarray(augmented, dtype=float)
    for label, v in (("ERM", e), ("augmented", a)):
        if np.any(v <= 0):
            raise PsaUsageError(
                f"{metric}: the {label} value is not positive ({v.min():.3g}), so a relative improvement is undefined",
                fix="compare on another metric, or raise the measurement's noise level (e.g. lpf_sigma)")
    b = log_ratio_bounds(np.log(e / a)[None, :], alpha)
    mean, low, high = (float(improvement_of(x[0])) for x in (b.mean, b.low, b.high))
    if b.test == NO_TEST:
        low, high = -math.inf, math.inf  # no interval (null in JSON), as the per-seed t gave
    return MetricComparison(metric, tuple(map(float, e)), tuple(map(float, a)), tuple(map(float, 1.0 - a / e)),
                            mean, low, high, alpha, float(b.p_value[0]), b.test)


def training_loss_lines(record: Mapping[str, Any] | None) -> list[str]:
    """The verdict's lines on the clean training loss each side reached (`TrainedPair.training_loss`):
    the losses, and the note when they differ by more than the tolerance; none for older results."""
    if not record or record.get("subject_mean") is None or record.get("baseline_mean") is None:
        return []
    lines = [f"  clean training loss reached (nats, seed mean): audited {record['subject_mean']:.3f}, "
             f"baseline {record['baseline_mean']:.3f} (tolerance {record['tolerance']:g})"]
    if record.get("note"):
        lines.append(f"  note: {record['note']}")
    return lines


def _mean_of(records: list[dict[str, Any]], key: str) -> str:
    values = [v for v in (r.get(key) for r in records) if v is not None]
    return f"{np.mean(values):.4f}" if values else "n/a"
