"""Hessian spectrum summaries from Hessian-vector products: top eigenvalue and trace."""

from __future__ import annotations

import math
import time

import torch

from pytest_psa.measure.flatness import _noise
from pytest_psa.measure.flatness.hvp import HessianOperator
from pytest_psa.measure.flatness.metric_values import HessianTopResult, HessianTraceResult, Setup


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()))


def hessian_top(
    op: HessianOperator,
    *,
    max_iter: int = 100,
    tol: float = 1e-3,
    seed: int,
    scale: torch.Tensor | None = None,
    setup: Setup,
) -> HessianTopResult:
    """Power iteration: v <- Hv/||Hv||, lambda = v.Hv; stop when lambda changes by < tol (relative).

    The defaults are PyHessian's rule (tol 1e-3, at most 100 iterations). A value that hit `max_iter`
    first has ``converged=False`` and a `caveat()`, which the flatness verdicts quote.
    """
    t0 = time.perf_counter()
    w = op.problem.w
    v = _noise.gaussian(op.problem.n_params, _noise.generator(seed), w)
    v = v / v.norm()
    hvps = op.products
    lam, prev, rel, residual, it, converged = 0.0, None, math.inf, math.inf, 0, False
    for it in range(1, max_iter + 1):
        hv = op.matvec(v, scale=scale)
        lam = _dot(v, hv)
        residual = float((hv.double() - lam * v.double()).norm())
        if prev is not None:
            rel = abs(lam - prev) / max(abs(prev), 1e-30)
        prev = lam
        norm = hv.norm()
        if residual <= 1e-12 * max(abs(lam), 1e-30) or float(norm) == 0.0:
            converged = True  # v is an eigenvector (or H v = 0) to working precision
            break
        v = hv / norm
        if rel < tol:
            converged = True
            break
    return HessianTopResult(
        metric="hessian_top", value=lam, se=None, unit="eigenvalue of the loss Hessian", seed=seed,
        seconds=time.perf_counter() - t0, setup=setup, residual=residual, iterations=it,
        converged=converged, tol=tol, max_iter=max_iter, rel_change=rel, hvps=op.products - hvps,
    )


def hessian_trace(
    op: HessianOperator,
    *,
    n_samples: int = 10,
    seed: int,
    scale: torch.Tensor | None = None,
    setup: Setup,
) -> HessianTraceResult:
    """Hutchinson: tr(H) = E[v.Hv] for Rademacher v; all probes share one pass over the chunks."""
    t0 = time.perf_counter()
    gen = _noise.generator(seed)
    w = op.problem.w
    vs = [_noise.rademacher(op.problem.n_params, gen, w) for _ in range(n_samples)]
    hvps = op.products
    samples = torch.tensor([_dot(v, hv) for v, hv in zip(vs, op.matmat(vs, scale=scale))], dtype=torch.float64)
    se = float(samples.std(unbiased=True)) / math.sqrt(n_samples) if n_samples > 1 else math.nan
    return HessianTraceResult(
        metric="hessian_trace", value=float(samples.mean()), se=se, unit="trace of the loss Hessian",
        seed=seed, seconds=time.perf_counter() - t0, setup=setup, n_samples=n_samples,
        hvps=op.products - hvps,
    )
