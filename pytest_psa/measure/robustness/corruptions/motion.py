"""Motion blur without ImageMagick, and the line-kernel blur that snow reuses.

Reference: ``motion_blur`` in hendrycks/robustness ``ImageNet-C/create_c/make_cifar_c.py`` (@ca36008),
``make_tinyimagenet_c.py`` (@7a64e6a) and ``make_imagenet_c.py`` (@e0377d4) calls ImageMagick's
``MagickMotionBlurImage(radius, sigma, angle)`` through Wand with ``angle ~ U(-45, 45)``. ImageMagick's
MotionBlurImage (MagickCore/effect.c; restated in the Go port KarpelesLab/mblur) does:

- ``width = 2 * ceil(radius) + 1`` taps (GetOptimalKernelWidth1D for radius > 0);
- a *one-sided* Gaussian ``k[i] = exp(-i^2 / (2 sigma^2))``, i = 0..width-1, normalized to sum 1;
- integer offsets ``ox[i] = ceil(i * cos(angle) - 0.5)``, ``oy[i] = ceil(i * sin(angle) - 0.5)`` (from
  ``point = (width sin, width cos)`` divided by its hypot), so the trail runs from the pixel along the
  angle (x right, y down);
- ``out(x, y) = sum_i k[i] * in(x + ox[i], y + oy[i])`` with the edge virtual-pixel method (pixels outside
  the image repeat the border).

This module computes exactly that sum in float. Differences from the reference: the reference writes
the result through an 8-bit PNG (rounding every pixel to a multiple of 1/255) and then casts with
``np.uint8`` (a no-op on levels); here the output stays float (``compat="hendrycks"`` uses
:func:`motion_blur_hendrycks`, which rounds) and the Wand/ImageMagick virtual-pixel default is assumed
to be *edge*. Kernel taps whose weights sum to less than 1e-6 at the far end are dropped (at sigma = 1,
7 of 13 taps weighing 9e-9 together), which moves no output by more than 1e-6. imagecorruptions replaced Wand the same
way (numpy shift-and-add of the one-sided kernel, CHANGELOG 1.0.0).

Batched: the offsets depend on each sample's angle, but they take few distinct values. Samples are
sorted by their offset table; each group is a run of whole tensors summed tap by tap with a plain
multiply and add (no gathers, and every sample sees the same float ops whatever batch it is in).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import torch

from pytest_psa.measure.robustness.corruptions.chunking import GROUPED_CHUNK_PIXELS, chunked, whole_batch
from pytest_psa.measure.robustness.corruptions.registry import Corruption

if TYPE_CHECKING:
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

__all__ = [
    "CORRUPTIONS_MOTION",
    "MOTION_TABLES",
    "apply_motion_blur",
    "motion_blur",
    "motion_blur_hendrycks",
    "motion_kernel",
    "motion_offsets",
]

#: (radius, sigma) of MagickMotionBlurImage per severity. 32 px: make_cifar_c.py; 64 px:
#: make_tinyimagenet_c.py; 224 px: make_imagenet_c.py (hendrycks/robustness, ImageNet-C/create_c/).
MOTION_TABLES: dict[int, tuple[tuple[Any, ...], ...]] = {
    32: ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    64: ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
    224: ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
}

_MAGICK_EPSILON = 1.0e-12
# Below this many elements per offset group on average, per-tap gathers beat per-group slices (the
# per-op overhead of a group outweighs the gather's slower memory access); measured at 32 px.
_MIN_GROUP_ELEMENTS = 10_000


@functools.lru_cache(maxsize=64)
def motion_kernel(radius: float, sigma: float) -> tuple[float, ...]:
    """ImageMagick's one-sided motion-blur weights: ``2*ceil(radius)+1`` taps of exp(-i^2/2sigma^2), sum 1."""
    if radius <= 0:
        raise ValueError(f"motion blur needs radius > 0, got {radius} (ImageMagick would pick one from sigma)")
    width = int(2 * math.ceil(radius) + 1)
    sigma = sigma if abs(sigma) >= _MAGICK_EPSILON else _MAGICK_EPSILON
    weights = [math.exp(-(i * i) / (2.0 * sigma * sigma)) for i in range(width)]
    total = math.fsum(weights)
    return tuple(w / total for w in weights)


