"""E3 / Theorems 5 and 6: SAM minimizes F_S but stays at sharp minima; SA-GD reaches the flat one."""

from __future__ import annotations

import pytest

from pytest_psa.sco.experiments import e3_sam_sharpness


@pytest.fixture(scope="module")
def e3():
    # the note's 1-D grid; the 2-D testbed at T = 400 on a 720-angle ring (the note: T = 2000, 3600 angles)
    return e3_sam_sharpness(rs=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5), T2=400, rs2=(0.1, 0.2), grid=720, curve_points=8, seed=0)


def test_sam_stays_at_the_sharp_minimum_in_one_dimension(e3) -> None:
    for row in e3.part("1d", algorithm="SAM"):
        assert row["w_last"] == 0.0  # ∇f(0) = 0 and 0/0 := 0
        assert row["sar_last"] == pytest.approx(0.5 * row["r"] ** 2, rel=1e-15)  # F^r(ŵ) − F^r(w⋆) = ½r² = Ω(r²)
        assert row["w_star_sar"] == 0.0


def test_sa_gd_reaches_the_flat_minimum_in_one_dimension(e3) -> None:
    for row in e3.part("1d", algorithm="SA-GD"):
        assert row["sar_last"] == pytest.approx(row["pred_sar_last"], rel=1e-9)  # ½(r(1 − η)^T)²
        assert row["sar_last"] <= 1e-20


def test_two_dimensional_testbed_separates_sa_gd_from_sam(e3) -> None:
    for r in (0.1, 0.2):
        sagd = e3.part("2d", algorithm="SA-GD", r=r)[0]
        samr = e3.part("2d", algorithm="SAM", r=r)[0]
        gdr = e3.part("2d", algorithm="GD", r=r)[0]
        assert sagd["sar_average"] <= sagd["bound"]  # Thm 2 (r ≤ ρ: bound = ‖w_1 − w⋆‖²/(ηT))
        assert samr["train_average"] <= samr["bound"]  # Thm 5 bounds F_S only
        # note [SIM]: SA-GD ≤ 1e-5; SAM and GD ≈ 1e-3 (r = .1), ≈ 4e-3 (r = .2). Margin ×2 below the note's
        # SAM/GD numbers: the note does not fix w⋆ or the sample, and the seeds used here give 1.5e-3 / 7e-3.
        assert sagd["sar_last"] <= 1e-5
        floor = {0.1: 5e-4, 0.2: 2e-3}[r]
        assert samr["sar_last"] >= floor and gdr["sar_last"] >= floor
        assert samr["pop_last"] <= 1e-6  # SAM's sharp minimum still generalizes here: sharpness ≠ bad risk
