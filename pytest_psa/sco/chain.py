"""Theorem 7's loss (note §4, App. C.3): the instance on which SAM's normalized ascent hurts.

f = f_1 + f_2 + f_3 on d = 2^n·T + 1 coordinates (B = 2^n blocks of length T, plus a trigger w(d)):

- f_1 = ½ Σ_i Σ_{j≥2} z(i)·w^(i)(j)²  — block i is invisible to training when no sample has z(i) = 1;
- f_2 = ½ Σ_i Σ_{j≥2} [w^(i)(j) − δ_j(w^(i)(j−1) + λ·1[j=2])]_+²  — a data-free chain: once coordinate
  j−1 is negative, coordinate j is pushed negative too;
- f_3 = (γ/2)·[v_zᵀw + δ_1]_+²  — a tiny trigger whose gradient SAM's normalization blows up to size r.

The parameters λ, γ, δ_1 follow the paper; δ_1 and γ are defined through each other, so they are solved by
fixed-point iteration (it converges in a couple of rounds). δ_j (j ≥ 2) only "exist small enough" in the
paper; the note's plan uses the constant 0.03.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from pytest_psa.errors import PsaUsageError
from pytest_psa.sco._checks import positive_float, positive_int
from pytest_psa.sco.losses import Array, BlockLayout, PopulationRisk

if TYPE_CHECKING:
    import torch


def chain_parameters(d: int, eta: float, r: float) -> tuple[float, float, float]:
    """(λ, γ, δ_1) of App. C.3: λ = r/(4d(d−1)), γ = λ/(max{1,η}(r+δ_1)), δ_1 = ηγr/(2√d − ηγ)."""
    lam = r / (4 * d * (d - 1))
    delta1 = 0.0
    for _ in range(100):
        gamma = lam / (max(1.0, eta) * (r + delta1))
        new = eta * gamma * r / (2 * math.sqrt(d) - eta * gamma)
        if new == delta1:
            break
        delta1 = new
    return lam, gamma, delta1


@dataclass(frozen=True, eq=False)
class ChainTriggerLoss(BlockLayout):
    """F_S of Theorem 7's f over n samples. coins: bool (n, B), z_k(i) ∈ {0,1}; deltas: δ_2..δ_T."""

    coins: NDArray[np.bool_]
    block: int
    eta: float
    r: float
    deltas: Array  # length T − 1: δ_j for j = 2..T
    lam: float = field(init=False, default=0.0)  # λ, γ, δ_1 are derived in __post_init__
    gamma: float = field(init=False, default=0.0)
    delta1: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        coins = np.asarray(self.coins)
        if coins.ndim != 2 or coins.dtype != np.bool_:
            raise PsaUsageError("coins must be a bool array (n_samples, n_blocks)", observed=f"{coins.dtype} {coins.shape}")
        positive_int("block", self.block)
        if self.block < 2:
            raise PsaUsageError("Theorem 7 needs blocks of length T >= 2", observed=self.block, fix="pass T >= 2")
        positive_float("eta", self.eta)
        positive_float("r", self.r)
        deltas = np.broadcast_to(np.asarray(self.deltas, dtype=np.float64), (self.block - 1,)).copy()
        if np.any(deltas <= 0) or np.any(deltas > 1):
            raise PsaUsageError("δ_j must lie in (0, 1]", observed=deltas.min(), fix="pass e.g. deltas=0.03")
        object.__setattr__(self, "coins", coins)
        object.__setattr__(self, "deltas", deltas)
        lam, gamma, delta1 = chain_parameters(self.dim, self.eta, self.r)
        object.__setattr__(self, "lam", lam)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "delta1", delta1)

    def trigger_vectors(self) -> Array:
        """v_{z_k} restricted to position 1 of each block: 1 if z_k(i) = 1, else −1/(2(d−1)). v(d) = 1."""
        return np.where(self.coins, 1.0, -1.0 / (2 * (self.dim - 1)))

    def _chain(self, W: Array) -> Array:
        """R(i, j) = [w^(i)(j) − δ_j(w^(i)(j−1) + λ·1[j=2])]_+ for j = 2..T (shape (B, T−1))."""
        prev: Array = W[:, :-1].copy()  # (numpy types ndarray.copy() as Any)
        prev[:, 0] += self.lam
        return np.maximum(W[:, 1:] - self.deltas * prev, 0.0)

    def parts(self, w: Array) -> tuple[Array, float, Array]:
        """Per-sample f_1 (n,), the shared f_2, per-sample f_3 (n,)."""
        W, wd = self.blocks(w)
        f1 = 0.5 * self.coins.astype(np.float64) @ (W[:, 1:] ** 2).sum(axis=1)
        f2 = 0.5 * float((self._chain(W) ** 2).sum())
        s = self.trigger_vectors() @ W[:, 0] + wd + self.delta1
        f3 = 0.5 * self.gamma * np.maximum(s, 0.0) ** 2
        return f1, f2, f3

    def per_sample(self, w: Array) -> Array:
        f1, f2, f3 = self.parts(w)
        return f1 + f2 + f3

    def empirical(self, w: Array) -> float:
        return float(self.per_sample(w).mean())

    def grad(self, w: Array) -> Array:
        W, wd = self.blocks(w)
        G = np.zeros_like(W)
        G[:, 1:] += self.coins.mean(axis=0)[:, None] * W[:, 1:]
        R = self._chain(W)
        G[:, 1:] += R
        G[:, :-1] -= self.deltas * R
        V = self.trigger_vectors()
        t = self.gamma * np.maximum(V @ W[:, 0] + wd + self.delta1, 0.0)
        G[:, 0] += t @ V / self.n
        return np.concatenate([G.ravel(), [t.mean()]])

    def population(self, w: Array, *, mc_samples: int = 4000, seed: int = 0) -> PopulationRisk:
        """F(w) = ¼ Σ_i Σ_{j≥2} w^(i)(j)² + f_2(w) + E f_3(w, z); the last (tiny, γ ~ r/d²) term by Monte Carlo."""
        W, wd = self.blocks(w)
        exact = 0.25 * float((W[:, 1:] ** 2).sum()) + 0.5 * float((self._chain(W) ** 2).sum())
        positive_int("mc_samples", mc_samples)
        z = np.random.default_rng(seed).random((mc_samples, self.n_blocks)) < 0.5
        V = np.where(z, 1.0, -1.0 / (2 * (self.dim - 1)))
        f3 = 0.5 * self.gamma * np.maximum(V @ W[:, 0] + wd + self.delta1, 0.0) ** 2
        return PopulationRisk(exact + float(f3.mean()), float(f3.std(ddof=1) / np.sqrt(mc_samples)), "monte-carlo", mc_samples)

    def per_sample_torch(self, w: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        import torch

        W = w[:-1].reshape(self.n_blocks, self.block)
        z = torch.as_tensor(self.coins, dtype=w.dtype, device=w.device)
        V = torch.as_tensor(self.trigger_vectors(), dtype=w.dtype, device=w.device)
        if idx is not None:
            z, V = z[idx], V[idx]
        deltas = torch.as_tensor(self.deltas, dtype=w.dtype, device=w.device)
        lam_col = torch.zeros(self.block - 1, dtype=w.dtype, device=w.device)
        lam_col[0] = self.lam
        R = torch.clamp(W[:, 1:] - deltas * (W[:, :-1] + lam_col), min=0)
        f1 = 0.5 * z @ (W[:, 1:] ** 2).sum(dim=1)
        f3 = 0.5 * self.gamma * torch.clamp(V @ W[:, 0] + w[-1] + self.delta1, min=0) ** 2
        return f1 + 0.5 * (R**2).sum() + f3
