"""Glass blur, and the scipy-compatible Gaussian filter that glass, elastic and spatter share.

Reference: ``glass_blur`` in hendrycks/robustness ``ImageNet-C/create_c/make_cifar_c.py`` (@ca36008),
``make_tinyimagenet_c.py`` (@7a64e6a) and ``make_imagenet_c.py`` (@e0377d4). Per image it

1. blurs with ``skimage.filters.gaussian(sigma, multichannel=True)`` (scipy ``gaussian_filter``, mode
   ``nearest``, truncate 4) and casts ``np.uint8(... * 255)``, which *truncates*;
2. runs ``iters`` passes over the positions ``h, w in range(size - d, d, -1)`` (bottom-right to top-left;
   30 x 30 positions at 32 px with d = 1), drawing ``dx, dy = np.random.randint(-d, d, 2)`` -- the
   exclusive upper bound gives only ``{-d, ..., d - 1}``, so the displacement is biased up-left -- and
   executing ``x[h, w], x[h', w'] = x[h', w'], x[h, w]``;
3. blurs again and clips.

Step 2 is not a swap. On an RGB array ``x[h', w']`` and ``x[h, w]`` are *views*, so the first
assignment overwrites ``x[h, w]`` and the second writes that same value back into ``x[h', w']``: every
visited pixel is replaced by a copy of its neighbour and the neighbour keeps its value. This module
reproduces those semantics exactly (the test suite runs the literal numpy loop against it with the same
displacements). Sequential copying is a pointer chase: when the visited pixel p reads a source that the
scan has already rewritten (an offset down or right, possible only for d >= 2), it gets that source's
new value, which is itself a copy. ``_sequential_sources`` resolves every chain at once by pointer
doubling, so a whole batch of passes costs a few gathers; for d = 1 every source lies up-left, which the
scan has not reached yet, and one gather is exact.

Randomness: the displacement pair of a visited position comes from one 24-bit uniform of the
:class:`CounterRNG` (``floor(u * (2d)^2)`` split into dx, dy), uniform on the same ``{-d..d-1}^2`` grid as
the reference's two ``randint`` draws (exactly for d = 1, 2, 4; bias below 2^-19 for d = 3).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import torch

from pytest_psa.measure.robustness.corruptions.chunking import chunked
from pytest_psa.measure.robustness.corruptions.registry import Corruption

if TYPE_CHECKING:
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

__all__ = [
    "CORRUPTIONS_GLASS",
    "GLASS_TABLES",
    "boundary_index",
    "gaussian_filter",
    "gaussian_operator",
    "glass_blur",
    "glass_shuffle",
    "glass_shuffle_positions",
]

#: (sigma, max_delta, iterations) per severity. 32 px: make_cifar_c.py; 64 px: make_tinyimagenet_c.py;
#: 224 px: make_imagenet_c.py (hendrycks/robustness, ImageNet-C/create_c/).
GLASS_TABLES: dict[int, tuple[tuple[Any, ...], ...]] = {
    32: ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    64: ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
    224: ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
}

# -- scipy.ndimage.gaussian_filter on the last two dims ----------------------------------------------------


def boundary_index(positions: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Map integer positions outside [0, n) into it the way scipy.ndimage's ``mode`` extends a signal."""
    if mode == "nearest":  # a a a | a b c d | d d d
        return positions.clamp(0, n - 1)
    if mode == "reflect":  # d c b a | a b c d | d c b a  (half-sample symmetric)
        folded = positions.remainder(2 * n)
        return torch.where(folded >= n, 2 * n - 1 - folded, folded)
    if mode == "mirror":  # d c b | a b c d | c b a  (whole-sample symmetric; cv2 REFLECT_101)
        if n == 1:
            return torch.zeros_like(positions)
        folded = positions.remainder(2 * n - 2)
        return torch.where(folded >= n, 2 * n - 2 - folded, folded)
    raise ValueError(f"unknown boundary mode {mode!r}; expected 'nearest', 'reflect' or 'mirror'")


