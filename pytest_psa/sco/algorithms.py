"""GD, SA-GD and SAM with the paper's exact update rules (note §2), and their iterates.

    GD:     w_{t+1} = w_t − η ∇F_S(w_t)
    SA-GD:  w_{t+1} = w_t − η ∇F_S(w_t + v_t),  v_t ∈ argmax_{‖v‖≤r} F_S(w_t + v)   (an `Oracle` picks v_t)
    SAM:    w_{t+1} = w_t − η ∇F_S(w_t + r ∇F_S(w_t)/‖∇F_S(w_t)‖),   with 0/0 := 0

No projection: on the paper's instances the iterates stay in the unit ball (`Trajectory.max_norm` shows it).

Iterate indexing: T updates turn w_1 into w_2, …, w_{T+1}. `last` is w_{T+1}; `average` is the mean of the T
iterates the updates produced (w_2 … w_{T+1}), the convention behind the note's simulated numbers;
`paper_average` is the paper's ŵ = (1/T) Σ_{t=1}^T w_t (used by the upper bounds of Theorems 2 and 5);
`suffix_average(τ)` is the mean of w_τ … w_{T+1}. Iterates are kept as a sparse matrix: on the lower-bound
instances each update touches a handful of the 2^n·T coordinates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from pytest_psa.errors import PsaUsageError
from pytest_psa.sco._checks import nonneg_float, positive_float, positive_int
from pytest_psa.sco.losses import Array

# Below the smallest normal float64. Chains of tiny factors (Theorem 7's δ_j products) breed subnormal
# numbers, and x86 arithmetic on them is ~100x slower; they are 10^300 below anything measured, so they
# are flushed to 0 in every recorded iterate and in SAM's ascent direction.
_TINY = np.finfo(np.float64).tiny


def _flush(x: Array) -> Array:
    x[np.abs(x) < _TINY] = 0.0
    return x


def norm(x: Array) -> float:
    """‖x‖ without BLAS: OpenBLAS threads long dot products, which crawl on a busy shared CPU."""
    return float(np.sqrt(np.square(x).sum()))


# (w_t, t) -> v_t with ‖v_t‖ ≤ r: the tie-breaking maximizer of SA-GD's inner problem.
Oracle = Callable[[Array, int], Array]


class Problem(Protocol):
    """What the algorithms need from an empirical risk F_S."""

    @property
    def dim(self) -> int: ...

    def empirical(self, w: Array) -> float: ...

    def grad(self, w: Array) -> Array: ...


@dataclass(frozen=True, eq=False)
class Trajectory:
    """The iterates w_1 … w_{T+1} of one run, with F_S along the way.

    train_loss[t−1] = F_S(w_t) for t = 1..T+1; ascent_loss[t−1] = F_S(w_t + v_t) for t = 1..T (for SA-GD
    with an exact oracle this is F_S^r(w_t); for GD, v_t = 0).
    """

    algorithm: str
    iterates: sp.csr_matrix
    train_loss: Array
    ascent_loss: Array
    eta: float
    r: float

    @property
    def T(self) -> int:
        return int(self.iterates.shape[0]) - 1

    def iterate(self, t: int) -> Array:
        """w_t, 1-based as in the paper."""
        if not 1 <= t <= self.T + 1:
            raise PsaUsageError("iterate index out of range", observed=t, fix=f"pass 1 <= t <= {self.T + 1}")
        return cast(Array, self.iterates.getrow(t - 1).toarray().ravel())  # scipy.sparse is untyped

    @property
    def last(self) -> Array:
        return self.iterate(self.T + 1)

    def suffix_average(self, tau: int) -> Array:
        """ŵ_τ = mean of w_τ … w_{T+1}."""
        if not 1 <= tau <= self.T + 1:
            raise PsaUsageError("suffix start out of range", observed=tau, fix=f"pass 1 <= tau <= {self.T + 1}")
        rows = self.iterates[tau - 1 :]
        return cast(Array, np.asarray(rows.sum(axis=0)).ravel() / rows.shape[0])  # scipy.sparse is untyped

    @property
    def average(self) -> Array:
        return self.suffix_average(2)

    @property
    def paper_average(self) -> Array:
        return np.asarray(self.iterates[: self.T].sum(axis=0)).ravel() / self.T

    @property
    def max_norm(self) -> float:
        sq = np.asarray(self.iterates.multiply(self.iterates).sum(axis=1)).ravel()
        return float(np.sqrt(sq.max()))

    def summary(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "T": self.T, "eta": self.eta, "r": self.r, "max_norm": self.max_norm}


class _Recorder:
    """Collects iterates as sparse rows (dense storage would be T·d floats)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.indices: list[NDArray[np.intp]] = []
        self.values: list[Array] = []

    def add(self, w: Array) -> None:
        """Record w, flushing its subnormal entries to 0 in place (one pass over w for both)."""
        nz = np.flatnonzero(w)
        small = np.abs(w[nz]) < _TINY
        if small.any():
            w[nz[small]] = 0.0
            nz = nz[~small]
        self.indices.append(nz)
        self.values.append(w[nz].copy())

    def matrix(self) -> sp.csr_matrix:
        indptr = np.concatenate([[0], np.cumsum([len(i) for i in self.indices])])
        return sp.csr_matrix(
            (np.concatenate(self.values), np.concatenate(self.indices), indptr), shape=(len(self.indices), self.dim)
        )


