"""The ρ-flat losses: values against the paper's formulas, gradients against autograd, and the
properties the theorems assume (convex, 1-smooth, 1-Lipschitz on the unit ball, ρ-flat)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from pytest_psa.errors import PsaUsageError
from pytest_psa.sco.chain import ChainTriggerLoss, chain_parameters
from pytest_psa.sco.losses import MaskedNormLoss, h
from pytest_psa.sco.testbeds import FlatRegression2D

RHO = 0.2


def thm1_loss(coins: np.ndarray) -> MaskedNormLoss:
    return MaskedNormLoss(coins, block=1, rho=RHO, on=(True, True), off=(False, False))


def thm3_loss(coins: np.ndarray, T: int) -> MaskedNormLoss:
    # coin 1 <=> z(i) = -1
    return MaskedNormLoss(coins, block=T, rho=RHO, on=(False, True), off=(True, False))


def paper_f_thm1(w: np.ndarray, z: np.ndarray) -> float:
    """f(w, z) = ½[√(Σ z(i)w(i)² + w(d)²) − ρ]_+², written straight from the note."""
    return 0.5 * max(np.sqrt(np.sum(z * w[:-1] ** 2) + w[-1] ** 2) - RHO, 0.0) ** 2


def paper_f_thm3(w: np.ndarray, z: np.ndarray, T: int) -> float:
    """f(w, z) = ½[√(Σ_i Σ_j [z(i)·w^(i)(j)]_+² + w(d)²) − ρ]_+², z ∈ {−1, 1}."""
    W = w[:-1].reshape(len(z), T)
    return 0.5 * max(np.sqrt(np.sum(np.maximum(z[:, None] * W, 0) ** 2) + w[-1] ** 2) - RHO, 0.0) ** 2


def unit_ball(rng: np.random.Generator, d: int, k: int) -> np.ndarray:
    x = rng.normal(size=(k, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * rng.random((k, 1)) ** (1 / d)


@pytest.fixture
def coins() -> np.ndarray:
    return np.random.default_rng(0).random((5, 8)) < 0.5


def test_h_is_flat_then_quadratic() -> None:
    x = np.linspace(-1, 1, 2001)
    assert np.all(h(x[x <= RHO], RHO) == 0)
    np.testing.assert_allclose(h(x[x > RHO], RHO), 0.5 * (x[x > RHO] - RHO) ** 2, rtol=1e-15)


def test_values_match_the_papers_formulas(coins: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    T = 3
    l1, l3 = thm1_loss(coins), thm3_loss(coins, T)
    for w in rng.normal(size=(20, l1.dim)):
        np.testing.assert_allclose(l1.per_sample(w), [paper_f_thm1(w, c.astype(float)) for c in coins], rtol=1e-12, atol=1e-16)
    for w in rng.normal(size=(20, l3.dim)):
        z = np.where(coins, -1.0, 1.0)
        np.testing.assert_allclose(l3.per_sample(w), [paper_f_thm3(w, zk, T) for zk in z], rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("kind", ["thm1", "thm3", "thm3_rho0", "chain", "2d"])
def test_gradient_and_torch_form_agree_with_autograd(kind: str, coins: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    loss = {
        "thm1": lambda: thm1_loss(coins),
        "thm3": lambda: thm3_loss(coins, 4),
        "thm3_rho0": lambda: MaskedNormLoss(coins, block=4, rho=0.0, on=(False, True), off=(True, False)),
        "chain": lambda: ChainTriggerLoss(coins, block=5, eta=0.3, r=0.5, deltas=0.1),
        "2d": lambda: FlatRegression2D(7, RHO, [0.3, -0.1], seed=3),
    }[kind]()
    for _ in range(10):
        w = rng.normal(size=loss.dim) * 0.7
        wt = torch.tensor(w, requires_grad=True)
        per = loss.per_sample_torch(wt)
        per.mean().backward()
        np.testing.assert_allclose(per.detach().numpy(), loss.per_sample(w), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(loss.grad(w), wt.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", ["thm1", "thm3"])
def test_convex_one_smooth_one_lipschitz_and_rho_flat_on_the_unit_ball(kind: str, coins: np.ndarray) -> None:
    """The lemma of App. A, checked on 300 random pairs; exact inequalities up to float rounding (1e-12)."""
    loss = thm1_loss(coins) if kind == "thm1" else thm3_loss(coins, 3)
    rng = np.random.default_rng(4)
    a, b = unit_ball(rng, loss.dim, 300), unit_ball(rng, loss.dim, 300)
    for x, y in zip(a, b):
        fx, fy, fm = loss.per_sample(x), loss.per_sample(y), loss.per_sample((x + y) / 2)
        assert np.all(fm <= (fx + fy) / 2 + 1e-12)  # convex, per sample
        dist = np.linalg.norm(x - y)
        assert np.linalg.norm(loss.grad(x) - loss.grad(y)) <= dist + 1e-12  # 1-smooth
        assert np.all(np.abs(fx - fy) <= dist + 1e-12)  # 1-Lipschitz
    # ρ-flat around w⋆ = 0: every sample's loss is exactly 0 on the sphere of radius ρ
    v = rng.normal(size=(300, loss.dim))
    v *= RHO / np.linalg.norm(v, axis=1, keepdims=True)
    assert all(np.all(loss.per_sample(x) == 0) for x in v)


def test_sar_upper_bounds_every_perturbation(coins: np.ndarray) -> None:
    """The 1-Lipschitz certificate is never beaten by 2000 random points on the r-sphere."""
    loss = thm3_loss(coins, 3)
    rng = np.random.default_rng(5)
    r = 0.3
    for w in rng.normal(size=(5, loss.dim)) * 0.3:
        v = rng.normal(size=(2000, loss.dim))
        v *= r / np.linalg.norm(v, axis=1, keepdims=True)
        upper = loss.sar_upper(w, r)
        assert max(loss.empirical(w + vi) for vi in v) <= upper + 1e-15


@pytest.mark.parametrize("kind", ["thm1", "thm3"])
def test_population_enumeration_matches_the_distribution(kind: str, coins: np.ndarray) -> None:
    """Exact F(w) against a brute-force average over all 2^B fresh z, from the paper's formula."""
    T = 2
    loss = thm1_loss(coins) if kind == "thm1" else thm3_loss(coins, T)
    w = np.random.default_rng(6).normal(size=loss.dim) * 0.4
    zs = itertools.product([0.0, 1.0] if kind == "thm1" else [-1.0, 1.0], repeat=loss.n_blocks)
    f = (lambda z: paper_f_thm1(w, np.array(z))) if kind == "thm1" else (lambda z: paper_f_thm3(w, np.array(z), T))
    brute = np.mean([f(z) for z in zs])
    exact = loss.population(w)
    assert exact.method == "exact"
    assert exact.value == pytest.approx(brute, rel=1e-12)


