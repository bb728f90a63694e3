"""The plugin's flatness metrics on the ρ-flat instances report the flatness the constructions are known to have.

This states the paper's counterexample in the units pytest-psa asserts on real models: the flat SA-ERM
minimizer e_I (population risk ¼(1 − ρ)²) measures at least as flat as the sharp ρ·e_d (population risk 0)
under every metric. Stochastic checks use fixed seeds; each states its failure probability.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytest_psa.measure.flatness import measure_flatness
from pytest_psa.sco import constructions as C
from pytest_psa.sco.algorithms import gd, sa_gd
from pytest_psa.sco.losses import h
from pytest_psa.sco.module import EmpiricalRiskModule
from pytest_psa.sco.testbeds import FlatRegression2D, Hinge1D

RHO = 0.1
TARGET = 1e-6  # PAC-Bayes: allowed loss increase


@pytest.fixture(scope="module")
def thm1():
    return C.thm1_instance(6, RHO, seed=0)  # n = 6 samples, d = 65


def measure(problem, w, metrics, **kw):
    m = EmpiricalRiskModule(problem, w)
    return measure_flatness(m, m.data(), loss=m.loss, metrics=metrics, seed=kw.pop("seed", 0), **kw)


def box_radius(w: np.ndarray, eps: float) -> float:
    """ℓ2 radius of Keskar's box |d_i| ≤ eps(|w_i| + 1)."""
    return float(eps * np.sqrt(np.sum((np.abs(w) + 1) ** 2)))


def test_module_forward_is_the_per_sample_loss(thm1) -> None:
    i3 = C.thm3_instance(5, 4, RHO, seed=0)
    i7 = C.thm7_instance(6, 8, eta=1 / 24, r=0.5, seed=0)
    rng = np.random.default_rng(0)
    for problem in (thm1.loss, i3.loss, i7.loss, FlatRegression2D(9, RHO, [0.2, 0.1], seed=1), Hinge1D()):
        w = rng.normal(size=problem.dim) * 0.3
        m = EmpiricalRiskModule(problem, w)
        x, y = m.data()
        out = m(x)
        assert out.dtype == torch.float64 and out.shape == (problem.n,) and y.shape == (problem.n,)
        np.testing.assert_allclose(out.detach().numpy(), problem.per_sample(w), rtol=1e-12, atol=1e-16)
        np.testing.assert_allclose(m(x[-2:]).detach().numpy(), problem.per_sample(w)[-2:], rtol=1e-12, atol=1e-16)
        np.testing.assert_array_equal(m.point(), w)


def test_measured_clean_loss_is_F_S(thm1) -> None:
    w = np.random.default_rng(1).normal(size=thm1.loss.dim) * 0.3
    rep = measure(thm1.loss, w, ["lpf"], lpf_sigma=1e-3)
    assert rep.loss0 == pytest.approx(thm1.loss.empirical(w), rel=1e-12)


def test_zero_loss_increase_inside_radius_rho_at_the_flat_erm(thm1) -> None:
    w = thm1.flat_erm()
    eps = 0.9 * RHO / np.sqrt(np.sum((np.abs(w) + 1) ** 2))  # the whole box lies inside the ρ-ball
    assert box_radius(w, eps) < RHO
    rep = measure(thm1.loss, w, ["eps_sharpness", "lpf", "hessian_top", "hessian_trace"], eps=eps, lpf_sigma=0.005, n_samples=32)
    assert rep.loss0 == 0.0
    assert rep["eps_sharpness"].value == 0.0 and rep["eps_sharpness"].loss_max == 0.0
    # σ‖z‖ > ρ needs ‖z‖ > 20 for z ~ N(0, I_65): P < 1e-49 per draw
    assert rep["lpf"].increase == 0.0
    assert rep["hessian_top"].value == 0.0 and rep["hessian_trace"].value == 0.0


def test_eps_sharpness_beyond_rho_matches_the_closed_form(thm1) -> None:
    """eps = 0.2 > ρ: the ascent reaches the box corner, L_max = mean_k ½(eps·√(m_k + 1) − ρ)², m_k = #seen."""
    w = thm1.flat_erm()
    rep = measure(thm1.loss, w, ["eps_sharpness"], eps=0.2)
    m = thm1.loss.coins.sum(axis=1)
    exact = float(np.mean(h(0.2 * np.sqrt(m + 1), RHO)))
    assert rep["eps_sharpness"].loss_max == pytest.approx(exact, rel=1e-9)


def test_sharp_erm_eps_sharpness_matches_the_closed_form(thm1) -> None:
    """Default eps = 5e-4: L_max = mean_k ½(√(eps²m_k + (ρ + eps(1+ρ))²) − ρ)² at the corner.

    A restart that starts inside the flat region sees a zero gradient and stays there (the metric is a
    lower bound); each restart does so with probability ≈ ½, so 8 restarts all miss with p ≈ 0.4 % (seed fixed)."""
    w = thm1.sharp_erm()
    eps = 5e-4
    rep = measure(thm1.loss, w, ["eps_sharpness"], eps=eps, restarts=8)
    m = thm1.loss.coins.sum(axis=1)
    exact = float(np.mean(h(np.sqrt(eps**2 * m + (RHO + eps * (1 + RHO)) ** 2), RHO)))
    assert rep["eps_sharpness"].loss_max == pytest.approx(exact, rel=1e-9)
    assert rep["eps_sharpness"].loss_max >= 0.5 * (eps * (1 + RHO)) ** 2  # δ²/2 along e_d alone