@functools.lru_cache(maxsize=64)
def _gaussian_taps(sigma: float, truncate: float) -> tuple[float, ...]:
    """scipy's 1-D Gaussian weights: radius int(truncate * sigma + 0.5), normalized in float64."""
    radius = int(truncate * float(sigma) + 0.5)
    if sigma <= 0 or radius == 0:
        return (1.0,)
    weights = [math.exp(-0.5 * (k / sigma) ** 2) for k in range(-radius, radius + 1)]
    total = math.fsum(weights)
    return tuple(w / total for w in weights)


@functools.lru_cache(maxsize=64)
def gaussian_operator(n: int, sigma: float, truncate: float, mode: str) -> torch.Tensor:
    """The dense n x n matrix of the 1-D filter with its boundary folded in (float64, CPU)."""
    taps = torch.tensor(_gaussian_taps(sigma, truncate), dtype=torch.float64)
    radius = (taps.numel() - 1) // 2
    rows = torch.arange(n).unsqueeze(1).expand(n, taps.numel())
    cols = boundary_index(rows + torch.arange(-radius, radius + 1), n, mode)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix.index_put_((rows.reshape(-1), cols.reshape(-1)), taps.repeat(n), accumulate=True)
    return matrix


def _filter_axis(x: torch.Tensor, sigma: float, truncate: float, mode: str, dim: int) -> torch.Tensor:
    """1-D Gaussian along ``dim`` (-1 or -2) of a [..., H, W] float tensor, as one dense n x n operator.

    A batched matmul of fixed per-image shape: ~4x faster than shift-and-add at 32 px (BLAS beats
    elementwise passes) and, unlike conv2d, bit-identical for a sample whatever batch it sits in.
    """
    if len(_gaussian_taps(sigma, truncate)) == 1:
        return x
    n = x.shape[dim]
    matrix = gaussian_operator(n, float(sigma), float(truncate), mode).to(device=x.device, dtype=x.dtype)
    lead = x.shape[:-2]
    flat = x.reshape(-1, x.shape[-2], x.shape[-1])
    if dim in (-1, x.dim() - 1):
        out = torch.bmm(flat, matrix.t().expand(flat.shape[0], n, n))
    else:
        out = torch.bmm(matrix.expand(flat.shape[0], n, n), flat)
    return out.reshape(*lead, *out.shape[-2:])


