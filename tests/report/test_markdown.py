"""`render_markdown`: one table per kind over a run file's entries, parsed back row by row."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from pytest_psa._records import AuditRecord
from pytest_psa.report.json_report import entries
from pytest_psa.report.markdown import render_markdown
from pytest_psa.results.density import DensityResult
from pytest_psa.results.flatness import FlatnessComparison, compare_metric
from pytest_psa.results.robustness import RobustnessResult, Samples


def _density() -> AuditRecord:
    distances = np.tile(np.where(np.arange(100) < 60, 0.01, 0.5)[:, None], (1, 2))  # F(0.05) = 0.6 exactly
    r = DensityResult(augmentation="AugMix(severity=3)", distance="l2", distances=distances,
                      identity=np.zeros((100, 2), dtype=bool), seed=7, data={"describe": "cifar10/test[100 of 10000]"})
    r = r.with_defaults(gamma=[0.05], min_density=0.3)
    r.assert_psa()
    return AuditRecord("tests/test_aug.py::test_augmix_is_proximal", r.to_dict(), [v.to_dict() for v in r.verdict_log()],
                       "density")


def _flatness() -> AuditRecord:
    erm = (1.0, 1.2, 0.8)
    comp = compare_metric("lpf", erm, tuple(e * 0.75 for e in erm), 0.05)
    r = FlatnessComparison(augmentation="cropflip", metrics={"lpf": comp}, seeds=(0, 1, 2), erm_reports=(),
                           augmented_reports=(), training={"erm": [], "augmented": []},
                           data={"describe": "cifar10/train[1000 of 50000]"}, settings={"preset": "smoke", "alpha": 0.05})
    r.assert_flatter(metric="lpf", min_rel_improvement=0.1)
    return AuditRecord("tests/test_aug.py::test_cropflip_flatter", r.to_dict(), [v.to_dict() for v in r.verdict_log()],
                       "flatness")


def _robustness() -> AuditRecord:
    n = 400

    def samples(ce: float) -> Samples:
        corr = np.zeros((1, 1, n))
        corr[..., : int(ce * n)] = 1.0
        clean = np.zeros(n)
        clean[: n // 10] = 1.0
        return Samples(clean=clean, corruption=corr, flips=np.zeros((0, 0)), adversarial={})

    r = RobustnessResult(
        subject="TrivialAugmentWide()", kind="augmentation", baseline="erm", corruptions=("contrast",), severities=(3,),
        perturbations=(), attacks=(), samples=samples(0.3), baseline_samples=samples(0.2),
        data={"describe": "cifar10/test[400 of 10000]"}, n_images=n, n_attack_images=0, n_perturbation_images=0, seed=0,
        seeds=(0,), preset="smoke", device="cpu", settings={}, attack_runs={}, per_seed={}, training={}, cache={},
        timing={}, repro="pytest tests/test_aug.py::test_ta_budget --psa-seed=0")
    with warnings.catch_warnings(), pytest.raises(AssertionError):
        warnings.simplefilter("ignore")
        r.assert_budget(max_mce=0.5, vs_erm={"mce": "+0.5pp"})
    return AuditRecord("tests/test_aug.py::test_ta_budget", r.to_dict(), [v.to_dict() for v in r.verdict_log()],
                       "robustness")


def _tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Each "### kind" section's table as a list of {header: cell}."""
    out: dict[str, list[dict[str, str]]] = {}
    section = None
    header: list[str] = []
    for line in text.splitlines():
        if line.startswith("### "):
            section, header = line[4:], []
        elif line.startswith("| ") and section is not None:
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            if not header:
                header = cells
            elif set(cells) != {"---"}:
                out.setdefault(section, []).append(dict(zip(header, cells)))
    return out


def test_markdown_summary_has_a_table_per_kind_with_verdicts_budgets_and_repro() -> None:
    doc = {"settings": {"seed": 7, "data": "cifar10"}, "results": entries([_density(), _flatness(), _robustness()])}
    doc = json.loads(json.dumps(doc))  # what a run file holds
    text = render_markdown(doc, title="psa on this PR")
    assert text.startswith("## psa on this PR\n")
    assert "3 audits: 1 ❌ fail, 2 ✅ pass" in text
    tables = _tables(text)
    (density,) = tables["density"]
    assert density["augmentation"] == "AugMix(severity=3)" and density["γ"] == "0.05"
    estimate, interval = density["F(γ) [interval]"].split(" ", 1)
    assert float(estimate) == pytest.approx(0.6)
    low, high = (float(x) for x in interval.strip("[]").split(", "))
    assert low < 0.6 < high
    assert density["verdict"] == "✅ pass (≥ 0.3)"
    (flat,) = tables["flatness"]
    assert flat["metric (lower = flatter)"] == "lpf" and flat["ERM"] == "1" and flat["augmented"] == "0.75"
    assert flat["improvement [interval]"].startswith("+25.0% [") and flat["verdict"] == "✅ pass (> +10.0%)"
    (robust,) = tables["robustness"]
    assert robust["clean error"] == "10.0% (Δ +0.00pp)" and robust["mCE"] == "30.0% (Δ +10.00pp)"
    budgets = robust["budgets (pp: audited − erm; x: audited / erm)"].split("; ")
    assert budgets == ["max_mce = 30.0% ≤ 50.0%: pass", "vs_erm[mce] = +10.00pp ≤ +0.50pp: fail"]
    assert robust["verdict"] == "❌ fail"
    assert "_data cifar10/train[1000 of 50000]; preset smoke; seeds 0,1,2_" in text
    # the failed audit's own repro command, in a shell block
    repro = text.split("### reproduce the failed audits\n\n```sh\n", 1)[1].split("\n```", 1)[0]
    assert repro == "pytest tests/test_aug.py::test_ta_budget --psa-seed=0"


def test_markdown_without_failures_lists_every_audit_and_takes_records_or_a_repro_builder() -> None:
    text = render_markdown([_density(), _flatness()], repro=lambda nodeid: f"pytest {nodeid} -p psa")
    repro = text.split("### reproduce these audits\n\n```sh\n", 1)[1].split("\n```", 1)[0].splitlines()
    assert repro == ["pytest tests/test_aug.py::test_augmix_is_proximal -p psa",
                     "pytest tests/test_aug.py::test_cropflip_flatter -p psa"]
    assert "robustness" not in _tables(text)
    assert "No psa audits ran." in render_markdown([])


def test_a_cell_with_a_pipe_does_not_break_the_table() -> None:
    rec = _density()
    rec.summary["augmentation"] = "Lambda(a|b)"
    rows = [line for line in render_markdown([rec]).splitlines() if line.startswith("| Lambda")]
    assert len(rows) == 1 and "Lambda(a\\|b)" in rows[0]
