"""Blur corruptions: defocus (disk kernel), zoom and gaussian blur. All three are deterministic.

- defocus_blur: the reference's 17 x 17 disk (21 x 21 for radius > 8) anti-aliased by a 3 x 3 (5 x 5)
  Gaussian with reflect-101 borders (cv2.GaussianBlur), then correlated with each channel under a
  reflect-101 border (cv2.filter2D). The kernel is trimmed to its non-zero support, which changes no
  output value.
- zoom_blur: the mean of the image and its "clipped zooms": centre crop of ceil(n / z) pixels, linear
  zoom by z as scipy.ndimage.zoom(order=1) does it (output size round(crop * z), input coordinate
  o * (crop - 1) / (out - 1)), centre trim back to n. The whole average is one fixed sparse linear map
  of the image, built once per (size, zoom list) and applied as a sparse matrix product.
- gaussian_blur: skimage.filters.gaussian (scipy gaussian_filter, truncate 4, mode 'nearest'), as two
  banded matrices (borders folded in) applied along rows and columns.

Severity tables (rows are severities 1..5), from hendrycks/robustness ``ImageNet-C/create_c/``:
32 px ``make_cifar_c.py`` (@ca36008), 64 px ``make_tinyimagenet_c.py`` (@7a64e6a), 224 px
``make_imagenet_c.py`` (@e0377d4). The zoom rows are the factors ``np.arange(1, stop, step)``
yields, float rounding included (for CIFAR 7, 12, 16, 21 and 26 zooms: severities 1 and 2 include
their end point, 3 to 5 do not).
"""

from __future__ import annotations

import functools
import math
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from pytest_psa.measure.robustness.corruptions.glass import boundary_index, gaussian_operator
from pytest_psa.measure.robustness.corruptions.registry import Corruption
from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

__all__ = [
    "CORRUPTIONS_BLUR",
    "apply_separable",
    "defocus_blur",
    "defocus_kernel",
    "gaussian_blur",
    "gaussian_blur_matrix",
    "reflect101_index",
    "zoom_blur",
    "zoom_factors",
]


# -- shared helpers ----------------------------------------------------------------------------------


def reflect101_index(n: int, pad: int) -> torch.Tensor:
    """Indices of ``arange(-pad, n + pad)`` folded into [0, n) by reflect-101 (cv2's default border,
    torch's 'reflect'), for any pad (torch's own padding needs pad < n)."""
    return boundary_index(torch.arange(-pad, n + pad), n, "mirror")


def apply_separable(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, *, rounding: bool = False) -> torch.Tensor:
    """``rows @ image @ cols.T`` for every image and channel of NCHW ``x``, as two large GEMMs, width
    first (PIL's pass order). ``rounding``: round half up after each pass, as PIL's 8-bit passes store."""
    n, c, h, w = x.shape
    out_h, out_w = rows.shape[0], cols.shape[0]
    y = (x.reshape(-1, w) @ cols.T).reshape(n * c, h, out_w)
    if rounding:
        y = torch.floor(y + 0.5)
    y = (y.transpose(1, 2).reshape(-1, h) @ rows.T).reshape(n * c, out_w, out_h)
    if rounding:
        y = torch.floor(y + 0.5)
    return y.transpose(1, 2).reshape(n, c, out_h, out_w)


# -- defocus blur ------------------------------------------------------------------------------------


def _gaussian_taps(size: int, sigma: float) -> torch.Tensor:
    """cv2.getGaussianKernel(size, sigma) for sigma > 0: exp(-d^2 / 2 sigma^2), normalised."""
    d = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(d * d) / (2.0 * sigma * sigma))
    return taps / taps.sum()


@functools.lru_cache(maxsize=64)
def _defocus_kernel_cached(radius: float, alias_blur: float) -> torch.Tensor:
    if radius <= 8:
        half, blur_size = 8, 3
    else:
        half, blur_size = int(radius), 5
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    disk = ((xx * xx + yy * yy) <= radius * radius).to(torch.float32).to(torch.float64)
    disk /= disk.sum()
    # cv2.GaussianBlur: separable taps, reflect-101 border around the 17 x 17 (or larger) grid.
    taps = _gaussian_taps(blur_size, alias_blur)
    pad = blur_size // 2
    idx = reflect101_index(disk.shape[0], pad)
    padded = disk[idx][:, idx]
    windows = padded.unfold(0, blur_size, 1)  # [n, n + 2 pad, blur_size]
    blurred = (windows * taps).sum(-1)
    blurred = (blurred.unfold(1, blur_size, 1) * taps).sum(-1)
    # Trim to the non-zero support (symmetric about the centre).
    nonzero = blurred.abs().sum(0) > 0
    reach = int((torch.arange(blurred.shape[0]) - half)[nonzero].abs().max()) if nonzero.any() else 0
    return blurred[half - reach : half + reach + 1, half - reach : half + reach + 1].contiguous()


