"""The record form written down as types (pytest_psa/_records.py) cannot drift from its producers.

Each summary `TypedDict` declares exactly the keys its result's ``to_dict()`` writes: the required
keys are the ones every record has, the optional ones those only some records have (an aligned
distance, a baseline, ...), and nothing is declared that no producer writes. The same holds for the
verdict records, the metric record, the flatness comparison, the baseline comparison and the
stored run entry. The results are built from numpy arrays: nothing is trained or attacked.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pytest

from pytest_psa._records import (
    AlignmentSummary, AuditRecord, BaselineComparison, BudgetVerdictRecord, ComparisonRecord, DensitySummary,
    DensityVerdictRecord, EcdfCurve, EcdfRow, FlatnessSummary, FlatnessTraining, FlatnessVerdictRecord,
    MetricDeltaRecord, MetricEstimate, MetricRecord, RobustnessSummary, RunEntry, SamplePair, TrainingFields,
)
from pytest_psa.results.density import DensityResult
from pytest_psa.results.flatness import FlatnessComparison, compare_metric
from pytest_psa.results.robustness import RobustnessResult, Samples


def declared(td: Any) -> tuple[frozenset[str], frozenset[str]]:
    """(required, optional) keys of a TypedDict."""
    return frozenset(td.__required_keys__), frozenset(td.__optional_keys__)


def assert_keys_match(td: Any, produced: Iterable[Mapping[str, Any]]) -> None:
    """Required = written by every producer output; optional = written by some; nothing else declared."""
    outputs = [set(p) for p in produced]
    always, ever = set.intersection(*outputs), set.union(*outputs)
    required, optional = declared(td)
    assert ever - (required | optional) == set(), f"{td.__name__} does not declare keys its producer writes"
    assert (required | optional) - ever == set(), f"{td.__name__} declares keys no producer writes"
    assert required == always, f"{td.__name__}: required keys differ from the keys every output has"


# -- producers, built from arrays -----------------------------------------------------------------
def _density(**extra: Any) -> DensityResult:
    rng = np.random.default_rng(0)
    distances = np.where(rng.random((60, 4)) < 0.4, 0.01, 0.5)
    identity = rng.random((60, 4)) < 0.1
    return DensityResult(augmentation="toy", distance="l2", distances=distances, identity=identity, seed=0,
                         data={"describe": "toy"}, **extra)


def _aligned() -> DensityResult:
    rng = np.random.default_rng(1)
    details = {"dx": rng.integers(-2, 3, (60, 4)), "dy": rng.integers(-2, 3, (60, 4)),
               "flip": rng.random((60, 4)) < 0.5}
    return _density(details=details, distance_info={"params": {"radius_px": [2, 2]}})


def _flatness(seeds: int = 3) -> FlatnessComparison:
    erm = (1.0, 1.1, 0.9)[:seeds]
    comp = compare_metric("pac_bayes", erm, tuple(e * 0.7 for e in erm), 0.05)
    return FlatnessComparison(augmentation="toy", metrics={"pac_bayes": comp}, seeds=tuple(range(seeds)),
                              erm_reports=(), augmented_reports=(),
                              training={"erm": [{"test_accuracy": 0.5}], "augmented": [{"test_accuracy": 0.6}]},
                              data={"describe": "toy"}, settings={"preset": "smoke", "alpha": 0.05})


def _robustness(baseline: bool) -> RobustnessResult:
    rng = np.random.default_rng(2)
    n, c, s, p, n_p = 80, 2, 2, 1, 20

    def samples(rate: float) -> Samples:
        return Samples(clean=(rng.random(n) < rate).astype(float),
                       corruption=(rng.random((c, s, n)) < rate + 0.1).astype(float),
                       flips=rng.random((p, n_p)) * rate,
                       adversarial={"linf,2/255": (rng.random(n) < 0.5).astype(float)})

    return RobustnessResult(
        subject="toy", kind="augmentation", baseline="erm" if baseline else None,
        corruptions=("gaussian_noise", "contrast"), severities=(1, 3), perturbations=("rotate",), attacks=(), samples=samples(0.2),
        baseline_samples=samples(0.3) if baseline else None, data={"describe": "toy"}, n_images=n,
        n_attack_images=n, n_perturbation_images=n_p, seed=0, seeds=(0,), preset="smoke", device="cpu", settings={},
        attack_runs={}, per_seed={}, training={"subject": [{"device": "cpu"}]}, cache={}, timing={},
        reference=np.full((c, s), 0.5))


# -- the summaries ----------------------------------------------------------------------------------
def test_density_summary_declares_what_density_results_write() -> None:
    pair = {"quantile": 0.5, "distance": 0.1, "image": 0, "draw": 0, "x": "", "ax": ""}
    outputs = [_density().to_dict(), _aligned().to_dict(), _density().to_dict(include_distances=True),
               _density(sample_pairs=(pair,)).to_dict()]
    assert_keys_match(DensitySummary, outputs)
    assert_keys_match(EcdfRow, outputs[0]["ecdf"])
    assert_keys_match(EcdfCurve, [outputs[0]["ecdf_curve"]])
    assert_keys_match(MetricRecord, [m for o in outputs for m in o["metrics"].values()]
                      + [_robustness(True).to_dict()["metrics"]["mce"]])  # robustness adds "method"
    required, optional = declared(AlignmentSummary)
    assert set(outputs[1]["alignment"]) == required | optional
    assert_keys_match(SamplePair, outputs[3]["sample_pairs"])


def test_flatness_summary_declares_what_flatness_comparisons_write() -> None:
    outputs = [_flatness().to_dict(), _flatness(seeds=1).to_dict()]
    assert_keys_match(FlatnessSummary, outputs)
    assert_keys_match(ComparisonRecord, [c for o in outputs for c in o["comparisons"].values()])
    assert_keys_match(FlatnessTraining, [o["training"] for o in outputs])
    assert_keys_match(MetricRecord, [m for o in outputs for m in o["metrics"].values()]
                      + [_robustness(True).to_dict()["metrics"]["mce"]])


def test_robustness_summary_declares_what_result_dict_writes() -> None:
    """`result_dict` (results/robustness_tables.py): the baseline's tables only with a baseline."""
    assert_keys_match(RobustnessSummary, [_robustness(True).to_dict(), _robustness(False).to_dict()])


