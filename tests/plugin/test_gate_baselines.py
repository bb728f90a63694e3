"""Baselines and the compare gate in pytest: save, compare, fail on the item, update, keying,
missing baselines, corrupt files and option errors (pytester, inline runs on synthetic data)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import hypothesis  # noqa: F401
import pytest

import pytest_psa.report.baseline  # noqa: F401
import pytest_psa.report.terminal  # noqa: F401
from pytest_psa.report.run_files import comparability_key, key_id

# Inline runs drop the modules they imported; with PYTHONDONTWRITEBYTECODE, pytest then rewrites
# and compiles them again in every run (seconds each). Importing them here keeps them loaded.

# A cheap density check whose augmentation strength comes from a file, so a run can inject a
# regression: Gaussian noise of sigma 0.02 has F(0.02) = 0.825 on these 60 images of the default
# (cluttered) synthetic set; sigma 0.03 has F(0.02) = 0 while F(0.05) stays 1, so the PSA check itself
# (γ = 0.05) still passes.
SUITE = """
import os, pytest

SIGMA = float(open("sigma.txt").read())


class Noise:
    def __init__(self, sigma):
        self.sigma = sigma

    def __call__(self, x):
        import torch
        return (x + self.sigma * torch.randn_like(x)).clamp(0, 1)

    def __repr__(self):
        return f"Noise(sigma={self.sigma})"


@pytest.mark.psa(n_images=60, draws=2, min_density=0.2)
def test_noise(psa):
    psa.check(Noise(SIGMA))


@pytest.mark.psa(n_images=60, draws=2, min_density=0.2, compare_fail=["F(0.02):0.9"])
def test_noise_loose(psa):
    psa.check(Noise(SIGMA))


@pytest.mark.psa(n_images=60, draws=2)
def test_flip(psa):
    psa.density(lambda x: x.flip(-1))