def test_population_monte_carlo_agrees_with_exact(coins: np.ndarray) -> None:
    """4000 fresh z; |MC − exact| ≤ 4 s.e. (two-sided normal error rate ≈ 6e-5, seed fixed)."""
    loss = thm3_loss(coins, 3)
    w = np.random.default_rng(7).normal(size=loss.dim) * 0.4
    exact, mc = loss.population(w), loss.population_mc(w, mc_samples=4000, seed=8)
    assert mc.method == "monte-carlo" and mc.stderr > 0
    assert abs(mc.value - exact.value) <= 4 * mc.stderr


def test_population_switches_to_monte_carlo_above_16_active_blocks() -> None:
    coins = np.random.default_rng(0).random((3, 20)) < 0.5
    loss = thm3_loss(coins, 1)
    w = np.concatenate([np.full(20, 0.1), [0.0]])
    res = loss.population(w, mc_samples=4000, seed=1)
    assert res.method == "monte-carlo" and res.samples == 4000
    # every block active with the same mass: q ~ 0.01·Binomial(20, ½); exact value by the binomial law
    exact = sum(math.comb(20, k) / 2**20 * float(h(np.sqrt(0.01 * k), RHO)) for k in range(21))
    assert abs(res.value - exact) <= 4 * res.stderr


