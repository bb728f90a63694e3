"""Weather corruptions: snow, frost, fog, and the validation corruption spatter.

References: ``snow``, ``frost``, ``fog`` and ``spatter`` in hendrycks/robustness
``ImageNet-C/create_c/make_cifar_c.py`` (@ca36008, 32 px), ``make_tinyimagenet_c.py`` (@7a64e6a, 64 px)
and ``make_imagenet_c.py`` (@e0377d4, 224 px); the tables below are copied from those files (facts).
All four are batched, keyed by the :class:`CounterRNG` and free of external assets:

- snow: Wand's motion blur is :func:`apply_motion_blur` (ImageMagick semantics); the snow layer goes
  through the same 8-bit steps as the reference (truncated to uint8 before the blur, rounded after it).
- frost: the reference adds a random crop of one of five frost photographs; here crops of eight
  procedural ice canvases (:func:`frost_texture`, drawn once per size) calibrated to an assumed photo
  mean/std stand in for them.
- fog: the reference's diamond-square plasma, mapsize the next power of two >= the image (32, 64, 256).
- spatter: the reference's two modes with cv2 replaced by :mod:`cv_ops` (exact Euclidean distance instead
  of cv2's 5x5 chamfer; float Canny direction test).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from pytest_psa.measure.robustness.corruptions.chunking import GROUPED_CHUNK_PIXELS, chunked, map_chunks, whole_batch
from pytest_psa.measure.robustness.corruptions.cv_ops import (
    box_blur3,
    canny,
    distance_to_zero,
    equalize_hist,
    filter2d_u8,
)
from pytest_psa.measure.robustness.corruptions.glass import gaussian_filter
from pytest_psa.measure.robustness.corruptions.motion import apply_motion_blur
from pytest_psa.measure.robustness.corruptions.registry import Corruption
from pytest_psa.measure.robustness.corruptions.weather_maps import (
    clipped_zoom,
    frost_texture,
    next_power_of_two,
    plasma_fractal,
)

if TYPE_CHECKING:
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

__all__ = [
    "CORRUPTIONS_WEATHER",
    "FOG_TABLES",
    "FROST_TABLES",
    "SNOW_TABLES",
    "SPATTER_TABLES",
    "fog",
    "frost",
    "snow",
    "spatter",
]

#: (loc, scale, zoom, threshold, blur radius, blur sigma, blend) per severity.
SNOW_TABLES: dict[int, tuple[tuple[Any, ...], ...]] = {
    32: (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    64: (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.8),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6),
    ),
    224: (
        (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
    ),
}

#: (image coefficient, frost coefficient, asset scale) per severity. The first two are the reference's;
#: the third is the factor the reference resizes its frost photos by before cropping (0.2 in
#: make_cifar_c.py, 0.3 in make_tinyimagenet_c.py, none in make_imagenet_c.py) and sets the crystal size.
FROST_TABLES: dict[int, tuple[tuple[Any, ...], ...]] = {
    32: ((1, 0.2, 0.2), (1, 0.3, 0.2), (0.9, 0.4, 0.2), (0.85, 0.4, 0.2), (0.75, 0.45, 0.2)),
    64: ((1, 0.3, 0.3), (0.9, 0.4, 0.3), (0.8, 0.45, 0.3), (0.75, 0.5, 0.3), (0.7, 0.55, 0.3)),
    224: ((1, 0.4, 1.0), (0.8, 0.6, 1.0), (0.7, 0.7, 1.0), (0.65, 0.7, 1.0), (0.6, 0.75, 1.0)),
}

#: (fog strength, wibble decay) per severity.
FOG_TABLES: dict[int, tuple[tuple[Any, ...], ...]] = {
    32: ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    64: ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
    224: ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
}

#: (loc, scale, sigma, threshold, intensity, mode) per severity; mode 0 = liquid, 1 = mud.
SPATTER_TABLES: dict[int, tuple[tuple[Any, ...], ...]] = {
    32: (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    64: (
        (0.62, 0.1, 0.7, 0.7, 0.6, 0),
        (0.65, 0.1, 0.8, 0.7, 0.6, 0),
        (0.65, 0.3, 1, 0.69, 0.6, 0),
        (0.65, 0.1, 0.7, 0.68, 0.6, 1),
        (0.65, 0.1, 0.5, 0.67, 0.6, 1),
    ),
    224: (
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ),
}

_GRAY = (0.299, 0.587, 0.114)  # cv2.COLOR_RGB2GRAY
_WATER = (175 / 255.0, 238 / 255.0, 238 / 255.0)  # pale turquoise, in the reference's channel order
_MUD = (63 / 255.0, 42 / 255.0, 20 / 255.0)
_EMBOSS: list[list[float]] = [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]


def _rgb(values: tuple[float, float, float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma [N, 1, H, W]; a 1-channel image is its own gray."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return r * _GRAY[0] + g * _GRAY[1] + b * _GRAY[2]


def _snow_blend(x: torch.Tensor, layer: torch.Tensor, blend: float) -> torch.Tensor:
    brightened = torch.maximum(x, _gray(x) * 1.5 + 0.5)
    mixed = x * blend + brightened * (1.0 - blend)
    return (mixed + layer + layer.flip(-1, -2)).clamp_(0.0, 1.0)


@whole_batch
def snow(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Snow: thresholded zoomed normal noise, motion-blurred at U(-135, -45) degrees, added twice
    (as is and rotated 180 degrees) onto the image blended towards ``max(x, 1.5 gray + 0.5)``.

    The 1-channel snow layer is made for the whole batch (the motion blur sorts samples by direction,
    and longer runs of equal offsets are cheaper); the 3-channel blend runs in cache-sized chunks.
    """
    loc, scale, zoom, threshold, radius, sigma, blend = (float(p) for p in params)
    _, _, h, w = x.shape
    layer = rng.normal((1, h, w), stream=0).mul_(scale).add_(loc)
    layer = clipped_zoom(layer, zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = layer.clamp(0.0, 1.0).mul_(255.0).floor_().div_(255.0)  # .astype(np.uint8) before the PNG
    angle = rng.uniform((1,), stream=1)[:, 0].to(torch.float64) * 90.0 - 135.0
    layer = apply_motion_blur(layer, radius, sigma, angle)
    layer = layer.mul_(255.0).round_().clamp_(0.0, 255.0).div_(255.0)  # the 8-bit PNG Wand writes
    return map_chunks(lambda xs, ls: _snow_blend(xs, ls, blend), x, layer)


@chunked
def frost(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Frost: ``image_coef * x + frost_coef * texture``, the texture a random crop of one of the procedural
    ice canvases per sample (the reference's design with its photos)."""
    image_coef, frost_coef = float(params[0]), float(params[1])
    _, channels, h, w = x.shape
    # A 2-value row (the reference's own) takes the photo scale of the nearest table: 0.2, 0.3 or 1.
    side = max(h, w)
    asset_scale = float(params[2]) if len(params) > 2 else (0.2 if side <= 48 else 0.3 if side <= 144 else 1.0)
    texture = frost_texture(rng, h, w, asset_scale)
    if channels == 1:
        texture = _gray(texture)
    out = x * image_coef
    return out.add_(texture.mul_(frost_coef)).clamp_(0.0, 1.0)


@chunked
def fog(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Fog: ``(x + c * plasma) * max(x) / (max(x) + c)``, plasma from diamond-square per sample."""
    strength, decay = float(params[0]), float(params[1])
    _, _, h, w = x.shape
    mapsize = next_power_of_two(max(h, w))
    # float32 maps from 128 px: 1.5x faster at 256, and they differ from float64 maps by < 4e-7 (of the
    # [0, 1] range; the reference's uint8 output steps by 3.9e-3); float64 (same bits as before) below
    dtype = torch.float32 if mapsize >= 128 else torch.float64
    plasma = plasma_fractal(rng, mapsize, decay, stream=0, dtype=dtype)
    # the map is this call's own tensor: scaled in place, and the sum scaled in place (two fewer
    # image-sized buffers; the same operations)
    plasma = plasma[:, :h, :w].to(x.dtype).unsqueeze(1).mul_(strength)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + plasma).mul_(peak / (peak + strength)).clamp_(0.0, 1.0)


def _liquid_texture(liquid_u8: torch.Tensor) -> torch.Tensor:
    """The reference's mode-0 texture from the 8-bit liquid layer [N, H, W] (float in 0..255)."""
    edges = canny(liquid_u8, 50, 150)
    dist = distance_to_zero(~edges, 20.0)  # distance to the nearest edge pixel, truncated at 20
    dist = box_blur3(dist).floor_().long()  # cv2.blur(...).astype(np.uint8)
    dist = equalize_hist(dist)
    dist = filter2d_u8(dist.to(torch.float32), _EMBOSS)
    return box_blur3(dist).round_()  # cv2.blur on uint8 rounds


@chunked
def spatter(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Spatter (validation): blurred thresholded normal noise as liquid (mode 0: turquoise water with
    an embossed distance texture) or mud (mode 1: brown blots that replace the image)."""
    loc, scale, sigma, threshold, intensity = (float(p) for p in params[:5])
    mode = int(params[5])
    n, channels, h, w = x.shape
    liquid = rng.normal((h, w), stream=0).mul_(scale).add_(loc)
    liquid = gaussian_filter(liquid, sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mode == 0:
        liquid_u8 = liquid.mul(255.0).clamp_(0.0, 255.0).floor_()  # (x * 255).astype(np.uint8)
        m = liquid_u8 * _liquid_texture(liquid_u8)  # products of 8-bit integers: exact in float32
        peak = m.amax(dim=(1, 2), keepdim=True)
        m = torch.where(peak > 0, m / peak.clamp_min(1.0), torch.zeros_like(m)) * intensity
        m = m.to(x.dtype).unsqueeze(1)
        color = _rgb(_WATER, x) if channels == 3 else torch.full_like(x[:1, :1, :1, :1], sum(_WATER) / 3)
        return (x + m * color).clamp_(0.0, 1.0)
    blots = (liquid > threshold).to(x.dtype)
    m = gaussian_filter(blots, intensity)
    m = torch.where(m < 0.8, torch.zeros_like(m), m).to(x.dtype).unsqueeze(1)
    color = _rgb(_MUD, x) if channels == 3 else torch.full_like(x[:1, :1, :1, :1], sum(_MUD) / 3)
    return (x * (1.0 - m) + color * m).clamp_(0.0, 1.0)


CORRUPTIONS_WEATHER: list[Corruption] = [
    Corruption(
        name="snow",
        family="weather",
        kernel=snow,
        tables=SNOW_TABLES,
        stochastic=True,
        deviation="Wand motion blur re-implemented (ImageMagick kernel, edge pixels); 8-bit steps of the layer kept",
    ),
    Corruption(
        name="frost",
        family="weather",
        kernel=frost,
        tables=FROST_TABLES,
        stochastic=True,
        deviation=(
            "crops of eight procedural ice canvases (hexagonal streaks + plasma haze, calibrated to an "
            "assumed photo mean/std) instead of crops of the five frost photographs"
        ),
    ),
    Corruption(
        name="fog",
        family="weather",
        kernel=fog,
        tables=FOG_TABLES,
        stochastic=True,
        deviation="same plasma-fractal algorithm; uniforms from the counter RNG instead of np.random",
    ),
    Corruption(
        name="spatter",
        family="weather",
        kernel=spatter,
        tables=SPATTER_TABLES,
        stochastic=True,
        validation=True,
        deviation=(
            "cv2 replaced by torch ops: exact Euclidean distance instead of cv2's 5x5 chamfer, float "
            "Canny direction test; otherwise the reference's steps including its uint8 casts"
        ),
    ),
]
