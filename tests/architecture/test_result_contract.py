"""The one contract between measuring and reporting (pytest_psa/_records.py, pytest_psa/results/checks.py).

Every result implements `AuditResult`; its assertions log verdicts instead of calling back into
pytest; thresholds and the repro command are set through public copies; records round-trip.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from pytest_psa._records import RECORD_SCHEMA, AuditRecord, AuditResult, MetricEstimate
from pytest_psa.errors import PsaUsageError, PSAViolation
from pytest_psa.results.density import DensityResult
from pytest_psa.results.flatness import FlatnessComparison, compare_metric


def _density(hits: float) -> DensityResult:
    rng = np.random.default_rng(0)
    distances = np.where(rng.random((400, 4)) < hits, 0.01, 0.5)
    return DensityResult(augmentation="toy", distance="l2", distances=distances,
                         identity=np.zeros_like(distances, dtype=bool), seed=0, data={"describe": "toy"})


def _flatness(improvement: float) -> FlatnessComparison:
    erm = (1.0, 1.1, 0.9, 1.05, 0.95)
    aug = tuple(e * (1 - improvement) for e in erm)
    comp = compare_metric("pac_bayes", erm, aug, 0.05)
    return FlatnessComparison(augmentation="toy", metrics={"pac_bayes": comp}, seeds=(0, 1, 2, 3, 4),
                              erm_reports=(), augmented_reports=(), training={"erm": [], "augmented": []},
                              data={}, settings={})


@pytest.mark.parametrize("result", [_density(0.5), _flatness(0.3)], ids=["density", "flatness"])
def test_results_implement_the_contract(result) -> None:
    assert isinstance(result, AuditResult)
    assert result.subject == "toy" and result.audit_kind in ("density", "flatness")
    record = result.to_record()
    assert record["schema"] == RECORD_SCHEMA and record["kind"] == result.audit_kind
    assert record["metrics"] == result.headline()
    for name, est in result.metric_estimates().items():
        assert isinstance(est, MetricEstimate) and est.estimate is not None, name
    json.dumps(record, default=str)  # JSON-ready


def test_no_result_field_holds_a_callable() -> None:
    from pytest_psa.results.robustness import RobustnessResult

    for cls in (DensityResult, FlatnessComparison, RobustnessResult):
        names = {f.name for f in dataclasses.fields(cls)}
        assert "on_verdict" not in names, cls
        assert not [f.name for f in dataclasses.fields(cls) if "Callable" in str(f.type)], cls


def test_assertions_log_verdicts_and_copies_start_empty() -> None:
    result = _density(0.5)
    result.assert_psa(gamma=0.05, min_density=0.1)
    (verdict,) = result.verdict_log()
    assert verdict.outcome == "pass" and verdict.to_dict()["gamma"] == 0.05
    strict = result.with_defaults(min_density=0.9, gamma=[0.05, 0.1])
    assert strict.verdict_log() == () and result.assert_defaults == {}
    with pytest.raises(PSAViolation):
        strict.assert_psa()
    assert [v.outcome for v in strict.verdict_log()] == ["fail", "fail"]
    with pytest.raises(PsaUsageError):  # refused before deciding: logs nothing
        strict.assert_psa(alpha=2)
    assert len(strict.verdict_log()) == 2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the table averages empty report lists
def test_flatness_verdicts_and_repro() -> None:
    flat = _flatness(0.3).with_repro("pytest t.py::x --psa-seed=0")
    flat.assert_flatter(min_rel_improvement=0.1)
    none = _flatness(0.0).with_repro("pytest t.py::x --psa-seed=0")
    with pytest.raises(PSAViolation, match=r"reproduce: pytest t.py::x --psa-seed=0"):
        none.assert_flatter()
    assert [v.to_dict()["outcome"] for v in (*flat.verdict_log(), *none.verdict_log())] == ["pass", "fail"]
    assert set(flat.verdict_log()[0].to_dict()) == {"metric", "min_rel_improvement", "alpha", "mean", "low",
                                                    "outcome"}


def test_audit_record_round_trip_and_typed_metrics() -> None:
    result = _density(0.5).with_defaults(gamma=0.05, alpha=0.01)
    record = AuditRecord("t.py::test_x", result.to_dict(), kind="density")
    back = AuditRecord.from_record(json.loads(json.dumps(record.to_record(), default=str)))
    assert (back.nodeid, back.kind, back.subject) == ("t.py::test_x", "density", "toy")
    est = back.metrics()["F(0.05)"]
    assert est.better == "higher" and math.isclose(est.estimate, result.F(0.05))
    assert est.low <= est.estimate <= est.high and est.confidence == pytest.approx(0.99)
    with pytest.raises(PsaUsageError, match="newer"):
        AuditRecord.from_record({**record.to_record(), "schema": RECORD_SCHEMA + 1})
