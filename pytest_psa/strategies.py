"""Hypothesis strategies for images, to property-test an augmentation's contract.

    from hypothesis import given
    from pytest_psa import check_contract
    from pytest_psa.strategies import images

    @given(images())
    def test_my_augmentation_keeps_the_contract(image):
        check_contract(MyAugment(), image)

`images()` draws what the adapter for each kind hands an augmentation (docs/augmentations.md):
``dtype="float"`` float32 (C, H, W) tensors in [0, 1], ``"uint8"`` uint8 (C, H, W) tensors, ``"pil"``
PIL images (mode "L" or "RGB"), ``"numpy"`` uint8 (H, W, C) arrays. Besides ordinary content
(noise, gradients, blocks, smooth blobs) it draws the edge cases that break augmentations, each
with a fair share: constant 0, constant 1, saturated channels (every channel 0 or 1), a
checkerboard, a single bright pixel on black, tiny images (8 px) and, rarely, large ones (224 px).

This module imports hypothesis (a test dependency); ``import pytest_psa`` does not import it.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st

from pytest_psa.errors import PsaUsageError

Dtype = Literal["float", "uint8", "pil", "numpy"]
DTYPES: tuple[Dtype, ...] = ("float", "uint8", "pil", "numpy")

ORDINARY: tuple[str, ...] = ("noise", "gradient", "blocks", "blobs")
EDGE_CASES: tuple[str, ...] = (
    "constant_0", "constant_1", "saturated", "checkerboard", "bright_pixel", "tiny", "large",
)
TINY, LARGE = 8, 224
# weights out of 40: each edge case twice, large once (a 224 px draw costs ~50x a 32 px one),
# so about a third of the draws are edge cases. Constant 0 comes first: hypothesis shrinks
# towards the first entry, and a failure on a black image is the easiest to read.
_WEIGHTED_EDGE = tuple(k for k in EDGE_CASES[:-1] for _ in range(2)) + ("large",)
_WEIGHTED_ORDINARY = tuple(k for k in ORDINARY for _ in range(7))

SizeArg = int | tuple[int, int] | st.SearchStrategy[Any]


def images(
    size: SizeArg | None = None,
    channels: int | tuple[int, ...] = (1, 3),
    dtype: Dtype = "float",
    edge_cases: bool = True,
) -> st.SearchStrategy[Any]:
    """Images as the adapter of kind `dtype` receives them (see the module docstring).

    size: a strategy of side lengths (default ``st.integers(8, 64)``) or of (height, width)
      pairs, or a fixed int / (height, width). A fixed size is kept for every draw: the tiny and
      large edge cases are drawn only when the size is left to a strategy.
    channels: 1 and/or 3, as an int or a tuple to draw from.
    edge_cases: False draws ordinary content only.
    """
    if dtype not in DTYPES:
        raise PsaUsageError(f"unknown image dtype {dtype!r}", observed=dtype, fix=f"use one of {list(DTYPES)}")
    chans = (channels,) if isinstance(channels, int) else tuple(channels)
    if not chans or any(c not in (1, 3) for c in chans):
        raise PsaUsageError("channels must be 1 and/or 3", observed=channels,
                            fix="pass 1, 3 or (1, 3)")
    fixed = _fixed_size(size)
    sizes: st.SearchStrategy[Any] = st.integers(8, 64) if size is None else (
        st.just(fixed) if fixed is not None else size)  # type: ignore[assignment]
    kinds = _WEIGHTED_ORDINARY
    if edge_cases:
        edge = _WEIGHTED_EDGE if fixed is None else tuple(k for k in _WEIGHTED_EDGE if k not in ("tiny", "large"))
        kinds = edge + kinds

    @st.composite
    def draw_image(draw: st.DrawFn) -> Any:
        kind = draw(st.sampled_from(kinds))
        c = draw(st.sampled_from(chans))
        if kind == "tiny":
            h = w = TINY
        elif kind == "large":
            h = w = LARGE
        else:
            h, w = _as_hw(draw(sizes))
        seed = draw(st.integers(0, 2**32 - 1))
        return _convert(render(kind, h, w, c, seed), dtype)

    return draw_image()


def render(kind: str, height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """The pixels of one image of `kind` (ORDINARY or EDGE_CASES): float64 (H, W, C) in [0, 1].

    Public so a test can build one edge case directly (``render("checkerboard", 32, 32, 3)``).
    """
    rng = np.random.default_rng(seed)
    h, w, c = height, width, channels
    if kind == "tiny":
        h = w = TINY
        kind = "noise"
    elif kind == "large":
        h = w = LARGE
        kind = "blobs"
    if kind == "constant_0":
        return np.zeros((h, w, c))
    if kind == "constant_1":
        return np.ones((h, w, c))
    if kind == "saturated":  # each channel all 0 or all 1, not all equal for colour images
        levels = rng.integers(0, 2, c).astype(np.float64)
        if c == 3 and levels.min() == levels.max():
            levels[int(rng.integers(0, 3))] = 1.0 - levels[0]
        return np.array(np.broadcast_to(levels, (h, w, c)))
    if kind == "checkerboard":
        cell = int(rng.integers(1, max(2, min(h, w) // 2) + 1))
        yy, xx = np.indices((h, w))
        board = (((yy // cell) + (xx // cell)) % 2).astype(np.float64)
        return np.repeat(board[..., None], c, axis=2)
    if kind == "bright_pixel":
        img = np.zeros((h, w, c))
        img[int(rng.integers(0, h)), int(rng.integers(0, w))] = 1.0
        return img
    if kind == "noise":
        return rng.random((h, w, c))
    if kind == "gradient":
        yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
        a, b = rng.uniform(-1, 1, (2, c))
        return np.asarray(np.clip(0.5 + a * (xx[..., None] - 0.5) + b * (yy[..., None] - 0.5), 0.0, 1.0))
    if kind == "blocks":
        n = int(rng.integers(1, 5))
        small = rng.random((n, n, c))
        return np.repeat(np.repeat(small, -(-h // n), 0), -(-w // n), 1)[:h, :w]
    if kind == "blobs":
        img = np.full((h, w, c), rng.random())
        yy, xx = np.indices((h, w))
        for _ in range(3):
            y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
            sigma = rng.uniform(0.05, 0.3) * max(h, w)
            blob = np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * sigma**2))[..., None]
            img = img * (1 - blob) + blob * rng.random(c)  # a blend: never clipped flat to 0 or 1
        return img
    raise PsaUsageError(f"unknown image kind {kind!r}", observed=kind, fix=f"use one of {ORDINARY + EDGE_CASES}")


def _fixed_size(size: SizeArg | None) -> tuple[int, int] | None:
    if size is None or isinstance(size, st.SearchStrategy):
        return None
    hw = _as_hw(size)
    if min(hw) < 1:
        raise PsaUsageError("image sizes must be positive", observed=size, fix="pass e.g. 32 or (32, 48)")
    return hw


def _as_hw(size: Any) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    if isinstance(size, tuple) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return size[0], size[1]
    raise PsaUsageError("an image size is an int or a (height, width) pair", observed=repr(size),
                        fix="pass size=32, size=(32, 48) or a strategy of those, e.g. st.integers(8, 64)")


def _convert(pixels: np.ndarray, dtype: Dtype) -> Any:
    """float (H, W, C) in [0, 1] -> the form the adapter of kind `dtype` receives."""
    if dtype == "float":
        import torch

        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32))
    u8 = (pixels * 255.0).round().astype(np.uint8)
    if dtype == "numpy":
        return u8
    if dtype == "uint8":
        import torch

        return torch.from_numpy(np.ascontiguousarray(u8.transpose(2, 0, 1)))
    from PIL import Image

    return Image.fromarray(u8[..., 0] if u8.shape[2] == 1 else u8)
