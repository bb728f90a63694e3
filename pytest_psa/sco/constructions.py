"""The instances of Theorems 1, 3, 6 and 7 (note §4), drawn with their bad events.

Each lower bound holds on a "bad" training set S: some coordinate/block never seen by the n samples
(Thm 1, Thm 7: exactly one) or seen with the same sign by all of them (Thm 3). The builders draw S from
an explicit seed, redraw until the bad event holds, and say how many draws that took; `bad_event_rate`
measures the event's frequency next to its exact probability.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import NDArray

from pytest_psa.errors import PsaUsageError
from pytest_psa.sco._checks import nonneg_float, positive_int
from pytest_psa.sco.algorithms import Oracle
from pytest_psa.sco.chain import ChainTriggerLoss
from pytest_psa.sco.losses import Array, MaskedNormLoss
from pytest_psa.sco.testbeds import Hinge1D

Theorem = Literal["thm1", "thm3", "thm7"]


def bad_event_probability(theorem: Theorem, n: int) -> float:
    """Exact P(bad event) for n samples over B = 2^n fair coins per sample.

    A block is "bad" when all n coins agree on the bad value: probability q = 2^-n, independently per block.
    Theorems 1 and 3 need at least one bad block, 1 − (1−q)^B ≥ 1 − 1/e; Theorem 7 exactly one, (1−q)^(B−1) ≈ 1/e.
    """
    q, B = 2.0**-n, 2**n
    if theorem == "thm7":
        return float(B * q * (1 - q) ** (B - 1))
    if theorem in ("thm1", "thm3"):
        return float(1 - (1 - q) ** B)
    raise PsaUsageError("unknown theorem", observed=theorem, fix="pass 'thm1', 'thm3' or 'thm7'")


def _bad_blocks(coins: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Blocks whose coin is 0 for every sample (unseen in Thms 1/7; all z = +1 in Thm 3, see `thm3_instance`)."""
    return np.flatnonzero(~coins.any(axis=0))


def _draw(n: int, rng: np.random.Generator) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    coins = rng.random((n, 2**n)) < 0.5
    return coins, _bad_blocks(coins)


def _is_bad(theorem: Theorem, bad: NDArray[np.int64]) -> bool:
    return bad.size == 1 if theorem == "thm7" else bad.size >= 1


@dataclass(frozen=True)
class BadEventRate:
    theorem: str
    n: int
    draws: int
    observed: float
    exact: float

    @property
    def stderr(self) -> float:
        return float(np.sqrt(self.exact * (1 - self.exact) / self.draws))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stderr": self.stderr}


def bad_event_rate(theorem: Theorem, n: int, *, draws: int = 2000, seed: int = 0) -> BadEventRate:
    """Frequency of the bad event over `draws` fresh training sets, next to its exact probability."""
    positive_int("n", n)
    rng = np.random.default_rng(seed)
    hits = sum(_is_bad(theorem, _draw(n, rng)[1]) for _ in range(positive_int("draws", draws)))
    return BadEventRate(theorem, n, draws, hits / draws, bad_event_probability(theorem, n))


def _sample_bad(theorem: Theorem, n: int, seed: int, max_tries: int) -> tuple[NDArray[np.bool_], NDArray[np.int64], int]:
    positive_int("n", n)
    if n > 14:
        raise PsaUsageError("n is too large: the dimension grows as 2^n", observed=n, fix="use n <= 14 (the note uses 5..10)")
    rng = np.random.default_rng(seed)
    for tries in range(1, positive_int("max_tries", max_tries) + 1):
        coins, bad = _draw(n, rng)
        if _is_bad(theorem, bad):
            return coins, bad, tries
    raise PsaUsageError(f"no bad training set in {max_tries} draws", observed=(theorem, n, seed), fix="raise max_tries or change the seed")


