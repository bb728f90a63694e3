"""The AugMix/PixMix base operations on one float (C, H, W) tensor, drawn from torch's generator.

The operations, their magnitudes and the per-call level draw follow the released PixMix code's
`pixmix_utils.py` (itself AugMix's): a level ~ U(0.1, severity), scaled by level/10 to each op's
maximum, and a random sign for the geometric ones. Geometric ops use PIL's convention (an inverse
affine map on pixel centres, origin at the top-left, bilinear, zero fill) through `grid_sample`
instead of PIL, so they run on any size and channel count; translation scales with the width
(the reference's IMAGE_SIZE).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as nnf

from pytest_psa.augment.zoo._draw import coin, uniform

Op = Callable[[torch.Tensor, float], torch.Tensor]


def _level(severity: float) -> float:
    return uniform(0.1, severity)


def _int_parameter(level: float, maxval: float) -> int:
    return int(level * maxval / 10)


def _float_parameter(level: float, maxval: float) -> float:
    return float(level) * maxval / 10.0


def _signed(value: float) -> float:
    return -value if coin() else value


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def affine_pil(x: torch.Tensor, coeffs: tuple[float, float, float, float, float, float]) -> torch.Tensor:
    """PIL's ``Image.transform(size, AFFINE, (a, b, c, d, e, f), BILINEAR)``: output pixel (u, v) reads
    the input at (a u + b v + c, d u + e v + f), pixel centres at +0.5, zero outside."""
    _, h, w = x.shape
    a, b, c, d, e, f = coeffs
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                          indexing="ij")
    sx, sy = a * u + b * v + c, d * u + e * v + f
    grid = torch.stack((sx * (2.0 / w) - 1.0, sy * (2.0 / h) - 1.0), dim=-1)[None]
    return nnf.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def autocontrast(x: torch.Tensor, severity: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    return cast(torch.Tensor, F.autocontrast(x))  # torchvision's functional ops return Any to mypy


def equalize(x: torch.Tensor, severity: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    return cast(torch.Tensor, F.equalize(_uint8(x))).float().div_(255.0)


def posterize(x: torch.Tensor, severity: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    bits = 4 - _int_parameter(_level(severity), 4)
    return cast(torch.Tensor, F.posterize(_uint8(x), bits)).float().div_(255.0)


def rotate(x: torch.Tensor, severity: float) -> torch.Tensor:
    degrees = _signed(_int_parameter(_level(severity), 30))
    # PIL's rotate: counter-clockwise about the centre, as the inverse map PIL builds for it
    _, h, w = x.shape
    t = -math.radians(degrees)
    cos, sin = math.cos(t), math.sin(t)
    cx, cy = w / 2.0, h / 2.0
    return affine_pil(x, (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy))


def solarize(x: torch.Tensor, severity: float) -> torch.Tensor:
    threshold = 256 - _int_parameter(_level(severity), 256)
    u8 = _uint8(x)
    return torch.where(u8 >= threshold, 255 - u8, u8).float().div_(255.0)


def shear_x(x: torch.Tensor, severity: float) -> torch.Tensor:
    return affine_pil(x, (1.0, _signed(_float_parameter(_level(severity), 0.3)), 0.0, 0.0, 1.0, 0.0))


def shear_y(x: torch.Tensor, severity: float) -> torch.Tensor:
    return affine_pil(x, (1.0, 0.0, 0.0, _signed(_float_parameter(_level(severity), 0.3)), 1.0, 0.0))


def translate_x(x: torch.Tensor, severity: float) -> torch.Tensor:
    shift = _signed(_int_parameter(_level(severity), x.shape[-1] / 3))
    return affine_pil(x, (1.0, 0.0, shift, 0.0, 1.0, 0.0))


def translate_y(x: torch.Tensor, severity: float) -> torch.Tensor:
    shift = _signed(_int_parameter(_level(severity), x.shape[-1] / 3))
    return affine_pil(x, (1.0, 0.0, 0.0, 0.0, 1.0, shift))


def _enhance_factor(severity: float) -> float:
    return _float_parameter(_level(severity), 1.8) + 0.1


def color(x: torch.Tensor, severity: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    factor = _enhance_factor(severity)
    return cast(torch.Tensor, F.adjust_saturation(x, factor)) if x.shape[0] == 3 else x


def contrast(x: torch.Tensor, severity: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    factor = _enhance_factor(severity)
    return cast(torch.Tensor, F.adjust_contrast(x, factor)) if x.shape[0] in (1, 3) else x


def brightness(x: torch.Tensor, severity: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    return cast(torch.Tensor, F.adjust_brightness(x, _enhance_factor(severity)))


def sharpness(x: torch.Tensor, severity: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    return cast(torch.Tensor, F.adjust_sharpness(x, _enhance_factor(severity)))


# the reference's `augmentations` and `augmentations_all` lists, in its order
AUGMENTATIONS: tuple[Op, ...] = (autocontrast, equalize, posterize, rotate, solarize, shear_x, shear_y,
                                 translate_x, translate_y)
AUGMENTATIONS_ALL: tuple[Op, ...] = (*AUGMENTATIONS, color, contrast, brightness, sharpness)