def gaussian_filter(
    x: torch.Tensor, sigma: float, *, mode: str = "nearest", truncate: float = 4.0
) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter`` over the last two dims (what ``skimage.filters.gaussian`` does
    to an HxWxC image with ``multichannel=True``): separable, radius ``int(truncate*sigma + 0.5)``,
    boundary ``mode`` 'nearest' (skimage's default), 'reflect' (scipy's half-sample symmetric) or
    'mirror' (OpenCV's REFLECT_101). ``sigma == 0`` returns ``x`` unchanged, as scipy does."""
    sigma = float(sigma)
    if sigma < 0:
        raise ValueError(f"gaussian_filter needs sigma >= 0, got {sigma}")
    if sigma == 0:
        return x
    return _filter_axis(_filter_axis(x, sigma, truncate, mode, -1), sigma, truncate, mode, -2)


# -- the sequential local "swap" ----------------------------------------------------------------------------


def glass_shuffle_positions(height: int, width: int, max_delta: int) -> tuple[range, range]:
    """The rows and columns the reference visits, in its order: ``range(size - d, d, -1)`` each."""
    return range(height - max_delta, max_delta, -1), range(width - max_delta, max_delta, -1)


def _sequential_sources(dy: torch.Tensor, dx: torch.Tensor, height: int, width: int, max_delta: int) -> torch.Tensor:
    """For one pass: the flat pixel index whose *pre-pass* value ends up at every pixel, [N, H*W].

    ``dy, dx`` are [N, len(rows), len(cols)] displacements (integer-valued, int or float) of the visited
    positions in scan order. Visited p reads its source s = p + (dy, dx) after the scan has rewritten
    every visited position that comes earlier (a larger row, or the same row and a larger column). If
    s is one of those, p gets s's new value, itself a copy of s's source; following these links to the
    first source the scan had not rewritten yet gives the pre-pass pixel that p ends up with.
    """
    n = dy.shape[0]
    device = dy.device
    d = max_delta
    r = torch.arange(height - d, d, -1, device=device).view(-1, 1)
    c = torch.arange(width - d, d, -1, device=device).view(1, -1)
    flat_p = r * width + c  # [rows, cols] in scan order
    flat_s = flat_p + (dy * width + dx).long()
    identity = torch.arange(height * width, device=device).expand(n, -1)

    def visited_region(t: torch.Tensor) -> torch.Tensor:
        return t.view(n, height, width)[:, d + 1 : height - d + 1, d + 1 : width - d + 1]

    source = identity.clone()
    visited_region(source).copy_(flat_s.flip(1, 2))  # the region in raster order = scan order reversed
    if d == 1:  # offsets in {-1, 0}^2 point up-left, where the scan has not been yet: no chains
        return source
    src_r, src_c = r + dy.long(), c + dx.long()
    src_visited = (src_r >= d + 1) & (src_r <= height - d) & (src_c >= d + 1) & (src_c <= width - d)
    earlier = src_visited & ((dy > 0) | ((dy == 0) & (dx > 0)))
    if not bool(earlier.any()):
        return source
    link = identity.clone()  # link[p] = s where s was rewritten before p reads it, else p
    visited_region(link).copy_(torch.where(earlier, flat_s, flat_p).flip(1, 2))
    # Pointer doubling: after k rounds a link jumps 2^k steps; chains are shorter than the scan.
    for _ in range(max(1, math.ceil(math.log2(max(2, flat_p.numel()))))):
        jumped = link.gather(1, link)
        if torch.equal(jumped, link):
            break
        link = jumped
    # The end of p's chain is a visited q whose source was not rewritten; p gets q's source.
    return source.gather(1, link)


def glass_shuffle(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, max_delta: int) -> torch.Tensor:
    """The reference's pixel loop on a [N, C, H, W] batch, for given displacements.

    ``dy, dx``: [N, passes, len(rows), len(cols)] integer-valued displacements in the reference's scan
    order (see :func:`glass_shuffle_positions`). Exact: equal to running
    ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on an HxWxC numpy array pixel by pixel.
    """
    n, channels, height, width = x.shape
    out = x.reshape(n, channels, height * width)
    for step in range(dy.shape[1]):
        source = _sequential_sources(dy[:, step], dx[:, step], height, width, max_delta)
        out = out.gather(2, source.unsqueeze(1).expand(n, channels, -1))
    return out.reshape(n, channels, height, width)


def _displacements(
    rng: CounterRNG, passes: int, rows: int, cols: int, max_delta: int, stream: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dy, dx) uniform on {-d..d-1}^2 per visited position from one 24-bit uniform each, as floats:
    ``u * 2d = dy' + f`` and ``dx' = floor(f * 2d)``, exact for 2d a power of two."""
    side = 2 * max_delta
    scaled = rng.uniform((passes, rows, cols), stream=stream).mul_(side)
    whole = scaled.floor()
    dx = scaled.sub_(whole).mul_(side).floor_().sub_(max_delta)
    return whole.sub_(max_delta), dx


@chunked
def glass_blur(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Glass blur: Gaussian blur, uint8 truncation, ``iters`` sequential local copy passes, blur again.

    ``params = (sigma, max_delta, iterations)``; see the module docstring for the exact semantics.
    """
    sigma, max_delta, passes = float(params[0]), int(params[1]), int(params[2])
    _, _, height, width = x.shape
    blurred = gaussian_filter(x, sigma)
    quantized = blurred.mul(255.0).clamp_(0.0, 255.0).floor_().div_(255.0)  # np.uint8(... * 255)
    rows, cols = glass_shuffle_positions(height, width, max_delta)
    if passes > 0 and len(rows) > 0 and len(cols) > 0:
        dy, dx = _displacements(rng, passes, len(rows), len(cols), max_delta, stream=0)
        quantized = glass_shuffle(quantized, dy, dx, max_delta)
    return gaussian_filter(quantized, sigma).clamp_(0.0, 1.0)


CORRUPTIONS_GLASS: list[Corruption] = [
    Corruption(
        name="glass_blur",
        family="blur",
        kernel=glass_blur,
        tables=GLASS_TABLES,
        stochastic=True,
        deviation=(
            "same algorithm, including the copy-not-swap pixel loop, the {-d..d-1} offsets and the inner "
            "uint8 truncation; displacements come from the counter RNG instead of np.random"
        ),
    )
]
