"""The one record form between measuring and reporting.

A result (`DensityResult`, `FlatnessComparison`, `RobustnessResult`) implements `AuditResult`: it
names its kind and subject, gives its headline metrics (records of `MetricEstimate`), keeps the
verdicts its assertions reached, and converts to a record (a JSON-ready dict with ``"schema"``,
``"kind"`` and ``"metrics"``). An `AuditRecord`
is what one audit in one test left behind: that record, the verdicts its assertions reached, and
the comparison with a stored baseline. Reports, baselines, ``--psa-json`` and the xdist wire read
these types, never the result objects. Stdlib only: no torch, no pytest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

RECORD_SCHEMA = 1  # bump when a record's keys change meaning
Kind = Literal["density", "flatness", "robustness"]
KINDS: tuple[str, ...] = ("density", "flatness", "robustness")


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

    def to_record(self) -> dict[str, Any]:
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


@dataclass
class AuditRecord:
    """What the terminal summary, JUnit, JSON and the baseline gate see of one audit in one test."""

    nodeid: str
    summary: dict[str, Any]
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    kind: str = "density"
    baseline: dict[str, Any] | None = None  # the comparison with the stored baseline (report/baseline.py)

    @property
    def subject(self) -> str:
        """The audited augmentation (or model) by name."""
        return str(self.summary.get("augmentation") or self.summary.get("subject") or "?")

    def metrics(self) -> dict[str, MetricEstimate]:
        """The headline metrics, typed."""
        raw = self.summary.get("metrics") or {}
        return {str(k): MetricEstimate.from_record(v) for k, v in raw.items() if isinstance(v, Mapping)}

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


__all__ = ["KINDS", "RECORD_SCHEMA", "AuditRecord", "AuditResult", "MetricEstimate"]
