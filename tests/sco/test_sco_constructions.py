"""The instances of Theorems 1, 3 and 7: bad events (exact probability, frequency), seeds, oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pytest_psa.errors import PsaUsageError
from pytest_psa.sco import constructions as C


@pytest.mark.parametrize("theorem", ["thm1", "thm3", "thm7"])
def test_bad_event_probability_matches_brute_force_enumeration(theorem: str) -> None:
    """n = 2: all 2^(n·2^n) = 256 training sets enumerated."""
    n, B = 2, 4
    hits = 0
    for bits in itertools.product([False, True], repeat=n * B):
        bad = C._bad_blocks(np.array(bits).reshape(n, B))
        hits += C._is_bad(theorem, bad)
    assert C.bad_event_probability(theorem, n) == pytest.approx(hits / 2 ** (n * B), rel=1e-12)


def test_bad_event_probabilities_are_the_notes() -> None:
    assert C.bad_event_probability("thm1", 6) == pytest.approx(0.6350, abs=5e-5)
    assert all(C.bad_event_probability("thm3", n) >= 1 - 1 / np.e for n in range(1, 12))
    assert C.bad_event_probability("thm7", 6) == pytest.approx(1 / np.e, abs=0.003)  # ≈ 1/e > 1/3
    with pytest.raises(PsaUsageError):
        C.bad_event_probability("thm2", 6)  # type: ignore[arg-type]


@pytest.mark.parametrize("theorem", ["thm1", "thm7"])
def test_bad_event_frequency_within_four_standard_errors(theorem: str) -> None:
    """2000 draws; two-sided error rate of a 4-s.e. band ≈ 6e-5 (binomial ≈ normal here), seed fixed."""
    rate = C.bad_event_rate(theorem, 6, draws=2000, seed=11)
    assert abs(rate.observed - rate.exact) <= 4 * rate.stderr


def test_instances_hold_their_bad_event_and_are_seeded() -> None:
    i1 = C.thm1_instance(6, 0.1, seed=3)
    assert not i1.loss.coins[:, i1.I].any()  # coordinate I unseen by all n samples
    i3 = C.thm3_instance(6, 4, 0.1, seed=3)
    assert not i3.loss.coins[:, i3.I].any()  # coin 0 everywhere <=> z(I) = +1 for every sample
    i7 = C.thm7_instance(6, 4, eta=0.1, r=0.5, seed=3)
    assert (~i7.loss.coins.any(axis=0)).sum() == 1 and not i7.loss.coins[:, i7.I].any()
    again = C.thm3_instance(6, 4, 0.1, seed=3)
    np.testing.assert_array_equal(again.loss.coins, i3.loss.coins)
    assert not np.array_equal(C.thm3_instance(6, 4, 0.1, seed=4).loss.coins, i3.loss.coins)


def test_thm7_w_star_is_a_population_minimizer() -> None:
    inst = C.thm7_instance(6, 8, eta=1 / 24, r=0.5, seed=0)
    assert inst.loss.population(inst.w_star()).value == 0.0


def test_thm3_oracles_are_exact_maximizers_at_the_start() -> None:
    inst = C.thm3_instance(5, 8, 0.1, seed=0)
    r, w = 0.4, np.zeros(inst.loss.dim)
    upper = inst.loss.sar_upper(w, r)
    assert upper == pytest.approx(0.5 * (r - 0.1) ** 2, rel=1e-15)
    for oracle in (C.adversarial_oracle(inst, r), C.trigger_oracle(inst, r), C.random_oracle(inst, r, seed=1)):
        v = oracle(w, 1)
        assert np.linalg.norm(v) == pytest.approx(r) and inst.loss.empirical(w + v) == pytest.approx(upper, rel=1e-14)


def test_random_oracle_is_reproducible() -> None:
    inst = C.thm3_instance(5, 8, 0.1, seed=0)
    a, b = C.random_oracle(inst, 0.4, seed=5), C.random_oracle(inst, 0.4, seed=5)
    w = np.zeros(inst.loss.dim)
    assert all(np.array_equal(a(w, t), b(w, t)) for t in range(1, 20))


def test_thm3_thresholds_solve_their_equations() -> None:
    eta, r, T = 0.25, 0.35, 256
    z = C.thm3_zero_risk_rho(eta, r, T)
    assert z == pytest.approx(eta * (r - z) * np.sqrt(T))
    hyp = C.thm3_hypothesis_rho(eta, r, T)
    assert hyp == pytest.approx(eta * (r - hyp) * np.sqrt(T) / 3)
    assert hyp == pytest.approx(r * (1 - 3 / (3 + eta * np.sqrt(T))))


def test_sampling_gives_up_with_a_usage_error() -> None:
    # n = 1: P(exactly one of the two blocks unseen) = ½ per draw, so about half of 20 seeds miss on their one try
    misses = 0
    for s in range(20):
        try:
            C.thm7_instance(1, 2, eta=0.1, r=0.5, seed=s, max_tries=1)
        except PsaUsageError as err:
            assert "no bad training set" in str(err)
            misses += 1
    assert 0 < misses < 20
    with pytest.raises(PsaUsageError, match="too large"):
        C.thm1_instance(15, 0.1, seed=0)
    with pytest.raises(PsaUsageError, match="rho"):
        C.thm1_instance(4, 0.6, seed=0)
