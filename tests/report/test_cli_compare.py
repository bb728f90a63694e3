"""`psa compare A.json B.json --fail ...`: the exit status a pipeline gates on (0 no regression,
1 regression, 2 nothing compared or a usage error), on run files written from real density audits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import pytest_psa
from pytest_psa.augment.known import resolve_augmentation
from pytest_psa.cli import EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, main
from pytest_psa.fixture import AuditRecord
from pytest_psa.report.json_report import run_document, write_json

NODE = "tests/test_aug.py::test_my_augmentation"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same test measured with a proximal augmentation (A, the baseline) and with a destructive
    one (B, a regression of F): psa run files as `--psa-json` writes them."""
    folder = tmp_path_factory.mktemp("runs")
    out = {}
    for label, name in (("A", "augmix"), ("B", "destructive")):
        result = pytest_psa.density(resolve_augmentation(name), n_images=60, draws=2, seed=0)
        out[label] = write_json(folder / f"{label}.json", run_document([AuditRecord(NODE, result.to_dict())]))
    doc = json.loads(out["B"].read_text())
    doc["key"]["device"] = "cuda"  # the same numbers, measured where they are not comparable
    out["B_gpu"] = write_json(folder / "B_gpu.json", doc)
    return out


def test_regression_exits_1_and_names_the_metric(runs: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["compare", str(runs["A"]), str(runs["B"]), "--fail", "F(0.05):0.05", "--json",
                 str(tmp_path / "cmp.json")])
    out = capsys.readouterr().out
    assert code == EXIT_REGRESSION, out
    assert f"{NODE} (density): augmentation augmix -> destructive: REGRESSED" in out
    assert "REGRESSED F(0.05): now 0.0000" in out and "ok        F(0.1): now" in out  # only F(0.05) is gated
    report = json.loads((tmp_path / "cmp.json").read_text())
    assert report["exit_code"] == 1 and report["records"][0]["metrics"]["F(0.05)"]["regressed"]


def test_no_regression_exits_0(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["A"]), str(runs["A"]), "--fail", "F:0.01"]) == EXIT_OK  # identical runs
    assert main(["compare", str(runs["B"]), str(runs["A"]), "--fail", "F(0.05):0.05"]) == EXIT_OK  # an improvement
    assert main(["compare", str(runs["A"]), str(runs["B"])]) == EXIT_OK  # deltas shown, nothing gated
    assert "(none: deltas are shown, nothing fails)" in capsys.readouterr().out


def test_nothing_comparable_exits_2_unless_the_key_is_ignored(runs: dict[str, Path],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["A"]), str(runs["B_gpu"]), "--fail", "F(0.05):0.05"]) == EXIT_USAGE
    assert "comparability key differs: device 'cpu' -> 'cuda'" in capsys.readouterr().out
    assert main(["compare", str(runs["A"]), str(runs["B_gpu"]), "--fail", "F(0.05):0.05", "--ignore-key"]) \
        == EXIT_REGRESSION


def test_usage_errors_exit_2(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["A"]), str(tmp_path / "missing.json")]) == EXIT_USAGE
    assert "no run file at" in capsys.readouterr().err
    assert main(["compare", str(runs["A"]), str(runs["B"]), "--fail", "F(0.05)=5%"]) == EXIT_USAGE
    assert "is not METRIC:N% or METRIC:X" in capsys.readouterr().err
    (tmp_path / "other.json").write_text('{"benchmarks": []}')
    assert main(["compare", str(runs["A"]), str(tmp_path / "other.json")]) == EXIT_USAGE
    assert "is not a pytest-psa run file" in capsys.readouterr().err
