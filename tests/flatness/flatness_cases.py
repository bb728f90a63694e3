"""Closed-form losses wrapped as nn.Modules, so the real measurement code paths are exercised.

The module's output is the loss itself (one copy per input row); `mean_output` is the loss
callable that reads it. Values follow flatness.md (d): L(w) = L0 + g.(w - w0) + 1/2 (w - w0)' H (w - w0).
"""

from __future__ import annotations

import math

import torch
from torch import nn

DTYPE = torch.float64


def mean_output(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return out.mean()


def dummy_data(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs the closed-form modules ignore; float targets, so no accuracy is reported."""
    return torch.zeros(n, 1, dtype=DTYPE), torch.zeros(n, dtype=DTYPE)


class Quadratic(nn.Module):
    def __init__(self, H: torch.Tensor, w0: torch.Tensor, *, loss0: float = 0.0, g: torch.Tensor | None = None) -> None:
        super().__init__()
        self.w = nn.Parameter(w0.clone().to(DTYPE))
        self.register_buffer("H", H.to(DTYPE))
        self.register_buffer("w0", w0.clone().to(DTYPE))
        self.register_buffer("g", torch.zeros_like(self.w0) if g is None else g.to(DTYPE))
        self.loss0 = loss0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.w - self.w0
        value = self.loss0 + self.g @ d + 0.5 * d @ self.H @ d
        return value.expand(x.shape[0])


class RhoFlat(nn.Module):
    """h(x) = 1/2 max(|x| - rho, 0)^2 on a scalar parameter (flat on [-rho, rho])."""

    def __init__(self, x0: float, rho: float) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.tensor([x0], dtype=DTYPE))
        self.rho = rho

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        value = 0.5 * torch.clamp(self.x.abs() - self.rho, min=0).pow(2).sum()
        return value.expand(inputs.shape[0])


def rho_flat_lpf(sigma: float, rho: float) -> float:
    """E h(sigma z) at x = 0: sigma^2 [(1 + a^2)(1 - Phi(a)) - a phi(a)], a = rho / sigma."""
    a = rho / sigma
    Phi = 0.5 * (1 + math.erf(a / math.sqrt(2)))
    phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    return sigma**2 * ((1 + a * a) * (1 - Phi) - a * phi)


def rotated_hessian(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    """Q diag(eigenvalues) Q' with a fixed random rotation Q (non-diagonal: Hutchinson has variance)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=DTYPE))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=DTYPE)) @ q.T


def z_two_sided(alpha: float) -> float:
    """Normal quantile for a two-sided interval with error rate alpha."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - alpha / 2)


def relu_net(seed: int = 0, d_in: int = 4, hidden: int = 8, classes: int = 3) -> nn.Sequential:

    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, classes)).to(DTYPE)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DTYPE) * 0.7)
    return net


def rescaled(net: nn.Sequential, alpha: float) -> nn.Sequential:
    """Dinh et al.'s function-preserving rescale: (alpha W1, alpha b1, W2 / alpha)."""
    import copy

    out = copy.deepcopy(net)
    with torch.no_grad():
        out[0].weight.mul_(alpha)
        out[0].bias.mul_(alpha)
        out[2].weight.div_(alpha)
    return out