def test_sharp_erm_lpf_matches_a_monte_carlo_prediction(thm1) -> None:
    """|LPF increase − prediction| ≤ 4 combined s.e. (16 antithetic pairs vs 100k; error rate ≲ 1e-3)."""
    sigma = 0.005
    rep = measure(thm1.loss, thm1.sharp_erm(), ["lpf"], lpf_sigma=sigma, n_samples=32)
    rng = np.random.default_rng(123)
    coins = thm1.loss.coins.astype(np.float64)
    pairs = []
    for _ in range(10):  # 10 × 10,000 antithetic pairs, from the paper's formula
        z = rng.normal(size=(10_000, thm1.loss.dim)) * sigma
        vals = []
        for s in (1.0, -1.0):
            W = thm1.sharp_erm() + s * z
            q = W[:, :-1] ** 2 @ coins.T + W[:, -1:] ** 2
            vals.append(h(np.sqrt(q), RHO).mean(axis=1))
        pairs.append((vals[0] + vals[1]) / 2)
    pairs = np.concatenate(pairs)
    se = np.hypot(rep["lpf"].increase_se, pairs.std() / np.sqrt(pairs.size))
    assert rep["lpf"].increase > 0
    assert abs(rep["lpf"].increase - pairs.mean()) <= 4 * se


def test_pac_bayes_calls_the_bad_minimum_flatter(thm1) -> None:
    """σ'(e_I) ≥ ρ/12 unless a draw has ‖z‖ > 12 (P(χ²_65 > 144) = 6.5e-8, ×16 draws);
    σ'(ρe_d) ≤ 2√(target/0.2)·1.01 unless the 16 pair values z_d² average below 0.2 (P = 2.6e-4);
    the 1 % is the root finder's tolerance."""
    flat = measure(thm1.loss, thm1.flat_erm(), ["pac_bayes"], target=TARGET, n_samples=32)["pac_bayes"]
    sharp = measure(thm1.loss, thm1.sharp_erm(), ["pac_bayes"], target=TARGET, n_samples=32)["pac_bayes"]
    assert flat.bracketed and sharp.bracketed
    assert flat.sigma >= RHO / 12
    assert sharp.sigma <= 2 * np.sqrt(TARGET / 0.2) * 1.01
    assert flat.value < sharp.value  # 1/σ²: smaller is flatter


def test_magnitude_aware_pac_bayes_calls_the_bad_minimum_infinitely_flat(thm1) -> None:
    """At e_I only the unseen coordinate I is non-zero, so the noise elsewhere is mag_eps·z (‖·‖ ≈ 0.008 ≪ ρ)
    for every σ: no σ reaches the target and the search ends at its upper edge with a warning."""
    from pytest_psa.errors import PsaWarning

    with pytest.warns(PsaWarning, match="crosses the target"):
        flat = measure(thm1.loss, thm1.flat_erm(), ["pac_bayes_mag"], target=TARGET)["pac_bayes_mag"]
    sharp = measure(thm1.loss, thm1.sharp_erm(), ["pac_bayes_mag"], target=TARGET)["pac_bayes_mag"]
    assert not flat.bracketed and flat.sigma == pytest.approx(1e3)
    assert sharp.bracketed and sharp.value > 1e3 * flat.value


def test_the_counterexample_in_the_plugins_units(thm1) -> None:
    """Same training loss (0), e_I flatter or equal on every metric, yet F(e_I) = ¼(1 − ρ)² and F(ρe_d) = 0."""
    metrics = ["eps_sharpness", "lpf", "pac_bayes", "hessian_trace"]
    kw = {"lpf_sigma": 0.005, "target": TARGET, "restarts": 8, "n_samples": 32}
    flat = measure(thm1.loss, thm1.flat_erm(), metrics, **kw)
    sharp = measure(thm1.loss, thm1.sharp_erm(), metrics, **kw)
    assert flat.loss0 == sharp.loss0 == 0.0
    assert flat["eps_sharpness"].value == 0.0 < sharp["eps_sharpness"].value
    assert flat["lpf"].value == 0.0 < sharp["lpf"].value
    assert flat["pac_bayes"].value < sharp["pac_bayes"].value
    assert flat["hessian_trace"].value <= sharp["hessian_trace"].value
    assert thm1.loss.population(thm1.flat_erm()).value == pytest.approx(0.25 * (1 - RHO) ** 2)
    assert thm1.loss.population(thm1.sharp_erm()).value == 0.0


def test_sa_gd_endpoint_is_as_flat_as_gds_yet_generalizes_badly() -> None:
    """Theorem 3's SA-GD iterate is a ρ-flat minimum (F_S = 0 on its ρ-ball), exactly like GD's (w = 0)."""
    eta, T = 0.25, 16
    r = RHO + 1 / (eta * np.sqrt(T))
    inst = C.thm3_instance(6, T, RHO, seed=0)
    ends = {
        "SA-GD": sa_gd(inst.loss, eta=eta, r=r, T=T, oracle=C.adversarial_oracle(inst, r)).last,
        "GD": gd(inst.loss, eta=eta, T=T).last,
    }
    for name, w in ends.items():
        eps = 0.9 * RHO / np.sqrt(np.sum((np.abs(w) + 1) ** 2))
        rep = measure(inst.loss, w, ["eps_sharpness", "hessian_top"], eps=eps)
        assert rep.loss0 == 0.0 and rep["eps_sharpness"].value == 0.0 and rep["hessian_top"].value == 0.0, name
    assert inst.loss.population(ends["SA-GD"]).value == pytest.approx(0.2025, rel=1e-12)
    assert inst.loss.population(ends["GD"]).value == 0.0
