"""A few image pairs x / A(x) of a density audit, at quantiles of its distances, for the HTML report.

A reader judges "proximal" by eye: the pair at the 10 % quantile of d(x, A(x)) shows what a small
distance looks like for this augmentation, the 50 % and 90 % ones what is typical and what is far.
The pairs are recomputed after the audit (an augmentation is seeded per image and draw, so
``A(x_i)`` with the draw's seed is the image that was measured) and kept as small PNGs in base64
(a 32×32 pair is about 5 kB; larger images are shrunk to `max_side` pixels).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_psa.errors import PsaUsageError

if TYPE_CHECKING:
    import torch

    from pytest_psa.augment.adapters import Augmentation
    from pytest_psa.data.image_data import ImageData

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)


def sample_pairs(images: ImageData, augmentation: Augmentation, seeds: np.ndarray, distances: np.ndarray, *,
                 quantiles: Sequence[float] = DEFAULT_QUANTILES, max_side: int = 64) -> list[dict[str, Any]]:
    """One pair per quantile q: the draw (i, j) whose distance is the q-quantile of all N×K distances
    (``inverted_cdf``: a measured value), as ``{"quantile", "distance", "image", "draw", "x", "ax"}``
    with `x` and `ax` base64 PNGs. `seeds` and `distances` are the audit's (N, K) arrays."""
    dist = np.asarray(distances, dtype=np.float64)
    if dist.ndim != 2 or np.asarray(seeds).shape != dist.shape or dist.shape[0] != len(images):
        raise PsaUsageError("sample_pairs needs (N, K) seeds and distances for the N audited images",
                            observed=f"images {len(images)}, seeds {np.asarray(seeds).shape}, distances {dist.shape}")
    if not all(0.0 <= q <= 1.0 for q in quantiles):
        raise PsaUsageError("sample_pairs quantiles must lie in [0, 1]", observed=list(quantiles))
    order = np.argsort(dist, axis=None, kind="stable")
    flat = dist.ravel()[order]
    out = []
    for q in quantiles:
        value = float(np.quantile(flat, q, method="inverted_cdf"))
        pick = int(order[int(np.searchsorted(flat, value, side="left"))])
        i, j = divmod(pick, dist.shape[1])
        x = images.float_images(slice(i, i + 1))
        y = augmentation.apply(x, [int(np.asarray(seeds)[i, j])])
        out.append({"quantile": float(q), "distance": float(dist[i, j]), "image": int(i), "draw": int(j),
                    "x": png_base64(x[0], max_side), "ax": png_base64(y[0], max_side)})
    return out


def png_base64(image: torch.Tensor, max_side: int = 64) -> str:
    """A float CHW image in [0, 1] as a base64 PNG, shrunk to at most `max_side` pixels per side."""
    from PIL import Image

    array = (image.detach().float().clamp(0, 1).mul(255).round().to("cpu").numpy()).astype(np.uint8)
    pil = Image.fromarray(array[0] if array.shape[0] == 1 else np.moveaxis(array[:3], 0, -1))
    if max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


__all__ = ["DEFAULT_QUANTILES", "png_base64", "sample_pairs"]