def test_training_fields_are_fields_of_the_training_record() -> None:
    from pytest_psa.train.record import TrainingRecord

    required, optional = declared(TrainingFields)
    assert required | optional <= {f.name for f in dataclasses.fields(TrainingRecord)}


# -- verdicts, comparisons, stored entries -----------------------------------------------------------
def test_verdict_records_declare_what_the_assertions_log() -> None:
    density = _density().with_defaults(gamma=[0.05, 0.1], min_density=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        density.assert_psa()
    assert_keys_match(DensityVerdictRecord, [v.to_dict() for v in density.verdict_log()])
    flat = _flatness()
    flat.assert_flatter()
    assert_keys_match(FlatnessVerdictRecord, [v.to_dict() for v in flat.verdict_log()])
    robust = _robustness(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        robust.assert_budget(max_mce=0.99, vs_erm={"mce": 0.5})
    assert_keys_match(BudgetVerdictRecord, [v.to_dict() for v in robust.verdict_log()])


def test_comparison_and_entry_records_declare_what_compare_and_make_entry_write() -> None:
    from pytest_psa.report.compare import compare_entries, parse_fail_specs
    from pytest_psa.report.entries import make_entry

    record = AuditRecord("t.py::test_x", _density().to_dict(), kind="density")
    entry = make_entry(record, 0, [])
    assert_keys_match(RunEntry, [entry])
    worse = {**entry, "metrics": {k: {**v, "estimate": 1.0} for k, v in entry["metrics"].items()}}
    rc = compare_entries(worse, entry, parse_fail_specs("F:0.01"))
    assert rc.status == "regressed"
    assert_keys_match(MetricDeltaRecord, [d.to_dict() for d in rc.deltas])
    required, optional = declared(BaselineComparison)
    # the baseline gate (report/baseline.py) adds the comparability key, the test's specs and the target
    assert (required | optional) - set(rc.to_dict()) == {"key", "key_id", "compare_fail", "written_to"}
    assert set(rc.to_dict()) <= required | optional


# -- the accessors ----------------------------------------------------------------------------------
def test_accessors_give_typed_views_and_check_the_kind() -> None:
    density = AuditRecord("t.py::a", _density().to_dict(), [{"gamma": 0.05}], kind="density")
    assert density.subject == "toy" and density.data_description() == "toy" and density.seeds() == [0]
    assert density.density()["distance"] == "l2" and density.density_verdicts()[0]["gamma"] == 0.05
    assert all(isinstance(m, MetricEstimate) for m in density.metrics().values())
    with pytest.raises(ValueError, match="density record read as a flatness record"):
        density.flatness()
    flat = AuditRecord("t.py::b", _flatness().to_dict(), kind="flatness")
    assert list(flat.flatness_comparisons()) == ["pac_bayes"] and flat.seeds() == [0, 1, 2]
    robust = AuditRecord("t.py::c", _robustness(True).to_dict(), kind="robustness")
    mce = robust.metrics()["mce"]
    assert robust.baseline_metric("mce") == robust.metrics()["baseline_mce"]
    delta = robust.paired_delta("mce")
    assert delta is not None and mce.estimate is not None and delta.estimate is not None
    assert robust.baseline_info is None and robust.robustness()["baseline"] == "erm"


def test_accessors_read_older_records() -> None:
    """Entries of older run files: only augmentation and metrics, comparisons under "metrics",
    the baseline's numbers under "erm_metrics"."""
    old = AuditRecord.from_record({"nodeid": "t.py::a", "kind": "density", "augmentation": None,
                                   "metrics": {"F(0.05)": {"estimate": 0.5}, "broken": 3}})
    assert old.subject == "?" and old.data_description() == "?" and old.seeds() == []
    assert list(old.metrics()) == ["F(0.05)"] and old.density().get("ecdf", []) == []
    comp = _flatness().to_dict()["comparisons"]
    flat = AuditRecord("t.py::b", {"augmentation": "x", "metrics": comp}, kind="flatness")
    assert list(flat.flatness_comparisons()) == ["pac_bayes"]
    summary = _robustness(True).to_dict()
    erm = {k[len("baseline_"):]: v for k, v in summary["metrics"].items() if k.startswith("baseline_")}
    summary["metrics"] = {k: v for k, v in summary["metrics"].items() if not k.startswith("baseline_")}
    older = AuditRecord("t.py::c", {**summary, "erm_metrics": erm}, kind="robustness")
    assert older.baseline_metric("mce") == MetricEstimate.from_record(erm["mce"])
