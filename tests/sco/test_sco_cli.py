"""`python -m pytest_psa.sco figures|table` (in-process), the figures, and the tidy result form."""

from __future__ import annotations

import json

import pytest

from pytest_psa.errors import PsaUsageError
from pytest_psa.sco.__main__ import main
from pytest_psa.sco.experiments import e5_stability, run_all

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick():
    return run_all(quick=True, only=["E1", "E3"])


@pytest.mark.slow
def test_every_experiment_has_a_figure(tmp_path, quick, e2, e4) -> None:
    pytest.importorskip("matplotlib")  # an optional extra ("plots"); only the figures need it
    from pytest_psa.sco.figures import save_figures

    results = {**quick, "E2": e2, "E4": e4, "E5": e5_stability(e2, e4)}
    paths = save_figures(results, tmp_path)
    assert sorted(p.name for p in paths) == ["e1.png", "e2.png", "e3.png", "e4.png", "e5.png"]
    assert all(p.read_bytes()[:8] == PNG and p.stat().st_size > 10_000 for p in paths)


def test_figures_command(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "figs"
    assert main(["figures", "--out", str(out), "--quick", "--only", "E1", "--json", str(tmp_path / "r.json")]) == 0
    assert [p.name for p in out.iterdir()] == ["e1.png"]
    data = json.loads((tmp_path / "r.json").read_text())
    assert list(data) == ["E1"] and all(row["part"] for row in data["E1"]["rows"])


def test_table_command_prints_e4_next_to_the_note(capsys) -> None:
    assert main(["table", "--quick", "--only", "E4"]) == 0
    text = capsys.readouterr().out
    assert "E4 (Thm 7" in text and "note_pop_last" in text and "0.0064" in text


@pytest.mark.slow
def test_table_formats_e2(e2) -> None:
    from pytest_psa.sco.__main__ import tables

    text = tables({"E2": e2})
    assert "0.2025" in text and "adversarial" in text and "rho at zero-risk threshold" in text


def test_unknown_experiment_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["table", "--only", "E9"])
    assert "unknown experiment" in capsys.readouterr().err


def test_results_are_tidy_and_filterable(quick) -> None:
    res = quick["E1"]
    assert res.to_dict()["experiment"] == "E1"
    rows = res.part("erm", n=6, rho=0.1)
    assert len(rows) == 3 and all(r["flat_train"] == 0 for r in rows)
    assert res.column("bad_event", "n") == [6, 8]
    with pytest.raises(PsaUsageError, match="no rows"):
        res.part("nope")
    json.loads(res.to_json())
