"""The ε-ball: random starts, projection, ascent directions, perturbation norms.

Random starts are drawn per block of `BLOCK` samples from a CPU `torch.Generator` seeded by
(seed, restart, block index, kind), so an image's start depends only on its position in the
data set, never on the batch size, the device or the global RNG (which stays untouched).
"""

from __future__ import annotations

import numpy as np
import torch

BLOCK = 32  # samples per seeded noise block (small enough for 224 px images)
_KIND = {"uniform": 1, "gaussian": 2}


def _block_seed(seed: int, restart: int, block: int, kind: int) -> int:
    state = np.random.SeedSequence([seed, restart, block, kind, 0x50474421]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1  # 62 bits: fits torch's manual_seed


def _noise(kind: str, shape: tuple[int, ...], indices: torch.Tensor, seed: int, restart: int) -> torch.Tensor:
    """Noise for the samples at `indices` (global positions), shape (len(indices), *shape), on the CPU."""
    idx = indices.detach().to("cpu", torch.int64)
    out = torch.empty((len(idx), *shape))
    if len(idx) == 0:
        return out
    blocks = torch.div(idx, BLOCK, rounding_mode="floor")
    g = torch.Generator(device="cpu")
    for b in torch.unique(blocks).tolist():
        g.manual_seed(_block_seed(seed, restart, int(b), _KIND[kind]))
        draw = torch.rand((BLOCK, *shape), generator=g) if kind == "uniform" else \
            torch.randn((BLOCK, *shape), generator=g)
        rows = (blocks == b).nonzero().squeeze(1)
        out[rows] = draw[idx[rows] - b * BLOCK]
    return out


def _flat_norm(x: torch.Tensor, norm: str) -> torch.Tensor:
    flat = x.reshape(len(x), -1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample vector shaped to broadcast over `like`'s non-batch dimensions."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def perturbation_norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """‖δ_i‖ per sample (L∞ or L2), in float64 so the bound check itself adds no rounding."""
    return _flat_norm(delta.double(), norm)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """The point of the ε-ball around x (intersected with [0, 1]) that the step lands on.

    L∞ clips per pixel; L2 rescales δ onto the ball and then clips to [0, 1], which only
    shrinks |δ_i| and so stays inside the ball. ε = 0 returns exactly x.
    """
    if norm == "linf":
        return torch.maximum(torch.minimum(x_adv, x + eps), x - eps).clamp_(0.0, 1.0)
    delta = x_adv - x
    n = _flat_norm(delta, "l2")
    scale = (eps / n.clamp_min(1e-30)).clamp_(max=1.0)
    return (x + delta * per_sample(scale, delta)).clamp_(0.0, 1.0)


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """sign(g) for L∞; g/‖g‖₂ for L2 (zero where g is zero)."""
    if norm == "linf":
        return grad.sign()
    n = _flat_norm(grad, "l2")
    return grad / per_sample(n.clamp_min(1e-30), grad)


def pgd_start(x: torch.Tensor, indices: torch.Tensor, eps: float, norm: str, seed: int, restart: int) -> torch.Tensor:
    """PGD's random start (Madry et al.; as torchattacks): L∞ uniform in the ε-cube; L2 a uniform
    direction with radius U(0, 1)·ε (denser near the centre than uniform in the ball). Clipped to [0, 1]."""
    shape = tuple(x.shape[1:])
    if norm == "linf":
        delta = (_noise("uniform", shape, indices, seed, restart) * 2 - 1) * eps
    else:
        g = _noise("gaussian", shape, indices, seed, restart)
        radius = _noise("uniform", (), indices, seed, restart)
        delta = g / per_sample(_flat_norm(g, "l2").clamp_min(1e-30), g) * per_sample(radius, g) * eps
    delta = delta.to(device=x.device, dtype=x.dtype).contiguous(memory_format=_format_of(x))
    return project(x + delta, x, eps, norm)


def apgd_start(x: torch.Tensor, indices: torch.Tensor, eps: float, norm: str, seed: int, restart: int) -> torch.Tensor:
    """AutoAttack's APGD start: on the ε-sphere (L∞: uniform noise scaled to max-norm ε; L2: a
    Gaussian direction of length ε), clipped to [0, 1]."""
    shape = tuple(x.shape[1:])
    t = _noise("uniform", shape, indices, seed, restart) * 2 - 1 if norm == "linf" else \
        _noise("gaussian", shape, indices, seed, restart)
    delta = t / per_sample(_flat_norm(t, norm).clamp_min(1e-30), t) * eps
    delta = delta.to(device=x.device, dtype=x.dtype).contiguous(memory_format=_format_of(x))
    return project(x + delta, x, eps, norm)


def _format_of(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
