"""The faster PAC-Bayes sigma search (issue 15) against its reference, Brent's method, in the same run.

Stated precision: the returned sigma is within `rtol` (in log sigma) of the crossing of the
fixed-draw curve, so the new search and the reference (scipy's brentq, xtol = rtol, on the same
curve) agree within 2 rtol. Checked on a closed-form loss whose crossing is known exactly (a
quadratic plus a quartic term, so log D is not linear in log sigma) and on a real CNN fitted to
real images, under both targets; the new search must not spend more evaluations than the reference.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytest_psa.data.synthetic import synthetic
from pytest_psa.measure.flatness import _noise
from pytest_psa.measure.flatness._problem import Problem, default_accuracy, select_params, to_chunks
from pytest_psa.measure.flatness.metric_values import Setup
from pytest_psa.measure.flatness.pac_bayes import pac_bayes
from pytest_psa.train.models import SmallCNN

from flatness_cases import DTYPE, dummy_data, mean_output

RTOL = 1e-3


class QuadQuartic(nn.Module):
    """L(w) = 1/2 d'Hd + c |d|^4 with d = w - w0: under antithetic noise D(sigma) = sigma^2/2 z'Hz + c sigma^4 |z|^4."""

    def __init__(self, h: torch.Tensor, c: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(len(h), dtype=DTYPE))
        self.register_buffer("h", h.to(DTYPE))
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.w
        return (0.5 * (self.h * d * d).sum() + self.c * (d @ d) ** 2).expand(x.shape[0])


def _setup(problem: Problem) -> Setup:
    return Setup(params=problem.names, n_params=problem.n_params, normalization="none", loss="test",
                 n_images=problem.n_images, chunk_size=256, device="cpu", dtype="float64")


def test_both_searches_find_a_known_crossing_within_rtol() -> None:
    h, c, target, n_samples, seed = torch.linspace(0.5, 4.0, 40), 30.0, 0.1, 8, 11
    model = QuadQuartic(h, c)
    problem = Problem(model, to_chunks(dummy_data(), max_images=None, chunk_size=256, device=torch.device("cpu")),
                      mean_output, select_params(model, "trainable"), None)
    gen = _noise.generator(seed)
    zs = [_noise.gaussian(problem.n_params, gen, problem.w) for _ in range(n_samples // 2)]
    a = float(torch.stack([(h.to(DTYPE) * z * z).sum() for z in zs]).mean()) / 2
    b = c * float(torch.stack([(z @ z) ** 2 for z in zs]).mean())
    s2 = (-a + math.sqrt(a * a + 4 * b * target)) / (2 * b)  # b s^2 + a s - target = 0 in s = sigma^2
    exact = math.log(math.sqrt(s2))
    runs = {solver: pac_bayes(problem, target=target, n_samples=n_samples, seed=seed, rtol=RTOL,
                              setup=_setup(problem), solver=solver) for solver in ("secant", "brent")}
    for solver, r in runs.items():
        assert r.bracketed
        assert abs(math.log(r.sigma) - exact) <= RTOL, (solver, r.sigma, math.exp(exact))
    assert runs["secant"].evaluations <= runs["brent"].evaluations


@pytest.fixture(scope="module")
def fitted_problem() -> Problem:
    """A narrow SmallCNN fitted for a few steps to 96 real (synthetic) images: a real, non-quadratic loss."""
    data = synthetic("train", 96, seed=5)
    torch.manual_seed(0)
    net = SmallCNN(10, 3, widths=(8, 16, 16, 32))
    x, y = data.float_images(), data.labels.long()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(40):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    chunks = to_chunks((x, y), max_images=None, chunk_size=96, device=torch.device("cpu"))
    return Problem(net, chunks, F.cross_entropy, select_params(net, "trainable"), default_accuracy)


@pytest.mark.parametrize(("target_type", "target"), [("loss", 0.1), ("accuracy", 0.1)])
def test_the_secant_search_agrees_with_brent_on_a_real_cnn(fitted_problem, target_type, target) -> None:
    p = fitted_problem
    assert p.accuracy0 is not None and p.accuracy0 > 0.3  # fitted: an accuracy drop of 0.1 is reachable
    setup = Setup(params=p.names, n_params=p.n_params, normalization="none", loss="cross_entropy",
                  n_images=p.n_images, chunk_size=96, device="cpu", dtype="float32")
    runs = {solver: pac_bayes(p, target=target, target_type=target_type, n_samples=8, seed=3, rtol=RTOL,
                              setup=setup, solver=solver) for solver in ("secant", "brent")}
    new, ref = runs["secant"], runs["brent"]
    assert new.bracketed and ref.bracketed
    assert abs(math.log(new.sigma) - math.log(ref.sigma)) <= 2 * RTOL, (new.sigma, ref.sigma)
    assert new.value == pytest.approx(ref.value, rel=4.1 * RTOL)  # 1/sigma^2: twice the log precision
    assert new.evaluations <= ref.evaluations and new.forward_passes <= ref.forward_passes
