"""GD, SA-GD and SAM follow the paper's update rules exactly; iterates and averages are indexed as documented."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_psa.errors import PsaUsageError
from pytest_psa.sco.algorithms import certify, gd, sa_gd, sam, sam_ascent
from pytest_psa.sco.constructions import adversarial_oracle, thm3_instance
from pytest_psa.sco.testbeds import FlatRegression2D, Hinge1D


@pytest.fixture
def tb() -> FlatRegression2D:
    return FlatRegression2D(12, 0.1, [0.2, -0.3], seed=1)


def test_gd_steps_are_w_minus_eta_grad(tb: FlatRegression2D) -> None:
    traj = gd(tb, eta=0.3, T=5, w1=[0.8, 0.5])
    w = np.array([0.8, 0.5])
    for t in range(1, 7):
        np.testing.assert_array_equal(traj.iterate(t), w)
        assert traj.train_loss[t - 1] == tb.empirical(w)
        w = w - 0.3 * tb.grad(w)
    np.testing.assert_array_equal(traj.ascent_loss, traj.train_loss[:-1])  # v_t = 0


def test_sam_steps_use_the_normalized_ascent_point(tb: FlatRegression2D) -> None:
    eta, r = 0.25, 0.15
    traj = sam(tb, eta=eta, r=r, T=4, w1=[0.8, 0.5])
    w = np.array([0.8, 0.5])
    for t in range(1, 5):
        g = tb.grad(w)
        v = r * g / np.linalg.norm(g)
        assert traj.ascent_loss[t - 1] == pytest.approx(tb.empirical(w + v), rel=1e-14)
        w = w - eta * tb.grad(w + v)
        np.testing.assert_allclose(traj.iterate(t + 1), w, rtol=1e-14)


def test_sam_zero_gradient_is_a_no_op() -> None:
    """0/0 := 0: from the sharp minimum w = 0 of ½[w]_+², SAM never moves (Theorem 6)."""
    f = Hinge1D()
    assert np.all(sam_ascent(f, np.zeros(1), 0.3) == 0)
    traj = sam(f, eta=0.25, r=0.3, T=50)
    assert traj.max_norm == 0.0 and np.all(traj.train_loss == 0)


def test_sam_from_positive_w_moves_by_the_ascent_gradient() -> None:
    f = Hinge1D()
    traj = sam(f, eta=0.25, r=0.3, T=1, w1=[0.4])
    assert traj.last[0] == pytest.approx(0.4 - 0.25 * (0.4 + 0.3), rel=1e-15)


def test_subnormal_gradients_count_as_zero() -> None:
    """Gradients below the smallest normal float64 are flushed (they are 1e300 below any measured value)."""

    class Tiny:
        dim = 2

        def empirical(self, w):
            return 0.0

        def grad(self, w):
            return np.array([1e-310, 0.0])

    assert np.all(sam_ascent(Tiny(), np.zeros(2), 0.5) == 0)


def test_sa_gd_uses_the_oracles_step(tb: FlatRegression2D) -> None:
    v = np.array([0.0, -0.2])
    traj = sa_gd(tb, eta=0.5, r=0.2, T=3, oracle=lambda w, t: v, w1=[0.1, 0.1])
    w = np.array([0.1, 0.1])
    for t in range(1, 4):
        assert traj.ascent_loss[t - 1] == tb.empirical(w + v)
        w = w - 0.5 * tb.grad(w + v)
    np.testing.assert_allclose(traj.last, w, rtol=1e-15)


def test_sa_gd_rejects_steps_outside_the_ball(tb: FlatRegression2D) -> None:
    with pytest.raises(PsaUsageError, match="r-ball"):
        sa_gd(tb, eta=0.5, r=0.2, T=3, oracle=lambda w, t: np.array([0.3, 0.0]))


def test_sa_gd_grid_oracle_reaches_the_flat_minimum_on_hinge() -> None:
    """SA-GD on ½[w]_+² with v = +r: w_t + r shrinks by (1 − η) per step, so F^r → 0 geometrically."""
    f, eta, r = Hinge1D(), 0.25, 0.2
    traj = sa_gd(f, eta=eta, r=r, T=40, oracle=f.oracle(r))
    assert traj.last[0] + r == pytest.approx(r * (1 - eta) ** 40, rel=1e-9)


def test_iterates_and_averages_are_indexed_as_documented(tb: FlatRegression2D) -> None:
    traj = gd(tb, eta=0.3, T=6, w1=[0.8, 0.5])
    W = np.stack([traj.iterate(t) for t in range(1, 8)])
    np.testing.assert_allclose(traj.last, W[-1])
    np.testing.assert_allclose(traj.average, W[1:].mean(axis=0))  # the T iterates the updates produced
    np.testing.assert_allclose(traj.paper_average, W[:-1].mean(axis=0))  # (1/T) Σ_{t=1}^T w_t
    for tau in range(1, 8):
        np.testing.assert_allclose(traj.suffix_average(tau), W[tau - 1 :].mean(axis=0))
    for bad in (0, 8):
        with pytest.raises(PsaUsageError):
            traj.suffix_average(bad)
    with pytest.raises(PsaUsageError):
        traj.iterate(0)


def test_certify_tells_exact_from_inexact_maximizers() -> None:
    inst = thm3_instance(4, 8, 0.1, seed=0)
    r = 0.5
    exact = sa_gd(inst.loss, eta=0.25, r=r, T=8, oracle=adversarial_oracle(inst, r))
    assert certify(inst.loss, exact) == 0.0
    half = adversarial_oracle(inst, r / 2)  # a step inside the ball: not a maximizer
    inexact = sa_gd(inst.loss, eta=0.25, r=r, T=8, oracle=half)
    assert certify(inst.loss, inexact) > 0.5


def test_bad_arguments_raise_usage_errors(tb: FlatRegression2D) -> None:
    with pytest.raises(PsaUsageError, match="eta"):
        gd(tb, eta=0.0, T=3)
    with pytest.raises(PsaUsageError, match="T"):
        gd(tb, eta=0.1, T=0)
    with pytest.raises(PsaUsageError, match="w1"):
        gd(tb, eta=0.1, T=2, w1=[1.0, 2.0, 3.0])
    with pytest.raises(PsaUsageError, match="r"):
        sam(tb, eta=0.1, r=-1.0, T=2)