def motion_offsets(width: int, angle_degrees: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample integer tap offsets (ox, oy), each int64 [N, width], as ImageMagick computes them."""
    angle = angle_degrees.to(torch.float64).reshape(-1, 1) * (math.pi / 180.0)
    px, py = width * torch.sin(angle), width * torch.cos(angle)
    norm = torch.hypot(px, py)
    i = torch.arange(width, dtype=torch.float64, device=angle.device)
    ox = torch.ceil(i * py / norm - 0.5).long()
    oy = torch.ceil(i * px / norm - 0.5).long()
    return ox, oy


def _significant(weights: tuple[float, ...]) -> tuple[float, ...]:
    """Drop the far tail of a one-sided kernel whose total weight is below 1e-6, then renormalize.

    At sigma = 1 the last 7 of 13 ImageMagick taps weigh 9e-9 together; dropping them changes no
    output by more than 1e-6 (the reference rounds to 1/255 = 3.9e-3) and saves their passes.
    """
    keep = len(weights)
    tail = 0.0
    while keep > 1 and tail + weights[keep - 1] < 1e-6:
        tail += weights[keep - 1]
        keep -= 1
    total = math.fsum(weights[:keep])
    return tuple(w / total for w in weights[:keep])


def _blur_grouped(x: torch.Tensor, weights: tuple[float, ...], ox: torch.Tensor, oy: torch.Tensor) -> torch.Tensor:
    """Samples sharing the whole offset table form a group, summed as one block of tensor slices."""
    taps = len(weights)
    _, _, h, w = x.shape
    unique, inverse, counts = torch.unique(torch.cat([ox, oy], dim=1), dim=0, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    out = torch.empty_like(x)
    start = 0
    for table, count in zip(unique.tolist(), counts.tolist(), strict=True):
        index = order[start : start + count]
        start += count
        dxs, dys = table[:taps], table[taps:]
        left, right = max(0, -min(dxs)), max(0, max(dxs))
        top, bottom = max(0, -min(dys)), max(0, max(dys))
        block = torch.nn.functional.pad(x.index_select(0, index), (left, right, top, bottom), mode="replicate")
        acc = torch.empty((count, *x.shape[1:]), dtype=x.dtype, device=x.device)
        tmp = torch.empty_like(acc)
        for i, weight in enumerate(weights):
            window = block[..., top + dys[i] : top + dys[i] + h, left + dxs[i] : left + dxs[i] + w]
            if i == 0:
                torch.mul(window, weight, out=acc)
            else:  # separate multiply and add: the same rounding in every vector lane and tail
                torch.mul(window, weight, out=tmp)
                acc.add_(tmp)
        out.index_copy_(0, index, acc)
    return out


def _blur_gathered(x: torch.Tensor, weights: tuple[float, ...], ox: torch.Tensor, oy: torch.Tensor) -> torch.Tensor:
    """Every sample at once, one gather per tap from the edge-padded batch (for many small groups).

    The same multiply and add per element as :func:`_blur_grouped`, so both give identical bits.
    """
    n, channels, h, w = x.shape
    pad = int(max(ox.abs().max(), oy.abs().max()))
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate").reshape(n, channels, -1)
    wide = w + 2 * pad
    rows = torch.arange(pad, pad + h, device=x.device).view(-1, 1) * wide
    base = (rows + torch.arange(pad, pad + w, device=x.device)).view(1, -1)
    shifts = oy * wide + ox
    acc = torch.empty((n, channels, h * w), dtype=x.dtype, device=x.device)
    tmp = torch.empty_like(acc)
    for i, weight in enumerate(weights):
        index = (base + shifts[:, i : i + 1]).unsqueeze(1).expand(n, channels, -1)
        if i == 0:
            torch.mul(padded.gather(2, index), weight, out=acc)
        else:
            torch.mul(padded.gather(2, index), weight, out=tmp)
            acc.add_(tmp)
    return acc.reshape(n, channels, h, w)


def apply_motion_blur(x: torch.Tensor, radius: float, sigma: float, angle_degrees: torch.Tensor) -> torch.Tensor:
    """Motion-blur a [N, C, H, W] batch, sample n along ``angle_degrees[n]`` (ImageMagick semantics).

    Used by :func:`motion_blur` (angle U(-45, 45)) and by snow (angle U(-135, -45)). A constant image
    stays constant (to float rounding of the weights' sum). Samples are summed in groups of equal offset
    tables (cheap slices) when groups are large, else by per-tap gathers; the arithmetic is the same.
    """
    full = motion_kernel(float(radius), float(sigma))
    weights = _significant(full)
    n = x.shape[0]
    if n == 0:
        return x.clone()
    ox, oy = motion_offsets(len(full), angle_degrees.to(x.device))
    ox, oy = ox[:, : len(weights)], oy[:, : len(weights)]
    groups = int(torch.unique(torch.cat([ox, oy], dim=1), dim=0).shape[0])
    if x.numel() >= _MIN_GROUP_ELEMENTS * groups:
        return _blur_grouped(x, weights, ox, oy)
    return _blur_gathered(x, weights, ox, oy)


@chunked(pixels=GROUPED_CHUNK_PIXELS)
def motion_blur(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Motion blur with ``params = (radius, sigma)`` at a per-sample angle ~ U(-45, 45) degrees."""
    radius, sigma = float(params[0]), float(params[1])
    angle = rng.uniform((1,), stream=0)[:, 0].to(torch.float64) * 90.0 - 45.0
    return apply_motion_blur(x, radius, sigma, angle).clamp_(0.0, 1.0)


@whole_batch
def motion_blur_hendrycks(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """``compat="hendrycks"``: :func:`motion_blur` rounded to 8-bit levels, as the reference's PNG round
    trip through Wand rounds (``corrupt`` then truncates, which keeps exact levels)."""
    return motion_blur(x, params, rng).mul_(255.0).round_().div_(255.0)


CORRUPTIONS_MOTION: list[Corruption] = [
    Corruption(
        name="motion_blur",
        family="blur",
        kernel=motion_blur,
        tables=MOTION_TABLES,
        stochastic=True,
        deviation=(
            "ImageMagick MotionBlurImage re-implemented (one-sided Gaussian line kernel, rounded offsets, "
            "edge pixels); the float output skips the reference's 8-bit PNG rounding (compat='hendrycks' rounds)"
        ),
        compat_kernel=motion_blur_hendrycks,
    )
]