def test_chain_parameters_solve_their_circular_definition() -> None:
    d, eta, r = 1025, 1 / 24, 0.5
    lam, gamma, delta1 = chain_parameters(d, eta, r)
    assert lam == pytest.approx(r / (4 * d * (d - 1)), rel=1e-15)
    assert gamma == pytest.approx(lam / (max(1, eta) * (r + delta1)), rel=1e-14)
    assert delta1 == pytest.approx(eta * gamma * r / (2 * np.sqrt(d) - eta * gamma), rel=1e-14)
    assert 0 < delta1 < lam / 2  # needed for F(w⋆) = 0 at w⋆ = −(λ/2)e_d


def test_chain_loss_matches_the_notes_formula() -> None:
    coins = np.random.default_rng(9).random((4, 3)) < 0.5
    T, eta, r = 4, 0.5, 0.4
    loss = ChainTriggerLoss(coins, block=T, eta=eta, r=r, deltas=[0.2, 0.3, 0.1])
    deltas = {2: 0.2, 3: 0.3, 4: 0.1}
    c = 1 / (2 * (loss.dim - 1))
    for w in np.random.default_rng(10).normal(size=(10, loss.dim)) * 0.3:
        W = w[:-1].reshape(3, T)
        for k, z in enumerate(coins):
            f1 = 0.5 * sum(z[i] * W[i, j - 1] ** 2 for i in range(3) for j in range(2, T + 1))
            f2 = 0.5 * sum(max(W[i, j - 1] - deltas[j] * (W[i, j - 2] + loss.lam * (j == 2)), 0) ** 2 for i in range(3) for j in range(2, T + 1))
            vz = sum((1.0 if z[i] else -c) * W[i, 0] for i in range(3)) + w[-1]
            f3 = loss.gamma / 2 * max(vz + loss.delta1, 0) ** 2
            assert loss.per_sample(w)[k] == pytest.approx(f1 + f2 + f3, rel=1e-12, abs=1e-300)


def test_flat_regression_population_quadrature_against_monte_carlo() -> None:
    tb = FlatRegression2D(20, RHO, [0.3, -0.2], seed=0)
    w = np.array([0.9, 0.4])
    theta = np.random.default_rng(1).uniform(0, 2 * np.pi, 200_000)
    mc = h(np.abs(np.cos(theta) * (w[0] - 0.3) + np.sin(theta) * (w[1] + 0.2)), RHO)
    assert abs(tb.population(w).value - mc.mean()) <= 4 * mc.std() / np.sqrt(mc.size)


def test_ring_maximum_is_not_beaten_by_random_ring_points() -> None:
    tb = FlatRegression2D(20, RHO, [0.3, -0.2], seed=0)
    rng = np.random.default_rng(2)
    w, r = np.array([0.5, 0.1]), 0.15
    phi = rng.uniform(0, 2 * np.pi, 5000)
    best = max(tb.empirical(w + r * np.array([np.cos(p), np.sin(p)])) for p in phi)
    grid = tb.sar(w, r, grid=3600)
    # the grid maximum is within O((π/3600)² r²) of the true one; random points never exceed it by more
    assert best <= grid * (1 + 1e-5)
    assert grid >= best * (1 - 1e-3)


def test_bad_arguments_raise_usage_errors(coins: np.ndarray) -> None:
    with pytest.raises(PsaUsageError, match="coins"):
        MaskedNormLoss(np.zeros((3, 4)), block=1, rho=0.1)
    with pytest.raises(PsaUsageError, match="rho"):
        MaskedNormLoss(coins, block=1, rho=-0.1)
    with pytest.raises(PsaUsageError, match="shape"):
        thm1_loss(coins).empirical(np.zeros(3))
    with pytest.raises(PsaUsageError, match="δ_j"):
        ChainTriggerLoss(coins, block=3, eta=0.1, r=0.5, deltas=1.5)
