"""``l2_aligned``: the normalized L2 distance after the best alignment of x to A(x).

    d(x, y) = min over g in G of  sqrt( mean over the overlap of (g·x − y)² )

G holds the integer translations (dx, dy) with |dx| ≤ rx and |dy| ≤ ry, each with and without a
horizontal flip (``flips=True``, the default; ``flips=False`` searches shifts only). The radius
defaults to 4 px at 32 px and scales with the image: round(4·H/32) rows, round(4·W/32) columns.

Out-of-frame pixels: translating x by (dx, dy) leaves a band of y with no counterpart in x and
pushes a band of x out of the frame. Neither band is compared. The mean runs over the
C·(H − |dy|)·(W − |dx|) overlapping values, so the value is an RMS pixel difference on the scale of
``l2`` whatever the shift. The fill that ``RandomCrop(padding=4)`` puts into y lies exactly in that
band, so a crop is at distance 0 at its own shift. The radius may not leave less than
``min_overlap`` (default 1/2) of the frame.

Symmetry: G is closed under inverses (a flip is its own inverse, the shift ranges are symmetric,
and flip·shift(dx, dy) = shift(−dx, dy)·flip), and g maps the overlap of g·x and y onto the overlap
of x and g⁻¹·y. Hence d(x, y) = d(y, x), up to floating-point rounding.

Computation: every candidate at once, per chunk. The sum of squared differences over the overlap is
Σ(g·x)² + Σy² − 2·Σ(g·x)·y. The cross terms for all shifts form one cross-correlation, computed
with FFTs on a (H + ry) × (W + rx) grid (large enough that no shift within the radius wraps
around). The squared sums are rectangle sums of integral images. This search runs in float32 (its
rounding, about 1e-6 of the mean square, only decides between near-equal candidates); the winner
is then recomputed directly on its overlap, so a pure shift gives exactly 0. Candidates within
that rounding of the best count as tied, and a tie goes to the simplest alignment: no flip before
a flip, then the smallest shift. (Only near-flat images have such ties; the value returned is then
within about 2e-3 of the minimum.)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.density.distance_types import Distance, DistanceContext, DistanceOutput

DEFAULT_RADIUS_AT_32 = 4
DEFAULT_MIN_OVERLAP = 0.5
_TIE = 4e-6  # candidates this close (in squared distance, relative to the mean square) count as tied


def default_radius(size: int) -> int:
    """4 px at 32 px, proportional to the size (round half up): 8 at 64, 28 at 224, 1 at 6."""
    return int(math.floor(DEFAULT_RADIUS_AT_32 * size / 32 + 0.5))


def resolve_radius(radius: int | None, height: int, width: int) -> tuple[int, int]:
    """(rows, columns) searched for images of height × width."""
    if radius is None:
        return default_radius(height), default_radius(width)
    return int(radius), int(radius)


@dataclass(frozen=True, eq=False)
class AlignedReference:
    """What ``l2_aligned`` precomputes from a clean batch, once per chunk in an audit."""

    x: torch.Tensor  # (N, C, H, W)
    radius: tuple[int, int]  # (rows, columns)
    spectra: torch.Tensor  # (F, N, C, H + ry, (W + rx) // 2 + 1): conjugated spectra of x and its flip
    sq_sums: torch.Tensor  # (F, N, 2ry + 1, 2rx + 1): Σ g(x)² over the overlap of each shift
    padded: torch.Tensor  # (N, F·C·(H + 2ry)·(W + 2rx)): g(x) zero-padded, for the exact recomputation


def prepare_aligned(x: torch.Tensor, *, radius: int | None = None, flips: bool = True,
                    min_overlap: float = DEFAULT_MIN_OVERLAP) -> AlignedReference:
    """Everything about the clean batch that every draw's comparison reuses."""
    if x.ndim != 4:
        raise PsaUsageError(f"l2_aligned takes (N, C, H, W) batches, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    ry, rx = resolve_radius(radius, h, w)
    _check_overlap(ry, rx, h, w, min_overlap)
    xf = x.detach().to("cpu", torch.float32)
    cands = torch.stack([xf, xf.flip(-1)]) if flips else xf[None]  # (F, N, C, H, W)
    dys, dxs = torch.arange(-ry, ry + 1), torch.arange(-rx, rx + 1)
    spectra = torch.fft.rfft2(cands, s=(h + ry, w + rx)).conj().resolve_conj()
    sq_sums = _rect_sums(_integral(cands.pow(2).sum(2)), (-dys).clamp(min=0), h - dys.clamp(min=0),
                         (-dxs).clamp(min=0), w - dxs.clamp(min=0))
    padded = F.pad(cands, (rx, rx, ry, ry)).transpose(0, 1).reshape(n, -1)
    return AlignedReference(x, (ry, rx), spectra, sq_sums, padded)


def l2_aligned(x: torch.Tensor | AlignedReference, y: torch.Tensor, *, radius: int | None = None,
               flips: bool = True, min_overlap: float = DEFAULT_MIN_OVERLAP) -> DistanceOutput:
    """Aligned normalized L2 per image, with the winning alignment in ``details`` (dx, dy, flip).

    (dy, dx) says where x's content sits in y: y[i, j] ≈ g(x)[i − dy, j − dx], so a crop that moved
    the content 3 px right and 1 px up reports dx = 3, dy = −1. `x` may be a prepared reference
    (`prepare_aligned`), whose settings then apply.
    """
    ref = x if isinstance(x, AlignedReference) else prepare_aligned(x, radius=radius, flips=flips,
                                                                     min_overlap=min_overlap)
    if ref.x.shape != y.shape:
        raise PsaUsageError("l2_aligned compares two (N, C, H, W) batches of one shape",
                            observed=f"{tuple(ref.x.shape)} and {tuple(y.shape)}")
    n, c, h, w = y.shape
    (ry, rx), n_flips = ref.radius, ref.spectra.shape[0]
    dys, dxs = torch.arange(-ry, ry + 1), torch.arange(-rx, rx + 1)
    yf = y.detach().to("cpu", torch.float32)
    grid = (h + ry, w + rx)

    # cross[f, n, a, b] = Σ g_f(x)[m] · y[m + (dys[a], dxs[b])] over the overlap (x is zero outside)
    corr = torch.fft.irfft2((ref.spectra * torch.fft.rfft2(yf, s=grid)).sum(2), s=grid)  # (F, N, H + ry, W + rx)
    cross = corr.index_select(-2, dys % grid[0]).index_select(-1, dxs % grid[1])
    y_sq = _rect_sums(_integral(yf.pow(2).sum(1)), dys.clamp(min=0), h + dys.clamp(max=0),
                      dxs.clamp(min=0), w + dxs.clamp(max=0))  # (N, Sy, Sx)
    count = c * (h - dys.abs()).float()[:, None] * (w - dxs.abs()).float()[None, :]
    d2 = ((ref.sq_sums + y_sq - 2 * cross).clamp_min_(0) / count).transpose(0, 1).reshape(n, -1)

    order, f_of, dy_of, dx_of = _preference(n_flips, ry, rx)
    d2 = d2[:, order]
    # the simplest alignment among those within float32 rounding of the best (argmax returns the
    # first); the rounding of these sums is about 1e-6 of the images' mean square
    tol = _TIE * (1 + ref.sq_sums[0, :, ry, rx] / (c * h * w) + y_sq[:, ry, rx] / (c * h * w))
    pick = (d2 <= d2.min(1).values[:, None] + tol[:, None]).to(torch.uint8).argmax(1)
    flip, dy, dx = f_of[pick].bool(), dy_of[pick], dx_of[pick]
    values = _overlap_l2(ref.padded, y, flip, dy, dx, (ry, rx))
    return DistanceOutput(values, {"dx": dx.to(torch.int16), "dy": dy.to(torch.int16), "flip": flip})


def aligned_distance(radius: int | None = None, flips: bool = True,
                     min_overlap: float = DEFAULT_MIN_OVERLAP, *, name: str = "l2_aligned") -> Distance:
    """The ``l2_aligned`` distance with these settings, for ``distance=`` anywhere
    (``"l2_aligned(radius=2, flips=False)"`` names the same thing)."""
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, int) or radius < 0):
        raise PsaUsageError(f"l2_aligned: radius must be an int >= 0 or None (scaled with the image), got {radius!r}")
    if not isinstance(flips, bool):
        raise PsaUsageError(f"l2_aligned: flips must be True or False, got {flips!r}")
    if not 0 < float(min_overlap) <= 1:
        raise PsaUsageError(f"l2_aligned: min_overlap must be in (0, 1], got {min_overlap!r}")
    params = {"radius": radius, "flips": flips, "min_overlap": float(min_overlap),
              "out_of_frame": "excluded: the mean runs over the overlapping pixels only"}

    def fn(x: torch.Tensor | AlignedReference, y: torch.Tensor) -> DistanceOutput:
        return l2_aligned(x, y, radius=radius, flips=flips, min_overlap=min_overlap)

    def prepare(x: torch.Tensor) -> AlignedReference:
        return prepare_aligned(x, radius=radius, flips=flips, min_overlap=min_overlap)

    def bind(dist: Distance, ctx: DistanceContext) -> Distance:
        h, w = ctx.images.image_size
        ry, rx = resolve_radius(radius, h, w)
        _check_overlap(ry, rx, h, w, min_overlap)
        return dataclasses.replace(dist, binder=None,
                                   params={**dist.params, "radius_px": [ry, rx], "image_size": [h, w]})

    shifts = "shifts up to 4 px at 32 px (scaled)" if radius is None else f"shifts up to {radius} px"
    return Distance(
        name, fn, f"normalized L2 after the best alignment ({shifts}{', with flips' if flips else ''}); "
                  "out-of-frame pixels excluded",
        params=params, binder=bind, prepare=prepare,
        variant=lambda **kw: aligned_distance(**_known("l2_aligned", kw, ("radius", "flips", "min_overlap"),
                                                       {"radius": radius, "flips": flips,
                                                        "min_overlap": min_overlap, "name": name})),
    )


