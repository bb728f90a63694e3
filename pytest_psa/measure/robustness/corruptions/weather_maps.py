"""Random maps behind the weather corruptions: plasma fractal (fog), clipped zoom (snow), frost texture.

All are batched over samples, keyed by a :class:`CounterRNG` (so a sample's map never depends on its
batch) and device-agnostic.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pytest_psa.measure.robustness.corruptions.motion import apply_motion_blur

if TYPE_CHECKING:
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

__all__ = [
    "FROST_TARGET_MEAN",
    "FROST_TARGET_STD",
    "clipped_zoom",
    "colour_frost",
    "frost_pattern",
    "frost_texture",
    "plasma_fractal",
]


def plasma_fractal(
    rng: CounterRNG, mapsize: int, wibbledecay: float, *, stream: int = 0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Diamond-square heightmaps [N, mapsize, mapsize] in [0, 1], the reference's ``plasma_fractal``.

    Same recursion as ``plasma_fractal`` in hendrycks/robustness make_*_c.py (a modification of
    FLHerne/mapgen diamondsquare.py): start at 0, ``wibble = 100``; each level fills square centres with
    the mean of 4 corners plus ``wibble * U(-wibble, wibble)`` (so the noise scale is wibble squared, as
    in the reference), then the diamonds from rolled (wrap-around) neighbour sums, then divides wibble by
    ``wibbledecay``; finally min-max normalizes each map. float64 like the reference, since at 256 px the
    last levels' increments are ~1e-7 of the range (frost's haze passes float32: it needs no such detail).
    Streams ``stream .. stream + 3 * levels - 1``.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"plasma_fractal needs a power-of-two mapsize >= 2, got {mapsize}")
    n = rng.n
    device = rng.device
    # The lattice of the current step as a compact tensor (the reference's strided view
    # maparray[0::step, 0::step]); each level computes its three new point sets compactly and
    # interleaves them into the next, finer lattice. The same float operations in the same order as
    # the reference's strided views and rolls (same bits), but on contiguous memory, rolls done as
    # shifted slice adds and the noise term in place: strided writes and roll copies dominated at 256 px.
    corners = torch.zeros((n, 1, 1), dtype=dtype, device=device)
    wibble, level = 100.0, 0

    def wibbled_mean(total: torch.Tensor, sub: int) -> torch.Tensor:
        noise = rng.uniform(tuple(total.shape[1:]), stream=stream + 3 * level + sub).to(dtype)
        # total / 4 + wibble * (noise * (2 * wibble) - wibble), in place (IEEE + and * commute exactly)
        return noise.mul_(2 * wibble).sub_(wibble).mul_(wibble).add_(total.div_(4))

    while corners.shape[1] < mapsize:
        m = corners.shape[1]
        squares = _plus_rolled(corners, corners, -1, 1)
        centres = wibbled_mean(_plus_rolled(squares, squares, -1, 2), 0)
        left = _plus_rolled(centres, centres, 1, 1).add_(corners)
        lefts = wibbled_mean(_add_rolled_(left, corners, -1, 2), 1)  # points (i, j + 1/2)
        top = _plus_rolled(centres, centres, 1, 2).add_(corners)
        tops = wibbled_mean(_add_rolled_(top, corners, -1, 1), 2)  # points (i + 1/2, j)
        finer = torch.empty((n, m, 2, m, 2), dtype=dtype, device=device)
        finer[:, :, 0, :, 0] = corners
        finer[:, :, 0, :, 1] = lefts
        finer[:, :, 1, :, 0] = tops
        finer[:, :, 1, :, 1] = centres
        corners = finer.reshape(n, 2 * m, 2 * m)
        wibble /= wibbledecay
        level += 1
    grid = corners  # a fresh tensor of this call: normalized in place (no two more map-sized buffers)
    grid.sub_(grid.amin(dim=(1, 2), keepdim=True))
    return grid.div_(grid.amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(dtype).tiny))


def _plus_rolled(a: torch.Tensor, b: torch.Tensor, shift: int, dim: int) -> torch.Tensor:
    """``a + torch.roll(b, shift, dim)`` for shift +-1, as two slice adds (no rolled copy of ``b``)."""
    return _add_rolled_(a.clone(), b, shift, dim) if a.shape[dim] > 1 else a + b


def _add_rolled_(a: torch.Tensor, b: torch.Tensor, shift: int, dim: int) -> torch.Tensor:
    """``a += torch.roll(b, shift, dim)`` in place for shift +-1; returns ``a``."""
    m = a.shape[dim]
    if m == 1:
        return a.add_(b)
    if shift == -1:  # roll(b, -1)[i] = b[i + 1]
        a.narrow(dim, 0, m - 1).add_(b.narrow(dim, 1, m - 1))
        a.narrow(dim, m - 1, 1).add_(b.narrow(dim, 0, 1))
    else:  # roll(b, 1)[i] = b[i - 1]
        a.narrow(dim, 1, m - 1).add_(b.narrow(dim, 0, m - 1))
        a.narrow(dim, 0, 1).add_(b.narrow(dim, m - 1, 1))
    return a


def next_power_of_two(size: int) -> int:
    return 1 << max(1, math.ceil(math.log2(max(2, size))))


def clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """The reference's ``clipped_zoom`` on [N, C, H, W]: centre-crop ``ceil(size / zoom)``, zoom with
    ``scipy.ndimage.zoom(order=1)`` (linear, corner-aligned, output ``round(crop * zoom)``), trim back
    to the original size from ``(out - size) // 2``. ``zoom == 1`` is the identity."""
    if zoom == 1:
        return x
    h, w = x.shape[-2:]
    crops = [math.ceil(size / zoom) for size in (h, w)]
    tops = [(size - crop) // 2 for size, crop in zip((h, w), crops, strict=True)]
    cropped = x[..., tops[0] : tops[0] + crops[0], tops[1] : tops[1] + crops[1]]
    sizes = [int(round(crop * zoom)) for crop in crops]
    zoomed = F.interpolate(cropped, size=sizes, mode="bilinear", align_corners=True)
    trims = [(out - size) // 2 for out, size in zip(sizes, (h, w), strict=True)]
    return zoomed[..., trims[0] : trims[0] + h, trims[1] : trims[1] + w]


# -- frost ------------------------------------------------------------------------------------------------

#: Calibration target of the procedural frost texture, per RGB channel, in [0, 1]. The reference crops
#: six frost photographs (frost1-6, of which only 1-5 are used) that this package does not ship; no
#: published statistics of them were found, so these are a stated assumption: bluish-white ice over a
#: darker ground (blue above red), mean luminance ~0.46, pixel std ~0.2 within a crop.
FROST_TARGET_MEAN: tuple[float, float, float] = (0.40, 0.46, 0.53)
FROST_TARGET_STD: tuple[float, float, float] = (0.18, 0.20, 0.22)

# Crystal arm length in pixels of the full-resolution frost photos; the reference shrinks the photos
# by 0.2 (CIFAR) or 0.3 (Tiny ImageNet) before cropping, and so does the texture (``asset_scale``).
_ARM_LENGTH_FULL_RES = 30.0
_SEED_DENSITY = 0.06


def _frost_raw(rng: CounterRNG, height: int, width: int, asset_scale: float) -> torch.Tensor:
    """Unnormalized ice texture [N, 1, H, W]: hexagonal crystal streaks over a plasma haze.

    Crystals: sparse seeds of random brightness smeared into two-sided line segments along three
    directions 60 degrees apart (ice grows hexagonally), one random orientation per sample, summed and
    saturated. Haze: a rough plasma fractal (frost density varies across the pane). Streams 0-1 and
    16 and up (the plasma's).
    """
    n = rng.n
    u = rng.uniform((1, height, width), stream=0)
    # A seed where u < density, its brightness uniform on [0.5, 1) from the same draw.
    points = torch.where(u < _SEED_DENSITY, 0.5 + u * (0.5 / _SEED_DENSITY), torch.zeros_like(u))
    orientation = rng.uniform((1,), stream=1)[:, 0].to(torch.float64) * 180.0
    arm = max(1.0, _ARM_LENGTH_FULL_RES * asset_scale)
    # One blur call for all arms: 3 directions stacked on the batch, both senses of each direction as
    # 2 channels (blurring the 180-degree-rotated seeds along the same angle gives the opposite arm).
    angles = torch.cat([orientation + 60.0 * k for k in range(3)])
    both = torch.cat([points, points.flip(-1, -2)], dim=1).repeat(3, 1, 1, 1)
    arms = apply_motion_blur(both, arm / 2, arm / 3, angles)
    arms = arms[:, :1] + arms[:, 1:].flip(-1, -2)
    streaks = arms[:n] + arms[n : 2 * n] + arms[2 * n :]
    crystals = 1.0 - torch.exp(-4.0 * streaks)
    haze = plasma_fractal(rng, next_power_of_two(max(height, width)), 1.6, stream=16, dtype=points.dtype)
    return crystals * 0.6 + haze[:, :height, :width].unsqueeze(1) * 0.4


#: Ice canvases per size, like the reference's five frost photographs (it uses frost1-5): a sample's
#: texture is a random crop of one of them.
FROST_CANVASES = 8


def _canvas_side(size: int) -> int:
    """Canvas side for crops of ``size`` px: twice the image, at least 128 px, so crops vary in place."""
    return max(2 * int(size), 128)


@functools.lru_cache(maxsize=16)
def _frost_bank(height: int, width: int, asset_scale: float, device: str) -> torch.Tensor:
    """The standardized canvases [FROST_CANVASES, H', W'] (float32, population mean 0, std 1), made once
    per size on CPU with a fixed key, so every batch, thread and device crops the same pictures.

    The reference reads and resizes a photo on every call; drawing a texture per sample here (six 31-tap
    motion blurs at 224 px) was 92 % of frost's time and made it slower than the reference, so the
    pictures are drawn once per size, like photos on disk, and each sample takes a crop. Read-only
    afterwards: pool threads share it.
    """
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

    canvas_h, canvas_w = _canvas_side(height), _canvas_side(width)
    key = CounterRNG(0, torch.arange(FROST_CANVASES), "frost-canvas", 0)
    raw = _frost_raw(key, canvas_h, canvas_w, asset_scale)[:, 0]
    wide = raw.to(torch.float64)
    # the moments of what crops see: a pixel counts as often as crops cover it (the plasma haze is
    # brighter inside than at its corners, and central pixels lie in more crops)
    weight = _coverage(canvas_h, height)[:, None] * _coverage(canvas_w, width)[None, :]
    weight = weight / (weight.sum() * FROST_CANVASES)
    mean = float((wide * weight).sum())
    std = float(((wide - mean).square_() * weight).sum().sqrt())
    return ((raw - mean) / std).contiguous().to(device)


def _coverage(canvas: int, size: int) -> torch.Tensor:
    """How many of the ``canvas - size + 1`` crop positions cover each of the ``canvas`` indices."""
    index = torch.arange(canvas).unsqueeze(1)
    tops = torch.arange(canvas - size + 1).unsqueeze(0)
    return ((index >= tops) & (index < tops + size)).sum(1).to(torch.float64)


def _crops(bank: torch.Tensor, rng: CounterRNG, height: int, width: int) -> torch.Tensor:
    """Per sample, a ``height x width`` crop of one of the canvases ``bank`` [K, C, H', W'] at a random
    place (stream 0), as the reference crops one of its photos: [N, C, height, width]."""
    canvases, channels, canvas_h, canvas_w = bank.shape
    # one draw of three 53-bit uniforms per sample: canvas, top, left
    ranges = torch.tensor([canvases, canvas_h - height + 1, canvas_w - width + 1], dtype=torch.float64,
                          device=rng.device)
    u = rng.uniform64((3,), stream=0) * ranges  # read on the host below: 3 numbers per sample, like motion's offsets
    pick, top, left = u.floor_().long().T.tolist()
    out = torch.empty((rng.n, channels, height, width), dtype=bank.dtype, device=bank.device)
    for i, (k, t, l) in enumerate(zip(pick, top, left, strict=True)):  # row copies: cheaper than a gather
        out[i] = bank[k, :, t : t + height, l : l + width]
    return out


def frost_pattern(rng: CounterRNG, height: int, width: int, asset_scale: float) -> torch.Tensor:
    """The standardized ice pattern [N, 1, H, W] (population mean 0, std 1 over the canvases): per
    sample a crop of one canvas (:func:`_crops`, stream 0)."""
    bank = _frost_bank(int(height), int(width), float(asset_scale), str(rng.device))
    return _crops(bank.unsqueeze(1), rng, int(height), int(width))


@functools.lru_cache(maxsize=16)
def _coloured_bank(height: int, width: int, asset_scale: float, device: str) -> torch.Tensor:
    """:func:`colour_frost` of the canvases, once per size [K, 3, H', W'] (colouring is per pixel, so
    a crop of it is the coloured crop, bit for bit)."""
    return colour_frost(_frost_bank(height, width, asset_scale, device).unsqueeze(1)).contiguous()


def colour_frost(pattern: torch.Tensor) -> torch.Tensor:
    """A standardized pattern [N, 1, H, W] coloured to the target mean/std per channel, clipped to [0, 1]."""
    target_mean = torch.tensor(FROST_TARGET_MEAN, dtype=pattern.dtype, device=pattern.device).view(1, 3, 1, 1)
    target_std = torch.tensor(FROST_TARGET_STD, dtype=pattern.dtype, device=pattern.device).view(1, 3, 1, 1)
    return (target_mean + target_std * pattern).clamp_(0.0, 1.0)


def frost_texture(rng: CounterRNG, height: int, width: int, asset_scale: float) -> torch.Tensor:
    """Procedural frost [N, 3, H, W] in [0, 1] whose pixel mean and std match :data:`FROST_TARGET_MEAN`
    and :data:`FROST_TARGET_STD` over many samples (before the clip to [0, 1]): the same crops as
    :func:`frost_pattern`, coloured."""
    bank = _coloured_bank(int(height), int(width), float(asset_scale), str(rng.device))
    return _crops(bank, rng, int(height), int(width))
