"""Every metric against the closed forms of flatness.md (d), through measure_flatness itself.

Stochastic estimates are checked with two-sided normal intervals built from the reported standard
error at error rate ALPHA = 1e-3 (seeds are fixed, so each check is deterministic; ALPHA is the
chance a correct implementation would fail a check for a random seed).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from flatness_cases import (
    DTYPE,
    Quadratic,
    RhoFlat,
    dummy_data,
    mean_output,
    rho_flat_lpf,
    rotated_hessian,
    z_two_sided,
)
from scipy.optimize import brentq

from pytest_psa.measure.flatness import measure_flatness

ALPHA = 1e-3
Z = z_two_sided(ALPHA)
EIGS = [10.0, 5.0, 2.0, 1.0, 0.5, 0.1]
W0 = torch.tensor([0.3, -0.2, 0.1, 0.5, -0.4, 0.2], dtype=DTYPE)


def measure(model, metrics, **kw):
    kw.setdefault("seed", 0)
    return measure_flatness(model, dummy_data(), metrics=metrics, loss=mean_output, **kw)


def within(estimate: float, se: float, truth: float) -> bool:
    return abs(estimate - truth) <= Z * se


# -- quadratic with known Hessian ---------------------------------------------------------------
@pytest.mark.parametrize("with_gradient", [False, True])
def test_lpf_increase_is_half_sigma2_trace(with_gradient: bool) -> None:
    H = rotated_hessian(EIGS)
    g = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, -1.0], dtype=DTYPE) if with_gradient else None
    sigma = 0.05
    r = measure(Quadratic(H, W0, loss0=0.3, g=g), "lpf", lpf_sigma=sigma, n_samples=200)["lpf"]
    truth = sigma**2 * float(torch.trace(H)) / 2
    assert r.se < 0.2 * truth  # the check below can fail
    assert within(r.increase, r.increase_se, truth)
    assert r.value == pytest.approx(0.3 + r.increase, abs=1e-12)  # reported as the perturbed loss


def test_lpf_diagonal_antithetic_pairs_cancel_gradient() -> None:
    # with a gradient term, (L(w+u) + L(w-u))/2 has no linear part: the estimate matches g = 0 exactly
    H = torch.diag(torch.tensor(EIGS, dtype=DTYPE))
    g = torch.full((6,), 5.0, dtype=DTYPE)
    a = measure(Quadratic(H, W0), "lpf", n_samples=8)["lpf"]
    b = measure(Quadratic(H, W0, g=g), "lpf", n_samples=8)["lpf"]
    assert a.increase == pytest.approx(b.increase, rel=1e-9)


def test_pac_bayes_sigma_closed_form() -> None:
    H = rotated_hessian(EIGS)
    target = 0.1
    r = measure(Quadratic(H, W0, loss0=0.5), "pac_bayes", target=target, n_samples=64)["pac_bayes"]
    sigma_true = math.sqrt(2 * target / float(torch.trace(H)))  # sigma'^2 = 2d / tr H
    assert r.bracketed and r.target_type == "loss"
    assert r.sigma_se < 0.1 * sigma_true
    assert within(r.sigma, r.sigma_se, sigma_true)
    assert r.value == pytest.approx(1 / r.sigma**2)
    assert within(r.value, r.se, float(torch.trace(H)) / (2 * target))  # mu = tr H / (2d)
    assert r.slope == pytest.approx(2.0, rel=1e-6)  # exactly quadratic in sigma
    assert r.forward_passes == r.evaluations * 64


@pytest.mark.slow
def test_pac_bayes_standard_error_is_calibrated() -> None:
    # 40 seeds, 95 % intervals: a calibrated se covers the truth about 38 times; <= 33 has p = 0.0034
    H = rotated_hessian(EIGS, seed=3)
    sigma_true = math.sqrt(2 * 0.1 / float(torch.trace(H)))
    hits = 0
    for seed in range(40):
        r = measure(Quadratic(H, W0), "pac_bayes", n_samples=64, seed=seed)["pac_bayes"]
        hits += abs(r.sigma - sigma_true) <= 1.96 * r.sigma_se
    assert hits >= 34


def test_pac_bayes_root_meets_its_tolerance() -> None:
    # one parameter, one antithetic pair: D(sigma) = 1/2 * 4 * sigma^2 z^2 exactly, for the draw z
    # that the metric's own seed gives; the root must match sqrt(0.1 / (2 z^2)) within sigma_rtol
    from pytest_psa.measure.flatness import _noise
    from pytest_psa.measure.flatness.measure import METRICS

    model = Quadratic(torch.tensor([[4.0]], dtype=DTYPE), torch.tensor([0.0], dtype=DTYPE))
    r = measure(model, "pac_bayes", n_samples=2, sigma_rtol=1e-6, seed=7)["pac_bayes"]
    gen = _noise.generator(_noise.derive_seed(7, METRICS.index("pac_bayes"), 0))
    z = float(_noise.gaussian(1, gen, torch.zeros(1, dtype=DTYPE)))
    assert r.sigma == pytest.approx(math.sqrt(0.1 / (2 * z * z)), rel=2e-6)
    assert r.evaluations <= 8  # log-log secant: a power law is bracketed and solved in a few steps


def test_pac_bayes_mag_closed_form() -> None:
    H = rotated_hessian(EIGS, seed=1)
    w = torch.tensor([1.0, -2.0, 0.5, 1.5, -1.0, 2.5], dtype=DTYPE)
    eps, target = 1e-3, 0.1
    r = measure(Quadratic(H, w), "pac_bayes_mag", n_samples=64, mag_eps=eps)["pac_bayes_mag"]
    sigma2 = (2 * target - eps**2 * float(torch.trace(H))) / float((torch.diag(H) * w**2).sum())
    assert r.magnitude and r.mag_eps == eps
    assert r.sigma_se < 0.1 * math.sqrt(sigma2)
    assert within(r.sigma, r.sigma_se, math.sqrt(sigma2))


def test_hessian_top_and_trace_rotated() -> None:
    H = rotated_hessian(EIGS)
    rep = measure(Quadratic(H, W0), ["hessian_top", "hessian_trace"], power_iters=100, power_tol=1e-9, trace_samples=400)
    top, tr = rep["hessian_top"], rep["hessian_trace"]
    assert top.converged and top.iterations < 100
    assert top.value == pytest.approx(10.0, rel=1e-8)
    coarse = measure(Quadratic(H, W0), "hessian_top")["hessian_top"]  # default: tol 1e-3, at most 100 iterations
    assert abs(coarse.value - 10.0) <= coarse.residual  # stopped early, and the residual bound holds
    assert coarse.value == pytest.approx(10.0, rel=1e-3)
    assert tr.se > 0  # non-diagonal H: Rademacher variance 2 sum_{i!=j} H_ij^2 > 0
    assert within(tr.value, tr.se, float(torch.trace(H)))
    var = 2 * float((H**2).sum() - (torch.diag(H) ** 2).sum())
    assert tr.se**2 * tr.n_samples == pytest.approx(var, rel=0.35)  # sample variance, 400 probes


def test_power_iteration_small_gap_reports_bound() -> None:
    H = rotated_hessian([10.0, 9.9, 1.0, 0.5], seed=2)  # gap 1.01: slow convergence
    top = measure(Quadratic(H, torch.zeros(4, dtype=DTYPE)), "hessian_top", power_iters=10, power_tol=1e-12)["hessian_top"]
    assert not top.converged and top.iterations == 10
    assert 9.9 <= top.value <= 10.0 + 1e-12  # Rayleigh quotient lies inside the spectrum's top cluster
    eig = torch.linalg.eigvalsh(H)
    assert float((eig - top.value).abs().min()) <= top.residual  # a guaranteed bound


def test_hutchinson_exact_on_diagonal() -> None:
    H = torch.diag(torch.tensor(EIGS, dtype=DTYPE))
    tr = measure(Quadratic(H, W0), "hessian_trace", trace_samples=5)["hessian_trace"]
    assert tr.value == pytest.approx(sum(EIGS), rel=1e-12) and tr.se == pytest.approx(0.0, abs=1e-12)


def _eps_truth(h: torch.Tensor, g: torch.Tensor, b: torch.Tensor, loss0: float) -> float:
    return 100 * float((g.abs() * b + 0.5 * h * b**2).sum()) / (1 + loss0)


def test_eps_sharpness_diagonal_closed_form() -> None:
    h = torch.tensor(EIGS, dtype=DTYPE) * 1e3
    eps, loss0 = 1e-3, 0.4
    r = measure(Quadratic(torch.diag(h), W0, loss0=loss0), "eps_sharpness", eps=eps)["eps_sharpness"]
    b = eps * (W0.abs() + 1)
    assert r.value == pytest.approx(_eps_truth(h, torch.zeros(6, dtype=DTYPE), b, loss0), rel=1e-9)
    assert r.se is None and r.loss0 == pytest.approx(loss0)


def test_eps_sharpness_diagonal_with_gradient() -> None:
    # |g_i| > h_i b_i: the gradient's sign rules the whole box, the maximum is the vertex sign(g) b
    h = torch.tensor(EIGS, dtype=DTYPE) * 1e3
    g = torch.tensor([30.0, -20.0, 5.0, -2.0, 3.0, -1.0], dtype=DTYPE)
    eps, loss0 = 1e-3, 0.4
    b = eps * (W0.abs() + 1)
    r = measure(Quadratic(torch.diag(h), W0, loss0=loss0, g=g), "eps_sharpness", eps=eps)["eps_sharpness"]
    assert r.value == pytest.approx(_eps_truth(h, g, b, loss0), rel=1e-9)
    # weaker gradient: the loss has inferior local maxima at other vertices; the search is a lower bound
    g = g / 20
    r = measure(Quadratic(torch.diag(h), W0, loss0=loss0, g=g), "eps_sharpness", eps=eps)["eps_sharpness"]
    assert r.value <= _eps_truth(h, g, b, loss0) * (1 + 1e-12)
    assert r.value >= 100 * 0.5 * float((h * b**2).sum()) / (1 + loss0) * 0.5


def test_eps_sharpness_general_psd_vertex_enumeration() -> None:
    H = rotated_hessian(EIGS, seed=5) * 1e3
    eps = 1e-3
    r = measure(Quadratic(H, W0), "eps_sharpness", eps=eps, restarts=8)["eps_sharpness"]
    b = eps * (W0.abs() + 1)
    best = max(
        float(0.5 * (torch.tensor(s, dtype=DTYPE) * b) @ H @ (torch.tensor(s, dtype=DTYPE) * b))
        for s in itertools.product((-1.0, 1.0), repeat=6)
    )
    assert r.value <= 100 * best + 1e-9  # a search result is a lower bound of the maximum
    assert r.value == pytest.approx(100 * best, rel=1e-9)  # and here it finds the best vertex


def test_eps_sharpness_is_not_zero_at_an_exact_minimum() -> None:
    # an ascent started at d = 0 sees a zero gradient and stops (flatness.md pitfall 7)
    r = measure(Quadratic(torch.eye(3, dtype=DTYPE), torch.zeros(3, dtype=DTYPE)), "eps_sharpness", eps=0.1)["eps_sharpness"]
    assert r.value == pytest.approx(100 * 0.5 * 3 * 0.1**2, rel=1e-9)


# -- rho-flat loss h(x) = 1/2 max(|x| - rho, 0)^2 -------------------------------------------------
def test_rho_flat_zero_inside() -> None:
    rho = 0.5
    rep = measure(RhoFlat(0.0, rho), ["lpf", "eps_sharpness", "hessian_top", "hessian_trace"], lpf_sigma=0.01, eps=0.4)
    assert rep["lpf"].increase == 0.0 and rep["lpf"].se == 0.0  # 0.01 z never leaves [-rho, rho]
    assert rep["eps_sharpness"].value == 0.0  # box eps (|0| + 1) = 0.4 <= rho
    assert rep["hessian_top"].value == 0.0 and rep["hessian_trace"].value == 0.0


def test_rho_flat_eps_beyond_rho() -> None:
    rho, eps = 0.5, 0.7
    r = measure(RhoFlat(0.0, rho), "eps_sharpness", eps=eps)["eps_sharpness"]
    assert r.value == pytest.approx(100 * 0.5 * (eps - rho) ** 2, rel=1e-9)


@pytest.mark.slow
def test_rho_flat_lpf_and_pac_bayes() -> None:
    rho, sigma = 0.5, 0.4
    rep = measure(RhoFlat(0.0, rho), ["lpf", "pac_bayes"], lpf_sigma=sigma, n_samples=4000, target=0.01)
    lpf = rep["lpf"]
    assert within(lpf.increase, lpf.increase_se, rho_flat_lpf(sigma, rho))
    sigma_true = brentq(lambda s: rho_flat_lpf(s, rho) - 0.01, 0.05, 5.0)
    pb = rep["pac_bayes"]
    assert pb.sigma_se < 0.1 * sigma_true
    assert within(pb.sigma, pb.sigma_se, sigma_true)
