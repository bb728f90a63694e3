"""LPF (Bisla et al. 2022): the loss convolved with a Gaussian, E[L(w + sigma z)], by Monte Carlo.

Draws come in antithetic pairs (z, -z): the estimate stays unbiased and the first-order term
g.z cancels inside each pair, so the increase is measured without the gradient's noise.
Bisla et al. use sigma = 0.01 with 100 draws and report the perturbed loss itself.
"""

from __future__ import annotations

import math
import time

import torch

from pytest_psa.measure.flatness import _noise
from pytest_psa.measure.flatness._problem import Problem
from pytest_psa.measure.flatness.metric_values import LPFResult, Setup


def pair_means(problem: Problem, std: torch.Tensor | float, zs: list[torch.Tensor]) -> torch.Tensor:
    """(L(w + std z) + L(w - std z)) / 2 for each z, in float64."""
    w = problem.w
    vals = [(problem.evaluate(w + std * z)[0] + problem.evaluate(w - std * z)[0]) / 2 for z in zs]
    return torch.tensor(vals, dtype=torch.float64)


def lpf(
    problem: Problem,
    *,
    sigma: float = 0.01,
    n_samples: int = 16,
    seed: int,
    scale: torch.Tensor | None = None,
    setup: Setup,
) -> LPFResult:
    """Expected loss under N(0, sigma^2) weight noise (times `scale` per entry when given)."""
    t0 = time.perf_counter()
    gen = _noise.generator(seed)
    zs = [_noise.gaussian(problem.n_params, gen, problem.w) for _ in range(n_samples // 2)]
    std = sigma if scale is None else sigma * scale
    vals = pair_means(problem, std, zs)
    mean = float(vals.mean())
    se = float(vals.std(unbiased=True)) / math.sqrt(len(vals)) if len(vals) > 1 else math.nan
    return LPFResult(
        metric="lpf", value=mean, se=se, unit="mean loss under weight noise", seed=seed,
        seconds=time.perf_counter() - t0, setup=setup, sigma=sigma, increase=mean - problem.loss0,
        increase_se=se, n_samples=2 * len(zs), forward_passes=2 * len(zs), loss0=problem.loss0,
    )