def defocus_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference's anti-aliased disk (float64, odd square, trimmed to its non-zero support)."""
    return _defocus_kernel_cached(float(radius), float(alias_blur))


#: Kernel side from which the FFT path beats the depthwise convolution on CPU: the convolution costs
#: ~k^2 multiply-adds per pixel, the FFT a near-constant ~50 per pixel (measured side by side at 64 and
#: 224 px, one thread: k = 9 about even, k = 17 3-4x faster by FFT).
FFT_MIN_SIDE = 9


def defocus_blur(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Correlate every channel with the anti-aliased disk, reflect-101 border. params = (radius, alias).

    Small disks (CIFAR, Tiny ImageNet): a depthwise convolution in channels-last layout (oneDNN's
    depthwise kernel is ~6x faster than convolving N*C single-channel images). Large ones (ImageNet's
    9 x 9 to 21 x 21 on CPU): an FFT correlation per image, in the input's dtype, which is what makes
    cv2.filter2D fast on them too. Both differ from the exact sum by float rounding only (< 1e-6).
    """
    radius, alias_blur = params
    kernel = defocus_kernel(radius, alias_blur)
    pad = kernel.shape[0] // 2
    n, c, h, w = x.shape
    if x.device.type == "cpu" and kernel.shape[0] >= FFT_MIN_SIDE and min(h, w) > kernel.shape[0]:
        return _defocus_fft(x, float(radius), float(alias_blur)).clamp_(0.0, 1.0)
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    rows = reflect101_index(h, pad).to(x.device)
    cols = reflect101_index(w, pad).to(x.device)
    padded = x.index_select(2, rows).index_select(3, cols).contiguous(memory_format=torch.channels_last)
    weight = kernel.expand(c, 1, *kernel.shape).contiguous()
    out = F.conv2d(padded, weight, groups=c)
    return out.contiguous().clamp_(0.0, 1.0)


@functools.lru_cache(maxsize=32)
def _defocus_spectrum(radius: float, alias_blur: float, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    """rfft2 of the flipped defocus kernel zero-padded to rows x cols (correlation = convolution with
    the flipped kernel)."""
    spectrum = torch.fft.rfft2(defocus_kernel(radius, alias_blur).flip(0, 1).to(dtype), s=(rows, cols))
    return cast(torch.Tensor, spectrum)  # torch.fft is untyped


def _defocus_fft(x: torch.Tensor, radius: float, alias_blur: float) -> torch.Tensor:
    """Reflect-101 padded correlation of every channel with the defocus kernel by FFT, one image per
    transform: a fixed transform shape keeps each image's bits independent of its batch."""
    from scipy.fft import next_fast_len

    side = defocus_kernel(radius, alias_blur).shape[0]
    pad = side // 2
    n, c, h, w = x.shape
    rows_index = reflect101_index(h, pad)
    cols_index = reflect101_index(w, pad)
    # A circular convolution over >= h + 2 pad samples: its wrap-around reaches only the first
    # side - 1 outputs, which are dropped. Sizes with small prime factors keep the FFT fast.
    rows, cols = next_fast_len(h + 2 * pad, real=True), next_fast_len(w + 2 * pad, real=True)
    spectrum = _defocus_spectrum(radius, alias_blur, rows, cols, x.dtype)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for i in range(n):
        padded = x[i].index_select(1, rows_index).index_select(2, cols_index)
        full = torch.fft.irfft2(torch.fft.rfft2(padded, s=(rows, cols)).mul_(spectrum), s=(rows, cols))
        out[i] = full[:, side - 1 : side - 1 + h, side - 1 : side - 1 + w]
    return out


# -- zoom blur ---------------------------------------------------------------------------------------


def zoom_factors(stop: float, step: float) -> tuple[float, ...]:
    """``np.arange(1, stop, step)`` as the reference builds its zoom list (float rounding decides
    whether ``stop`` is included)."""
    return tuple(float(z) for z in np.arange(1, stop, step))


def _zoom_taps(n: int, zoom: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For output pixels 0..n-1 of one clipped zoom along one axis: (left index, right index, right
    weight), as scipy.ndimage.zoom(order=1, grid_mode=False) computes them after the centre crop."""
    crop = int(math.ceil(n / zoom))
    top = (n - crop) // 2
    out = int(round(crop * zoom))
    trim = (out - n) // 2
    o = np.arange(n, dtype=np.float64) + trim
    coord = o * ((crop - 1) / (out - 1)) if out > 1 else np.zeros(n)
    left = np.floor(coord).astype(np.int64)
    frac = coord - left
    right = np.minimum(left + 1, crop - 1)
    return top + left, top + right, frac


@functools.lru_cache(maxsize=32)
def _zoom_operator_cpu(h: int, w: int, zooms: tuple[float, ...]) -> torch.Tensor:
    """(identity + sum of clipped zooms) / (k + 1) as a coalesced sparse COO [h*w, h*w] float64 matrix."""
    rows_out, cols_in, values = [np.arange(h * w)], [np.arange(h * w)], [np.ones(h * w)]
    pix_r, pix_c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for zoom in zooms:
        r0, r1, fr = _zoom_taps(h, zoom)
        c0, c1, fc = _zoom_taps(w, zoom)
        for ri, wr in ((r0, 1.0 - fr), (r1, fr)):
            for ci, wc in ((c0, 1.0 - fc), (c1, fc)):
                weight = wr[pix_r] * wc[pix_c]
                keep = weight.reshape(-1) != 0
                rows_out.append((pix_r * w + pix_c).reshape(-1)[keep])
                cols_in.append((ri[pix_r] * w + ci[pix_c]).reshape(-1)[keep])
                values.append(weight.reshape(-1)[keep])
    index = torch.from_numpy(np.stack([np.concatenate(rows_out), np.concatenate(cols_in)]))
    scale = 1.0 / (len(zooms) + 1)
    values_t = torch.from_numpy(np.concatenate(values)) * scale
    matrix = torch.sparse_coo_tensor(index, values_t, (h * w, h * w), check_invariants=True)
    return matrix.coalesce()


_ZOOM_DEVICE: dict[tuple[int, int, tuple[float, ...], torch.dtype, str], torch.Tensor] = {}


def _zoom_operator(
    h: int, w: int, zooms: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    key = (h, w, zooms, dtype, str(device))
    operator = _ZOOM_DEVICE.get(key)  # one lookup: another thread may clear the dict in between
    if operator is None:
        operator = _zoom_operator_cpu(h, w, zooms).to(dtype=dtype).to(device)
        if len(_ZOOM_DEVICE) > 32:
            _ZOOM_DEVICE.clear()
        _ZOOM_DEVICE[key] = operator
    return operator


def zoom_blur(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Average of the image and its clipped zooms by each factor in ``params`` (a tuple of zooms)."""
    n, c, h, w = x.shape
    operator = _zoom_operator(h, w, tuple(float(z) for z in params), x.dtype, x.device)
    flat = x.reshape(n * c, h * w).T.contiguous()
    product = cast(torch.Tensor, torch.sparse.mm(operator, flat))  # torch.sparse.mm is untyped (_add_docstr)
    return product.T.reshape(n, c, h, w).clamp_(0.0, 1.0)


# -- gaussian blur -----------------------------------------------------------------------------------


def gaussian_blur_matrix(
    n: int, sigma: float, dtype: torch.dtype, device: torch.device, truncate: float = 4.0
) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter1d(mode='nearest', truncate) along an axis of length n, as an
    [n, n] matrix (``out = M @ signal``)."""
    return gaussian_operator(int(n), float(sigma), float(truncate), "nearest").to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """skimage.filters.gaussian(sigma, channel axis kept): separable, truncate 4, 'nearest' border."""
    (sigma,) = params
    n, c, h, w = x.shape
    rows = gaussian_blur_matrix(h, sigma, x.dtype, x.device)
    cols = gaussian_blur_matrix(w, sigma, x.dtype, x.device)
    return apply_separable(x, rows, cols).clamp_(0.0, 1.0)


def _zoom_rows(*stops_steps: tuple[float, float]) -> tuple[tuple[float, ...], ...]:
    return tuple(zoom_factors(stop, step) for stop, step in stops_steps)


CORRUPTIONS_BLUR: list[Corruption] = [
    Corruption(
        name="defocus_blur",
        family="blur",
        kernel=defocus_blur,
        tables={
            32: ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)),
            64: ((0.5, 0.6), (1.0, 0.1), (1.5, 0.1), (2.5, 0.01), (3.0, 0.1)),
            224: ((3.0, 0.1), (4.0, 0.5), (6.0, 0.5), (8.0, 0.5), (10.0, 0.5)),
        },
        stochastic=False,
    ),
    Corruption(
        name="zoom_blur",
        family="blur",
        kernel=zoom_blur,
        tables={
            32: _zoom_rows((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)),
            64: _zoom_rows((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)),
            224: _zoom_rows((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)),
        },
        stochastic=False,
        deviation="one precomputed sparse linear map; non-square images zoom each axis by its own length",
    ),
    Corruption(
        name="gaussian_blur",
        family="blur",
        kernel=gaussian_blur,
        tables={
            32: ((0.4,), (0.6,), (0.7,), (0.8,), (1.0,)),
            64: ((0.5,), (0.75,), (1.0,), (1.25,), (1.5,)),
            224: ((1.0,), (2.0,), (3.0,), (4.0,), (6.0,)),
        },
        stochastic=False,
        validation=True,
    ),
]