def _start(problem: Problem, w1: Array | None) -> Array:
    w = np.zeros(problem.dim) if w1 is None else np.array(w1, dtype=np.float64).reshape(-1)
    if w.shape != (problem.dim,) or not np.all(np.isfinite(w)):
        raise PsaUsageError("w1 must be a finite vector of the problem's dimension", observed=w.shape, fix=f"pass length {problem.dim}")
    return w


def _value_and_grad(problem: Problem) -> Callable[[Array], tuple[float, Array]]:
    """The problem's fused (F_S, ∇F_S) when it has one (it shares the per-sample norms), else two calls."""
    fused = getattr(problem, "value_and_grad", None)
    return fused if fused is not None else (lambda w: (problem.empirical(w), problem.grad(w)))


def _run(problem: Problem, w1: Array | None, T: int, eta: float, r: float, name: str, ascent: Callable[[Array, int], Array]) -> Trajectory:
    positive_int("T", T)
    w = _start(problem, w1)
    value_and_grad = _value_and_grad(problem)
    rec = _Recorder(problem.dim)
    train, asc = np.empty(T + 1), np.empty(T)
    for t in range(1, T + 1):
        rec.add(w)
        v = ascent(w, t)
        if np.any(v):
            train[t - 1] = problem.empirical(w)
            asc[t - 1], g = value_and_grad(w + v)
        else:
            train[t - 1], g = value_and_grad(w)
            asc[t - 1] = train[t - 1]
        w = w - eta * g  # flushed by the recorder
    rec.add(w)
    train[T] = problem.empirical(w)
    return Trajectory(name, rec.matrix(), train, asc, eta, r)


def gd(problem: Problem, *, eta: float, T: int, w1: Array | None = None) -> Trajectory:
    """Full-batch gradient descent from w1 (default 0) for T steps."""
    zero = np.zeros(problem.dim)
    return _run(problem, w1, T, positive_float("eta", eta), 0.0, "GD", lambda w, t: zero)


def sa_gd(problem: Problem, *, eta: float, r: float, T: int, oracle: Oracle, w1: Array | None = None) -> Trajectory:
    """SA-GD: the ascent step v_t comes from `oracle`, which must return an exact maximizer with ‖v_t‖ ≤ r.

    The oracle is the swappable tie-breaking rule; the norm is checked here, exactness is the oracle's
    contract (`certify` checks it against a problem's `sar_upper`).
    """
    eta, r = positive_float("eta", eta), nonneg_float("r", r)

    def ascent(w: Array, t: int) -> Array:
        v = np.asarray(oracle(w, t), dtype=np.float64).reshape(-1)
        if v.shape != (problem.dim,) or norm(v) > r * (1 + 1e-12):
            raise PsaUsageError("the SA-GD oracle returned a step outside the r-ball", observed=(v.shape, norm(v), r))
        return v

    return _run(problem, w1, T, eta, r, "SA-GD", ascent)


def sam_ascent(problem: Problem, w: Array, r: float) -> Array:
    """SAM's ascent step r·∇F_S(w)/‖∇F_S(w)‖, with 0/0 := 0 (a zero gradient makes the step a no-op)."""
    g = _flush(problem.grad(w))
    size = norm(g)
    return np.zeros_like(g) if size == 0.0 else (r / size) * g


def sam(problem: Problem, *, eta: float, r: float, T: int, w1: Array | None = None) -> Trajectory:
    """SAM with the normalized ascent step and the 0/0 := 0 convention."""
    eta, r = positive_float("eta", eta), nonneg_float("r", r)
    return _run(problem, w1, T, eta, r, "SAM", lambda w, t: sam_ascent(problem, w, r))


def certify(problem: Any, traj: Trajectory, *, rtol: float = 1e-12) -> float:
    """Largest relative gap between F_S(w_t + v_t) and the problem's upper bound on F_S^r(w_t).

    0 means every v_t was a certified exact maximizer. Needs `problem.sar_upper(w, r)`.
    """
    gaps = []
    for t in range(1, traj.T + 1):
        upper = problem.sar_upper(traj.iterate(t), traj.r)
        gaps.append((upper - traj.ascent_loss[t - 1]) / max(upper, rtol))
    return float(max(gaps))
