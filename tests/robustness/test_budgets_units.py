"""Budgets in one unit language (issue 17): every spelling parses to the number the check compares,
ambiguous or wrong spellings are refused with both forms in the fix, a bare number keeps its meaning
with one warning, and the same budget reads the same in the failure text, the terminal table,
Table 3, the JSON verdicts and the Markdown summary."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from pytest_psa._records import AuditRecord
from pytest_psa._settings import marker_problems
from pytest_psa._specs.budgets import budget_line, format_value, parse_limit, resolve_vs_erm, vs_erm_entries
from pytest_psa.errors import PsaUsageError, PSAViolation, PsaWarning
from pytest_psa.results import robustness_budgets
from pytest_psa.results.robustness import RobustnessResult, Samples


def _result(audited_ce: float, baseline_ce: float = 0.2, n: int = 400) -> RobustnessResult:
    """A result from per-image outcomes: exact error rates (no sampling), so verdicts are known."""
    c, s = 2, 2

    def samples(ce: float, clean: float) -> Samples:
        corr = np.zeros((c, s, n))
        corr[..., : int(round(ce * n))] = 1.0
        cl = np.zeros(n)
        cl[: int(round(clean * n))] = 1.0
        return Samples(clean=cl, corruption=corr, flips=np.zeros((0, 0)), adversarial={})

    return RobustnessResult(
        subject="toy", kind="augmentation", baseline="erm", corruptions=("gaussian_noise", "contrast"),
        severities=(1, 3), perturbations=(), attacks=(), samples=samples(audited_ce, 0.1),
        baseline_samples=samples(baseline_ce, 0.1), data={"describe": "toy/test[400]"}, n_images=n,
        n_attack_images=0, n_perturbation_images=0, seed=0, seeds=(0,), preset="smoke", device="cpu",
        settings={}, attack_runs={}, per_seed={}, training={}, cache={}, timing={})


# -- parsing ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "value", "unit", "shown"), [
    ("+0.5pp", 0.005, "pp", "+0.50pp"),
    ("-1pp", -0.01, "pp", "-1.00pp"),
    ("0.25 pp", 0.0025, "pp", "+0.25pp"),
    ("+0.125pp", 0.00125, "pp", "+0.125pp"),  # a limit is printed with the digits it was given
    ("x1.02", 1.02, "ratio", "x1.02"),
    ("×1.02", 1.02, "ratio", "x1.02"),
    ("x0.9761", 0.9761, "ratio", "x0.9761"),
])
def test_every_spelling_parses_to_the_compared_number(text: str, value: float, unit: str, shown: str) -> None:
    limit = parse_limit(text, where="vs_erm[mce]", bare="pp")
    assert (limit.value, limit.unit, limit.explicit) == (pytest.approx(value), unit, True)
    assert limit.text == shown
    assert parse_limit(limit.text, where="w", bare="pp").value == pytest.approx(value)  # the text reads back


@pytest.mark.parametrize(("text", "problem", "fix"), [
    ("+2%", "ambiguous", "'+2pp' for a difference audited − baseline in percentage points, or 'x1.02' for a ratio"),
    ("2%", "ambiguous", "'+2pp'"),
    ("1.02x", "not a budget", "'+0.5pp' (difference audited − baseline in percentage points) or 'x1.02'"),
    ("x0", "ratio > 0", "x1.02"),
    ("+200pp", "outside [-100pp, +100pp]", "difference of error rates"),
])
def test_wrong_spellings_are_refused_with_both_forms(text: str, problem: str, fix: str) -> None:
    with pytest.raises(PsaUsageError) as info:
        parse_limit(text, where="vs_erm[mce]", bare="pp")
    assert problem in info.value.problem and fix in (info.value.fix or "")


def test_a_unit_picks_the_metric_and_a_wrong_unit_for_a_key_is_refused() -> None:
    assert resolve_vs_erm("mce", "+0.5pp")[0] == "mce"  # the difference
    assert resolve_vs_erm("mce", "x1.02")[0] == "mce_ratio"  # the same key as a ratio bounds the ratio
    assert resolve_vs_erm("mfp", "x1.1")[0] == "rel_mfp"
    with pytest.raises(PsaUsageError, match="has no ratio") as info:
        resolve_vs_erm("clean_error", "x1.1")
    assert "'+0.5pp'" in (info.value.fix or "")
    with pytest.raises(PsaUsageError, match="bounds a ratio") as info:
        resolve_vs_erm("mce_ratio", "+1pp")
    assert "x1.02" in (info.value.fix or "") and "{'mce': '+1pp'}" in (info.value.fix or "")
    assert [(k, b, lim.unit) for k, b, lim in vs_erm_entries("x1.05")] == [("mce", "mce_ratio", "ratio")]
    assert [(k, b, lim.unit) for k, b, lim in vs_erm_entries("+1pp")] == [("mce", "mce", "pp")]


def test_marker_validation_uses_the_same_parser() -> None:
    for vs in ({"mce": "+0.5pp"}, {"mce": "x1.02"}, {"mce_ratio": "×0.95"}, "x1.02", {"mce": 0.05}, 1.0):
        assert marker_problems((), {"vs_erm": vs}) == [], vs
    (problem,) = marker_problems((), {"vs_erm": {"mce": "+2%"}})
    assert "ambiguous" in problem and "'+2pp'" in problem and "'x1.02'" in problem
    (problem,) = marker_problems((), {"vs_erm": {"clean_error": "x1.1"}})
    assert "no ratio" in problem


# -- bare numbers ---------------------------------------------------------------------------------------
def test_a_bare_number_keeps_its_meaning_and_warns_once_with_the_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(robustness_budgets, "_warned_bare", set())
    r = _result(0.30)  # mCE 30 % vs ERM 20 %: +10pp, ratio 1.5
    with pytest.warns(PsaWarning, match=r"vs_erm\[mce\] = 0.2 is read as a difference .* write '\+20.00pp'"):
        (v,) = robustness_budgets.evaluate_budgets(r, {"vs_erm": {"mce": 0.2}}, 1e-3)
    assert (v.metric, v.unit, v.budget, v.outcome) == ("delta_mce", "pp", 0.2, "pass")  # 10pp within 20pp
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the same bare budget does not warn again
        robustness_budgets.evaluate_budgets(r, {"vs_erm": {"mce": 0.2}}, 1e-3)
    with pytest.warns(PsaWarning, match=r"write 'x1.10'"):
        (v,) = robustness_budgets.evaluate_budgets(r, {"vs_erm": 1.1}, 1e-3)  # a float: the mce_ratio ceiling
    assert (v.metric, v.unit, v.outcome) == ("mce_ratio", "ratio", "fail")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an explicit spelling never warns
        (v,) = robustness_budgets.evaluate_budgets(r, {"vs_erm": {"mce": "+20pp"}}, 1e-3)
    assert (v.budget, v.outcome) == (pytest.approx(0.2), "pass")


# -- one line everywhere -------------------------------------------------------------------------------------
def test_the_same_budget_reads_the_same_in_failure_table_json_and_markdown() -> None:
    from pytest_psa.report.json_report import entries
    from pytest_psa.report.markdown import render_markdown
    from pytest_psa.report.tables import robustness_table
    from pytest_psa.report.terminal import summary_sections

    r = _result(0.30)
    with pytest.raises(PSAViolation) as info:
        r.assert_budget(max_mce=0.5, vs_erm={"mce": "+0.5pp", "mce_ratio": "x1.6"})
    lines = {"vs_erm[mce]": "vs_erm[mce] = +10.00pp ≤ +0.50pp: fail",
             "max_mce": "max_mce = 30.0% ≤ 50.0%: pass",
             "vs_erm[mce_ratio]": "vs_erm[mce_ratio] = x1.50 ≤ x1.60: pass"}
    failure = str(info.value)
    record = AuditRecord("t.py::test_budget", r.to_dict(), [v.to_dict() for v in r.verdict_log()], "robustness")
    terminal = "\n".join(line for _, body in summary_sections([record]) for line in body)
    table3 = "\n".join(robustness_table([record]))
    (entry,) = entries([record])
    markdown = render_markdown([entry])
    for text in lines.values():
        for where, shown in (("failure", failure), ("terminal", terminal), ("Table 3", table3), ("markdown", markdown)):
            assert text in shown, (where, text, shown)
    verdicts = {v["check"]: v for v in entry["verdicts"]}
    assert {k: (v["unit"], v["limit_text"]) for k, v in verdicts.items()} == {
        "vs_erm[mce]": ("pp", "+0.50pp"), "max_mce": ("fraction", "50.0%"), "vs_erm[mce_ratio]": ("ratio", "x1.60")}
    for check, text in lines.items():  # the JSON's limit_text is the limit the lines print
        assert f"≤ {verdicts[check]['limit_text']}:" in text
        assert budget_line(check, verdicts[check]["estimate"], verdicts[check]["limit"], verdicts[check]["unit"],
                           verdicts[check]["outcome"]) == text
    assert re.search(r"FAIL\s+vs_erm\[mce\] = \+10.00pp ≤ \+0.50pp: fail", failure)


def test_a_delta_key_written_as_a_ratio_is_judged_on_the_ratio() -> None:
    r = _result(0.40)  # ratio 2.0
    with pytest.raises(PSAViolation, match=re.escape("vs_erm[mce] = x2.00 ≤ x1.20: fail")):
        r.assert_budget(vs_erm={"mce": "x1.2"})
    (v,) = r.verdict_log()
    assert (v.metric, v.unit) == ("mce_ratio", "ratio")


def test_verdicts_of_older_files_without_a_unit_print_in_the_unit_of_their_metric() -> None:
    from pytest_psa._specs.budgets import verdict_line

    old = {"check": "vs_erm[mce]", "metric": "delta_mce", "budget": 0.05, "limit": 0.05, "estimate": 0.006,
           "outcome": "pass"}
    assert verdict_line(old) == "vs_erm[mce] = +0.60pp ≤ +5.00pp: pass"
    assert verdict_line({**old, "check": "max_mce", "metric": "mce", "estimate": 0.25}) == "max_mce = 25.0% ≤ 5.0%: pass"
    assert format_value(None, "pp") == "n/a"
