"""The front door (issues 15 and 17): the `psa` command's version, its messages in its own flags, bad
inputs as one clear line with exit status 2, stage timings in the CLI, the pytest summary and the
records, and ``--psa-markdown``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_psa import _timings
from pytest_psa.cli import EXIT_USAGE, cli_spelling, main

DENSITY_TEST = """
import pytest
import torch
from pytest_psa._timings import stage

@pytest.mark.psa(n_images=12, draws=1)
def test_two_audits(psa):
    with stage("mine", detail="first"):  # stands for a stage the first audit runs
        torch.zeros(1)
    psa.density(lambda x: x)
    with stage("mine", detail="second", cached=True):
        pass
    psa.density(lambda x: (x + 0.01 * torch.randn_like(x)).clamp(0, 1))

@pytest.mark.psa(n_images=12, draws=1)
def test_one_audit(psa):
    psa.density(lambda x: x.flip(-1))
"""


# -- psa --version ---------------------------------------------------------------------------------
def test_version_prints_the_package_and_python_and_imports_nothing_heavy() -> None:
    code = ("import sys\nfrom pytest_psa import cli\ntry:\n    cli.main(['--version'])\nexcept SystemExit as e:\n"
            "    print('exit', e.code)\nprint('heavy', sorted(m for m in ('torch', 'scipy', 'torchvision') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    from pytest_psa._version import __version__

    version, code_line, heavy = out.strip().splitlines()
    assert version == f"psa (pytest-psa) {__version__}, Python {sys.version.split()[0]}"
    assert code_line == "exit 0" and heavy == "heavy []"


# -- the CLI's own flags in shared messages ------------------------------------------------------------
def test_a_missing_data_root_names_the_cli_flag(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PSA_DATA_ROOT", raising=False)
    assert main(["audit", "none", "--data", "cifar10", "--no-flatness", "--no-robustness"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "point --data-root (env $PSA_DATA_ROOT) at a folder holding cifar-10-batches-py/" in err, err
    assert "--psa-" not in err and "psa_data_root" not in err and "Traceback" not in err


@pytest.mark.parametrize(("text", "expected"), [
    ("point --psa-data-root (ini psa_data_root, env $PSA_DATA_ROOT) at a folder; or allow a download with "
     "--psa-allow-download", "point --data-root (env $PSA_DATA_ROOT) at a folder"),
    ("set the data root with --psa-data-root / psa_data_root / $PSA_DATA_ROOT",
     "set the data root with --data-root / $PSA_DATA_ROOT"),
    ("pip install pytest-psa[plots]  (or drop --psa-plots / --plots)", "pip install pytest-psa[plots]  (or drop --plots)"),
    ("allowed 0.02 (--psa-compare-fail=F(0.05):0.02)", "allowed 0.02 (--fail F(0.05):0.02)"),
    ("pass files written by `pytest --psa-json PATH`, `--psa-save NAME`",  # quoted pytest commands stay
     "pass files written by `pytest --psa-json PATH`, `--psa-save NAME`"),
    ("--psa-gamma is this command's own flag; --psa-seed=3", "--psa-gamma is this command's own flag; --seed 3"),
])
def test_cli_spelling(text: str, expected: str) -> None:
    assert cli_spelling(text) == expected


# -- bad inputs: one clear message, exit status 2, before any work ----------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["audit", "augmx"], "unknown augmentation 'augmx' (did you mean 'augmix'?)"),
    (["audit", "none", "--data", "cifar1O"],
     "--data 'cifar1O' is neither a data set name nor an existing path (did you mean 'cifar10'?)"),
    (["audit", "none", "--data-root", "/no/such/folder"], "--data-root /no/such/folder is not a folder"),
    (["audit", "none", "--distance", "l2_algined", "--no-flatness", "--no-robustness"],
     "--distance 'l2_algined' is not a known distance (did you mean 'l2_aligned'?"),
    (["audit", "none", "--metrics", "lfp"], "unknown flatness metric 'lfp' (did you mean 'lpf'?)"),
    (["audit", "none", "--corruptions", "gausian_noise"], "unknown corruption 'gausian_noise' (did you mean "
                                                          "'gaussian_noise'?)"),
    (["audit", "none", "--attacks", "linf:8"], "--attacks: an L∞ eps of 1 or more allows any image"),
    (["report", "no_such_run.json"], "no run file at no_such_run.json"),
])
def test_bad_inputs_are_one_clear_usage_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                              args: list[str], message: str) -> None:
    monkeypatch.delenv("PSA_DATA_ROOT", raising=False)
    _timings.reset()
    assert main(args) == EXIT_USAGE
    out, err = capsys.readouterr()
    first = err.splitlines()[0]
    assert first.startswith(f"psa {args[0]}: error: ") and message in first, err
    assert "Traceback" not in err and out == ""
    assert _timings.collect() == []  # refused before any stage ran


def test_bad_severities_are_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["audit", "none", "--severities", "7"])
    assert exc.value.code == EXIT_USAGE
    assert "argument --severities: severities are integers 1 to 5" in capsys.readouterr().err


# -- stage timings --------------------------------------------------------------------------------------
def test_psa_audit_prints_its_stage_table_and_writes_timings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run.json"
    status = main(["audit", "none", "--no-flatness", "--no-robustness", "--n-images", "10", "--draws", "1",
                   "--json", str(run)])
    assert status == 0
    err = capsys.readouterr().err
    table = err[err.index("psa: time by stage"):].splitlines()
    assert table[1].split() == ["stage", "wall", "s", "runs", "from", "cache"]
    rows = {line.split()[0]: line.split()[1:] for line in table[2:]}
    assert rows["data"][1:] == ["1", "0"] and float(rows["data"][0]) >= 0  # the image-size probe, computed once
    assert "outputs" in rows
    timings = json.loads(run.read_text())["timings"]
    assert timings["data"]["count"] == 1 and timings["data"]["cached"] == 0


def test_stages_go_to_the_record_of_the_audit_that_ran_them_and_into_the_summary(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import json
        from pytest_psa._session import SESSION_KEY

        def pytest_sessionfinish(session):
            records = session.config.stash[SESSION_KEY].records
            with open("records.json", "w") as f:
                json.dump([{"nodeid": r.nodeid, "timings": r.timings} for r in records], f)
    """)
    pytester.makepyfile(DENSITY_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    records = json.loads((pytester.path / "records.json").read_text())
    two = [r["timings"] for r in records if r["nodeid"].endswith("test_two_audits")]
    one = [r["timings"] for r in records if r["nodeid"].endswith("test_one_audit")]
    assert len(two) == 2 and len(one) == 1
    mine = [[(t["detail"], t["cached"]) for t in timings if t["name"] == "mine"] for timings in two]
    # each stage goes to the first record added after it finished
    assert mine == [[("first", False)], [("second", True)]]
    assert all(t["name"] != "mine" for t in one[0])  # reset between tests
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["psa: time by stage (a stage served from a cache computed nothing)",
                                 "*stage*wall s*runs*from cache*"])
    line = next(line for line in out.splitlines() if line.split()[:1] == ["mine"])
    assert line.split()[2:] == ["2", "1"], line  # 2 runs, 1 from the cache


