"""The paper's density scale by name (issue 12, finding 2): ``l2_255`` (L2 on 0-255 pixel values, all
pixels) with its γ grid 1, 5, 10, 50, `psa audit --scale paper` printing Table 1 as the paper lays it
out (one row per γ, one column per augmentation), records that say their scale, and docs that no
longer call the tool's own grid and thresholds the paper's."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

import pytest_psa
from pytest_psa.audits.density import density
from pytest_psa.cli import EXIT_OK, EXIT_USAGE, main
from pytest_psa.measure.density.distances import get_distance, l2, l2_raw
from pytest_psa.report.entries import identity_of

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAPER_SCALE_TEXT = "L2 on 0-255 pixel values, all pixels; arXiv 2505.24592 Table 1"


def _noise(sigma: float):
    def add_noise(x: torch.Tensor) -> torch.Tensor:
        return (x + sigma * torch.randn_like(x)).clamp(0, 1)

    return add_noise


def test_l2_255_is_255_times_the_raw_l2_norm() -> None:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(6, 3, 32, 32, generator=gen), torch.rand(6, 3, 32, 32, generator=gen)
    y[0] = x[0]
    d = get_distance("l2_255")(x, y)
    torch.testing.assert_close(d, 255 * l2_raw(x, y), rtol=1e-6, atol=1e-4)
    # the same distance as the tool's l2 up to the factor 255·√D: only the γ grid reads differently
    torch.testing.assert_close(d, 255 * math.sqrt(3 * 32 * 32) * l2(x, y), rtol=1e-5, atol=1e-4)
    assert float(d[0]) == 0.0


def test_the_paper_grid_and_the_scale_in_every_record() -> None:
    from pytest_psa.measure.density.distances import PAPER_GAMMAS, SCALES

    assert get_distance("l2_255").gammas == PAPER_GAMMAS == (1.0, 5.0, 10.0, 50.0)
    assert SCALES["paper"] == ("l2_255", (1.0, 5.0, 10.0, 50.0))
    assert SCALES["tool"] == ("l2", (0.01, 0.02, 0.05, 0.1, 0.2))
    assert "l2_255" in pytest_psa.available_distances()

    r = density(lambda x: x, n_images=8, draws=2, distance="l2_255")
    assert r.gammas == (1.0, 5.0, 10.0, 50.0)
    summary = r.to_dict()
    assert summary["distance_info"]["params"]["scale"] == PAPER_SCALE_TEXT
    assert [e["gamma"] for e in summary["ecdf"]] == [1.0, 5.0, 10.0, 50.0]
    # the tool's default says its scale too, and a baseline never pairs the two
    tool = density(lambda x: x, n_images=8, draws=2).to_dict()
    assert "not the paper's Table 1" in tool["distance_info"]["params"]["scale"]
    assert identity_of("density", summary)["distance"] == "l2_255"
    assert identity_of("density", summary) != identity_of("density", tool)


def test_identity_and_small_noise_on_the_paper_scale() -> None:
    same = density(lambda x: x, n_images=40, draws=2, distance="l2_255")
    assert same.F(1) == 1.0

    # σ = 2/255 noise moves a 32×32 RGB image by 255·‖·‖₂ ≈ 2·√3072 ≈ 110 (less where it clamps):
    # far on the paper's grid, while on the tool's l2 it is an RMS change of ≈ 0.0078, inside its smallest γ
    loud = density(_noise(2 / 255), n_images=40, draws=2, distance="l2_255")
    assert loud.F(1) == 0.0 and loud.F(50) == 0.0
    assert 80 < loud.quantile(0.5) < 115
    assert density(_noise(2 / 255), n_images=40, draws=2).F(0.01) == 1.0
    # σ = 0.5/255 (≈ 28 on this scale) is inside γ = 50 and still outside γ = 1
    quiet = density(_noise(0.5 / 255), n_images=40, draws=2, distance="l2_255")
    assert quiet.F(1) == 0.0 and quiet.F(50) == 1.0


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ")}


def test_cli_scale_paper_prints_table_1_in_the_paper_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", "none", "augmix", "--scale", "paper", "--no-flatness", "--no-robustness",
            "--n-images", "20", "--draws", "2", "-q", "--json", str(tmp_path / "run.json")]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    tables = out[: out.index("psa: run written")].rstrip("\n")
    title = tables.splitlines()[0]
    assert title.startswith("Table 1 layout (γ as rows, as in arXiv 2505.24592)") and PAPER_SCALE_TEXT in title
    rows = _rows(tables)
    # the paper's rows: γ = 1, 5, 10, 50 (its "Distance" column), then one column per augmentation
    assert [k for k in rows if k[0].isdigit()] == ["1", "5", "10", "50"]
    assert rows["γ"] == ["none", "augmix"]
    assert all(rows[g][0] == "1.0000" for g in ("1", "5", "10", "50"))  # the identity: every draw within γ = 1
    assert rows["identity"] == ["100.0%", "0.0%"] and rows["N×K"] == ["20×2", "20×2"]
    assert not any(k.startswith("PSA") for k in rows)  # no verdict: the tool's thresholds are set on l2

    # a saved paper-scale run prints the same layout
    assert main(["report", str(tmp_path / "run.json")]) == EXIT_OK
    assert capsys.readouterr().out.rstrip("\n") == tables

    # --scale paper with another distance is refused before any work
    assert main(["audit", "none", "--scale", "paper", "--distance", "l2", "--no-flatness", "--no-robustness"]) \
        == EXIT_USAGE
    assert "--scale paper measures with the distance 'l2_255'" in capsys.readouterr().err


def test_the_tool_scale_table_and_help_do_not_claim_the_paper(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", "none", "--no-flatness", "--no-robustness", "--n-images", "20", "--draws", "2", "-q"]
    assert main(argv) == EXIT_OK
    title = capsys.readouterr().out.splitlines()[0]
    assert not title.startswith("Table 1") and "this tool's scale, not the paper's Table 1" in title

    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "density (Table 1)" not in help_text and "Tables 1-3" not in help_text
    assert "--psa-gamma PSA_GAMMA γ of the PSA verdict row, this tool's own threshold, not the paper's" in help_text
    assert "--scale {tool,paper}" in help_text


def test_docs_do_not_call_the_default_grid_the_papers() -> None:
    cli = (DOCS / "cli.md").read_text(encoding="utf-8")
    for claim in ("γ grid of Table 1", "verdict row of Table 1", "Table 1. Proximal density", "Tables 1–3"):
        assert claim not in cli
    for line in cli.splitlines():
        if "Table 1" in line and re.search(r"0\.01,0\.02|--psa-gamma|--min-density|verdict", line):
            assert "this tool's own" in line, line  # the default grid and thresholds, named as the tool's
    assert "--scale paper" in cli
    text = (DOCS / "density.md").read_text(encoding="utf-8")
    assert "l2_255" in text and "γ = 1, 5, 10, 50" in text
    assert "this tool's own" in text and "near-identity" in text


@pytest.mark.cifar
@pytest.mark.slow
def test_augmix_on_cifar10_at_the_paper_scale(cifar10) -> None:
    """The numbers of docs/density.md ("Two scales"): 500 test images × 8 draws, seed 0."""
    from pytest_psa.augment.known import resolve_augmentation

    r = density(resolve_augmentation("augmix", image_size=32), data=cifar10, n_images=500, draws=8, seed=0,
                distance="l2_255")
    # draws within γ out of 4000: F = 0.00275, 0.01125, 0.02075, 0.078
    assert [round(float(f) * 4000) for f in r.F([1, 5, 10, 50])] == [11, 45, 83, 312]
    assert r.identity_fraction == 0.0  # AugMix's near-identity draws (mixing weight near 0) are never exact
