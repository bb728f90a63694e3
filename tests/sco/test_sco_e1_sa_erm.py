"""E1 / Theorem 1: a flat SA-ERM minimizer with population risk ≥ 1/16 next to a sharp ERM with risk 0.

Every number here has a closed form, so the checks are exact up to float rounding (1e-12)."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_psa.sco.constructions import thm1_instance
from pytest_psa.sco.experiments import e1_sa_erm


@pytest.fixture(scope="module")
def e1():
    return e1_sa_erm(ns=(6, 8, 10), rhos=(0.0, 0.1, 0.25, 0.5), draws=2000, seed=0)


def test_both_are_empirical_minimizers(e1) -> None:
    for row in e1.part("erm"):
        assert row["flat_train"] == 0.0 and row["sharp_train"] == 0.0


def test_flat_erm_attains_the_saer_minimum_for_every_r(e1) -> None:
    """F_S^r(e_I) = ½[r − ρ]_+² exactly (lower witness = upper certificate), which is every w's floor."""
    for row in e1.part("erm"):
        assert row["flat_sar"] == pytest.approx(row["pred_flat_sar"], rel=1e-12, abs=1e-15)
        assert row["flat_sar_upper"] == pytest.approx(row["pred_flat_sar"], rel=1e-12, abs=1e-15)
        if row["r"] <= row["rho"]:
            assert row["flat_sar"] == 0.0  # r-flat for r ≤ ρ


def test_flat_erm_has_population_risk_at_least_one_sixteenth(e1) -> None:
    for row in e1.part("erm"):
        assert row["flat_pop"] == pytest.approx(0.25 * (1 - row["rho"]) ** 2, rel=1e-12)
        assert row["flat_pop"] >= 1 / 16 - 1e-15


def test_sharp_erm_generalizes_and_is_as_sharp_as_one_smoothness_allows(e1) -> None:
    for row in e1.part("erm"):
        assert row["sharp_pop"] == 0.0
        # F_S^δ(ρe_d) = δ²/2 at δ = r, from below (witness) and above (certificate)
        assert row["sharp_sar"] == pytest.approx(0.5 * row["r"] ** 2, rel=1e-12, abs=1e-15)
        assert row["sharp_sar_upper"] == pytest.approx(0.5 * row["r"] ** 2, rel=1e-12, abs=1e-15)


def test_no_point_of_the_ball_beats_the_saer_floor() -> None:
    """Every w has F_S(w + sign(w(d))·r·e_d) ≥ ½[r − ρ]_+², so e_I is an SA-ERM minimizer (500 random w)."""
    inst = thm1_instance(6, 0.1, seed=1)
    rng = np.random.default_rng(2)
    for r in (0.05, 0.3):
        floor = 0.5 * max(r - 0.1, 0.0) ** 2
        for w in rng.normal(size=(500, inst.loss.dim)) * rng.random((500, 1)) / 4:
            assert inst.loss.empirical(w + inst.sar_witness(w, r)) >= floor - 1e-15


def test_bad_event_frequency(e1) -> None:
    """P(some coordinate unseen) ≥ 1 − 1/e; observed within 4 s.e. of exact (error rate ≈ 6e-5 each)."""
    for row in e1.part("bad_event"):
        assert row["exact"] >= 1 - 1 / np.e
        assert abs(row["observed"] - row["exact"]) <= 4 * row["stderr"]
