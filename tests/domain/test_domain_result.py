"""`DomainResult` on known per-image correctness (no training): averages, paired intervals, floors.

The arrays are drawn with known accuracies, so every estimate below has a true value the interval
must cover, and each budget a side it must fall on.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_psa._records import AuditRecord
from pytest_psa.errors import PSAViolation, PsaUsageError
from pytest_psa.results.domain import PROTOCOL, DomainResult, HeldOutDomain

DOMAINS = ("photo", "sketch", "cartoon")
# true held-out accuracies (augmented, erm) per domain; in-domain 0.9 for both
TRUE = {"photo": (0.80, 0.70), "sketch": (0.40, 0.30), "cartoon": (0.65, 0.60)}


def _result(n: int = 2000, seeds: int = 1, shift: float = 0.0) -> DomainResult:
    # a fixed draw (seed 8) in which every 95 % interval covers its true value; with 9 intervals about
    # one draw in three misses one somewhere (seed 7 does), which is what 95 % means, not a defect
    rng = np.random.default_rng(8)
    outcomes = []
    for d in DOMAINS:
        aug, erm = TRUE[d]
        u = rng.random((seeds, n))  # common random numbers: the two models err on related images
        outcomes.append(HeldOutDomain(
            domain=d, train_domains=tuple(x for x in DOMAINS if x != d),
            heldout={"augmented": (u < aug + shift).astype(float), "erm": (u < erm).astype(float)},
            indomain={"augmented": (rng.random((seeds, 500)) < 0.9).astype(float),
                      "erm": (rng.random((seeds, 500)) < 0.9).astype(float)}))
    return DomainResult(augmentation="toy", baseline="erm", outcomes=tuple(outcomes), seeds=tuple(range(seeds)),
                        data={"describe": "toy-domains"}, settings={"protocol": PROTOCOL})


def test_estimates_cover_the_true_values_and_the_average_is_unweighted() -> None:
    m = _result().metrics()
    for d, (aug, erm) in TRUE.items():
        a, e, delta = m[f"accuracy_heldout[{d}]"], m[f"erm_accuracy_heldout[{d}]"], m[f"delta_accuracy_heldout[{d}]"]
        assert a.low <= aug <= a.high and e.low <= erm <= e.high
        assert delta.low <= aug - erm <= delta.high
        assert a.method == "clopper-pearson" and delta.method == "betting" and a.better == "higher"
    avg = m["accuracy_heldout_avg"]
    assert avg.estimate == pytest.approx(np.mean([m[f"accuracy_heldout[{d}]"].estimate for d in DOMAINS]))
    assert avg.low <= np.mean([t[0] for t in TRUE.values()]) <= avg.high
    # the average's bounds are the domains' bounds at alpha/3, so wider than any one domain's at alpha
    assert avg.high - avg.low > m["accuracy_heldout[photo]"].high - m["accuracy_heldout[photo]"].low
    assert m["delta_accuracy_heldout_avg"].low > 0  # +6.7 points on 2,000 paired images per domain
    assert m["accuracy_indomain_avg"].estimate > m["accuracy_heldout_avg"].estimate


def test_several_seeds_use_per_image_fractions_and_report_the_seed_spread() -> None:
    r = _result(n=600, seeds=3)
    m = r.metrics()
    assert m["accuracy_heldout[photo]"].method == "betting"
    spread = r.seed_spread()
    assert len(spread["delta_accuracy_heldout_avg"]) == 3
    t = spread["delta_t_interval"]
    assert t is not None and t["low"] <= t["estimate"] <= t["high"]
    assert _result(seeds=1).seed_spread()["delta_t_interval"] is None


def test_floors_pass_fail_and_inconclusive() -> None:
    r = _result()
    r.assert_budget(min_domain_accuracy=0.55, vs_erm="-1pp")  # true: 0.617 and +6.7pp
    assert [v.outcome for v in r.verdict_log()] == ["pass", "pass"]
    with pytest.raises(PSAViolation) as err:
        r.assert_budget(min_domain_accuracy=0.75)
    text = str(err.value)
    assert "min_domain_accuracy" in text and "fail" in text and "photo" in text  # the table comes along
    with pytest.raises(PSAViolation, match=r"vs_erm\[accuracy\]"):
        _result(shift=-0.2).assert_budget(vs_erm="-2pp")  # augmented 13 points below ERM
    near = _result(n=300)
    near.assert_budget(min_domain_accuracy=0.63)  # estimate below, upper bound above: inconclusive, passes
    assert near.verdict_log()[-1].outcome == "inconclusive"


def test_defaults_come_from_with_defaults_and_bad_budgets_are_usage_errors() -> None:
    r = _result().with_defaults(min_domain_accuracy=0.9)
    with pytest.raises(PSAViolation):
        r.assert_budget()
    with pytest.raises(PsaUsageError, match="no budget"):
        _result().assert_budget()
    with pytest.raises(PsaUsageError, match="has no unit"):
        _result().assert_budget(vs_erm=-0.01)
    with pytest.raises(PsaUsageError, match="difference of accuracies"):
        _result().assert_budget(vs_erm="x0.98")
    with pytest.raises(PsaUsageError, match="ambiguous"):
        _result().assert_budget(vs_erm="-1%")
    with pytest.raises(PsaUsageError, match=r"fraction in \[0, 1\]"):
        _result().assert_budget(min_domain_accuracy=60)


def test_record_is_json_and_reads_back_as_an_audit_record() -> None:
    r = _result()
    r.assert_budget(vs_erm={"accuracy": "-1pp"})
    record = AuditRecord("t::x", json.loads(json.dumps(r.to_dict())), [v.to_dict() for v in r.verdict_log()],
                         kind=r.audit_kind)
    assert record.kind == "domain" and record.subject == "toy" and record.data_description() == "toy-domains"
    metrics = record.metrics()
    assert metrics["accuracy_heldout_avg"].better == "higher" and metrics["accuracy_heldout_avg"].unit == "fraction"
    assert record.summary["protocol"] == PROTOCOL and len(record.summary["per_domain"]) == 3
    assert record.verdicts[0]["limit_text"] == "-1.00pp" and record.verdicts[0]["bound"] == "floor"
    assert r.to_record()["kind"] == "domain"


def test_implements_the_audit_result_contract() -> None:
    from pytest_psa._records import RECORD_SCHEMA, AuditResult

    r = _result()
    assert isinstance(r, AuditResult) and r.subject == "toy" and r.audit_kind == "domain"
    record = r.to_record()
    assert record["schema"] == RECORD_SCHEMA and record["metrics"] == r.headline()
    copy = r.with_defaults(min_domain_accuracy=0.1).with_repro("pytest t.py::x")
    copy.assert_budget()
    assert copy.verdict_log() and not r.verdict_log()  # a copy keeps its own log


def test_run_plots_include_the_domain_figure(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from pytest_psa.report.plots import write_plots

    r = _result()
    written = write_plots([AuditRecord("t::x", r.to_dict(), [], kind="domain")], tmp_path)
    assert [p.name for p in written] == ["domains.png"] and written[0].stat().st_size > 10_000


def test_baseline_gate_flags_a_drop_in_held_out_accuracy() -> None:
    from pytest_psa.report.compare import compare_runs
    from pytest_psa.report.json_report import run_document

    def doc(shift: float) -> dict:
        r = _result(shift=shift)
        return run_document([AuditRecord("t::x", r.to_dict(), [], kind="domain")], source="test")

    same = compare_runs(doc(0.0), doc(0.0), fail=["accuracy_heldout_avg:1%"])
    assert same.exit_code == 0
    worse = compare_runs(doc(0.0), doc(-0.1), fail=["accuracy_heldout_avg:1%"])  # 10 points lower
    assert worse.exit_code != 0
