"""The compare core without pytest runs: fail-spec grammar and matching, the interval rule,
compare_runs and its exit codes, and the run-file storage (atomic writes, damaged files, git info)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pytest_psa.errors import CacheError, PsaUsageError
from pytest_psa.report.compare import (
    FailSpec,
    compare_runs,
    judge_metric,
    parse_fail_spec,
    parse_fail_specs,
    specs_for,
)
from pytest_psa.report.run_files import (
    Storage,
    atomic_write_json,
    autosave_name,
    commit_info,
    comparability_key,
    json_safe,
    key_id,
    load_run,
    run_document,
)


# -- grammar -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "spec"), [
    ("mce:2%", FailSpec("mce", 2.0, True)),
    ("adv_error:0.01", FailSpec("adv_error", 0.01, False)),
    ("F(0.05):0.02", FailSpec("F(0.05)", 0.02, False)),
    ("adv_error(linf,8/255):1.5%", FailSpec("adv_error(linf,8/255)", 1.5, True)),
    ("*:0", FailSpec("*", 0.0, False)),
])
def test_grammar_parses_relative_and_absolute_specs(text: str, spec: FailSpec) -> None:
    assert parse_fail_spec(text) == spec
    assert parse_fail_spec(str(spec)) == spec  # round trip through the text form


@pytest.mark.parametrize(("text", "problem"), [
    ("mce", "is not METRIC:N% or METRIC:X"), (":2%", "is not METRIC:N% or METRIC:X"),
    ("mce:", "is not METRIC:N% or METRIC:X"), ("mce:x", "is not a number"), ("mce:-1%", ">= 0"),
    ("mce:inf", "finite"), ("m ce:1", "must not hold spaces"),
])
def test_grammar_errors_say_what_and_how(text: str, problem: str) -> None:
    with pytest.raises(PsaUsageError, match="fix: write METRIC:N%") as info:
        parse_fail_spec(text)
    assert problem in str(info.value)


def test_a_base_name_matches_every_parameterised_metric_and_nothing_else() -> None:
    adv = parse_fail_spec("adv_error:0.01")
    assert adv.matches("adv_error") and adv.matches("adv_error(linf,8/255)") and adv.matches("adv_error(l2,0.5)")
    assert not adv.matches("adv_errors") and not adv.matches("clean_adv_error")
    exact = parse_fail_spec("F(0.05):0.02")
    assert exact.matches("F(0.05)") and not exact.matches("F(0.5)") and not exact.matches("F(0.05)x")
    assert parse_fail_spec("F:1").matches("F(0.2)") and parse_fail_spec("*:1").matches("anything")
    assert parse_fail_spec("improvement(*):5%").matches("improvement(lpf)")


def test_a_tests_own_specs_replace_the_global_ones_only_for_the_metrics_they_match() -> None:
    glob = parse_fail_specs("F:0.02 mce:2%")
    own = parse_fail_specs(["F(0.05):0.5"])
    assert specs_for("F(0.05)", glob, own) == own
    assert specs_for("F(0.1)", glob, own) == (glob[0],)
    assert specs_for("mce", glob, own) == (glob[1],)
    assert specs_for("other", glob, own) == ()


# -- the interval rule -------------------------------------------------------------------------
def m(estimate: float | None, low: float | None, high: float | None, better: str = "lower") -> dict:
    return {"estimate": estimate, "low": low, "high": high, "better": better, "unit": "fraction"}


def test_lower_is_better_fails_only_when_the_whole_interval_is_past_baseline_plus_allowance() -> None:
    spec = [parse_fail_spec("mce:0.02")]
    base = m(0.30, 0.28, 0.32)
    assert not judge_metric("mce", m(0.33, 0.31, 0.35), base, spec).regressed  # estimate worse, low 0.31 < 0.32
    d = judge_metric("mce", m(0.36, 0.33, 0.39), base, spec)
    assert d.regressed and d.worse_by == pytest.approx(0.03) and d.threshold == pytest.approx(0.02)
    assert "allowed 0.02 (--psa-compare-fail=mce:0.02)" in d.explain()
    assert not judge_metric("mce", m(0.10, 0.05, 0.15), base, spec).regressed  # better is never a regression


def test_higher_is_better_uses_the_upper_end_and_relative_allowance_scales_with_the_baseline() -> None:
    base = m(0.80, 0.75, 0.85, "higher")
    assert judge_metric("F(0.05)", m(0.60, 0.55, 0.65, "higher"), base, [parse_fail_spec("F:10%")]).regressed
    # 0.80 - 0.65 = 0.15 < 20 % of 0.80 = 0.16
    assert not judge_metric("F(0.05)", m(0.60, 0.55, 0.65, "higher"), base, [parse_fail_spec("F:20%")]).regressed


def test_identical_values_never_regress_even_with_zero_allowance() -> None:
    for better in ("lower", "higher"):
        for values in ((0.5, 0.4, 0.6), (0.0, 0.0, 0.15), (1.0, 0.85, 1.0), (0.3, None, None)):
            d = judge_metric("x", m(*values, better), m(*values, better), [parse_fail_spec("x:0")])
            assert not d.regressed, (better, values)


def test_without_an_interval_the_estimate_decides_and_undefined_values_are_not_judged() -> None:
    spec = [parse_fail_spec("mce:0.01")]
    assert judge_metric("mce", m(0.32, None, None), m(0.30, None, None), spec).regressed
    assert not judge_metric("mce", m(0.305, None, None), m(0.30, None, None), spec).regressed
    undefined = judge_metric("mce", m(None, None, None), m(0.30, 0.2, 0.4), spec)
    assert not undefined.regressed and "not a finite number" in undefined.note
    no_direction = judge_metric("mce", {"estimate": 1.0}, {"estimate": 0.0}, spec)
    assert not no_direction.regressed and "declares no direction" in no_direction.note


# -- compare_runs ------------------------------------------------------------------------------
KEY = comparability_key("cpu", False)


def run(values: dict[str, float], *, key: dict | None = None, identity: dict | None = None,
        nodeid: str = "t.py::test_a", own: list[str] | None = None) -> dict:
    metrics = {name: m(v, v - 0.05, v + 0.05, "higher") for name, v in values.items()}
    entry = {"nodeid": nodeid, "index": 0, "kind": "density", "augmentation": "A",
             "identity": identity or {"seed": 0}, "metrics": metrics, "compare_fail": own or []}
    return run_document(key=key or KEY, machine={}, commit={"id": "abc"}, settings={}, results=[entry])


def test_compare_runs_exit_codes() -> None:
    base = run({"F(0.05)": 0.9, "F(0.1)": 0.95})
    ok = compare_runs(base, run({"F(0.05)": 0.88, "F(0.1)": 0.95}), ["F:0.02"])
    assert ok.exit_code == 0 and not ok.regressions and len(ok.compared) == 1
    bad = compare_runs(base, run({"F(0.05)": 0.5, "F(0.1)": 0.95}), ["F:0.02"])
    assert bad.exit_code == 1 and [d.name for d in bad.regressions[0].regressions] == ["F(0.05)"]
    text = bad.render()
    assert "REGRESSED F(0.05): now 0.5000 [0.4500, 0.5500], baseline 0.9000 [0.8500, 0.9500]" in text
    assert text.rstrip().endswith("1 compared, 1 regressed, 0 skipped, 0 without a baseline -> exit 1")
    # without fail specs the deltas are shown and nothing fails
    assert compare_runs(base, run({"F(0.05)": 0.5, "F(0.1)": 0.95})).exit_code == 0


def test_compare_runs_skips_other_keys_and_identities_and_a_gate_that_compared_nothing_exits_2() -> None:
    base = run({"F(0.05)": 0.9})
    other_key = compare_runs(base, run({"F(0.05)": 0.1}, key={**KEY, "torch": "9.0"}), ["F:0.02"])
    assert other_key.exit_code == 2 and other_key.records[0].status == "skipped"
    assert "comparability key differs: torch" in other_key.records[0].reason
    assert "nothing was compared" in other_key.render()
    forced = compare_runs(base, run({"F(0.05)": 0.1}, key={**KEY, "torch": "9.0"}), ["F:0.02"], ignore_key=True)
    assert forced.exit_code == 1
    other_seed = compare_runs(base, run({"F(0.05)": 0.1}, identity={"seed": 1}), ["F:0.02"])
    assert other_seed.exit_code == 2 and "seed 0 -> 1" in other_seed.records[0].reason
    new_test = compare_runs(base, run({"F(0.05)": 0.1}, nodeid="t.py::test_b"), ["F:0.02"])
    assert new_test.exit_code == 2 and new_test.records[0].status == "missing" and new_test.gone == (("t.py::test_a", 0),)


def test_compare_runs_applies_the_tests_own_specs_and_warns_about_specs_that_match_nothing() -> None:
    loose = compare_runs(run({"F(0.05)": 0.9}), run({"F(0.05)": 0.5}, own=["F:0.9"]), ["F:0.02", "mce:1%"])
    assert loose.exit_code == 0
    assert [str(s) for s in loose.unmatched_specs] == ["mce:1%"]
    assert "--psa-compare-fail=mce:1% matched no metric" in loose.render()


def test_compare_runs_reads_run_files(tmp_path: Path) -> None:
    a, b = tmp_path / "0001_a.json", tmp_path / "0002_b.json"
    atomic_write_json(a, run({"F(0.05)": 0.9}))
    atomic_write_json(b, run({"F(0.05)": 0.2}))
    result = compare_runs(str(a), b, ["F(0.05):0.1"])
    assert result.exit_code == 1 and result.baseline == str(a)
    json.dumps(result.to_dict(), allow_nan=False)  # the CLI may print it as JSON


# -- storage -----------------------------------------------------------------------------------
def test_atomic_write_leaves_the_old_file_whole_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "k" / "0001_main.json"
    atomic_write_json(path, run({"F(0.05)": 0.9}))
    before = path.read_bytes()
    loop: list = []
    loop.append(loop)  # cannot be serialized
    with pytest.raises(RecursionError):
        atomic_write_json(path, {"results": loop})
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["0001_main.json"]  # no temp file left behind


def test_json_safe_turns_non_finite_floats_into_null() -> None:
    np = pytest.importorskip("numpy")
    out = json_safe({"a": float("inf"), "b": (1, np.float32(0.5), float("nan")), "c": np.arange(2)})
    assert out == {"a": None, "b": [1, 0.5, None], "c": [0, 1]}


@pytest.mark.parametrize(("content", "message", "fix"), [
    ("{ oops", "is not valid JSON (Expecting property name", "delete the file"),
    ('{"hello": 1}', "is not a pytest-psa run file", "move files that psa did not write"),
    ('{"schema": 7, "format": "pytest-psa run", "key": {}, "results": []}', "has schema 7", "upgrade pytest-psa"),
    ('{"schema": 1, "format": "pytest-psa run", "key": {}, "results": [{"nodeid": 3}]}', "is damaged",
     "delete the file"),
])
def test_damaged_files_are_cache_errors_naming_file_and_fix(tmp_path: Path, content: str, message: str,
                                                             fix: str) -> None:
    path = tmp_path / "0001_x.json"
    path.write_text(content)
    with pytest.raises(CacheError) as info:
        load_run(path)
    assert str(path) in str(info.value) and message in str(info.value) and fix in str(info.value)


def test_storage_numbers_runs_and_finds_them_by_number_id_name_folder_and_path(tmp_path: Path) -> None:
    storage = Storage(tmp_path / ".psa")
    kid = key_id(KEY)
    first = storage.write_new(kid, "main", run({"F(0.05)": 0.9}))
    second = storage.write_new(kid, "main", run({"F(0.05)": 0.8}))
    third = storage.write_new(kid, "pr", run({"F(0.05)": 0.7}))
    assert [p.name for p in (first, second, third)] == ["0001_main.json", "0002_main.json", "0003_pr.json"]
    assert json.loads(second.read_text())["number"] == 2
    assert storage.find("2")[0].path == second and storage.find("0002")[0].path == second
    assert storage.find("0001_main")[0].path == first
    assert storage.find("main")[0].path == second  # the newest run of that name
    assert storage.find(f"{kid}/3")[0].path == third and storage.find(str(first))[0].path == first
    assert storage.find("nothing") == [] and storage.find("other-folder/1") == []
    assert (tmp_path / ".psa" / ".gitignore").read_text().splitlines()[1:] == [".lock", "*/.tmp-*"]
    # a planned name already taken by another session moves to the next free number
    assert storage.write_new(kid, "main", run({}), planned=first).name == "0004_main.json"
    merged = storage.merge(third, [run({"F(0.1)": 0.5}, nodeid="t.py::test_b")["results"][0]])
    assert sorted(e["nodeid"] for e in load_run(merged)["results"]) == ["t.py::test_a", "t.py::test_b"]


def test_commit_info_inside_and_outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    outside = commit_info(tmp_path)
    assert outside["id"] is None and outside["source"] == "none" and autosave_name(outside) == "unversioned"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "x"]):
        (tmp_path / "f.txt").write_text("a")
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True, env=env)
    inside = commit_info(tmp_path)
    assert len(inside["id"]) == 40 and inside["branch"] == "main" and inside["dirty"] is False
    (tmp_path / "f.txt").write_text("b")
    dirty = commit_info(tmp_path)
    assert dirty["dirty"] is True and autosave_name(dirty) == inside["id"][:8] + "-dirty"
    monkeypatch.setenv("GITHUB_SHA", "f" * 40)
    assert commit_info(tmp_path.parent / "nowhere")["id"] == "f" * 40


# -- options -----------------------------------------------------------------------------------
def test_compare_fail_from_ini_and_repeated_flags() -> None:
    from pytest_psa._settings import resolve

    assert resolve({}, {"compare_fail": "F:0.02\n  mce:2%"}).compare_fail == ("F:0.02", "mce:2%")
    cli = resolve({"compare_fail": [("F(0.05):0.1",), ("adv_error:1%",)]}, {"compare_fail": "mce:2%"})
    assert cli.compare_fail == ("F(0.05):0.1", "adv_error:1%")  # the command line replaces the ini value
    with pytest.raises(PsaUsageError, match="ini psa_compare_fail: compare-fail spec 'mce' is not"):
        resolve({}, {"compare_fail": "mce"})
    assert resolve({"compare": "latest"}, {}).compare == "latest" and resolve({}, {}).compare is None
