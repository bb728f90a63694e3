"""The one record form between measuring and reporting.

A result (`DensityResult`, `FlatnessComparison`, `RobustnessResult`) implements `AuditResult`: it
names its kind and subject, gives its headline metrics (records of `MetricEstimate`), keeps the
verdicts its assertions reached, and converts to a record (a JSON-ready dict with ``"schema"``,
``"kind"`` and ``"metrics"``). An `AuditRecord`
is what one audit in one test left behind: that record, the verdicts its assertions reached, and
the comparison with a stored baseline. Reports, baselines, ``--psa-json`` and the xdist wire read
these types, never the result objects. Stdlib only: no torch, no pytest.

The record form is written down below as `TypedDict`s: `DensitySummary`, `FlatnessSummary` and
`RobustnessSummary` are what ``to_dict()`` of the three results holds (tests/architecture/
test_record_types.py keeps them equal to the producers' keys), `DensityVerdictRecord`,
`FlatnessVerdictRecord` and `BudgetVerdictRecord` what their verdicts hold, `BaselineComparison`
what the baseline gate leaves on a record and `RunEntry` one entry of a run file. Report code reads
a record through `AuditRecord`'s accessors (`subject`, `metrics()`, `seeds()`, `density()`, ...),
which check the kind and give these types, so mypy checks every key the report reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict, Union, cast, runtime_checkable

RECORD_SCHEMA = 1  # bump when a record's keys change meaning
Kind = Literal["density", "flatness", "robustness", "domain"]
KINDS: tuple[str, ...] = ("density", "flatness", "robustness", "domain")


# -- the record form ---------------------------------------------------------------------------
class _MetricRecordKeys(TypedDict):
    estimate: float | None
    low: float | None
    high: float | None
    better: Literal["lower", "higher"]
    unit: str
    confidence: float | None
    n: int | None


class MetricRecord(_MetricRecordKeys, total=False):
    """One headline number with its interval, as stored: `MetricEstimate.to_record()`."""

    method: str  # how a robustness interval was computed ("clopper-pearson", "betting", ...)


class DataDescription(TypedDict, total=False):
    """The data an audit ran on (``ImageData.to_dict()`` plus a label); the keys reports read."""

    describe: str  # e.g. "cifar10/test[500 of 10000]"
    name: str
    split: str
    n: int
    fingerprint: str


class Environment(TypedDict, total=False):
    device: str
    torch: str
    torchvision: str
    python: str
    threads: int


class TrainingFields(TypedDict, total=False):
    """The fields of a training record (``TrainingRecord.to_dict()``) that reports read."""

    device: str
    seed: int
    test_accuracy: float | None


class EcdfRow(TypedDict):
    """F_N(γ) at one γ of the reported grid: its 95 % interval and the share of images covered."""

    gamma: float
    estimate: float
    low: float
    high: float
    confidence: float
    n_draws: float
    n_units: float
    image_coverage: float


class EcdfCurve(TypedDict):
    """The pooled eCDF as (γ, F) pairs: enough to draw it."""

    gamma: list[float]
    F: list[float]


class AlignmentShare(TypedDict):
    dx: int
    dy: int
    flip: bool
    fraction: float


class AlignmentSummary(TypedDict, total=False):
    """``l2_aligned``: how often the best alignment was a flip, a shift, neither, at the radius."""

    draws: int
    flip: float
    shift: float
    none: float
    top: list[AlignmentShare]
    radius_px: list[int]
    at_radius: float


class SamplePair(TypedDict):
    """One image pair x / A(x) at a quantile of the distances (``results/sample_pairs.py``)."""

    quantile: float
    distance: float
    image: int
    draw: int
    x: str  # base64 PNG
    ax: str  # base64 PNG


class _DensityKeys(TypedDict):
    kind: Literal["density"]
    augmentation: str
    distance: str
    distance_info: dict[str, Any]
    data: DataDescription
    seed: int
    n_images: int
    draws: int
    exclude_identity: bool
    identity_fraction: float
    metrics: dict[str, MetricRecord]  # "F(γ)"
    ecdf: list[EcdfRow]
    quantiles: dict[str, float]
    ecdf_curve: EcdfCurve
    timing: dict[str, float]
    environment: Environment


class DensitySummary(_DensityKeys, total=False):
    """``DensityResult.to_dict()``."""

    alignment: AlignmentSummary  # l2_aligned only
    sample_pairs: list[SamplePair]  # when the audit kept them (the HTML report's grid)
    distances: list[list[float]]  # to_dict(include_distances=True)
    identity: list[list[bool]]


class ComparisonRecord(TypedDict):
    """One flatness metric over seeds (``MetricComparison.to_dict()``); bounds are null in JSON
    when there is no interval (one seed)."""

    metric: str
    erm: list[float]
    augmented: list[float]
    improvement: list[float]
    mean: float
    low: float | None
    high: float | None
    alpha: float
    p_value: float
    test: str  # "sign-flip (exact)", "log-ratio t (assumes lognormal)" or "none (one seed)"; older files lack it


class FlatnessTraining(TypedDict):
    erm: list[TrainingFields]
    augmented: list[TrainingFields]


class FlatnessSettings(TypedDict, total=False):
    preset: str
    baseline: str
    alpha: float
    n_measure: int
    optimizer: str
    metrics: list[str]
    device: str
    definitions: dict[str, dict[str, Any]]  # each metric's convention (PAC-Bayes target, LPF normalization)


class FlatnessSummary(TypedDict):
    """``FlatnessComparison.to_dict()``."""

    kind: Literal["flatness"]
    augmentation: str
    seeds: list[int]
    comparisons: dict[str, ComparisonRecord]
    metrics: dict[str, MetricRecord]  # "improvement(<metric>)"
    training: FlatnessTraining
    data: DataDescription
    settings: FlatnessSettings
    erm_reports: list[dict[str, Any]]
    augmented_reports: list[dict[str, Any]]


class _RobustnessKeys(TypedDict):
    kind: Literal["robustness"]
    subject: str
    augmentation: str  # the subject again, under the name density and flatness use
    subject_kind: str  # "augmentation" or "model"
    baseline: str | None
    metrics: dict[str, MetricRecord]  # clean_error, mce, ..., baseline_*, delta_*, rel_*
    data: DataDescription
    n_images: int
    n_attack_images: int
    n_perturbation_images: int
    seed: int
    seeds: list[int]
    preset: str | None
    device: str
    alpha: float
    corruptions: list[str]
    severities: list[int]
    perturbations: list[str]
    attacks: list[dict[str, Any]]
    settings: dict[str, Any]
    errors: dict[str, dict[str, MetricRecord]]  # corruption -> severity -> error
    corruption_errors: dict[str, MetricRecord]
    relative_corruption_errors: dict[str, MetricRecord]
    normalized_corruption_errors: dict[str, MetricRecord]
    flip_probabilities: dict[str, MetricRecord]
    attack_runs: dict[str, dict[str, list[dict[str, Any]]]]
    per_seed: dict[str, list[dict[str, Any]]]
    training: dict[str, list[TrainingFields]]  # role -> one record per seed
    cache: dict[str, str]
    cache_hit: bool
    timing: dict[str, float]
    notes: list[str]
    repro: str


class RobustnessSummary(_RobustnessKeys, total=False):
    """``RobustnessResult.to_dict()`` (results/robustness_tables.py, ``result_dict``)."""

    baseline_errors: dict[str, dict[str, MetricRecord]]  # with a baseline only
    baseline_flip_probabilities: dict[str, MetricRecord]
    erm_corruption_errors: dict[str, MetricRecord]


Summary = Union[DensitySummary, FlatnessSummary, RobustnessSummary]


class DensityVerdictRecord(TypedDict):
    """``Verdict.to_dict()`` (density): F(γ) with its one-sided bounds, each at α/m."""

    gamma: float
    min_density: float
    alpha: float
    outcome: str
    F_estimate: float
    F_low: float
    F_high: float
    F_confidence: float
    F_n_draws: float
    F_n_units: float


class FlatnessVerdictRecord(TypedDict):
    """``FlatnessVerdict.to_dict()``."""

    metric: str
    min_rel_improvement: float
    alpha: float
    mean: float
    low: float
    outcome: str


class BudgetVerdictRecord(TypedDict):
    """``BudgetVerdict.to_dict()`` (robustness)."""

    check: str  # the budget as written, e.g. "max_mce" or "vs_erm[mce]"
    metric: str
    budget: float  # in the metric's own terms (a fraction, or a ratio); "+0.5pp" is 0.005
    limit: float
    unit: str  # "pp" (difference audited − baseline), "ratio" (audited / baseline) or "fraction" (max_*)
    limit_text: str  # the limit as the user would write it: "+0.50pp", "x1.02", "30.0%" (_specs/budgets.py)
    estimate: float
    low: float | None
    high: float | None
    alpha: float
    outcome: str


class MetricDeltaRecord(TypedDict):
    """``MetricDelta.to_dict()`` (report/compare.py): one metric against its baseline."""

    name: str
    better: str
    unit: str
    current: dict[str, float | None]
    baseline: dict[str, float | None]
    delta: float | None
    worse_by: float | None
    specs: list[str]
    threshold: float | None
    violated: str | None
    regressed: bool
    note: str


class BaselineComparison(TypedDict, total=False):
    """``AuditRecord.baseline``: ``RecordComparison.to_dict()`` and what the gate adds (report/baseline.py)."""

    status: str  # pass, regressed, missing, skipped, updated, not compared
    reason: str
    nodeid: str
    index: int
    kind: str
    baseline_file: str | None
    baseline_run: dict[str, Any]
    augmentation: dict[str, str | None]  # {"baseline": ..., "current": ...}
    metrics: dict[str, MetricDeltaRecord]
    key: dict[str, Any]
    key_id: str
    compare_fail: list[str]
    written_to: str | None


class RunEntry(TypedDict):
    """One entry of a run file's ``"results"`` (report/entries.py, ``make_entry``; docs/baselines.md).
    report/compare.py reads entries with ``.get``: a hand-written or older file may lack keys."""

    nodeid: str
    index: int
    kind: str
    augmentation: str | None
    identity: dict[str, Any]
    seeds: list[int]
    metrics: dict[str, MetricRecord]
    verdicts: list[dict[str, Any]]
    compare_fail: list[str]
    gate: str | None
    summary: dict[str, Any]


# -- typed values ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricEstimate:
    """One headline number with its interval: ``summary["metrics"][name]`` as a type."""

    estimate: float | None
    low: float | None = None
    high: float | None = None
    better: Literal["lower", "higher"] = "lower"
    unit: str = ""
    confidence: float | None = None
    n: int | None = None

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> MetricEstimate:
        def number(v: Any) -> float | None:
            return float(v) if isinstance(v, (int, float)) and math.isfinite(float(v)) else None

        n = d.get("n")
        return cls(estimate=number(d.get("estimate")), low=number(d.get("low")), high=number(d.get("high")),
                   better="higher" if d.get("better") == "higher" else "lower", unit=str(d.get("unit") or ""),
                   confidence=number(d.get("confidence")), n=int(n) if isinstance(n, (int, float)) else None)

    def to_record(self) -> MetricRecord:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "better": self.better,
                "unit": self.unit, "confidence": self.confidence, "n": self.n}


@runtime_checkable
class AuditResult(Protocol):
    """What every audit result offers the layers above it."""

    @property
    def audit_kind(self) -> str: ...  # "density", "flatness" or "robustness"

    @property
    def subject(self) -> str: ...  # the audited augmentation (or model) by name

    def headline(self) -> dict[str, dict[str, Any]]: ...  # name -> MetricEstimate record

    def verdict_log(self) -> tuple[Any, ...]: ...  # what its assertions decided, in order

    def to_dict(self) -> dict[str, Any]: ...

    def to_record(self) -> dict[str, Any]: ...  # to_dict() with "schema" and "kind"


class StageTimingRecord(TypedDict):
    """One timed stage of an audit (``_timings.StageTiming.to_dict()``): wall seconds, and whether a
    cache served it (then nothing was computed)."""

    name: str  # "training", "density", "flatness", "corruptions", "perturbations", "attacks", "clean"
    detail: str
    seconds: float
    cached: bool


@dataclass
class AuditRecord:
    """What the terminal summary, JUnit, JSON and the baseline gate see of one audit in one test.

    `summary` holds the result's record form (`DensitySummary`, `FlatnessSummary` or
    `RobustnessSummary`, by `kind`; an entry of an older run file may hold only "augmentation" and
    "metrics"). Read it through the accessors below rather than by key.
    """

    nodeid: str
    summary: dict[str, Any]
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "density"
    baseline: dict[str, Any] | None = None  # a `BaselineComparison` (report/baseline.py)
    timings: list[StageTimingRecord] = field(default_factory=list)  # stages the audit ran (_timings.py)

    # -- what every kind has ---------------------------------------------------------------------
    @property
    def subject(self) -> str:
        """The audited augmentation (or model) by name."""
        return str(self.summary.get("augmentation") or self.summary.get("subject") or "?")

    def metrics(self) -> dict[str, MetricEstimate]:
        """The headline metrics, typed (entries that follow the contract: those with an "estimate")."""
        return {str(k): MetricEstimate.from_record(v) for k, v in self.metric_records().items()
                if isinstance(v, Mapping) and "estimate" in v}

    def metric_records(self) -> dict[str, MetricRecord]:
        """The headline metrics as stored (what run files and baselines keep)."""
        return cast("dict[str, MetricRecord]", self.summary.get("metrics") or {})

    def seeds(self) -> list[int]:
        """The seeds the audit ran with: its training seeds, else its one sampling seed."""
        seeds = self.summary.get("seeds", self.summary.get("seed"))
        return [] if seeds is None else [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds])]

    def data_description(self) -> str:
        """The audited data as a label, e.g. ``cifar10/test[500 of 10000]`` ("?" when unknown)."""
        data = cast(DataDescription, self.summary.get("data") or {})
        return str(data.get("describe", "?"))

    @property
    def baseline_info(self) -> BaselineComparison | None:
        """The comparison with the stored baseline, as the gate left it (None without one)."""
        return cast(BaselineComparison, self.baseline) if isinstance(self.baseline, Mapping) else None

    # -- the record form of each kind --------------------------------------------------------------
    def density(self) -> DensitySummary:
        return cast(DensitySummary, self._of_kind("density"))

    def flatness(self) -> FlatnessSummary:
        return cast(FlatnessSummary, self._of_kind("flatness"))

    def robustness(self) -> RobustnessSummary:
        return cast(RobustnessSummary, self._of_kind("robustness"))

    def density_verdicts(self) -> list[DensityVerdictRecord]:
        self._of_kind("density")
        return cast("list[DensityVerdictRecord]", self.verdicts)

    def flatness_verdicts(self) -> list[FlatnessVerdictRecord]:
        self._of_kind("flatness")
        return cast("list[FlatnessVerdictRecord]", self.verdicts)

    def budget_verdicts(self) -> list[BudgetVerdictRecord]:
        self._of_kind("robustness")
        return cast("list[BudgetVerdictRecord]", self.verdicts)

    def _of_kind(self, kind: str) -> dict[str, Any]:
        if self.kind != kind:
            raise ValueError(f"{self.nodeid}: a {self.kind} record read as a {kind} record")
        return self.summary

    # -- derived reads shared by the reports ------------------------------------------------------------
    def flatness_comparisons(self) -> dict[str, ComparisonRecord]:
        """The per-metric ERM-vs-augmented comparisons (entries with per-seed ``erm`` and ``augmented``
        values, under "comparisons", or under "metrics" in older files)."""
        for key in ("comparisons", "metrics"):
            found = {k: v for k, v in (self.summary.get(key) or {}).items()
                     if isinstance(v, Mapping) and "erm" in v and "augmented" in v}
            if found:
                return cast("dict[str, ComparisonRecord]", found)
        return {}

    def baseline_metric(self, name: str) -> MetricEstimate | None:
        """The baseline model's (ERM's) value of a robustness metric: ``baseline_<name>`` in the
        headline metrics, or ``erm_metrics[name]`` (older files)."""
        found = self.metrics().get(f"baseline_{name}")
        if found is not None:
            return found
        older = self.summary.get("erm_metrics") or {}
        value = older.get(name) if isinstance(older, Mapping) else None
        return MetricEstimate.from_record(value) if isinstance(value, Mapping) and "estimate" in value else None

    def paired_delta(self, name: str) -> MetricEstimate | None:
        """The paired difference audited − baseline of a robustness metric (``delta_<name>``)."""
        metrics = self.metrics()
        return metrics.get(f"delta_{name}") or metrics.get(f"delta({name})")

    # -- the stored form -----------------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        return {"schema": RECORD_SCHEMA, "nodeid": self.nodeid, "kind": self.kind, "summary": self.summary,
                "verdicts": self.verdicts, "baseline": self.baseline}

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> AuditRecord:
        """Rebuild from `to_record()` (or from a run file's result entry, which holds the same keys)."""
        schema = d.get("schema", RECORD_SCHEMA)
        if not isinstance(schema, int) or schema > RECORD_SCHEMA:
            from pytest_psa.errors import PsaUsageError

            raise PsaUsageError(f"audit record schema {schema!r} is newer than this pytest-psa understands",
                                fix="upgrade pytest-psa to read it")
        summary = d.get("summary") or {"augmentation": d.get("augmentation"), "metrics": d.get("metrics", {})}
        return cls(nodeid=str(d.get("nodeid", "?")), summary=dict(summary), verdicts=list(d.get("verdicts") or []),
                   kind=str(d.get("kind", "?")), baseline=d.get("baseline"))


__all__ = [
    "KINDS", "RECORD_SCHEMA", "AlignmentSummary", "AuditRecord", "AuditResult", "BaselineComparison",
    "BudgetVerdictRecord", "ComparisonRecord", "DataDescription", "DensitySummary", "DensityVerdictRecord",
    "EcdfCurve", "EcdfRow", "FlatnessSummary", "FlatnessVerdictRecord", "MetricDeltaRecord", "MetricEstimate",
    "MetricRecord", "RobustnessSummary", "RunEntry", "SamplePair", "Summary", "TrainingFields",
]
