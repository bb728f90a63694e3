"""The image contract: float tensors on the [0, 1] pixel scale, CHW per image / NCHW per batch, finite, same size.

`check_batch` turns a violation into an `AugmentationContractError` that names the
property, the observed value and the likely fix.

The value range (docs/augmentations.md, "Values outside [0, 1]"): an image whose values stay within
`RANGE_TOLERANCE` of [0, 1] is clamped to it (float round-off). An image may otherwise leave [0, 1]
only as a tail, as unclamped noise does: at most `EXCURSION_SHARE` of its values may lie more than
`EXCURSION_MARGIN` outside [0, 1]. Such an image is kept as it is (the model trains on exactly
those values, so distances are measured on them too). The bulk of an image on another scale
fails: 0-255 values, or mean/std-normalized ones (ImageNet statistics map [0, 1] to about
[-2.1, 2.6]: a pixel darker than 0.35-0.43 or brighter than 0.69-0.77, by channel, lands more than
0.25 outside). A per-image share, unlike the batch's extremes, does not grow with the number of
draws: on the clean variant of the embedded synthetic test set
(measured before the cluttered default), Gaussian noise with sigma 0.1 reaches -0.40 over 200
images and -0.47 over 500 images x 8 draws, while no image has more than 0.6 % of its values more
than 0.25 outside [0, 1] (sigma 0.15: 3.2 %, accepted; sigma 0.2: 7.7 %, refused). On the cluttered default,
whose colours stay further from 0 and 1, the worst image over 500 x 8 draws has 0.3 % (sigma 0.1),
1.7 % (0.15) and 4.5 % (0.2, so accepted there).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pytest_psa.errors import AugmentationContractError

RANGE_TOLERANCE = 1e-4  # float round-off allowed outside [0, 1]; clamped away
EXCURSION_MARGIN = 0.25  # a value this far outside [0, 1] is off the pixel scale ...
EXCURSION_SHARE = 0.05  # ... and at most this share of an image's values may be


def check_single(out: object, like: torch.Tensor, name: str, *, float_input: bool = True) -> torch.Tensor:
    """Check one augmented image against the input `like` (C, H, W); return it as float32."""
    __tracebackhide__ = True
    if not isinstance(out, torch.Tensor):
        hint = {
            "Image": "the augmentation returned a PIL image: wrap it with pytest_psa.pil_augmentation(...) "
                     "or end it with v2.ToImage() + v2.ToDtype(torch.float32, scale=True)",
            "ndarray": "the augmentation returned a numpy array: wrap it with pytest_psa.numpy_augmentation(...)",
            "NoneType": "the augmentation returned None: a transform must return the augmented image, "
                        "not modify it in place",
        }.get(type(out).__name__, "return a torch.Tensor of the same shape as the input")
        raise AugmentationContractError(
            "output is not a tensor", property="type", observed=type(out).__name__, fix=hint, augmentation=name,
        )
    if out.shape != like.shape:
        if out.ndim == like.ndim + 1 and out.shape[0] == 1 and out.shape[1:] == like.shape:
            fix = "the augmentation added a batch dimension; return a (C, H, W) image for a (C, H, W) input"
            prop = "shape"
        elif out.ndim == like.ndim and out.shape[1:] == like.shape[1:]:
            fix = (f"the augmentation changed the channel count ({like.shape[0]} -> {out.shape[0]}); "
                   "keep the colour channels (e.g. Grayscale(num_output_channels=3))")
            prop = "channels"
        else:
            fix = ("distances compare A(x) with x pixel by pixel, so the size must be kept: "
                   "crop/pad/resize back to the input size (e.g. RandomResizedCrop(size=input size))")
            prop = "shape"
        raise AugmentationContractError(
            f"output shape differs from the input shape {tuple(like.shape)}",
            property=prop, observed=tuple(out.shape), fix=fix, augmentation=name,
        )
    if not out.is_floating_point():
        if out.dtype == torch.uint8 and float_input:
            fix = ("the augmentation turned a float image into uint8: end it with "
                   "v2.ToDtype(torch.float32, scale=True), or declare uint8 input with "
                   "pytest_psa.tensor_augmentation(aug, dtype='uint8')")
        else:
            fix = "return float pixels in [0, 1]"
        raise AugmentationContractError(
            "output is not a floating-point tensor", property="dtype", observed=str(out.dtype), fix=fix,
            augmentation=name,
        )
    return out


@dataclass(frozen=True)
class BatchRange:
    """What `check_batch_range` saw: the batch's smallest and largest value, and how many of its
    images left [0, 1] by more than round-off (kept unclamped as an accepted excursion)."""

    low: float
    high: float
    excursions: int
    images: int


def check_batch(out: torch.Tensor, name: str, *, first_index: int = 0) -> torch.Tensor:
    """Check a stacked float batch (N, C, H, W) for finiteness and range; return it float32.

    Round-off outside [0, 1] is clamped away; an accepted excursion (module docstring) is kept.
    """
    __tracebackhide__ = True
    return check_batch_range(out, name, first_index=first_index)[0]


def check_batch_range(out: torch.Tensor, name: str, *, first_index: int = 0) -> tuple[torch.Tensor, BatchRange]:
    """`check_batch`, also returning the observed range and the number of images with an excursion."""
    __tracebackhide__ = True
    out = out.to(torch.float32)
    finite = torch.isfinite(out)
    if not bool(finite.all()):
        bad = (~finite).flatten(1).any(1).nonzero().flatten()
        first = int(bad[0])
        kind = "NaN" if bool(torch.isnan(out[first]).any()) else "Inf"
        raise AugmentationContractError(
            f"output has non-finite values ({kind}) in {len(bad)} of {len(out)} images",
            property="finiteness", observed=f"{kind} in image {first_index + first}",
            fix="look for a division by zero or log of 0 in the augmentation (e.g. normalizing a constant image)",
            augmentation=name,
        )
    flat = out.reshape(len(out), -1)
    lows, highs = flat.amin(1), flat.amax(1)
    lo, hi = float(lows.min()), float(highs.max())
    if lo >= -RANGE_TOLERANCE and hi <= 1 + RANGE_TOLERANCE:
        return out.clamp_(0.0, 1.0), BatchRange(max(lo, 0.0), min(hi, 1.0), 0, len(out))
    leaves = (lows < -RANGE_TOLERANCE) | (highs > 1 + RANGE_TOLERANCE)
    rows = leaves.nonzero().flatten()
    below = (flat[rows] < -EXCURSION_MARGIN).float().mean(1)
    above = (flat[rows] > 1 + EXCURSION_MARGIN).float().mean(1)
    off = (below + above > EXCURSION_SHARE).nonzero().flatten()
    if len(off):
        j = int(off[0])
        i = int(rows[j])
        raise AugmentationContractError(
            "output values leave [0, 1]", property="value range",
            observed=(f"[{lo:.4g}, {hi:.4g}]; image {first_index + i} has {float(below[j]):.0%} of its values "
                      f"below {-EXCURSION_MARGIN:g} and {float(above[j]):.0%} above {1 + EXCURSION_MARGIN:g} "
                      f"(at most {EXCURSION_SHARE:.0%} may be)"),
            fix=_range_fix(float(below[j]), float(highs[i])), augmentation=name,
        )
    kept = ~leaves
    out[kept] = out[kept].clamp_(0.0, 1.0)  # round-off only; the excursions stay as the model sees them
    return out, BatchRange(lo, hi, len(rows), len(out))


def _range_fix(below: float, high: float) -> str:
    if below <= EXCURSION_SHARE and high > 2.0:
        return "pixel values look like the 0-255 scale: divide by 255 or use v2.ToDtype(torch.float32, scale=True)"
    if below > EXCURSION_SHARE:
        return ("values look normalized (mean/std), or noisier than [0, 1] pixels allow: audit the augmentation "
                "before Normalize, since distances are defined on [0, 1] pixels; if it adds noise, lower its std "
                "or clamp the output to [0, 1]")
    return ("clamp the output to [0, 1] (e.g. .clamp(0, 1)) after brightening, adding noise or mixing, "
            "or make the change smaller (noise: lower its std)")
