"""Confidence bounds for a mean of per-image fractions in [0, 1].

F_N(γ) pools K draws of each of N images, and draws of one image are correlated (a hard image
is far under every draw), so images are the sampling unit: x_i = fraction of image i's draws
within γ, i.i.d. in [0, 1] with mean F. Bounds come from the betting confidence sequences of
Waudby-Smith & Ramdas (JRSS-B 2024, "Estimating means of bounded random variables by
betting"), predictable plug-in bets: valid at every sample size for ANY distribution on
[0, 1] (no normal approximation, no estimated design effect), and as tight as the variance of
the x_i allows — nearly independent draws give nearly binomial widths, fully correlated
draws the width of N single trials. A normal or design-effect interval is invalid when few
images have hits, which is exactly where a PSA check decides.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np

_GRID = 1025  # coarse grid over [0, 1], then bisection to _TOL
_TOL = 1e-6
_ORDER_SEED = 20250530


@dataclass(frozen=True)
class ProportionInterval:
    """An estimate with its confidence bounds (each side at its own level) and the sample behind it.

    It unpacks, indexes and measures as the pair ``(low, high)``, as scipy's ``ConfidenceInterval``
    does (``low, high = result.interval(0.05)``); the other fields stay attributes.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n_draws: int
    n_units: int

    def __iter__(self) -> Iterator[float]:
        yield self.low
        yield self.high

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> float:
        return (self.low, self.high)[index]

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def mean_bounds(x: np.ndarray, alpha: float, side: str = "two-sided") -> tuple[float, float]:
    """Bounds for the mean of i.i.d. values in [0, 1]: two-sided at 1 − alpha, or one side at alpha."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    if x.size == 0:
        return 0.0, 1.0
    a = alpha / 2 if side == "two-sided" else alpha
    low = 0.0 if side == "upper" else 1.0 - _upper(1.0 - x, a)
    high = 1.0 if side == "lower" else _upper(x, a)
    return low, high


def proportion_interval(hits: np.ndarray, trials: np.ndarray, alpha: float,
                        side: str = "two-sided") -> ProportionInterval:
    """Interval for the mean over units of hits[i] / trials[i]; units with no trials are left out."""
    keep = trials > 0
    x = hits[keep] / trials[keep]
    est = float(x.mean()) if x.size else float("nan")
    low, high = mean_bounds(x, alpha, side)
    return ProportionInterval(est, low, high, 1 - alpha, int(trials.sum()), int(keep.sum()))


def _upper(x: np.ndarray, alpha: float) -> float:
    """Smallest m such that the bettor against "mean >= m" has reached 1 / alpha: the upper bound."""
    n = x.size
    # The bets assume units in random order; audited images come sorted (often by class), so bet
    # over a fixed permutation that does not depend on the values.
    x = x[np.random.Generator(np.random.PCG64(_ORDER_SEED)).permutation(n)]
    threshold = math.log(1.0 / alpha)
    # predictable plug-in bets (WSR eq. 26, fixed-n tuning): lambda_i uses only x_1 .. x_{i-1}
    idx = np.arange(1, n + 1, dtype=np.float64)
    mu_hat = (0.5 + np.cumsum(x)) / (idx + 1)
    sq = np.cumsum((x - mu_hat) ** 2)
    var_prev = (0.25 + np.concatenate(([0.0], sq[:-1]))) / idx
    lam = np.sqrt(2.0 * threshold / (n * var_prev))

    def rejected(m: np.ndarray) -> np.ndarray:
        # capital of betting that x falls below m; bets capped at 3/4 of the size that could ruin it
        bet = np.minimum(lam[None, :], 0.75 / np.maximum(1.0 - m[:, None], 1e-12))
        log_cap = np.cumsum(np.log1p(-bet * (x[None, :] - m[:, None])), axis=1)
        return cast(np.ndarray, log_cap.max(axis=1) >= threshold)  # numpy types ndarray.max(axis=...) as Any

    grid = np.linspace(0.0, 1.0, _GRID)
    rej = rejected(grid)
    first = int(np.argmax(rej)) if rej.any() else _GRID
    if first >= _GRID:
        return 1.0
    if first == 0:
        return 0.0
    lo, hi = grid[first - 1], grid[first]
    while hi - lo > _TOL:
        mid = 0.5 * (lo + hi)
        if rejected(np.array([mid]))[0]:
            hi = mid
        else:
            lo = mid
    return float(hi)
