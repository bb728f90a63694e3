"""Elastic transform: a random affine warp, then a smoothed random displacement field.

Reference: ``elastic_transform`` in hendrycks/robustness ``ImageNet-C/create_c/make_cifar_c.py``
(@ca36008), ``make_tinyimagenet_c.py`` (@7a64e6a) and ``make_imagenet_c.py`` (@e0377d4), a modification
of gist erniejunior/601cdf56d2b424757de5. Per image:

1. three control points ``centre + [(s, s), (s, -s), (-s, -s)]`` (centre ``size // 2``, ``s = size // 3``)
   moved by ``U(-affine, affine)`` each, ``M = cv2.getAffineTransform(pts1, pts2)`` and
   ``cv2.warpAffine(image, M, borderMode=BORDER_REFLECT_101)`` (bilinear);
2. ``dx, dy = gaussian(U(-1, 1), sigma, mode='reflect', truncate=3) * alpha`` (two fields);
3. ``map_coordinates(image, (y + dy, x + dx), order=1, mode='reflect')``.

Here both resamplings are ``grid_sample`` (bilinear): step 1 with ``padding_mode='reflection',
align_corners=True``, which reflects about the border pixel centres exactly like REFLECT_101, and step 3
with ``align_corners=False``, which reflects about the pixel edges exactly like scipy's 'reflect'.
Deviations: cv2 quantizes warp coordinates to 1/32 px (INTER_BITS = 5) and this does not; when
``alpha == 0`` (severity 1 at 32 and 64 px) step 3 is skipped, since it then samples the integer grid.
The tables hold the reference's values in pixels: fractions times IMSIZE (32 or 64) and, for
ImageNet, times 244 (the reference's own "244 should have been 224" comment).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from pytest_psa.measure.robustness.corruptions.glass import gaussian_filter
from pytest_psa.measure.robustness.corruptions.chunking import chunked
from pytest_psa.measure.robustness.corruptions.registry import Corruption

if TYPE_CHECKING:
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

__all__ = ["CORRUPTIONS_ELASTIC", "ELASTIC_TABLES", "affine_inverse", "elastic_transform"]

#: (alpha, sigma, affine) in pixels per severity, computed exactly as the reference writes them.
ELASTIC_TABLES: dict[int, tuple[tuple[Any, ...], ...]] = {
    32: (
        (32 * 0, 32 * 0, 32 * 0.08),
        (32 * 0.05, 32 * 0.2, 32 * 0.07),
        (32 * 0.08, 32 * 0.06, 32 * 0.06),
        (32 * 0.1, 32 * 0.04, 32 * 0.05),
        (32 * 0.1, 32 * 0.03, 32 * 0.03),
    ),
    64: (
        (64 * 0, 64 * 0, 64 * 0.08),
        (64 * 0.05, 64 * 0.3, 64 * 0.06),
        (64 * 0.1, 64 * 0.08, 64 * 0.06),
        (64 * 0.1, 64 * 0.03, 64 * 0.03),
        (64 * 0.16, 64 * 0.03, 64 * 0.02),
    ),
    224: (
        (244 * 2, 244 * 0.7, 244 * 0.1),
        (244 * 2, 244 * 0.08, 244 * 0.2),
        (244 * 0.05, 244 * 0.01, 244 * 0.02),
        (244 * 0.07, 244 * 0.01, 244 * 0.02),
        (244 * 0.12, 244 * 0.01, 244 * 0.02),
    ),
}


def affine_inverse(moves: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per sample, the 2x3 matrix [N, 2, 3] (float64) mapping an output pixel (x, y, 1) to the source
    pixel ``cv2.warpAffine`` reads, for control-point moves [N, 3, 2].

    ``M`` maps the reference's control points ``pts1`` onto ``pts1 + moves`` (getAffineTransform), and
    warpAffine samples the source at ``M^-1 (x, y)``. Points are (x, y) with the reference's centre
    ``(H // 2, W // 2)`` (identical for square images).
    """
    dtype = torch.float64
    device = moves.device
    centre = torch.tensor([height // 2, width // 2], dtype=dtype, device=device)
    side = min(height, width) // 3
    pts1 = torch.stack([centre + side, centre + torch.tensor([side, -side], dtype=dtype, device=device), centre - side])
    pts2 = pts1 + moves.to(dtype)
    ones = torch.ones(3, 1, dtype=dtype, device=device)
    # [pts1 | 1] @ M^T = pts2, so M^T = P @ pts2 with P = [pts1 | 1]^-1, the same 3x3 for every sample.
    # Written out elementwise (like the 2x2 inverse below) so no sample's numbers depend on the batch.
    solve = torch.linalg.inv(torch.cat([pts1, ones], dim=1))
    forward = [sum((solve[r, k] * pts2[:, k, :] for k in range(1, 3)), solve[r, 0] * pts2[:, 0, :]) for r in range(3)]
    (a, c), (b, d), (tx, ty) = ((f[:, 0], f[:, 1]) for f in forward)  # M = [[a, b, tx], [c, d, ty]]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det  # A^-1 = [[ia, ib], [ic, id]]
    row_x = torch.stack([ia, ib, -(ia * tx + ib * ty)], dim=1)
    row_y = torch.stack([ic, id_, -(ic * tx + id_ * ty)], dim=1)
    return torch.stack([row_x, row_y], dim=1)


def _pixel_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    """Homogeneous pixel coordinates (x, y, 1) [H * W, 3], float64."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=device),
        torch.arange(width, dtype=torch.float64, device=device),
        indexing="ij",
    )
    return torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3)


@chunked
def elastic_transform(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Elastic transform with ``params = (alpha, sigma, affine)`` in pixels (see the module docstring)."""
    alpha, sigma, affine = float(params[0]), float(params[1]), float(params[2])
    n, _, h, w = x.shape
    moves = rng.uniform((3, 2), stream=0).to(torch.float64).mul_(2 * affine).sub_(affine)
    # grid_sample coordinates with align_corners=True: g = p * 2 / (size - 1) - 1, folded into the matrix.
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], dtype=torch.float64, device=x.device)
    to_grid = affine_inverse(moves, h, w) * scale.view(1, 2, 1)
    to_grid[:, :, 2] -= 1.0
    # One small GEMM of fixed shape per sample (bmm): the same numbers whatever the batch.
    pixels = _pixel_grid(h, w, x.device).to(x.dtype)
    grid = torch.bmm(pixels.expand(n, -1, -1), to_grid.transpose(1, 2).to(x.dtype)).view(n, h, w, 2)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    if alpha == 0:
        return warped.clamp_(0.0, 1.0)
    fields = rng.uniform((2, h, w), stream=1).mul_(2.0).sub_(1.0)  # dx, dy ~ U(-1, 1)
    fields = gaussian_filter(fields, sigma, mode="reflect", truncate=3.0)
    # align_corners=False: g = (2 p + 1) / size - 1, so a displacement of alpha * f px is alpha * f * 2 / size.
    step = torch.tensor([2.0 * alpha / w, 2.0 * alpha / h], dtype=x.dtype, device=x.device).view(1, 2, 1, 1)
    base = _pixel_grid(h, w, x.device)[:, :2]
    base = ((base * 2.0 + 1.0) / torch.tensor([w, h], dtype=torch.float64, device=x.device) - 1.0).to(x.dtype)
    grid = base.view(1, h, w, 2) + (fields * step).permute(0, 2, 3, 1)
    out = F.grid_sample(warped, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.clamp_(0.0, 1.0)


CORRUPTIONS_ELASTIC: list[Corruption] = [
    Corruption(
        name="elastic_transform",
        family="digital",
        kernel=elastic_transform,
        tables=ELASTIC_TABLES,
        stochastic=True,
        deviation=(
            "grid_sample resampling (reflect borders as cv2/scipy); warp coordinates not quantized to "
            "1/32 px as cv2 does"
        ),
    )
]
