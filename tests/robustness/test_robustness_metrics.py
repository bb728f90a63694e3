"""Robustness metric math on hand-made outcomes: CE, mCE, relative and reference-normalized CE, flip
probability (both reference rules), and the intervals behind them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pytest_psa import PsaUsageError
from pytest_psa.measure.robustness import error_stats as M

# errors[c, s, i] for 2 corruptions x 2 severities x 4 images
AUDITED = np.array([
    [[1, 0, 0, 0], [1, 1, 0, 0]],   # c0: E = 0.25, 0.50
    [[0, 0, 0, 0], [1, 1, 1, 0]],   # c1: E = 0.00, 0.75
], dtype=float)
BASELINE = np.array([
    [[1, 1, 0, 0], [1, 1, 1, 1]],   # c0: E = 0.50, 1.00
    [[1, 0, 0, 0], [1, 1, 1, 1]],   # c1: E = 0.25, 1.00
], dtype=float)


def test_error_table_ce_and_mce_by_hand() -> None:
    table = M.error_table(AUDITED, 0.05)
    assert [[e.estimate for e in row] for row in table] == [[0.25, 0.5], [0.0, 0.75]]
    ce = M.corruption_errors(AUDITED, 0.05)
    assert [e.estimate for e in ce] == [0.375, 0.375]  # mean over severities, unnormalized
    mce = M.mean_corruption_error(AUDITED, 0.05)
    assert mce.estimate == pytest.approx((0.25 + 0.5 + 0.0 + 0.75) / 4)
    assert mce.n == 4 and mce.better == "lower"
    # per-image means over the 4 variants are fractional, so the interval is the betting one
    assert mce.method == "betting" and mce.low <= mce.estimate <= mce.high


def test_relative_ce_by_hand() -> None:
    per, mean, dropped = M.relative_corruption_errors(AUDITED, BASELINE, 0.05)
    assert per[0].estimate == pytest.approx((0.25 + 0.5) / (0.5 + 1.0))  # 0.5
    assert per[1].estimate == pytest.approx((0.0 + 0.75) / (0.25 + 1.0))  # 0.6
    assert mean.estimate == pytest.approx(0.55) and dropped == []
    assert mean.method == "delta" and mean.low <= 0.55 <= mean.high


def test_relative_ce_leaves_out_corruptions_where_the_baseline_never_errs() -> None:
    base = BASELINE.copy()
    base[1] = 0.0
    per, mean, dropped = M.relative_corruption_errors(AUDITED, base, 0.05)
    assert dropped == [1] and math.isnan(per[1].estimate)
    assert mean.estimate == pytest.approx(0.5)  # only c0 is left


def test_normalized_ce_by_hand() -> None:
    reference = np.array([[0.5, 0.5], [0.25, 0.5]])
    per, mean = M.normalized_corruption_errors(AUDITED, reference, 0.05)
    assert per[0].estimate == pytest.approx(0.75 / 1.0)
    assert per[1].estimate == pytest.approx(0.75 / 0.75)
    assert mean.estimate == pytest.approx(0.875)
    assert mean.low <= mean.estimate <= mean.high
    with pytest.raises(PsaUsageError, match="zero total error"):
        M.normalized_corruption_errors(AUDITED, np.zeros((2, 2)), 0.05)


def test_flip_probability_rules_differ_as_the_reference_defines_them() -> None:
    preds = np.array([[0, 0, 1, 1, 0], [2, 1, 1, 1, 1]])
    # noise rule: compare every frame with frame 0
    assert M.flip_rates(preds, "first").tolist() == [0.5, 1.0]
    # other perturbations: compare with the previous frame
    assert M.flip_rates(preds, "previous").tolist() == [0.5, 0.25]
    assert M.reference_rule("gaussian_noise") == "first" and M.reference_rule("shot_noise") == "first"
    assert M.reference_rule("rotate") == "previous" and M.reference_rule("zoom_blur") == "previous"
    per, mfp = M.mean_flip_probability(np.array([[0.5, 1.0], [0.5, 0.25]]), 0.05)
    assert [p.estimate for p in per] == [0.75, 0.375] and mfp.estimate == pytest.approx(0.5625)
    with pytest.raises(PsaUsageError, match="at least 2 frames"):
        M.flip_rates(np.zeros((3, 1)), "first")


def test_clopper_pearson_matches_scipy() -> None:
    for k, n in [(0, 10), (5, 10), (10, 10), (37, 200)]:
        low, high = M.clopper_pearson(k, n, 0.05)
        ref = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        assert (low, high) == pytest.approx((ref.low, ref.high), abs=1e-9)
    e = M.proportion(np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0]), 0.05)
    assert e.method == "clopper-pearson" and e.estimate == 0.2


def test_paired_difference_interval_contains_the_difference_and_is_bounded() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(500) < 0.3).astype(float)
    b = (rng.random(500) < 0.4).astype(float)
    d = M.paired_difference(a, b, 0.05)
    assert d.estimate == pytest.approx(a.mean() - b.mean())
    assert -1 <= d.low <= d.estimate <= d.high <= 1


def test_delta_interval_width_agrees_with_a_bootstrap() -> None:
    """The delta-method SE of a ratio of paired means agrees with 2,000 bootstrap resamples to 15 %
    (seeded; the bootstrap SE itself is within ~3 % of its limit at this size)."""
    rng = np.random.default_rng(1)
    n = 2000
    base = (rng.random((1, n)) < 0.4).astype(float)
    aud = np.where(rng.random((1, n)) < 0.8, base, 1 - base)  # correlated with the baseline
    _, mean, _ = M.ratio_of_means(aud, base, 0.05)
    se_delta = (mean.high - mean.estimate) / stats.norm.ppf(0.975)
    boots = []
    for _ in range(2000):
        i = rng.integers(0, n, n)
        boots.append(aud[0, i].mean() / base[0, i].mean())
    assert se_delta == pytest.approx(np.std(boots), rel=0.15)


@pytest.mark.slow
def test_betting_interval_covers_at_its_level() -> None:
    """200 seeded replications of mCE-like per-image means over 75 Bernoulli variants: the 90 %
    interval must cover the true mean in at least 80 % (it is conservative; a binomial(200, 0.9) falls
    below 160 with probability < 1e-5)."""
    rng = np.random.default_rng(2)
    p_img = rng.beta(2, 3, size=10_000)  # a population of image difficulties
    truth = p_img.mean()
    covered = 0
    for _ in range(200):
        pick = p_img[rng.integers(0, len(p_img), 300)]
        x = (rng.random((75, 300)) < pick).mean(0)
        e = M.proportion(x, 0.10)
        covered += e.low <= truth <= e.high
    assert covered >= 160


def test_estimate_text_and_dict() -> None:
    e = M.proportion(np.array([1.0, 0.0]), 0.05)
    assert e.text().startswith("0.5000 [")
    d = e.to_dict()
    assert set(d) >= {"estimate", "low", "high", "better", "unit"} and d["better"] == "lower"
    assert M.Estimate(float("nan"), None, None, "lower", "x", 0.95, "none", 0).text() == "n/a"
    with pytest.raises(PsaUsageError, match="alpha"):
        M.proportion(np.array([1.0]), 1.5)
