"""E5 / Theorems 4 and 8: measured population risks stay under the explicit stability bound."""

from __future__ import annotations

import pytest

from pytest_psa.sco.experiments import e5_stability, stability_bound


def test_bound_formula_by_hand() -> None:
    eps, bound = stability_bound(eta=0.5, beta=2.0, r=0.3, rho=0.1, T=10, n=4, train=0.01)
    by_hand = 24 * 0.5 * 2 * 0.09 * 10 + 96 * 2 * 0.5 * 10 / 16 + 768 * 4 * 0.25 * 100 * 0.04 / 16
    assert eps == pytest.approx(by_hand, rel=1e-14)
    assert bound == pytest.approx(0.04 + 6 * by_hand, rel=1e-14)


@pytest.mark.slow
def test_measured_risks_stay_under_the_bound(e2, e4) -> None:
    e5 = e5_stability(e2, e4)
    rows = e5.part("bound")
    assert {r["source"] for r in rows} == {"E2", "E4"}
    for row in rows:
        assert row["pop_last"] <= row["bound"] and row["pop_average"] <= row["bound"]
        # the upper bound's order exceeds the lower bound's η²(r − ρ)²T by at least β²/η
        assert row["bound_over_x"] >= row["beta2_over_eta"]
