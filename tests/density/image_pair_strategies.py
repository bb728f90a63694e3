"""Hypothesis strategies shared by the distance tests: pairs (x, y) of float32 image batches in [0, 1]."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


@st.composite
def image_pairs(draw, *, max_images: int = 4, channels: tuple[int, ...] = (1, 3),
                sides: tuple[int, int] = (1, 6)) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (N, C, H, W) batches of one shape: N in 1..max_images, C from `channels`, H and W in `sides`."""
    n = draw(st.integers(1, max_images))
    c = draw(st.sampled_from(channels))
    h = draw(st.integers(*sides))
    w = draw(st.integers(*sides))
    pixels = st.floats(0.0, 1.0, width=32, allow_nan=False)
    x = draw(hnp.arrays(np.float32, (n, c, h, w), elements=pixels))
    y = draw(hnp.arrays(np.float32, (n, c, h, w), elements=pixels))
    return torch.from_numpy(x), torch.from_numpy(y)
