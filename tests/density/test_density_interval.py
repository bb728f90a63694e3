"""The confidence interval for F_N(γ) on a synthetic null with clustered draws.

Draws of one image are correlated (a hard image is far under every draw), so each simulated image
gets its own hit probability p_i ~ Beta(0.3, 1.7) (mean F = 0.15, strongly overdispersed) and K = 8
binomial draws. Over M repetitions with a fixed seed we count how often the interval misses the true
F. A valid one-sided bound at level a misses with probability at most a, so the miss count is
stochastically below Binomial(M, a); asserting count <= its 1 - 1e-4 quantile makes a false failure
of this test (for a valid interval) at most 1e-4 per side, and with the fixed seed the outcome is
reproducible. The naive pooled-binomial interval, which ignores the clustering, misses far more
often: the check has the power to catch an interval that treats draws as independent.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from pytest_psa import PSAViolation, PsaWarning
from pytest_psa._stats import proportion_interval
from pytest_psa.results.density import DensityResult

M = 200  # repetitions
N, K = 100, 8  # images x draws per repetition
F_TRUE = 0.15
BETA = (0.3, 1.7)  # mean 0.15
ALPHA = 0.1  # two-sided: each side at 0.05
TEST_ERROR = 1e-4  # false-failure rate of each count check below, for a valid interval


def allowed_misses(level: float, m: int = M) -> int:
    return int(stats.binom.ppf(1 - TEST_ERROR, m, level))


def clustered_hits(rng: np.random.Generator) -> np.ndarray:
    return rng.binomial(K, rng.beta(*BETA, size=N))


@pytest.fixture(scope="module")
def coverage():
    rng = np.random.default_rng(20250530)
    trials = np.full(N, K)
    low_miss = high_miss = naive_miss = 0
    widths = []
    z = stats.norm.ppf(1 - ALPHA / 2)
    for _ in range(M):
        hits = clustered_hits(rng)
        iv = proportion_interval(hits, trials, ALPHA)
        low_miss += iv.low > F_TRUE
        high_miss += iv.high < F_TRUE
        widths.append(iv.high - iv.low)
        # Wilson interval on the N*K pooled draws, as if they were independent
        n, p = N * K, hits.sum() / (N * K)
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        naive_miss += not (centre - half <= F_TRUE <= centre + half)
    return {"low": low_miss, "high": high_miss, "naive": naive_miss, "width": float(np.mean(widths))}


def test_lower_bound_misses_at_most_alpha_half(coverage):
    assert coverage["low"] <= allowed_misses(ALPHA / 2), coverage


def test_upper_bound_misses_at_most_alpha_half(coverage):
    assert coverage["high"] <= allowed_misses(ALPHA / 2), coverage


def test_interval_is_not_vacuous(coverage):
    """Coverage alone is cheap ([0, 1] covers everything): the interval must also be informative,
    here narrower on average than Hoeffding's interval from the same N images (valid, but blind
    to the variance)."""
    hoeffding = 2 * np.sqrt(np.log(2 / ALPHA) / (2 * N))
    assert coverage["width"] < hoeffding, coverage


def test_naive_pooled_interval_fails_this_check(coverage):
    assert coverage["naive"] > allowed_misses(ALPHA), coverage


def _table(hits: np.ndarray) -> DensityResult:
    """A result whose draws within γ = 0.05 are exactly `hits` per image."""
    d = np.where(np.arange(K)[None, :] < hits[:, None], 0.01, 0.5)
    return DensityResult(augmentation="null", distance="l2", distances=d, identity=np.zeros(d.shape, bool),
                         seed=0, data={"describe": "null"})


def test_assert_psa_error_rates_at_the_boundary():
    """With F exactly at min_density (the hardest case), the lenient check fails with probability
    <= alpha and the strict check passes with probability <= alpha, as assert_psa documents
    (assert_psa fails on a "fail" verdict, and in strict mode on anything but "pass")."""
    rng = np.random.default_rng(7)
    alpha, reps = 0.05, 150
    outcomes = [_table(clustered_hits(rng)).verdicts(0.05, F_TRUE, alpha)[0].outcome for _ in range(reps)]
    assert outcomes.count("fail") <= allowed_misses(alpha, reps), outcomes
    assert outcomes.count("pass") <= allowed_misses(alpha, reps), outcomes


def test_assert_psa_follows_the_verdict():
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(40):
        r = _table(clustered_hits(rng))
        outcome = r.verdicts(0.05, F_TRUE, 0.05)[0].outcome
        seen.add(outcome)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PsaWarning)
            lenient_fails = _fails(lambda: r.assert_psa(gamma=0.05, min_density=F_TRUE, alpha=0.05))
        strict_fails = _fails(lambda: r.assert_psa(gamma=0.05, min_density=F_TRUE, alpha=0.05, strict=True))
        assert lenient_fails == (outcome == "fail") and strict_fails == (outcome != "pass")
    assert "inconclusive" in seen


def _fails(check) -> bool:
    try:
        check()
    except PSAViolation:
        return True
    return False


def test_upper_bound_with_images_sorted_by_class():
    rng = np.random.default_rng(1)
    trials = np.full(N, K)
    misses = 0
    for _ in range(M):
        # two classes of 50 images each, the far class first: true F = (0.02 + 0.38) / 2 = 0.2
        p = np.r_[np.clip(rng.normal(0.02, 0.01, N // 2), 0, 1), np.clip(rng.normal(0.38, 0.05, N // 2), 0, 1)]
        hits = rng.binomial(K, p)
        misses += proportion_interval(hits, trials, 0.05, "upper").high < 0.2
    assert misses <= allowed_misses(0.05), misses
