"""PAC-Bayes sigma flatness (Jiang et al. 2020, measures #53 and #61) by root finding.

sigma' is the largest sigma with  D(sigma) = E[L(w + u_sigma)] - L(w) <= target.  The reference
code bisects with fresh Monte Carlo draws at every step, so its comparisons follow noise. Here the
draws z are fixed once (common random numbers; antithetic pairs z, -z) and u_sigma = std(sigma) z,
which makes the estimated D a smooth deterministic function of sigma. Near a minimum D grows like
sigma^2, so log D is close to linear in log sigma: a secant step in log-log space brackets the
crossing in a step or two, and secant steps inside the bracket (Illinois rule) find it.

Precision: the search stops as soon as an evaluated sigma is within `rtol` of the crossing sigma*
of the fixed-draw curve in log sigma, judged by its residual: |log(D(sigma)/target)| / slope <=
rtol, with the slope the secant's d log D / d log sigma (exact for a power law D = c sigma^p). Each
evaluation costs n_samples forward passes, so stopping on the residual saves the evaluations
Brent's method (`solver="brent"`, scipy.optimize.brentq with xtol = rtol, the search before issue
15) spends shrinking its bracket around a point that already meets the tolerance. The two agree
within 2 rtol in log sigma (each is within rtol of sigma*; tests/flatness/test_flatness_speed.py).
The clean loss L(w) is computed once per model (`Problem.loss0`) and shared by every sigma.

The standard error of sigma comes from the delta method: the spread of the per-pair increases at
the root, divided by the local slope of D.

Two targets are in use, and they give different numbers (about 2x apart on the benchmark CNN,
docs/flatness.md): the LPF-SGD repository (Bisla et al.) bounds the increase of the loss, Jiang
et al. 2020 (and nitarshan's code) the change of the 0-1 error. `TARGET_CONVENTIONS` names them;
the name travels with every result (`PacBayesResult.convention`, its `definition()`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable

import torch
from scipy.optimize import brentq

from pytest_psa.errors import PsaUsageError, PsaWarning
from pytest_psa.measure.flatness import _noise
from pytest_psa.measure.flatness._problem import Problem
from pytest_psa.measure.flatness.metric_values import PacBayesResult, Setup

TARGET_TYPES = ("loss", "accuracy")
#: What each target type bounds, and whose convention it is.
TARGET_CONVENTIONS: dict[str, str] = {
    "loss": "loss increase (LPF-SGD repository, Bisla et al.)",
    "accuracy": "0-1 error increase (Jiang et al. 2020)",
}
SOLVERS = ("secant", "brent")  # "brent": the reference (scipy's brentq on the same curve)
LOG_SIGMA_RANGE = (math.log(1e-9), math.log(1e3))
_MAX_BRACKET_STEPS = 30
_BIG = 1e12  # stands in for an infinite / NaN increase


class _Curve:
    """D(sigma) on fixed draws, memoized by log sigma; keeps the per-pair values."""

    def __init__(self, problem: Problem, std: Callable[[float], torch.Tensor | float],
                 zs: list[torch.Tensor], target_type: str) -> None:
        self.problem, self.std, self.zs, self.target_type = problem, std, zs, target_type
        self.points: dict[float, torch.Tensor] = {}

    def pairs(self, t: float) -> torch.Tensor:
        if t not in self.points:
            p, w, s = self.problem, self.problem.w, self.std(math.exp(t))
            vals = []
            for z in self.zs:
                plus, minus = p.evaluate(w + s * z), p.evaluate(w - s * z)
                if self.target_type == "loss":
                    v = (plus[0] + minus[0]) / 2 - p.loss0
                else:  # accuracy drop, 0-1 scale
                    v = p.accuracy0 - (plus[1] + minus[1]) / 2  # type: ignore[operator]
                vals.append(v if math.isfinite(v) else _BIG)
            self.points[t] = torch.tensor(vals, dtype=torch.float64)
        return self.points[t]

    def mean(self, t: float) -> float:
        return float(self.pairs(t).mean())


def _close_enough(d: float, target: float, slope: float, rtol: float | None) -> bool:
    """Whether a point with increase `d` lies within `rtol` (in log sigma) of the crossing, by its residual."""
    return rtol is not None and 0 < d < _BIG and abs(math.log(d / target)) <= rtol * slope


def _bracket(curve: _Curve, t0: float, target: float, slope0: float,
             rtol: float | None = None) -> tuple[float, float] | None:
    """Evaluate until some t_lo < t_hi have D(t_lo) < target <= D(t_hi); None if the range ends.
    With `rtol`, a point already within it of the crossing (`_close_enough`) ends the search as (t, t)."""
    lo_lim, hi_lim = LOG_SIGMA_RANGE
    t = min(max(t0, lo_lim), hi_lim)
    for _ in range(_MAX_BRACKET_STEPS):
        if _close_enough(curve.mean(t), target, _slope_at(curve, t, slope0), rtol):
            return t, t
        pts = sorted((s, curve.mean(s)) for s in curve.points)
        above = [s for s, d in pts if d >= target]
        if above:
            below = [s for s, d in pts if s < above[0]]
            if below:
                return below[-1], above[0]
            ref = above[0]  # crossing lies lower still
        else:
            ref = pts[-1][0]
        d_ref = curve.mean(ref)
        pos = [(s, d) for s, d in pts if 0 < d < _BIG]
        slope = slope0
        near = sorted(pos, key=lambda p: abs(p[0] - ref))[:2]
        if len(near) == 2 and near[0][0] != near[1][0]:
            slope = (math.log(near[0][1]) - math.log(near[1][1])) / (near[0][0] - near[1][0])
        slope = min(max(slope, 0.5), 4.0) if math.isfinite(slope) else slope0
        if d_ref <= 0:
            step = math.log(10.0)  # nothing measurable yet: up a decade
        else:
            if rtol is not None:  # aim at the crossing itself: a hit within rtol ends the search
                aim = target
            else:  # the reference overshoots a little to bracket
                aim = 1.25 * target if d_ref < target else 0.8 * target
            step = math.log(aim / min(d_ref, _BIG)) / slope
            step = math.copysign(min(max(abs(step), math.log(1.05)), math.log(100.0)), step)
        t_new = min(max(ref + step, lo_lim), hi_lim)
        if t_new in curve.points:
            return None  # hit the edge of the searched range
        t = t_new
    return None


def _secant(curve: _Curve, bracket: tuple[float, float], target: float, rtol: float, slope0: float) -> float:
    """The crossing in `bracket` by secant steps on h = log(D / target) against log sigma (the Illinois
    rule halves a stale end's h so the bracket shrinks from both sides); stops at the first point
    that is `_close_enough`, or when the bracket is narrower than 2 rtol (then its secant root)."""
    def h(t: float) -> float:
        return math.log(min(max(curve.mean(t), target * 1e-12), _BIG) / target)

    a, b = bracket
    if a == b:
        return a
    ha, hb = h(a), h(b)  # ha < 0 <= hb
    fa, fb = ha, hb  # the values the interpolation uses (Illinois-scaled)
    side = 0
    for _ in range(100):
        slope = min(max((hb - ha) / (b - a), 0.5), 4.0)  # the true secant slope, as in `_bracket`
        for t, ht in ((a, ha), (b, hb)):
            if abs(ht) <= rtol * slope:
                return t
        t = a - fa * (b - a) / (fb - fa)
        if b - a <= 2 * rtol:
            return t
        t = min(max(t, a + 1e-3 * (b - a)), b - 1e-3 * (b - a))  # strictly inside: the bracket shrinks
        ht = h(t)
        if ht < 0:
            a, ha, fa = t, ht, ht
            if side == -1:
                fb /= 2
            side = -1
        else:
            b, hb, fb = t, ht, ht
            if side == 1:
                fa /= 2
            side = 1
    return a - fa * (b - a) / (fb - fa)


def _slope_at(curve: _Curve, t_root: float, default: float) -> float:
    """Local d log D / d log sigma from evaluated points at least 5 % of sigma away on each side."""
    pos = sorted((s, curve.mean(s)) for s in curve.points if 0 < curve.mean(s) < _BIG)
    gap = math.log(1.05)
    lo = [p for p in pos if p[0] <= t_root - gap] or [p for p in pos if p[0] < t_root]
    hi = [p for p in pos if p[0] >= t_root + gap] or [p for p in pos if p[0] > t_root]
    if not lo or not hi:
        return default
    (ta, da), (tb, db) = lo[-1], hi[0]
    slope = (math.log(db) - math.log(da)) / (tb - ta)
    return slope if math.isfinite(slope) and slope > 0 else default


def pac_bayes(
    problem: Problem,
    *,
    target: float = 0.1,
    target_type: str = "loss",
    magnitude: bool = False,
    mag_eps: float = 1e-3,
    n_samples: int = 16,
    seed: int,
    scale: torch.Tensor | None = None,
    sigma0: float | None = None,
    rtol: float = 1e-3,
    setup: Setup,
    solver: str = "secant",
) -> PacBayesResult:
    """Find sigma' (and 1/sigma'^2) for the isotropic or the magnitude-aware noise, within `rtol` in log
    sigma of the fixed-draw curve's crossing. `solver` "brent" is the search before issue 15 (the reference)."""
    t_start = time.perf_counter()
    if target_type not in TARGET_TYPES:
        raise PsaUsageError(f"pac_bayes: unknown target_type {target_type!r}", fix=f"use one of {TARGET_TYPES}")
    if solver not in SOLVERS:
        raise PsaUsageError(f"pac_bayes: unknown solver {solver!r}", fix=f"use one of {SOLVERS}")
    if target_type == "accuracy" and problem.accuracy0 is None:
        raise PsaUsageError(
            "pac_bayes: target_type='accuracy' needs a classifier's output",
            observed="the model's output and targets do not give an accuracy",
            fix="use target_type='loss', or return (N, C) logits with integer labels",
        )
    gen = _noise.generator(seed)
    w = problem.w
    zs = [_noise.gaussian(problem.n_params, gen, w) for _ in range(n_samples // 2)]
    if magnitude:
        w2, e2 = w * w, mag_eps**2
        std: Callable[[float], torch.Tensor | float] = lambda s: torch.sqrt(s * s * w2 + e2)  # noqa: E731
    elif scale is not None:
        std = lambda s: s * scale  # noqa: E731
    else:
        std = lambda s: s  # noqa: E731
    curve = _Curve(problem, std, zs, target_type)
    slope0 = 2.0 if target_type == "loss" else 1.0  # quadratic loss rise; linear accuracy drop
    if sigma0 is None:
        sigma0 = 0.01 if not magnitude and scale is None else 0.05
    bracket = _bracket(curve, math.log(sigma0), target, slope0, rtol if solver == "secant" else None)
    if bracket is None:
        pts = sorted(curve.points)
        t_root = pts[0] if curve.mean(pts[0]) >= target else pts[-1]
        bracketed = False
        warnings.warn(
            f"pac_bayes: no sigma in [{math.exp(LOG_SIGMA_RANGE[0]):.0e}, {math.exp(LOG_SIGMA_RANGE[1]):.0e}] "
            f"crosses the target {target} ({target_type}); sigma is reported at the edge as a bound",
            PsaWarning, stacklevel=3,
        )
    elif solver == "secant":
        t_root, bracketed = _secant(curve, bracket, target, rtol, slope0), True
    else:
        h = lambda t: math.log(max(curve.mean(t), target * 1e-12) / target)  # noqa: E731
        t_root = float(brentq(h, bracket[0], bracket[1], xtol=rtol, rtol=1e-12, maxiter=100))
        bracketed = True
    t_near = min(curve.points, key=lambda s: abs(s - t_root))
    vals = curve.pairs(t_near)
    d_near = float(vals.mean())
    se_d = float(vals.std(unbiased=True)) / math.sqrt(len(vals)) if len(vals) > 1 else math.nan
    if d_near > 0:
        se_d *= target / d_near  # the spread at the root, where D = target
    slope = _slope_at(curve, t_root, slope0)
    se_log = se_d / (target * slope)
    sigma = math.exp(t_root)
    value = 1.0 / sigma**2
    return PacBayesResult(
        metric="pac_bayes_mag" if magnitude else "pac_bayes", value=value, se=2 * value * se_log,
        unit="1/sigma^2", seed=seed, seconds=time.perf_counter() - t_start, setup=setup,
        sigma=sigma, sigma_se=sigma * se_log, target=target, target_type=target_type,
        convention=TARGET_CONVENTIONS[target_type],
        magnitude=magnitude, mag_eps=mag_eps if magnitude else 0.0, n_samples=2 * len(zs),
        evaluations=len(curve.points), forward_passes=2 * len(zs) * len(curve.points),
        bracketed=bracketed, rtol=rtol, slope=slope, loss0=problem.loss0, accuracy0=problem.accuracy0,
    )
