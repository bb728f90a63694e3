"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper) and speckle.

Kernels are ``kernel(x, params, rng) -> Tensor`` on float NCHW in [0, 1]; every random number comes from
the :class:`~.rng.CounterRNG`, so a sample's noise does not depend on its batch.

Severity tables (rows are severities 1..5), from hendrycks/robustness ``ImageNet-C/create_c/``:
32 px ``make_cifar_c.py`` (@ca36008), 64 px ``make_tinyimagenet_c.py`` (@7a64e6a), 224 px
``make_imagenet_c.py`` (@e0377d4).
"""

from __future__ import annotations

from typing import Any

import torch

from pytest_psa.measure.robustness.corruptions.registry import Corruption
from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

__all__ = ["CORRUPTIONS_NOISE", "gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise"]


def _rows(*values: float) -> tuple[tuple[float], ...]:
    return tuple((v,) for v in values)


def gaussian_noise(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """x + N(0, sigma^2) per element, clipped. params = (sigma,)."""
    (sigma,) = params
    noise = rng.normal(tuple(x.shape[1:]), stream=0).to(x.dtype)
    return noise.mul_(sigma).add_(x).clamp_(0.0, 1.0)


def shot_noise(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Poisson(x * c) / c per element, clipped (photon counting with c photons at full scale).

    Exact Poisson draws. Images on the 1/255 grid (anything that came from uint8) take the table path
    of :meth:`CounterRNG.poisson_levels`, which gives the same draws as the per-element path.
    """
    (photons,) = params
    codes = torch.round(x * 255.0)
    if bool(torch.equal(codes / 255.0, x)):  # exactly on the uint8 grid, in x's own dtype
        levels = (torch.arange(256, dtype=x.dtype, device=x.device) / 255.0).to(torch.float64) * photons
        counts = rng.poisson_levels_int(levels, codes.to(torch.int64), stream=0)
        # counts are small integers: map each through (k / c).clamp(0, 1) in float64, then x's dtype,
        # by a table (the same values as the elementwise ops, in one gather)
        top = int(counts.max()) + 1 if counts.numel() else 1
        values = torch.arange(top, dtype=torch.float64, device=x.device).div_(photons).clamp_(0.0, 1.0)
        return values.to(x.dtype).index_select(0, counts.reshape(-1)).reshape(x.shape)
    counts = rng.poisson(x.to(torch.float64) * photons, stream=0)
    return counts.div_(photons).clamp_(0.0, 1.0).to(x.dtype)


def impulse_noise(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Salt and pepper as ``skimage.util.random_noise(mode='s&p', amount=a)`` on an HWC array.

    Every channel element flips independently with probability ``a``; a flipped element is salt (1)
    or pepper (0) with probability 1/2 each. One uniform u per element decides both:
    u < a/2 -> salt, a/2 <= u < a -> pepper (the same joint law as skimage's two Bernoulli draws).
    params = (amount,).
    """
    (amount,) = params
    u = rng.uniform(tuple(x.shape[1:]), stream=0)
    # flipped elements to 0, then the salt among them to 1: the same selection as two nested wheres,
    # with one image-sized buffer instead of three
    return x.masked_fill(u < amount, 0.0).masked_fill_(u < 0.5 * amount, 1.0)


def speckle_noise(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """x + x * N(0, sigma^2) per element, clipped (multiplicative noise). params = (sigma,)."""
    (sigma,) = params
    noise = rng.normal(tuple(x.shape[1:]), stream=0).to(x.dtype)
    return noise.mul_(sigma).add_(1.0).mul_(x).clamp_(0.0, 1.0)


CORRUPTIONS_NOISE: list[Corruption] = [
    Corruption(
        name="gaussian_noise",
        family="noise",
        kernel=gaussian_noise,
        tables={
            32: _rows(0.04, 0.06, 0.08, 0.09, 0.10),
            64: _rows(0.04, 0.08, 0.12, 0.15, 0.18),
            224: _rows(0.08, 0.12, 0.18, 0.26, 0.38),
        },
        stochastic=True,
        deviation="normal draws by Box-Muller on 24-bit counter-based uniforms (|z| <= 5.77), not numpy's",
    ),
    Corruption(
        name="shot_noise",
        family="noise",
        kernel=shot_noise,
        tables={
            32: _rows(500, 250, 100, 75, 50),
            64: _rows(250, 100, 50, 30, 15),
            224: _rows(60, 25, 12, 5, 3),
        },
        stochastic=True,
        deviation="exact Poisson by inversion of counter-based uniforms instead of numpy's generator",
    ),
    Corruption(
        name="impulse_noise",
        family="noise",
        kernel=impulse_noise,
        tables={
            32: _rows(0.01, 0.02, 0.03, 0.05, 0.07),
            64: _rows(0.01, 0.02, 0.05, 0.08, 0.14),
            224: _rows(0.03, 0.06, 0.09, 0.17, 0.27),
        },
        stochastic=True,
        deviation="one uniform per element decides flip and salt/pepper (same law as skimage's two draws)",
    ),
    Corruption(
        name="speckle_noise",
        family="noise",
        kernel=speckle_noise,
        tables={
            32: _rows(0.06, 0.10, 0.12, 0.16, 0.20),
            64: _rows(0.15, 0.20, 0.25, 0.30, 0.35),
            224: _rows(0.15, 0.20, 0.35, 0.45, 0.60),
        },
        stochastic=True,
        validation=True,
        deviation="normal draws by Box-Muller on 24-bit counter-based uniforms, not numpy's",
    ),
]