def test_stage_timings_travel_to_the_xdist_controller() -> None:
    from pytest_psa._records import AuditRecord
    from pytest_psa._xdist import records_from_wire, records_to_wire

    rec = AuditRecord("t.py::test_x", {"metrics": {}}, kind="density",
                      timings=[{"name": "training", "detail": "erm seed 0", "seconds": 1.5, "cached": True}])
    (back,) = records_from_wire(records_to_wire([rec]))
    assert back.timings == rec.timings


# -- --psa-markdown -------------------------------------------------------------------------------------
def test_psa_markdown_writes_the_summary(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DENSITY_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider", "--psa-markdown=reports/psa.md")
    result.assert_outcomes(passed=2)
    text = (pytester.path / "reports" / "psa.md").read_text()
    assert text.startswith("## ") and "### density" in text
    assert "`test_two_audits`" in text and "`test_one_audit`" in text
    assert "pytest test_psa_markdown_writes_the_summary.py::test_one_audit --psa-seed=0" in text  # the repro
    result.stdout.fnmatch_lines(["psa: wrote reports/psa.md (Markdown summary, 3 audits)"])


def test_psa_markdown_github_appends_to_the_step_summary(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(DENSITY_TEST)
    summary = pytester.path / "step_summary.md"
    summary.write_text("# an earlier step's summary\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.makeini("[pytest]\npsa_markdown = github\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    text = summary.read_text()
    assert text.startswith("# an earlier step's summary\n") and "### density" in text
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)  # outside GitHub Actions: said, and nothing fails
    result.stdout.fnmatch_lines(["*could not write ini psa_markdown=github: $GITHUB_STEP_SUMMARY is not set*"])


def test_the_builtin_distance_names_are_what_the_registry_registers() -> None:
    code = ("from pytest_psa._specs.names import DISTANCE_NAMES\n"
            "from pytest_psa.measure.density.distances import available_distances\n"
            "print(sorted(DISTANCE_NAMES) == available_distances())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


@pytest.mark.slow
def test_under_xdist_the_header_and_the_stage_times_reach_the_controller(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(DENSITY_TEST)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--psa-seed=random")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    summary = out.split("[100%]", 1)[1]  # what the controller printed after the tests ran
    assert re.search(r"^psa: seed=\d+ \(random\), device=auto", summary, re.M), summary  # once, in the summary
    assert out.count("psa: seed=") == 1
    line = next(line for line in summary.splitlines() if line.split()[:1] == ["mine"])
    assert line.split()[2:] == ["2", "1"], line  # the worker's stages came back with its records
