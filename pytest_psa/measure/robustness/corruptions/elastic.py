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

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pytest_psa.measure.robustness.corruptions.glass import gaussian_filter
from pytest_psa.measure.robustness.corruptions.chunking import chunked
from pytest_psa.measure.robustness.corruptions.registry import Corruption

if TYPE_CHECKING:
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

__all__ = ["CORRUPTIONS_ELASTIC", "ELASTIC_TABLES", "affine_source_grid", "elastic_transform"]

#: (alpha, sigma, affine) in pixels per severity, computed exactly as the reference writes them.
ELASTIC_TABLES: dict[int, tuple[tuple, ...]] = {
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


def affine_source_grid(moves: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Source pixel coordinates (x, y) [N, H, W, 2] of ``cv2.warpAffine`` for control-point moves [N, 3, 2].

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
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device), torch.arange(width, dtype=dtype, device=device), indexing="ij"
    )
    u = xs.unsqueeze(0) - tx.view(-1, 1, 1)
    v = ys.unsqueeze(0) - ty.view(-1, 1, 1)
    source = torch.stack(
        [(d.view(-1, 1, 1) * u - b.view(-1, 1, 1) * v) / det.view(-1, 1, 1),
         (a.view(-1, 1, 1) * v - c.view(-1, 1, 1) * u) / det.view(-1, 1, 1)],
        dim=-1,
    )
    return source.reshape(-1, height, width, 2)


def _normalized(coords: torch.Tensor, height: int, width: int, align_corners: bool) -> torch.Tensor:
    """Pixel (x, y) coordinates to grid_sample's [-1, 1] convention."""
    size = torch.tensor([width, height], dtype=coords.dtype, device=coords.device)
    if align_corners:
        return coords * (2.0 / (size - 1).clamp_min(1)) - 1.0
    return (coords * 2.0 + 1.0) / size - 1.0


@chunked
def elastic_transform(x: torch.Tensor, params: tuple, rng: CounterRNG) -> torch.Tensor:
    """Elastic transform with ``params = (alpha, sigma, affine)`` in pixels (see the module docstring)."""
    alpha, sigma, affine = float(params[0]), float(params[1]), float(params[2])
    n, _, h, w = x.shape
    moves = rng.uniform((3, 2), stream=0).to(torch.float64).mul_(2 * affine).sub_(affine)
    source = affine_source_grid(moves, h, w)
    grid = _normalized(source, h, w, align_corners=True).to(x.dtype)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    if alpha == 0:
        return warped.clamp_(0.0, 1.0)
    fields = rng.uniform((2, h, w), stream=1).mul_(2.0).sub_(1.0)  # dx, dy ~ U(-1, 1)
    fields = gaussian_filter(fields, sigma, mode="reflect", truncate=3.0) * alpha
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=x.dtype, device=x.device), torch.arange(w, dtype=x.dtype, device=x.device), indexing="ij"
    )
    coords = torch.stack([xs + fields[:, 0], ys + fields[:, 1]], dim=-1)
    grid = _normalized(coords, h, w, align_corners=False)
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