# ---- Theorem 1: SA-ERM ----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Thm1Instance:
    """f(w,z) = ½[√(Σ_i z(i)w(i)² + w(d)²) − ρ]_+², z ∈ {0,1}^{2^n} uniform, d = 2^n + 1, on a bad S."""

    loss: MaskedNormLoss
    unseen: NDArray[np.int64]
    tries: int
    seed: int

    @property
    def I(self) -> int:  # noqa: E743 - the paper's name
        return int(self.unseen[0])

    def flat_erm(self) -> Array:
        """w^(1) = e_I: an ERM that minimizes F_S^r for every r, with population risk ¼(1−ρ)²."""
        w = np.zeros(self.loss.dim)
        w[self.I] = 1.0
        return w

    def sharp_erm(self) -> Array:
        """w^(2) = ρ·e_d: an ERM with F_S^δ = δ²/2 (as sharp as 1-smoothness allows) and population risk 0."""
        w = np.zeros(self.loss.dim)
        w[-1] = self.loss.rho
        return w

    def sar_witness(self, w: Array, r: float) -> Array:
        """v = sign(w(d))·r·e_d (sign 0 := +1): F_S(w+v) ≥ ½[r−ρ]_+², the SAER lower bound for every w."""
        v = np.zeros(self.loss.dim)
        v[-1] = r if w[-1] >= 0 else -r
        return v


def thm1_instance(n: int, rho: float, *, seed: int, max_tries: int = 1000) -> Thm1Instance:
    rho = nonneg_float("rho", rho, upper=0.5)
    coins, bad, tries = _sample_bad("thm1", n, seed, max_tries)
    return Thm1Instance(MaskedNormLoss(coins, block=1, rho=rho, on=(True, True), off=(False, False)), bad, tries, seed)


# ---- Theorem 3: SA-GD -----------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Thm3Instance:
    """f(w,z) = ½[√(Σ_i Σ_j [z(i)·w^(i)(j)]_+² + w(d)²) − ρ]_+², z ∈ {−1,1}^{2^n}, d = 2^n·T + 1.

    Coins here are [z(i) = −1], so the "bad" blocks (coin 0 for every sample) are those with z(i) = +1
    throughout S: training sees only their positive parts, and SA-GD's adversarial oracle pushes them negative.
    """

    loss: MaskedNormLoss
    all_plus: NDArray[np.int64]
    tries: int
    seed: int

    @property
    def I(self) -> int:  # noqa: E743
        return int(self.all_plus[0])

    @property
    def T(self) -> int:
        return self.loss.block

    def coordinate(self, block: int, j: int) -> int:
        """Flat index of coordinate j (1-based) of block `block`."""
        return block * self.T + (j - 1)


def thm3_instance(n: int, T: int, rho: float, *, seed: int, max_tries: int = 1000) -> Thm3Instance:
    rho = nonneg_float("rho", rho)
    coins, bad, tries = _sample_bad("thm3", n, seed, max_tries)
    # coin = [z = −1]: coin 1 shows [−w]_+, coin 0 (z = +1) shows [w]_+.
    loss = MaskedNormLoss(coins, block=positive_int("T", T), rho=rho, on=(False, True), off=(True, False))
    return Thm3Instance(loss, bad, tries, seed)


def adversarial_oracle(inst: Thm3Instance, r: float) -> Oracle:
    """The proof's tie-breaking: v_t = r·e_(I,t), coordinate t of the all-+1 block I (App. B.2, factor r restored)."""

    def oracle(w: Array, t: int) -> Array:
        v = np.zeros(inst.loss.dim)
        v[inst.coordinate(inst.I, (t - 1) % inst.T + 1)] = r
        return v

    return oracle


def trigger_oracle(inst: Thm3Instance, r: float) -> Oracle:
    """Another exact maximizer: v_t = sign(w(d))·r·e_d (sign 0 := +1). It never touches the blocks."""

    def oracle(w: Array, t: int) -> Array:
        v = np.zeros(inst.loss.dim)
        v[-1] = r if w[-1] >= 0 else -r
        return v

    return oracle


def random_oracle(inst: Thm3Instance, r: float, *, seed: int) -> Oracle:
    """Uniform over the coordinate-direction maximizers: r·e_(i,j) with i all-+1 and w^(i)(j) = 0, and ±r·e_d.

    All candidates in one block share a value, so one representative per block is evaluated and the pick is
    weighted by the block's number of free coordinates. Candidates are kept when they attain the maximum.
    """
    rng = np.random.default_rng(seed)
    loss = inst.loss

    def oracle(w: Array, t: int) -> Array:
        W, _ = loss.blocks(w)
        options: list[tuple[Array, int, NDArray[np.intp]]] = []  # (representative v, weight, free coordinates)
        for i in inst.all_plus:
            free = np.flatnonzero(W[i] == 0)
            if free.size:
                v = np.zeros(loss.dim)
                v[inst.coordinate(int(i), int(free[0]) + 1)] = r
                options.append((v, free.size, free + int(i) * inst.T))
        for s in (r, -r):
            v = np.zeros(loss.dim)
            v[-1] = s
            options.append((v, 1, np.array([loss.dim - 1])))
        values = np.array([loss.empirical(w + v) for v, _, _ in options])
        keep = [k for k in range(len(options)) if values[k] >= values.max() * (1 - 1e-12)]
        weights = np.array([options[k][1] for k in keep], dtype=np.float64)
        v, _, coords = options[keep[int(rng.choice(len(keep), p=weights / weights.sum()))]]
        out = np.zeros(loss.dim)
        out[coords[int(rng.integers(coords.size))]] = v[v != 0][0]
        return out

    return oracle


