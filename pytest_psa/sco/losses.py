"""The ρ-flat convex losses of the note (§4) and their empirical, population and sharpness-aware risks.

Everything is built on h(x) = ½·max(x − ρ, 0)², which is 1-smooth and ρ-flat. `MaskedNormLoss`
composes h with the norm of a sample-masked copy of w:

    f(w, z) = h(‖u_z(w)‖),   u_z(w) = (masked positive/negative parts of w's blocks, w(d)).

w is laid out as B blocks of length T followed by one extra coordinate w(d), which every sample sees.
A sample is one fair coin per block; coin 1 shows the block's parts named by `on`, coin 0 those named
by `off`. This one class covers Theorem 1 (T = 1, coin z(i) ∈ {0,1} multiplies w(i)²) and Theorem 3
(coin z(i) = +1 shows [w]_+, z(i) = −1 shows [−w]_+).

All arithmetic is blockwise: an evaluation costs O(d + n·B), never O(n·d), so d = 2^n·T + 1 in the
tens of thousands runs in microseconds per step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray

from pytest_psa.errors import PsaUsageError
from pytest_psa.sco._checks import nonneg_float, positive_int

if TYPE_CHECKING:  # torch is only needed by the nn.Module wrapper
    import torch

Array = NDArray[np.float64]

# Above this many blocks whose coin matters, the population risk switches from enumeration to Monte Carlo.
MAX_EXACT_BLOCKS = 16


def h(x: Any, rho: float) -> Any:
    """h(x) = ½·max(x − ρ, 0)²: the 1-smooth, ρ-flat building block of every construction."""
    return 0.5 * np.maximum(np.asarray(x, dtype=np.float64) - rho, 0.0) ** 2


@dataclass(frozen=True)
class PopulationRisk:
    """F(w) = E_z f(w, z): `exact` by enumeration/closed form, else a Monte Carlo mean with its stderr."""

    value: float
    stderr: float
    method: str  # "exact" or "monte-carlo"
    samples: int = 0  # fresh z drawn (Monte Carlo only)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BlockLayout:
    """Coordinates as B blocks of `block` entries plus one last coordinate w(d); needs `coins`
    (n samples x B blocks) and `block` on the class that uses it."""

    coins: NDArray[np.bool_]
    block: int

    @property
    def n(self) -> int:
        return int(self.coins.shape[0])

    @property
    def n_blocks(self) -> int:
        return int(self.coins.shape[1])

    @property
    def dim(self) -> int:
        return self.n_blocks * self.block + 1

    def blocks(self, w: Array) -> tuple[Array, float]:
        """(W of shape (B, T), w(d)) as views of the flat vector w."""
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (self.dim,):
            raise PsaUsageError("w has the wrong shape", observed=w.shape, fix=f"pass a vector of length {self.dim}")
        return w[:-1].reshape(self.n_blocks, self.block), float(w[-1])


@dataclass(frozen=True, eq=False)
class MaskedNormLoss(BlockLayout):
    """Empirical risk F_S of f(w, z) = h(‖u_z(w)‖) over n samples, each a row of block coins.

    coins: bool (n, B), sample k's coin for block i. block: T, the length of a block.
    on/off: (shows positive parts, shows negative parts) for coin 1 / coin 0.
    """

    coins: NDArray[np.bool_]
    block: int
    rho: float
    on: tuple[bool, bool] = (True, True)
    off: tuple[bool, bool] = (False, False)

    def __post_init__(self) -> None:
        coins = np.asarray(self.coins)
        if coins.ndim != 2 or coins.dtype != np.bool_ or coins.shape[0] == 0:
            raise PsaUsageError(
                "coins must be a non-empty bool array of shape (n_samples, n_blocks)",
                observed=f"{coins.dtype} {coins.shape}",
                fix="pass rng.random((n, B)) < 0.5",
            )
        positive_int("block", self.block)
        nonneg_float("rho", self.rho)
        object.__setattr__(self, "coins", coins)


    def _masks(self) -> tuple[Array, Array]:
        """(n, B) 0/1 matrices: does sample k see block i's positive / negative parts (computed once)."""
        cached = self.__dict__.get("_mask_cache")
        if cached is None:
            c = self.coins
            cached = (np.where(c, self.on[0], self.off[0]).astype(np.float64), np.where(c, self.on[1], self.off[1]).astype(np.float64))
            object.__setattr__(self, "_mask_cache", cached)
        return cached

    # ---- empirical risk -----------------------------------------------------------------------
    def _parts(self, w: Array) -> tuple[Array, float, Array, Array]:
        W, wd = self.blocks(w)
        Wp, Wn = np.maximum(W, 0.0), np.minimum(W, 0.0)
        pos, neg = self._masks()
        q = pos @ np.einsum("ij,ij->i", Wp, Wp) + neg @ np.einsum("ij,ij->i", Wn, Wn) + wd * wd
        return q, wd, Wp, Wn

    def sq_norms(self, w: Array) -> Array:
        """‖u_{z_k}(w)‖² for every training sample k."""
        return self._parts(w)[0]

    def per_sample(self, w: Array) -> Array:
        return cast(Array, h(np.sqrt(self.sq_norms(w)), self.rho))  # h maps an array to an array

    def empirical(self, w: Array) -> float:
        """F_S(w)."""
        return float(self.per_sample(w).mean())

    def value_and_grad(self, w: Array) -> tuple[float, Array]:
        """(F_S(w), ∇F_S(w)); the gradient in closed form: per block, a scalar times [W]_+ plus one times −[−W]_+."""
        q, wd, Wp, Wn = self._parts(w)
        norms = np.sqrt(q)
        # d/du h(‖u‖) = (‖u‖ − ρ)_+ · u/‖u‖; the ratio is 0 inside the flat region, and for ρ = 0 it is 1
        # (h(‖u‖) = ‖u‖²/2), so 0/0 never arises.
        if self.rho == 0:
            scale = np.ones_like(norms)
        else:
            scale = np.divide(np.maximum(norms - self.rho, 0.0), norms, out=np.zeros_like(norms), where=norms > 0)
        pos, neg = self._masks()
        a = scale @ pos / self.n
        b = scale @ neg / self.n
        g = a[:, None] * Wp + b[:, None] * Wn
        return float(h(norms, self.rho).mean()), np.concatenate([g.ravel(), [scale.mean() * wd]])

    def grad(self, w: Array) -> Array:
        """∇F_S(w)."""
        return self.value_and_grad(w)[1]

    def sar_upper(self, w: Array, r: float) -> float:
        """An upper bound on F_S^r(w) = max_{‖v‖≤r} F_S(w+v).

        w ↦ u_z(w) is 1-Lipschitz (x ↦ ([x]_+, [−x]_+) is), so ‖u_z(w+v)‖ ≤ ‖u_z(w)‖ + r. An ascent
        direction that attains this bound is a certified exact maximizer.
        """
        return float(h(np.sqrt(self.sq_norms(w)) + r, self.rho).mean())

    # ---- population risk ----------------------------------------------------------------------
    def population(self, w: Array, *, mc_samples: int = 4000, seed: int = 0) -> PopulationRisk:
        """F(w) for fresh fair block coins: exact over the blocks whose coin matters, else Monte Carlo."""
        W, wd = self.blocks(w)
        P = (np.maximum(W, 0.0) ** 2).sum(axis=1)
        N = (np.minimum(W, 0.0) ** 2).sum(axis=1)
        a_on = self.on[0] * P + self.on[1] * N
        a_off = self.off[0] * P + self.off[1] * N
        active = np.flatnonzero(a_on != a_off)
        const = wd * wd + a_on[a_on == a_off].sum()
        a_on, a_off = a_on[active], a_off[active]
        k = active.size
        if k <= MAX_EXACT_BLOCKS:
            patterns = ((np.arange(2**k)[:, None] >> np.arange(k)) & 1).astype(bool)
            q = const + np.where(patterns, a_on, a_off).sum(axis=1)
            return PopulationRisk(float(h(np.sqrt(q), self.rho).mean()), 0.0, "exact")
        positive_int("mc_samples", mc_samples)
        draws = np.random.default_rng(seed).random((mc_samples, k)) < 0.5
        vals = h(np.sqrt(const + np.where(draws, a_on, a_off).sum(axis=1)), self.rho)
        return PopulationRisk(float(vals.mean()), float(vals.std(ddof=1) / np.sqrt(mc_samples)), "monte-carlo", mc_samples)

    def population_mc(self, w: Array, *, mc_samples: int = 4000, seed: int = 0) -> PopulationRisk:
        """Always Monte Carlo over all blocks (to compare with the exact value, as the note's [SIM] did)."""
        W, wd = self.blocks(w)
        P = (np.maximum(W, 0.0) ** 2).sum(axis=1)
        N = (np.minimum(W, 0.0) ** 2).sum(axis=1)
        draws = np.random.default_rng(seed).random((positive_int("mc_samples", mc_samples), self.n_blocks)) < 0.5
        pos = np.where(draws, self.on[0], self.off[0])
        neg = np.where(draws, self.on[1], self.off[1])
        vals = h(np.sqrt(pos @ P + neg @ N + wd * wd), self.rho)
        return PopulationRisk(float(vals.mean()), float(vals.std(ddof=1) / np.sqrt(mc_samples)), "monte-carlo", mc_samples)

    # ---- torch (for the nn.Module wrapper and autograd cross-checks) --------------------------
    def per_sample_torch(self, w: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        import torch

        W = w[:-1].reshape(self.n_blocks, self.block)
        P = (torch.clamp(W, min=0) ** 2).sum(dim=1)
        N = (torch.clamp(W, max=0) ** 2).sum(dim=1)
        pos, neg = (torch.as_tensor(m, dtype=w.dtype, device=w.device) for m in self._masks())
        if idx is not None:
            pos, neg = pos[idx], neg[idx]
        q = pos @ P + neg @ N + w[-1] ** 2
        if self.rho == 0:
            return 0.5 * q  # h(√q) = q/2 exactly; avoids √ at 0 so second derivatives stay correct
        # √q has an infinite derivative at 0, but h is flat there: take √ only where q > 0.
        safe = torch.where(q > 0, q, torch.ones_like(q)).sqrt()
        norm = torch.where(q > 0, safe, torch.zeros_like(q))
        return 0.5 * torch.clamp(norm - self.rho, min=0) ** 2
