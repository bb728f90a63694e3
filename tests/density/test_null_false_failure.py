"""The density assertion keeps its declared α, measured on 2,000 null runs per level.

Null case: the true density F(γ) equals min_density exactly (the boundary, where an error is
most likely), and the K draws of an image are correlated: image i has its own chance p_i of a
draw within γ, p_i ~ Beta with mean min_density and intra-image correlation 0.3, so images
(not draws) are the sampling unit. Distances are simulated so that d ≤ γ exactly when a
uniform draw falls below p_i; the verdicts come from the project's own `DensityResult` and
`_stats` code.

- lenient (default): a *fail* verdict here is a false failure; declared rate ≤ α.
- strict: a *pass* verdict here is a false pass (the condition is not shown); declared rate ≤ α.

Each observed rate must have its one-sided 95 % Clopper–Pearson upper bound at or below α.
With fixed seeds the test is deterministic; were a true rate exactly α, the bound would
come out below α with probability ≤ 5 %, so passing is evidence, not luck of a lenient check.
A power check at F = min_density / 2 shows the same check does fail when it should.

The bulk runs use `DensityResult.verdicts` (what `assert_psa` decides from); the first runs
also go through `assert_psa` itself in both modes to show the two agree. The realistic
default configuration (500 images x 8 draws, α = 1e-3, 3,000+ runs) is measured by
benchmarks/bench_false_failure.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pytest_psa.errors import PSAViolation, PsaWarning
from pytest_psa.results.density import DensityResult

RUNS = 2000
N_IMAGES, DRAWS = 50, 5
GAMMA, MIN_DENSITY = 0.05, 0.3
ICC = 0.3  # correlation of two draws of the same image
CONFIDENCE = 0.95
CROSS_CHECKED = 30  # runs also sent through assert_psa in both modes


def null_results(f_true: float, runs: int, seed: int) -> list[DensityResult]:
    """`runs` simulated audits whose per-image chances p_i ~ Beta(mean f_true, ICC) average to f_true."""
    rng = np.random.default_rng(seed)
    total = (1 - ICC) / ICC  # a + b of the Beta: ICC = 1 / (a + b + 1)
    p = rng.beta(f_true * total, (1 - f_true) * total, size=(runs, N_IMAGES, 1))
    u = rng.random((runs, N_IMAGES, DRAWS))
    distances = np.maximum(0.0, GAMMA + u - p)  # d ≤ γ exactly when u ≤ p_i
    identity = np.zeros((N_IMAGES, DRAWS), dtype=bool)
    return [DensityResult(f"null(F={f_true:g}, icc={ICC:g})", "simulated", distances[r], identity, seed=r,
                          data={"describe": "simulated distances"}) for r in range(runs)]


def upper_bound(k: int, n: int) -> float:
    """One-sided Clopper–Pearson upper bound for a binomial rate, k events in n runs."""
    from scipy import stats

    return 1.0 if k >= n else float(stats.beta.ppf(CONFIDENCE, k + 1, n - k))


def test_upper_bound_matches_the_closed_form_at_zero_events() -> None:
    # k = 0: the bound solves (1 - p)^n = 1 - confidence
    assert upper_bound(0, 2000) == pytest.approx(1 - 0.05 ** (1 / 2000), rel=1e-9)
    # why 2,000 runs are enough for alpha 0.05 and 0.01 but alpha 1e-3 needs the benchmark's 3,000+
    assert upper_bound(0, 2000) < 0.01 and upper_bound(0, 2994) > 1e-3 > upper_bound(0, 2995)


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_null_error_rates_stay_within_alpha(alpha: float, record_property: pytest.RecordProperty) -> None:
    results = null_results(MIN_DENSITY, RUNS, seed=20260 + int(1 / alpha))
    false_fail = false_pass = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsaWarning)  # inconclusive verdicts warn; expected at the boundary
        for i, result in enumerate(results):
            (verdict,) = result.verdicts(GAMMA, MIN_DENSITY, alpha)
            false_fail += verdict.outcome == "fail"
            false_pass += verdict.outcome == "pass"
            if i < CROSS_CHECKED:  # assert_psa decides exactly as its verdicts say
                for strict, fails in ((False, verdict.outcome == "fail"), (True, verdict.outcome != "pass")):
                    try:
                        result.assert_psa(GAMMA, MIN_DENSITY, alpha, strict=strict)
                        assert not fails
                    except PSAViolation:
                        assert fails
    ff_bound, fp_bound = upper_bound(false_fail, RUNS), upper_bound(false_pass, RUNS)
    for name, value in (("false_failures", false_fail), ("false_fail_upper95", ff_bound),
                        ("false_passes_strict", false_pass), ("false_pass_upper95", fp_bound)):
        record_property(f"alpha={alpha:g}:{name}", value)
    print(f"\nalpha={alpha:g}: lenient false failures {false_fail}/{RUNS} (95% upper {ff_bound:.4f}); "
          f"strict false passes {false_pass}/{RUNS} (95% upper {fp_bound:.4f})")
    assert ff_bound <= alpha, f"lenient: {false_fail}/{RUNS} false failures, upper bound {ff_bound:.4f} > {alpha}"
    assert fp_bound <= alpha, f"strict: {false_pass}/{RUNS} false passes, upper bound {fp_bound:.4f} > {alpha}"


@pytest.mark.slow
def test_the_same_check_fails_when_the_density_is_half_the_threshold() -> None:
    """Not vacuous: at F = min_density / 2 the lenient check fails in most runs (measured: 143 of 200 at
    α = 0.01 with 50 images), and strict mode never passes."""
    results = null_results(MIN_DENSITY / 2, 200, seed=7)
    outcomes = [r.verdicts(GAMMA, MIN_DENSITY, 0.01)[0].outcome for r in results]
    assert outcomes.count("fail") > len(outcomes) / 2, outcomes.count("fail")
    assert outcomes.count("pass") == 0
