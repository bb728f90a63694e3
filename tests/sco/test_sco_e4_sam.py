"""E4 / Theorem 7: SAM's population risk grows like η²r²T on the realizable instance; GD's stays ≈ 0.

Compared with the note's simulated values (n = 6, η = 1/24, r = ½, δ_j = 0.03)."""

from __future__ import annotations

import numpy as np
import pytest

NOTE_LAST = {16: 0.0014, 64: 0.0064, 144: 0.0146, 256: 0.0260, 576: 0.0588}


@pytest.mark.slow
def test_grid_satisfies_the_theorems_hypotheses(e4) -> None:
    for row in e4.part("main"):
        assert row["n"] >= 6 and row["T"] >= 6
        assert row["eta"] * row["r"] <= 1 / (2 * np.sqrt(row["T"])) + 1e-15


@pytest.mark.slow
def test_last_iterate_matches_the_notes_simulation(e4) -> None:
    """The note prints 2-3 significant digits: agreement to one unit of its last digit (1e-4)."""
    rows = e4.part("main")
    assert [r["T"] for r in rows] == list(NOTE_LAST)
    for row in rows:
        assert abs(row["pop_last"] - NOTE_LAST[row["T"]]) <= 1e-4


@pytest.mark.slow
def test_population_risk_is_linear_in_eta2_r2_T(e4) -> None:
    for row in e4.part("main"):
        # note: "≈ 0.21–0.23·η²r²T"; its own F(last) values give 0.207–0.235, hence [0.20, 0.24]
        assert 0.20 <= row["last_ratio"] <= 0.24
        assert 0.07 <= row["average_ratio"] <= 0.08  # note: 0.07–0.08
        assert row["min_suffix_ratio"] >= 1 / 128  # every τ: the proof's certificate F ≥ η²r²T/128


@pytest.mark.slow
def test_sam_minimizes_the_empirical_risk_without_projection(e4) -> None:
    for row in e4.part("main"):
        assert row["train_last"] == 0.0 and row["train_average"] == 0.0
        assert row["max_norm"] <= 0.49  # the iterates never leave the unit ball
        assert row["chain_held"]  # w_t^(I)(j) ≤ −ηr/2 for 3 ≤ j ≤ t, at every step
        assert row["w2_over_eta_r"] == pytest.approx(-0.68, abs=0.01)  # the note's caveat
        assert row["pop_w_star"] == 0.0


@pytest.mark.slow
def test_gd_on_the_same_instance_generalizes(e4) -> None:
    for row in e4.part("main"):
        assert row["gd_pop_last"] <= 1e-20 < 1e-3 <= row["pop_last"]  # note: GD ≈ 4e-32


@pytest.mark.slow
def test_bad_event_frequency(e4) -> None:
    (row,) = e4.part("bad_event")
    assert row["exact"] > 1 / 3
    assert abs(row["observed"] - row["exact"]) <= 4 * row["stderr"]  # error rate ≈ 6e-5


def test_saturated_regime_keeps_the_risk_constant() -> None:
    """r = 1/(2η√T): η²r²T = ¼ at every T, so the risk is Ω(1) and flat in T (last ≈ 0.21–0.24 × ¼)."""
    from pytest_psa.sco.experiments import e4_sam

    res = e4_sam(Ts=(16, 64), saturated=True, draws=100)
    for row in res.part("main"):
        assert row["x"] == pytest.approx(0.25)
        assert 0.05 <= row["pop_last"] <= 0.06 and row["train_average"] == 0.0
