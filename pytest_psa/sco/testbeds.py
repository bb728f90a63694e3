"""Low-dimensional instances for E3: Theorem 6's 1-D loss and the note's generic 2-D ρ-flat testbed.

In both, the inner maximization of SA-GD is done over the boundary of the ball (a convex function on a
ball peaks on its boundary): exactly in 1-D, on a fine angle grid in 2-D.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from pytest_psa.sco._checks import nonneg_float, positive_int
from pytest_psa.sco.losses import Array, PopulationRisk, h

if TYPE_CHECKING:
    import torch

    from pytest_psa.sco.algorithms import Oracle


@dataclass(frozen=True)
class Hinge1D:
    """Theorem 6: f(w) = ½·max(0, w)² on [−1, 1]. One deterministic "sample"; w⋆ = −½ is a ½-flat minimum."""

    n: int = 1
    dim: int = 1

    def per_sample(self, w: Array) -> Array:
        return 0.5 * np.maximum(np.asarray(w, dtype=np.float64), 0.0) ** 2

    def empirical(self, w: Array) -> float:
        return float(self.per_sample(w)[0])

    def grad(self, w: Array) -> Array:
        return np.maximum(np.asarray(w, dtype=np.float64), 0.0)

    def sar(self, w: Array, r: float) -> float:
        """F^r(w) = ½·[w + r]_+², exactly (the maximizer is v = +r)."""
        return float(0.5 * max(float(np.asarray(w).reshape(-1)[0]) + r, 0.0) ** 2)

    def population(self, w: Array, **_: object) -> PopulationRisk:
        return PopulationRisk(self.empirical(w), 0.0, "exact")

    def oracle(self, r: float) -> Oracle:
        """The exact SA-GD maximizer v = +r."""
        return lambda w, t: np.array([r])

    def per_sample_torch(self, w: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        import torch

        return 0.5 * torch.clamp(w, min=0) ** 2


@dataclass(frozen=True, eq=False)
class FlatRegression2D:
    """f(w, z) = h(|a_zᵀw − b_z|) with ‖a_z‖ = 1 at a uniform angle and b_z = a_zᵀw⋆: convex, 1-smooth, ρ-flat."""

    n: int
    rho: float
    w_star: Array
    seed: int
    angles: Array = field(init=False, repr=False)
    _a: Array = field(init=False, repr=False)
    dim: int = 2

    def __post_init__(self) -> None:
        positive_int("n", self.n)
        nonneg_float("rho", self.rho)
        object.__setattr__(self, "w_star", np.asarray(self.w_star, dtype=np.float64).reshape(2))
        object.__setattr__(self, "angles", np.random.default_rng(self.seed).uniform(0, 2 * np.pi, self.n))
        object.__setattr__(self, "_a", np.stack([np.cos(self.angles), np.sin(self.angles)], axis=1))  # unit a_z

    @property
    def a(self) -> Array:
        return self._a

    def residuals(self, w: Array) -> Array:
        return self.a @ (np.asarray(w, dtype=np.float64) - self.w_star)

    def per_sample(self, w: Array) -> Array:
        return cast(Array, h(np.abs(self.residuals(w)), self.rho))  # h maps an array to an array

    def empirical(self, w: Array) -> float:
        return float(self.per_sample(w).mean())

    def grad(self, w: Array) -> Array:
        res = self.residuals(w)
        coef = np.maximum(np.abs(res) - self.rho, 0.0) * np.sign(res)
        return coef @ self.a / self.n

    def _ring(self, r: float, grid: int) -> Array:
        phi = 2 * np.pi * np.arange(grid) / grid
        return r * np.stack([np.cos(phi), np.sin(phi)], axis=1)

    def sar(self, w: Array, r: float, *, grid: int = 3600) -> float:
        """F_S^r(w) on a `grid`-angle ring (error O(r²/grid²) below the true max)."""
        if r == 0:
            return self.empirical(w)
        return float(self._ring_values(w, self.a @ self._ring(r, grid).T).max())

    def _ring_values(self, w: Array, shifts: Array) -> Array:
        """F_S(w + v) for every ring point v; shifts = a·v, shape (n, grid), is fixed per (r, grid)."""
        res = self.residuals(w)
        r = float(np.abs(shifts).max(initial=0.0))
        live = np.abs(res) + r > self.rho  # the other samples are 0 on the whole ring: skip them
        x = res[live, None] + shifts[live]  # in place from here: this is the hot loop of E3
        np.abs(x, out=x)
        x -= self.rho
        np.maximum(x, 0.0, out=x)
        x *= x
        return cast(Array, x.sum(axis=0) / (2 * self.n))  # numpy types ndarray.sum(axis=...) as Any

    def oracle(self, r: float, *, grid: int = 3600) -> Oracle:
        """SA-GD's inner maximizer on a `grid`-angle ring; ties go to the smallest angle (argmax)."""
        ring = self._ring(r, grid)
        shifts = self.a @ ring.T
        return lambda w, t: ring[int(np.argmax(self._ring_values(w, shifts)))] if r > 0 else np.zeros(2)

    def population(self, w: Array, *, quadrature: int = 8192, **_: object) -> PopulationRisk:
        """F(w) = E_θ h(|a_θᵀ(w − w⋆)|) by the periodic trapezoid rule (spectrally accurate here)."""
        theta = 2 * np.pi * np.arange(quadrature) / quadrature
        res = np.stack([np.cos(theta), np.sin(theta)], axis=1) @ (np.asarray(w, dtype=np.float64) - self.w_star)
        return PopulationRisk(float(h(np.abs(res), self.rho).mean()), 0.0, "exact")

    def per_sample_torch(self, w: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        import torch

        a = torch.as_tensor(self.a, dtype=w.dtype, device=w.device)
        ws = torch.as_tensor(self.w_star, dtype=w.dtype, device=w.device)
        if idx is not None:
            a = a[idx]
        return 0.5 * torch.clamp((a @ (w - ws)).abs() - self.rho, min=0) ** 2
