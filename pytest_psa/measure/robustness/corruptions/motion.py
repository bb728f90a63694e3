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

Batched: the offsets depend on each sample's angle, but each tap's offset takes few distinct values.
Samples are sorted by angle; each tap is then a few runs of whole tensors summed with a plain multiply
and add (no gathers, and every sample sees the same float ops whatever batch it is in).
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
# Below this many elements of small images, per-tap gathers beat the run-wise slices (whose per-op
# overhead then dominates); measured at 32 px, one thread: break-even near 200 grey or 100 RGB images
# (~250k elements). From 64 x 64 px images are big enough for the runs even one at a time (224 px:
# 2.5 ms run-wise vs 6 ms gathered for one RGB image).
_MIN_RUN_ELEMENTS = 250_000
_MIN_RUN_PIXELS = 64 * 64


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


def _blur_gathered(x: torch.Tensor, weights: tuple[float, ...], ox: torch.Tensor, oy: torch.Tensor) -> torch.Tensor:
    """Every sample at once, one gather per tap from the edge-padded batch (for many small groups).

    The same multiply and add per element as :func:`_blur_runs`, so both give identical bits.
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


# Samples per block of the run-wise blur: a block's accumulator, scratch and padded input stay in L2.
_RUN_BLOCK_PIXELS = 256 * 32 * 32


def _edge_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """``F.pad(x, (left, right, top, bottom), mode="replicate")`` by slice copies (the same values;
    torch's replicate kernel is several times slower on CPU)."""
    n, c, h, w = x.shape
    out = torch.empty((n, c, h + top + bottom, w + left + right), dtype=x.dtype, device=x.device)
    out[:, :, top : top + h, left : left + w] = x
    if left:
        out[:, :, top : top + h, :left] = x[..., :1]
    if right:
        out[:, :, top : top + h, left + w :] = x[..., -1:]
    if top:
        out[:, :, :top] = out[:, :, top : top + 1]
    if bottom:
        out[:, :, top + h :] = out[:, :, top + h - 1 : top + h]
    return out


def _blur_runs(
    x: torch.Tensor, weights: tuple[float, ...], ox: torch.Tensor, oy: torch.Tensor, angle: torch.Tensor
) -> torch.Tensor:
    """Samples sorted by angle, each tap summed as shifted slices over runs of equal offsets.

    A tap's offset ``(ox[i], oy[i])`` is a monotone or unimodal step function of the angle, so after one
    sort by angle the samples sharing a tap's offset form a few contiguous runs (2i + 1 for tap i, against
    one group per distinct offset table): every tap is a handful of slice multiplies and adds, with no
    gathers or per-element index arithmetic. Blocks of sorted samples are padded and summed in cache. The
    same multiply and add per element as :func:`_blur_gathered`: identical bits.
    """
    n, channels, h, w = x.shape
    taps = len(weights)
    order = torch.argsort(angle.reshape(-1), stable=True)
    oxs, oys = ox.index_select(0, order), oy.index_select(0, order)
    change = (oxs[1:] != oxs[:-1]) | (oys[1:] != oys[:-1])  # [n - 1, taps]: a new run starts after row j
    block = max(1, _RUN_BLOCK_PIXELS // max(1, h * w * channels))
    cuts = torch.zeros((n + 1, taps), dtype=torch.bool, device=x.device)
    cuts[1:n] = change
    cuts[0:n:block] = True
    cuts[n] = True
    starts_per_tap = [cuts[:, i].nonzero().squeeze(1).tolist() for i in range(taps)]
    oxl, oyl = oxs.tolist(), oys.tolist()
    out = torch.empty_like(x)
    acc_buf = torch.empty((min(n, block), channels, h, w), dtype=x.dtype, device=x.device)
    tmp_buf = torch.empty_like(acc_buf)
    cursor = [0] * taps  # per tap, the first run not yet done (blocks go in order)
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        rows = order[b0:b1]
        xs_min, xs_max = min(min(r) for r in oxl[b0:b1]), max(max(r) for r in oxl[b0:b1])
        ys_min, ys_max = min(min(r) for r in oyl[b0:b1]), max(max(r) for r in oyl[b0:b1])
        left, top = max(0, -xs_min), max(0, -ys_min)
        padded = _edge_pad(x.index_select(0, rows), left, max(0, xs_max), top, max(0, ys_max))
        acc, tmp = acc_buf[: b1 - b0], tmp_buf[: b1 - b0]
        for i, weight in enumerate(weights):
            starts = starts_per_tap[i]
            j = cursor[i]
            while starts[j] < b1:  # runs are cut at block starts, so each lies inside one block
                lo, hi = starts[j] - b0, starts[j + 1] - b0
                dx, dy = oxl[starts[j]][i], oyl[starts[j]][i]
                window = padded[lo:hi, :, top + dy : top + dy + h, left + dx : left + dx + w]
                if i == 0:
                    torch.mul(window, weight, out=acc[lo:hi])
                else:  # separate multiply and add: the same rounding in every vector lane and tail
                    torch.mul(window, weight, out=tmp[lo:hi])
                    acc[lo:hi].add_(tmp[lo:hi])
                j += 1
            cursor[i] = j
        out.index_copy_(0, rows, acc)
    return out

def apply_motion_blur(x: torch.Tensor, radius: float, sigma: float, angle_degrees: torch.Tensor) -> torch.Tensor:
    """Motion-blur a [N, C, H, W] batch, sample n along ``angle_degrees[n]`` (ImageMagick semantics).

    Used by :func:`motion_blur` (angle U(-45, 45)) and by snow (angle U(-135, -45)). A constant image
    stays constant (to float rounding of the weights' sum). Samples are summed run-wise in angle order
    (cheap slices), small batches by per-tap gathers; the arithmetic is the same.
    """
    full = motion_kernel(float(radius), float(sigma))
    weights = _significant(full)
    n = x.shape[0]
    if n == 0:
        return x.clone()
    angle = angle_degrees.to(x.device)
    ox, oy = motion_offsets(len(full), angle)
    ox, oy = ox[:, : len(weights)], oy[:, : len(weights)]
    big = x.numel() >= _MIN_RUN_ELEMENTS or x.shape[-1] * x.shape[-2] >= _MIN_RUN_PIXELS
    if x.device.type == "cpu" and big:  # a GPU prefers one gather per tap
        return _blur_runs(x, weights, ox, oy, angle)
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
