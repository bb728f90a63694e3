"""PixMix's mixing pictures, generated: IFS fractals and other structured patterns, at any size,
deterministic from a seed.

The released PixMix trains with a fixed set of downloaded pictures (fractals and feature
visualizations); that set is not shipped here. `mixing_picture(seed, index, h, w)` draws picture
`index` of a procedural set instead:

- ``fractal`` (half of the set): the attractor of a random iterated function system of 2-4
  contractive affine maps (chaos game, 2,048 chains x 48 steps), its log point density coloured
  by a random three-colour gradient over a random dark background;
- ``spectral``: 1/f^a noise (a ~ U(1, 2.5)) through a random gradient;
- ``waves``: a sum of 2-4 random sinusoidal gratings through a random gradient.

Every picture comes from its own NumPy generator seeded by (seed, index, h, w): the set needs no
files, no download and no global random state, and picture i is the same in every process.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from pytest_psa._timings import stage

KINDS = ("fractal", "fractal", "spectral", "waves")  # index % 4: half of the set are fractals


def mixing_picture(seed: int, index: int, height: int, width: int) -> np.ndarray:
    """Picture `index` of the set `seed`: a float32 (3, height, width) array in [0, 1]."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), int(height), int(width)])
    kind = KINDS[index % len(KINDS)]
    if kind == "fractal":
        value = _fractal(rng, height, width)
    elif kind == "spectral":
        value = _spectral(rng, height, width)
    else:
        value = _waves(rng, height, width)
    return _colour(rng, value).astype(np.float32)


@functools.lru_cache(maxsize=8)
def mixing_bank(seed: int, count: int, height: int, width: int) -> torch.Tensor:
    """The first `count` pictures of set `seed` as one (count, 3, height, width) float tensor (cached
    per process; callers must not write to it)."""
    with stage("pixmix pictures", detail=f"{count} at {height}x{width} px"):  # ~1 s once per process and size
        return torch.from_numpy(np.stack([mixing_picture(seed, i, height, width) for i in range(count)]))


def _fractal(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    maps = int(rng.integers(2, 5))
    mats, shifts = [], []
    for _ in range(maps):
        t1, t2 = rng.uniform(0, 2 * np.pi, 2)
        s = rng.uniform(0.25, 0.85, 2) * rng.choice([-1.0, 1.0], 2)
        r1 = np.array([[np.cos(t1), -np.sin(t1)], [np.sin(t1), np.cos(t1)]])
        r2 = np.array([[np.cos(t2), -np.sin(t2)], [np.sin(t2), np.cos(t2)]])
        mats.append(r1 @ np.diag(s) @ r2)  # singular values |s| < 1: a contraction
        shifts.append(rng.uniform(-1, 1, 2))
    a, b = np.stack(mats), np.stack(shifts)
    weight = np.abs(np.linalg.det(a)) + 0.05
    p = weight / weight.sum()
    chains, steps, burn = 1024, 32, 8
    px, py = rng.uniform(-1, 1, (2, chains))
    picks = np.searchsorted(np.cumsum(p)[:-1], rng.random((steps, chains)), side="right")
    kept = []
    for k in picks:
        px, py = a[k, 0, 0] * px + a[k, 0, 1] * py + b[k, 0], a[k, 1, 0] * px + a[k, 1, 1] * py + b[k, 1]
        kept.append((px, py))
    xy = np.array(kept[burn:]).transpose(0, 2, 1).reshape(-1, 2)
    lo, hi = np.percentile(xy[::8], 0.5, axis=0), np.percentile(xy[::8], 99.5, axis=0)
    span = np.maximum(hi - lo, 1e-6)
    margin = rng.uniform(0.05, 0.2)
    uv = (xy - lo) / span * (1 - 2 * margin) + margin  # the attractor fills the frame, with a margin
    col = np.floor(uv[:, 0] * w).astype(np.int64)
    row = np.floor(uv[:, 1] * h).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    hist = np.bincount(row[inside] * w + col[inside], minlength=h * w).reshape(h, w).astype(np.float64)
    density = np.log1p(hist)
    return density / max(float(density.max()), 1e-12)


def _spectral(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    radius = np.sqrt(fx ** 2 + fy ** 2)
    radius[0, 0] = 1.0
    amplitude = radius ** -rng.uniform(1.0, 2.5)
    amplitude[0, 0] = 0.0
    phase = rng.uniform(0, 2 * np.pi, (h, w))
    field = np.real(np.fft.ifft2(amplitude * np.exp(1j * phase)))
    return _unit(field)


def _waves(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    field = np.zeros((h, w))
    for _ in range(int(rng.integers(2, 5))):
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(1.0, 8.0) * 2 * np.pi
        field += rng.uniform(0.3, 1.0) * np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 6.3))
    return _unit(field)


def _unit(field: np.ndarray) -> np.ndarray:
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-12)


def _colour(rng: np.random.Generator, value: np.ndarray) -> np.ndarray:
    """Value in [0, 1] -> RGB through a random background-to-two-colour gradient."""
    stops = np.stack([rng.uniform(0.0, 0.3, 3), rng.uniform(0, 1, 3), rng.uniform(0.5, 1, 3)])  # (3 stops, RGB)
    t = np.clip(value, 0, 1)[None] * 2.0  # 0..2 over two segments
    first = t <= 1.0
    low = stops[0][:, None, None] + (stops[1] - stops[0])[:, None, None] * t
    high = stops[1][:, None, None] + (stops[2] - stops[1])[:, None, None] * (t - 1.0)
    rgb: np.ndarray = np.clip(np.where(first, low, high), 0.0, 1.0)
    return rgb