"""

KEY_DIR = key_id(comparability_key("cpu", False))


def _suite(pytester: pytest.Pytester, sigma: float) -> None:
    pytester.makepyfile(test_suite=SUITE)
    (pytester.path / "sigma.txt").write_text(str(sigma))


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # inline; without pytest-html's figures and the unraisable-exception gc passes (seconds each with
    # torch loaded), neither of which this file tests
    return pytester.runpytest("-p", "no:html", "-p", "no:unraisableexception", *args)


def _run_file(pytester: pytest.Pytester, name: str) -> Path:
    return pytester.path / ".psa" / KEY_DIR / name


@pytest.mark.slow
def test_ci_scenario_save_inject_regression_fail_on_item_then_update(pytester: pytest.Pytester) -> None:
    _suite(pytester, 0.02)
    saved = _run(pytester, "--psa-save=main")
    saved.assert_outcomes(passed=3)
    saved.stdout.fnmatch_lines([f"psa: wrote .psa/{KEY_DIR}/0001_main.json (saved run: 3 audits)"])
    doc = json.loads(_run_file(pytester, "0001_main.json").read_text())
    assert doc["schema"] == 1 and doc["key"]["device"] == "cpu" and doc["commit_info"]["id"] is None
    entry = next(e for e in doc["results"] if e["nodeid"].endswith("::test_noise"))
    assert entry["augmentation"] == "Noise(sigma=0.02)" and entry["seeds"] == [0]
    assert entry["metrics"]["F(0.02)"]["estimate"] == pytest.approx(0.825)

    # the regression: stronger noise; the PSA check at γ=0.05 passes, the gate on F(0.02) does not
    (pytester.path / "sigma.txt").write_text("0.03")
    xml = pytester.path / "junit.xml"
    gated = _run(pytester, "--psa-compare", "--psa-compare-fail=F:0.02", f"--junitxml={xml}")
    gated.assert_outcomes(passed=2, failed=1)  # test_noise_loose: its marker allows 0.9
    out = gated.stdout.str()
    assert re.findall(r"^_+ (\S+) _+$", out, re.M) == ["test_noise"]  # the failure is on that item
    gated.stdout.fnmatch_lines([
        "*psa baseline regression: test_suite.py::test_noise (density audit: Noise(sigma=0.03))",
        "*F(0.02): now 0.0000 [[]0.0000, 0.1526], baseline 0.8250 [[]0.6442, 0.9489] (99.9% intervals)",
        "*higher is better; the current interval's upper end 0.1526 is 0.6724 below the baseline 0.825; "
        "allowed 0.02 (--psa-compare-fail=F:0.02)",
        "*augmentation: Noise(sigma=0.02) -> Noise(sigma=0.03)",
        f"*baseline: .psa/{KEY_DIR}/0001_main.json (run 0001_main, no commit recorded, *",
        "*measured with: seed=0, device=cpu, torch *, deterministic=False",
        "*reproduce: pytest test_suite.py::test_noise --psa-seed=0 --psa-compare=0001_main --psa-compare-fail=F:0.02",
        "*accept the new values: pytest test_suite.py::test_noise --psa-seed=0 --psa-compare=0001_main "
        "--psa-baseline-update",
    ])
    assert "F(0.05): now" not in out  # unchanged metrics are not reported as regressions
    gated.stdout.fnmatch_lines(["*REGRESSED test_suite.py::test_noise: F(0.02) 0 vs baseline 0.825 (allowed 0.02)*"])
    junit = xml.read_text()
    case = re.search(r'<testcase [^>]*name="test_noise" .*?</testcase>', junit, re.S).group(0)
    assert "<failure" in case and 'name="psa_baseline" value="regressed"' in case
    assert 'name="psa_regression(F(0.02))"' in case
    assert "regressed" not in re.search(r'<testcase [^>]*name="test_flip" .*?</testcase>', junit, re.S).group(0)

    # a regressed run saved alongside never becomes a baseline for the test that regressed
    again = _run(pytester, "--psa-compare", "--psa-compare-fail=F:0.02", "--psa-save=head")
    again.assert_outcomes(passed=2, failed=1)
    assert "0001_main.json" in again.stdout.str().split("= FAILURES =")[1]
    head = json.loads(_run_file(pytester, "0002_head.json").read_text())
    assert {e["nodeid"].split("::")[1]: e["gate"] for e in head["results"]} == {
        "test_noise": "regressed", "test_noise_loose": "pass", "test_flip": "pass"}

    # explicit update: rewrites and passes, and says which file changed
    updated = _run(pytester, "--psa-compare", "--psa-compare-fail=F:0.02", "--psa-baseline-update")
    updated.assert_outcomes(passed=3)
    updated.stdout.fnmatch_lines([f"psa: wrote .psa/{KEY_DIR}/0003_baseline.json (new baselines: 3 updated)"])
    # an identical rerun (same seed, same machine) passes even with zero allowance on every metric
    after = _run(pytester, "--psa-compare", "--psa-compare-fail=*:0", "--psa-compare-fail=F:0%")
    after.assert_outcomes(passed=3)
    after.stdout.fnmatch_lines(["compared with .psa (newest baseline per test): 3 passed"])


def test_missing_baseline_is_written_and_fails_then_compares(pytester: pytest.Pytester) -> None:
    _suite(pytester, 0.02)
    first = _run(pytester, "--psa-compare", "-k", "test_noise and not loose")
    first.assert_outcomes(failed=1)
    target = f".psa/{KEY_DIR}/0001_baseline.json"
    first.stdout.fnmatch_lines([
        f"*psa: no baseline for test_suite.py::test_noise (density audit) in .psa/{KEY_DIR}",
        f"*baseline written to {target} (when this session ends): rerun to compare against it, or pass "
        "--psa-baseline-update to record baselines without failing",
        "*recorded: F(0.01) = 0, F(0.02) = 0.825, F(0.05) = 1*",
        f"*NO BASELINE test_suite.py::test_noise: written to {target}",
        f"psa: wrote {target} (new baselines: 1 new baseline)",
    ])
    assert (pytester.path / target).is_file()
    _run(pytester, "--psa-compare", "-k", "test_noise and not loose").assert_outcomes(passed=1)
    # with --psa-autosave the new baseline goes into the saved run (named after the commit; none here)
    auto = _run(pytester, "--psa-compare", "--psa-autosave", "-k", "flip")
    auto.assert_outcomes(failed=1)
    auto.stdout.fnmatch_lines([f"psa: wrote .psa/{KEY_DIR}/0002_unversioned.json (saved run: 1 audits, "
                               "1 new baseline)"])
    _run(pytester, "--psa-compare", "-k", "flip").assert_outcomes(passed=1)


def test_update_without_baselines_writes_and_passes(pytester: pytest.Pytester) -> None:
    _suite(pytester, 0.02)
    result = _run(pytester, "--psa-baseline-update", "-k", "flip")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"psa: wrote .psa/{KEY_DIR}/0001_baseline.json (new baselines: 1 updated)"])
    # an explicit run is rewritten in place
    again = _run(pytester, "--psa-compare=0001", "--psa-baseline-update", "-k", "flip or loose")
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines([f"psa: wrote .psa/{KEY_DIR}/0001_baseline.json (rewritten in place: 2 updated)"])
    doc = json.loads(_run_file(pytester, "0001_baseline.json").read_text())
    assert sorted(e["nodeid"].split("::")[1] for e in doc["results"]) == ["test_flip", "test_noise_loose"]


def test_key_or_identity_mismatch_skips_the_comparison_visibly(pytester: pytest.Pytester) -> None:
    _suite(pytester, 0.02)
    _run(pytester, "--psa-save=main", "-k", "flip").assert_outcomes(passed=1)
    stored = _run_file(pytester, "0001_main.json")
    doc = json.loads(stored.read_text())
    old_key = {**doc["key"], "torch": "1.13.0"}
    other = pytester.path / ".psa" / key_id(old_key) / "0001_main.json"
    other.parent.mkdir()
    other.write_text(json.dumps({**doc, "key": old_key}))
    stored.unlink()
    (pytester.path / "sigma.txt").write_text("0.03")
    xml = pytester.path / "junit.xml"
    result = _run(pytester, "--psa-compare", "--psa-compare-fail=*:0", "-k", "flip", f"--junitxml={xml}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "compared with .psa (newest baseline per test): 1 skipped",
        "*SKIPPED comparison test_suite.py::test_flip: comparability key differs: torch '1.13.0' -> '2.14*' "
        "(rerun with --psa-baseline-update to record a baseline that matches)",
    ])
    junit = xml.read_text()
    assert 'name="psa_baseline" value="skipped"' in junit
    assert "comparability key differs: torch" in junit

    # same key, but the test now audits other images: not comparable either
    _run(pytester, "--psa-save=main", "-k", "flip").assert_outcomes(passed=1)
    pytester.makepyfile(test_suite=SUITE.replace("@pytest.mark.psa(n_images=60, draws=2)\ndef test_flip",
                                                 "@pytest.mark.psa(n_images=70, draws=2)\ndef test_flip"))
    # the rewrite keeps the file's size and may land in the same second: drop the bytecode so Python
    # (and pytest's assertion rewriter) cannot take the old file's from __pycache__
    shutil.rmtree(pytester.path / "__pycache__", ignore_errors=True)
    changed = _run(pytester, "--psa-compare", "--psa-compare-fail=*:0", "-k", "flip")
    changed.assert_outcomes(passed=1)
    changed.stdout.fnmatch_lines(["*SKIPPED comparison test_suite.py::test_flip: the test measured something else: "
                                  "data.fingerprint *, data.n 60 -> 70, n_images 60 -> 70*"])


@pytest.mark.parametrize(("args", "message"), [
    (["--psa-compare", "--psa-compare-fail=mce"], "compare-fail spec 'mce' is not METRIC:N% or METRIC:X"),
    (["--psa-compare", "--psa-compare-fail=mce:two%"], "'two%' is not a number"),
    (["--psa-compare", "--psa-compare-fail=mce:-1"], "the allowance must be a finite number >= 0"),
    (["--psa-compare-fail=mce:2%"], "--psa-compare-fail needs --psa-compare"),
    (["--psa-save=my run"], "run name must hold only letters, digits and . _ + -"),
    (["--psa-compare=nothing-stored"], "--psa-compare=nothing-stored: no stored run matches it"),
])
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = _run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_marker_compare_fail_is_validated_at_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.psa(compare_fail=["mce:2%", "adv_error"])
        def test_x(psa):
            raise AssertionError("must not run")
    """)
    result = _run(pytester)
    result.assert_outcomes(errors=1)  # fails its own test, in setup
    assert "compare_fail=['mce:2%', 'adv_error'] is invalid: compare-fail spec 'adv_error' is not" in result.stdout.str()
    assert "must not run" not in result.stdout.str()


@pytest.mark.parametrize("content", ["{ not json", '{"schema": 99, "format": "pytest-psa run"}', "[1, 2]"])
def test_damaged_run_file_stops_the_run_naming_file_and_fix(pytester: pytest.Pytester, content: str) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    bad = pytester.path / ".psa" / KEY_DIR / "0001_main.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(content)
    result = _run(pytester, "--psa-compare")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert str(bad) in err and "fix:" in err
