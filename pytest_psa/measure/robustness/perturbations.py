"""CIFAR-10-P style perturbation sequences, generated on the fly from the corruption kernels.

A sequence ("video") starts at frame 0 and changes one small step per frame. Parameters follow
``hendrycks/robustness: ImageNet-P/create_p/make_cifar_p.py`` (facts only, see docs/robustness.md):

==============  ======  =================================================================
perturbation    frames  frame t
==============  ======  =================================================================
gaussian_noise  31      t = 0 clean; t >= 1: x + N(0, 0.02²) (a new draw per frame)
shot_noise      31      t = 0 clean; t >= 1: Poisson(700 x) / 700 (new draw per frame)
motion_blur     21      motion blur radius 6, sigma 1.8, angle 9 (t - 20) degrees
zoom_blur       31      mean of x zoomed by 1 + 0.004 j for j = 0..t (cumulative)
spatter         31      a water layer (loc 0.6, scale 0.265, blur 1.75) flowing down round(0.8 t) rows
brightness      31      HSV value + 0.015 (t - 15)
translate       16      shift by t - 7 pixels horizontally (zero fill)
rotate          31      rotate by t - 15 degrees (bilinear, zero fill)
tilt            31      perspective tilt, both axes 0.75 (t - 15) degrees
scale           31      zoom by (70 + 2 t) / 100 (bilinear, zero fill)
==============  ======  =================================================================

The first six use the corruption kernels (`get_corruption(name).kernel`) with their own ramped
parameters and a counter-based RNG keyed by ("p/<name>", frame), so a frame depends only on
(seed, image index, frame). Noise sequences are scored against frame 0, the others against the
previous frame (the reference's rule, difficulty 1).

`frames=k` keeps k frames of each sequence at the reference's step (the central window of
symmetric ramps, the first k frames otherwise), so the per-step change and the flip probability
per step stay comparable; fewer frames cost proportionally less.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from pytest_psa._specs.names import PERTURBATION_NAMES as CIFAR10_P
from pytest_psa._specs.names import PERTURBATION_SET_ALIASES, PERTURBATION_SETS
from pytest_psa.errors import PsaUsageError


@dataclass(frozen=True)
class Perturbation:
    name: str
    frames: int  # the reference's frame count
    window: str  # "center" (symmetric ramp) or "start"
    frame: Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]  # (x, ids, t, seed) -> frame t


def _rng(name: str, ids: torch.Tensor, t: int, seed: int, device: torch.device):  # type: ignore[no-untyped-def]
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

    return CounterRNG(seed, ids, f"p/{name}", t, device=device)


def _kernel(name: str) -> Callable[..., torch.Tensor]:
    from pytest_psa.measure.robustness.corruptions import get_corruption

    return get_corruption(name).kernel


def _gaussian_noise(x: torch.Tensor, ids: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    if t == 0:
        return x
    return _kernel("gaussian_noise")(x, (0.02,), _rng("gaussian_noise", ids, t, seed, x.device))


def _shot_noise(x: torch.Tensor, ids: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    if t == 0:
        return x
    return _kernel("shot_noise")(x, (700,), _rng("shot_noise", ids, t, seed, x.device))


def _brightness(x: torch.Tensor, ids: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    return _kernel("brightness")(x, (0.015 * (t - 15),), _rng("brightness", ids, t, seed, x.device))


def _motion_blur(x: torch.Tensor, ids: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    from pytest_psa.measure.robustness.corruptions.motion import apply_motion_blur

    angle = torch.full((len(x),), 9.0 * (t - 20), dtype=torch.float64)
    return apply_motion_blur(x, 6.0, 1.8, angle)


SPATTER_P = (0.6, 0.265, 1.75, 0.7, 0.6, 0)  # make_cifar_p: N(0.6, 0.265) layer, blur 1.75, threshold 0.7, water 0.6


def _spatter(x: torch.Tensor, ids: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    """One liquid layer per image (drawn once), flowing down 0.8 px per frame, like the reference's
    per-frame convolution with (0.2, 0.8). The spatter kernel is pointwise in x given its layer, so
    corrupting x rolled up by k rows and rolling the result back moves the layer down by k rows."""
    k = round(0.8 * t)
    out = _kernel("spatter")(torch.roll(x, -k, dims=-2), SPATTER_P, _rng("spatter", ids, 0, seed, x.device))
    return torch.roll(out, k, dims=-2)


def _zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    if factor == 1.0:
        return x
    # torchvision ships no type information: its functional ops are Any to mypy
    return cast(torch.Tensor, F.affine(x, angle=0.0, translate=[0.0, 0.0], scale=factor, shear=[0.0, 0.0],
                                       interpolation=F.InterpolationMode.BILINEAR, fill=0.0))


def _zoom_blur(x: torch.Tensor, ids: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    """Frame t alone (`sequence` keeps a running sum instead, since frames arrive in order)."""
    acc = x.clone()
    for j in range(1, t + 1):
        acc += _zoom(x, 1 + 0.004 * j)
    return acc / (t + 1)


def _translate(x: torch.Tensor, ids: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    dx = t - 7
    out = torch.zeros_like(x)
    w = x.shape[-1]
    if abs(dx) < w:
        if dx >= 0:
            out[..., dx:] = x[..., :w - dx]
        else:
            out[..., :w + dx] = x[..., -dx:]
    return out


def _rotate(x: torch.Tensor, ids: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    # torchvision ships no type information: its functional ops are Any to mypy
    return cast(torch.Tensor, F.rotate(x, float(t - 15), interpolation=F.InterpolationMode.BILINEAR, fill=0.0))


def _scale(x: torch.Tensor, ids: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    return _zoom(x, (70 + 2 * t) / 100)


def tilt_homography(h: int, w: int, degrees: float) -> np.ndarray:
    """The 3x3 image homography of a plane tilted by `degrees` about both the x and y axes.

    Pinhole model with focal length f = sqrt(w² + h²): centre the pixel grid, rotate in 3-D,
    push the plane to depth f and project back (the construction of make_cifar_p.py's tilt).
    """
    a = math.radians(degrees)
    f = math.hypot(w, h)
    to_3d = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]], dtype=np.float64)
    rx = np.array([[1, 0, 0, 0], [0, math.cos(a), -math.sin(a), 0], [0, math.sin(a), math.cos(a), 0], [0, 0, 0, 1]],
                  dtype=np.float64)
    ry = np.array([[math.cos(a), 0, -math.sin(a), 0], [0, 1, 0, 0], [math.sin(a), 0, math.cos(a), 0], [0, 0, 0, 1]],
                  dtype=np.float64)
    push = np.eye(4)
    push[2, 3] = f
    project = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]], dtype=np.float64)
    return project @ push @ rx @ ry @ to_3d


def _tilt(x: torch.Tensor, ids: torch.Tensor, t: int, seed: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    if t == 15:
        return x
    inverse = np.linalg.inv(tilt_homography(x.shape[-2], x.shape[-1], 0.75 * (t - 15)))
    inverse /= inverse[2, 2]  # output pixel -> input pixel, as warpPerspective samples
    # torchvision ships no type information: its functional ops are Any to mypy
    return cast(torch.Tensor, F.perspective(x, None, None, coefficients=[float(v) for v in inverse.ravel()[:8]],
                                            interpolation=F.InterpolationMode.BILINEAR, fill=0.0))


PERTURBATIONS: dict[str, Perturbation] = {p.name: p for p in (
    Perturbation("gaussian_noise", 31, "start", _gaussian_noise),
    Perturbation("shot_noise", 31, "start", _shot_noise),
    Perturbation("motion_blur", 21, "start", _motion_blur),
    Perturbation("zoom_blur", 31, "start", _zoom_blur),
    Perturbation("spatter", 31, "start", _spatter),
    Perturbation("brightness", 31, "center", _brightness),
    Perturbation("translate", 16, "center", _translate),
    Perturbation("rotate", 31, "center", _rotate),
    Perturbation("tilt", 31, "center", _tilt),
    Perturbation("scale", 31, "center", _scale),
)}


def resolve_perturbations(spec: object) -> tuple[str, ...]:
    """``None`` -> (), ``"cifar10-p"`` -> the 10 test perturbations, or a list of names (checked)."""
    if spec is None:
        return ()
    names: tuple[object, ...]
    if spec in (*PERTURBATION_SETS, *PERTURBATION_SET_ALIASES):
        names = CIFAR10_P
    elif isinstance(spec, str):
        names = (spec,)
    elif isinstance(spec, Iterable):
        names = tuple(spec)
    else:
        raise PsaUsageError("perturbations must be None, \"cifar10-p\" or a list of names",
                            observed=type(spec).__name__, fix='e.g. perturbations=["translate", "rotate"]')
    for n in names:
        if n not in PERTURBATIONS:
            import difflib

            close = difflib.get_close_matches(str(n), PERTURBATIONS, n=1)
            raise PsaUsageError(f"unknown perturbation {n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                                fix=f'use "cifar10-p" or names from {", ".join(PERTURBATIONS)}')
    if not names:
        raise PsaUsageError("perturbations is empty", fix='use None to skip them, or "cifar10-p"')
    return tuple(dict.fromkeys(str(n) for n in names))  # each one a key of PERTURBATIONS, so a str


def frame_indices(name: str, frames: int | None) -> list[int]:
    """The reference frame numbers kept for `name` with `frames` frames (None: all of them)."""
    p = PERTURBATIONS[name]
    if frames is None or frames >= p.frames:
        return list(range(p.frames))
    if frames < 2:
        raise PsaUsageError(f"a perturbation sequence needs at least 2 frames, got frames={frames}",
                            fix="use frames >= 2 (the reference uses 31)")
    start = (p.frames - frames) // 2 if p.window == "center" else 0
    return list(range(start, start + frames))


def sequence(name: str, images: torch.Tensor, indices: torch.Tensor, *, seed: int = 0,
             frames: int | None = None) -> Iterator[torch.Tensor]:
    """Yield the frames of perturbation `name` for float images [N, C, H, W] in [0, 1] (frame 0 first)."""
    p = PERTURBATIONS[name]
    ts = frame_indices(name, frames)
    if name == "zoom_blur":  # cumulative: frame t = (frame t-1 * t + zoom_t) / (t + 1), O(T) not O(T²)
        acc = images.clone()
        for t in ts:
            if t:
                acc += _zoom(images, 1 + 0.004 * t)
            yield (acc / (t + 1)).clamp(0.0, 1.0)
        return
    for t in ts:
        yield p.frame(images, indices, t, seed).clamp(0.0, 1.0)


__all__ = ["CIFAR10_P", "PERTURBATIONS", "frame_indices", "resolve_perturbations", "sequence", "tilt_homography"]
