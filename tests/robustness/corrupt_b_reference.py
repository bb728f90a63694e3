"""Independent numpy/scipy re-statements of the reference algorithms (hendrycks/robustness
ImageNet-C/create_c/make_*_c.py and ImageMagick's MotionBlurImage) for the glass, motion, snow, fog,
spatter (mud) and elastic tests.

Written from the algorithm descriptions, one image at a time, HxWxC float64 in [0, 1], with cv2 and
Wand replaced by scipy where the reference used them (scipy.ndimage.affine_transform with
mode='mirror' is cv2's BORDER_REFLECT_101 bilinear warp). Random draws are passed in, so a test can
feed the exact numbers a kernel drew (bit-level comparison) or fresh ``np.random`` draws (comparison by
distribution).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def gaussian(image: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """skimage.filters.gaussian(image, sigma, multichannel=True): spatial axes only."""
    sigmas = (sigma, sigma) + (0,) * (image.ndim - 2)
    return ndimage.gaussian_filter(image, sigmas, mode=mode, truncate=truncate)


def glass_positions(size: int, d: int) -> range:
    return range(size - d, d, -1)


def glass_blur(image: np.ndarray, sigma: float, d: int, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """The reference glass blur; dy/dx [passes, rows, cols] in scan order (h, w descending)."""
    x = np.uint8(gaussian(image, sigma) * 255)
    size = x.shape[0]
    for p in range(dy.shape[0]):
        for i, h in enumerate(glass_positions(size, d)):
            for j, w in enumerate(glass_positions(size, d)):
                hp, wp = h + int(dy[p, i, j]), w + int(dx[p, i, j])
                x[h, w], x[hp, wp] = x[hp, wp], x[h, w]  # the reference's statement (a copy on RGB views)
    return np.clip(gaussian(x / 255.0, sigma), 0, 1)


def magick_motion_blur(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick MotionBlurImage: one-sided Gaussian along ``angle`` with rounded offsets, edge pixels."""
    width = int(2 * math.ceil(radius) + 1)
    kernel = np.exp(-(np.arange(width) ** 2) / (2.0 * sigma * sigma))
    kernel /= kernel.sum()
    px, py = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    norm = math.hypot(px, py)
    h, w = image.shape[:2]
    out = np.zeros_like(image, dtype=np.float64)
    for i in range(width):
        ox = math.ceil(i * py / norm - 0.5)
        oy = math.ceil(i * px / norm - 0.5)
        rows = np.clip(np.arange(h) + oy, 0, h - 1)
        cols = np.clip(np.arange(w) + ox, 0, w - 1)
        out += kernel[i] * image[rows][:, cols]
    return out


def clipped_zoom(image: np.ndarray, zoom: float) -> np.ndarray:
    h = image.shape[0]
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    zoomed = ndimage.zoom(image[top : top + ch, top : top + ch], (zoom, zoom, 1), order=1)
    trim = (zoomed.shape[0] - h) // 2
    return zoomed[trim : trim + h, trim : trim + h]


def snow(image: np.ndarray, params: tuple, normal: np.ndarray, angle: float) -> np.ndarray:
    """The reference snow with ``normal`` ~ N(0, 1) [H, W] and the motion angle given."""
    loc, scale, zoom, threshold, radius, sigma, blend = params
    layer = (normal * scale + loc)[..., None]
    layer = clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    layer = (np.clip(layer.squeeze(-1), 0, 1) * 255).astype(np.uint8)
    layer = magick_motion_blur(layer[..., None] / 255.0, radius, sigma, angle)
    layer = np.round(layer * 255) / 255.0  # Wand writes an 8-bit PNG
    gray = image @ np.array([0.299, 0.587, 0.114])
    x = blend * image + (1 - blend) * np.maximum(image, gray[..., None] * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0, 1)


def plasma_fractal(mapsize: int, wibbledecay: float, uniform) -> np.ndarray:
    """Diamond-square; ``uniform(level, sub, shape)`` returns U[0, 1) draws for each fill step."""
    grid = np.zeros((mapsize, mapsize))
    step, wibble, level = mapsize, 100.0, 0

    def wibbled(total: np.ndarray, sub: int) -> np.ndarray:
        return total / 4 + wibble * (uniform(level, sub, total.shape) * 2 * wibble - wibble)

    while step >= 2:
        half = step // 2
        corners = grid[0:mapsize:step, 0:mapsize:step]
        sq = corners + np.roll(corners, -1, axis=0)
        sq += np.roll(sq, -1, axis=1)
        grid[half:mapsize:step, half:mapsize:step] = wibbled(sq, 0)
        dr = grid[half:mapsize:step, half:mapsize:step]
        ul = grid[0:mapsize:step, 0:mapsize:step]
        grid[0:mapsize:step, half:mapsize:step] = wibbled(dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1), 1)
        grid[half:mapsize:step, 0:mapsize:step] = wibbled(dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0), 2)
        step //= 2
        wibble /= wibbledecay
        level += 1
    grid -= grid.min()
    return grid / grid.max()


def fog(image: np.ndarray, strength: float, plasma: np.ndarray) -> np.ndarray:
    h = image.shape[0]
    peak = image.max()
    x = image + strength * plasma[:h, :h][..., None]
    return np.clip(x * peak / (peak + strength), 0, 1)


def spatter_mud(image: np.ndarray, params: tuple, normal: np.ndarray) -> np.ndarray:
    loc, scale, sigma, threshold, intensity, mode = params
    assert mode == 1
    liquid = gaussian(normal * scale + loc, sigma)
    liquid[liquid < threshold] = 0
    m = gaussian(np.where(liquid > threshold, 1.0, 0.0), intensity)
    m[m < 0.8] = 0
    color = np.array([63, 42, 20]) / 255.0
    return np.clip(image * (1 - m[..., None]) + color * m[..., None], 0, 1)


def elastic(image: np.ndarray, params: tuple, moves: np.ndarray, fields: np.ndarray) -> np.ndarray:
    """moves [3, 2] (the control-point shifts), fields [2, H, W] uniform on [-1, 1) (dx then dy)."""
    alpha, sigma, _ = params
    h, w = image.shape[:2]
    centre = np.float32((h, w)) // 2
    side = min(h, w) // 3
    pts1 = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    pts2 = pts1 + moves
    # M (x, y, 1) = pts2 for the three points; warpAffine samples the source at M^-1 (x, y).
    forward = np.linalg.solve(np.hstack([pts1, np.ones((3, 1))]).astype(np.float64), pts2.astype(np.float64)).T
    inverse = np.linalg.inv(forward[:, :2])
    # affine_transform works in (row, col) = (y, x): source = R @ out + offset.
    swap = np.array([[0, 1], [1, 0]])
    matrix = swap @ inverse @ swap
    offset = -(swap @ inverse @ forward[:, 2])
    channels = range(image.shape[2])
    warped = np.stack(
        [ndimage.affine_transform(image[..., c], matrix, offset, order=1, mode="mirror") for c in channels], axis=-1
    )
    if alpha == 0:
        return np.clip(warped, 0, 1)
    dx = ndimage.gaussian_filter(fields[0], sigma, mode="reflect", truncate=3) * alpha
    dy = ndimage.gaussian_filter(fields[1], sigma, mode="reflect", truncate=3) * alpha
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = (yy + dy, xx + dx)
    out = np.stack([ndimage.map_coordinates(warped[..., c], coords, order=1, mode="reflect") for c in channels], axis=-1)
    return np.clip(out, 0, 1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))
