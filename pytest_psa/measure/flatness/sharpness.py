"""eps-sharpness (Keskar et al. 2017, Metric 2.1) by projected multi-step ascent with restarts.

phi = 100 (max_{|d_i| <= b_i} L(w + d) - L(w)) / (1 + L(w)),  b_i = eps (|w_i| + 1).

Keskar et al. take the max with a few L-BFGS-B iterations started at d = 0; at an exact minimum
the gradient there is zero and such a search returns 0 (flatness.md, pitfall 7). We start each
restart at a uniform random point of the box and take signed-gradient steps projected back onto
the box (the L-inf geometry of the box, as in PGD), keeping the largest loss seen. The result is a
lower bound of the true maximum. Where a coordinate's gradient is exactly zero (a flat region, as
in the rho-flat loss, or a dead ReLU unit) the step goes outward, towards the face the start is
nearer to: along a flat or convex segment the maximum is at an end, and a zero step would stall.
"""

from __future__ import annotations

import time

import torch

from pytest_psa.measure.flatness import _noise
from pytest_psa.measure.flatness._problem import Problem
from pytest_psa.measure.flatness.metric_values import EpsSharpnessResult, Setup


def eps_sharpness(
    problem: Problem,
    *,
    eps: float = 5e-4,
    steps: int = 10,
    restarts: int = 2,
    seed: int,
    scale: torch.Tensor | None = None,
    setup: Setup,
) -> EpsSharpnessResult:
    """Largest loss increase in the box, in Keskar's percent-of-(1+L0) unit."""
    t0 = time.perf_counter()
    gen = _noise.generator(seed)
    w, loss0 = problem.w, problem.loss0
    box = eps * (w.abs() + 1) if scale is None else eps * scale
    step = 2.5 / steps  # fraction of the box per step: enough to cross it from any start
    passes = problem.gradient_passes
    per_restart = []
    for _ in range(restarts):
        d = _noise.uniform_pm1(problem.n_params, gen, w) * box
        best = -float("inf")
        for _ in range(steps):
            loss, grad = problem.loss_and_grad(w + d)
            best = max(best, loss)
            direction = torch.where(grad == 0, d.sign(), grad.sign())
            d = torch.clamp(d + step * box * direction, -box, box)
        best = max(best, problem.evaluate(w + d)[0])
        per_restart.append(best)
    loss_max = max(per_restart)

    def phi(lmax: float) -> float:
        return 100.0 * (lmax - loss0) / (1.0 + loss0)

    return EpsSharpnessResult(
        metric="eps_sharpness", value=phi(loss_max), se=None, unit="100 (Lmax - L0) / (1 + L0)",
        seed=seed, seconds=time.perf_counter() - t0, setup=setup, eps=eps,
        box="eps*(|w|+1)" if scale is None else "eps*s", steps=steps, restarts=restarts,
        loss0=loss0, loss_max=loss_max, restart_values=tuple(phi(v) for v in per_restart),
        gradient_passes=problem.gradient_passes - passes,
    )