def thm3_zero_risk_rho(eta: float, r: float, T: int) -> float:
    """ρ at or above which the adversarial run has zero population risk: ρ ≥ η(r−ρ)√T ⟺ ρ ≥ rη√T/(1+η√T)."""
    s = eta * np.sqrt(T)
    return float(r * s / (1 + s))


def thm3_hypothesis_rho(eta: float, r: float, T: int) -> float:
    """Theorem 3's hypothesis ρ < r(1 − 3/(3+η√T)) ⟺ ρ < η(r−ρ)√T/3."""
    s = eta * np.sqrt(T)
    return float(r * s / (3 + s))


def thm3_prediction(eta: float, r: float, rho: float, T: int) -> dict[str, float]:
    """Closed forms for the adversarial run from w_1 = 0 (block I only; F = ¼[‖block I‖ − ρ]_+²).

    last: w_{T+1} has block I = −η(r−ρ)·1, so F = ¼[η(r−ρ)√T − ρ]_+². average (of w_2..w_{T+1}): coordinate j
    equals −η(r−ρ)(T+1−j)/T, so ‖·‖² = η²(r−ρ)² Σ_{k≤T} k²/T². F_S^r(w_t) = ½(r−ρ)_+² and F_S(w_t) = 0 throughout.
    """
    step = eta * max(r - rho, 0.0)
    k = np.arange(1, T + 1, dtype=np.float64)
    avg_norm = step * float(np.sqrt((k**2).sum())) / T
    return {
        "train": 0.0,
        "sar": 0.5 * max(r - rho, 0.0) ** 2,
        "pop_last": 0.25 * max(step * np.sqrt(T) - rho, 0.0) ** 2,
        "pop_average": 0.25 * max(avg_norm - rho, 0.0) ** 2,
        "x": step**2 * T,  # η²(r−ρ)²T, the theorem's rate
    }


# ---- Theorem 6: SAM stays at a sharp minimum -------------------------------------------------------
def thm6_instance() -> Hinge1D:
    """f(w) = ½·max(0, w)² on [−1, 1], started at the sharp minimum w_1 = 0; w⋆ = −½ is ½-flat."""
    return Hinge1D()


# ---- Theorem 7: SAM ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Thm7Instance:
    """Theorem 7's f = f_1 + f_2 + f_3 on a training set with exactly one unseen block I."""

    loss: ChainTriggerLoss
    unseen: NDArray[np.int64]
    tries: int
    seed: int

    @property
    def I(self) -> int:  # noqa: E743
        return int(self.unseen[0])

    def w_star(self) -> Array:
        """w⋆ = −(λ/2)·e_d, a population minimizer: F(w⋆) = 0."""
        w = np.zeros(self.loss.dim)
        w[-1] = -self.loss.lam / 2
        return w

    def block_I(self, w: Array) -> Array:
        return cast(Array, self.loss.blocks(w)[0][self.I].copy())  # numpy types ndarray.copy() as Any


def thm7_instance(n: int, T: int, *, eta: float, r: float, deltas: float | Array = 0.03, seed: int, max_tries: int = 1000) -> Thm7Instance:
    # coins are z(i) ∈ {0, 1} directly; bad = exactly one block with z(i) = 0 for every sample.
    coins, bad, tries = _sample_bad("thm7", n, seed, max_tries)
    T = positive_int("T", T)
    loss = ChainTriggerLoss(coins, block=T, eta=eta, r=r, deltas=np.broadcast_to(np.asarray(deltas, dtype=np.float64), (max(T - 1, 1),)))
    return Thm7Instance(loss, bad, tries, seed)