def _known(distance: str, given: dict[str, Any], allowed: tuple[str, ...], current: dict[str, Any]) -> dict[str, Any]:
    """`current` updated with `given`, refusing parameters the distance does not have."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise PsaUsageError(f"{distance}: unknown parameter(s) {unknown}", fix=f"its parameters are {', '.join(allowed)}")
    return {**current, **given}


def alignment_summary(details: dict[str, np.ndarray], valid: np.ndarray,
                      radius_px: tuple[int, int] | None = None, top: int = 8) -> dict[str, Any]:
    """Shares of the draws whose best alignment used a flip, a shift, neither, or the edge of the
    search window (a larger radius might fit better), and the most frequent alignments."""
    dx, dy, flip = (np.asarray(details[k])[valid] for k in ("dx", "dy", "flip"))
    flip = flip.astype(bool)
    total = int(dx.size)
    if total == 0:
        return {"draws": 0}
    shifted = (dx != 0) | (dy != 0)
    keys, counts = np.unique(np.stack([dx, dy, flip.astype(dx.dtype)], 1), axis=0, return_counts=True)
    ranked = np.argsort(-counts, kind="stable")[:top]
    out: dict[str, Any] = {
        "draws": total, "flip": float(flip.mean()), "shift": float(shifted.mean()),
        "none": float((~flip & ~shifted).mean()),
        "top": [{"dx": int(keys[i, 0]), "dy": int(keys[i, 1]), "flip": bool(keys[i, 2]),
                 "fraction": float(counts[i] / total)} for i in ranked],
    }
    if radius_px is not None:
        ry, rx = radius_px
        edge = ((np.abs(dy) == ry) & (ry > 0)) | ((np.abs(dx) == rx) & (rx > 0))
        out["radius_px"] = [int(ry), int(rx)]
        out["at_radius"] = float(edge.mean())
    return out


def describe_alignment(summary: dict[str, Any]) -> str:
    """One line for reports: 'best alignment: flip 48.1%, shift 98.8%, none 0.6%, at the radius 3.0%'."""
    if not summary.get("draws"):
        return "best alignment: no draws"
    text = (f"best alignment over {summary['draws']} draws: flip {100 * summary['flip']:.1f}%, "
            f"shift {100 * summary['shift']:.1f}%, neither {100 * summary['none']:.1f}%")
    if "at_radius" in summary:
        text += f", at the search radius {100 * summary['at_radius']:.1f}%"
    return text


# -- helpers ----------------------------------------------------------------------------------
def _check_overlap(ry: int, rx: int, h: int, w: int, min_overlap: float) -> None:
    share = max(h - ry, 0) * max(w - rx, 0) / (h * w)
    if share < min_overlap:
        raise PsaUsageError(
            f"l2_aligned: a shift of {ry} x {rx} px leaves {100 * share:.0f}% of a {h} x {w} image to compare, "
            f"below min_overlap={min_overlap:g}",
            fix="use a smaller radius (the default scales with the image: round(4·size/32)), or lower min_overlap",
        )


def _integral(z: torch.Tensor) -> torch.Tensor:
    """Summed-area table (..., H + 1, W + 1) with a zero first row and column."""
    return F.pad(z, (1, 0, 1, 0)).cumsum(-1).cumsum(-2)


def _rect_sums(table: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor, c0: torch.Tensor,
               c1: torch.Tensor) -> torch.Tensor:
    """Sums over rows [r0[a], r1[a]) × columns [c0[b], c1[b]) for every (a, b): (..., Sy, Sx)."""
    rows = table.index_select(-2, r1) - table.index_select(-2, r0)
    return rows.index_select(-1, c1) - rows.index_select(-1, c0)


@functools.lru_cache(maxsize=32)
def _preference(n_flips: int, ry: int, rx: int) -> tuple[torch.Tensor, ...]:
    """Candidates (flip, dy, dx) as positions in the flattened (F, Sy, Sx) order, simplest first."""
    dys, dxs = torch.arange(-ry, ry + 1), torch.arange(-rx, rx + 1)
    f, dy, dx = torch.meshgrid(torch.arange(n_flips), dys, dxs, indexing="ij")
    f, dy, dx = f.flatten(), dy.flatten(), dx.flatten()
    keys = sorted(range(len(f)), key=lambda i: (int(f[i]), abs(int(dy[i])) + abs(int(dx[i])),
                                                abs(int(dy[i])), abs(int(dx[i])), int(dy[i]), int(dx[i])))
    order = torch.tensor(keys)
    return order, f[order], dy[order], dx[order]


def _overlap_l2(padded: torch.Tensor, y: torch.Tensor, flip: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                radius: tuple[int, int]) -> torch.Tensor:
    """RMS of y − shift(g(x), (dy, dx)) over each image's overlap, computed directly (float32):
    one gather from the zero-padded candidates, masked to the pixels that have a counterpart."""
    n, c, h, w = y.shape
    ry, rx = radius
    hp, wp = h + 2 * ry, w + 2 * rx
    n_flips = padded.shape[1] // (c * hp * wp)
    rows_of = torch.arange(n) * n_flips + flip.long()  # g(x) per image, as whole rows (cheaper than fancy indexing)
    chosen = padded.view(n * n_flips, c * hp * wp).index_select(0, rows_of).view(n, c, hp * wp)
    # y[i, j] meets g(x)[i − dy, j − dx], stored at padded row i − dy + ry, column j − dx + rx
    pixel = (torch.arange(h)[:, None] * wp + torch.arange(w)[None, :]).reshape(1, 1, -1)
    index = pixel + ((ry - dy.long()) * wp + (rx - dx.long()))[:, None, None]  # (N, 1, H·W)
    moved = chosen.gather(2, index.expand(n, c, h * w))
    rows = torch.arange(h)[None, :] - dy[:, None]
    cols = torch.arange(w)[None, :] - dx[:, None]
    row_ok, col_ok = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    sq = (moved.view(n, c, h, w) - y.to(torch.float32)).pow_(2)
    sq = sq.mul_(row_ok[:, None, :, None]).mul_(col_ok[:, None, None, :])
    return (sq.sum((1, 2, 3)) / (c * row_ok.sum(1) * col_ok.sum(1))).sqrt()
