"""The image contract: float tensors in [0, 1], CHW per image / NCHW per batch, finite, same size.

`check_batch` turns a violation into an `AugmentationContractError` that names the
property, the observed value and the likely fix.
"""

from __future__ import annotations

import torch

from pytest_psa.errors import AugmentationContractError

RANGE_TOLERANCE = 1e-4  # float round-off allowed outside [0, 1]; clamped away


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


def check_batch(out: torch.Tensor, name: str, *, first_index: int = 0) -> torch.Tensor:
    """Check a stacked float batch (N, C, H, W) for finiteness and range; return it float32, clamped."""
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
    lo, hi = float(out.min()), float(out.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        if lo < -0.05:  # before the 0-255 test: normalized images also exceed 1.5
            fix = ("values look normalized (mean/std): audit the augmentation before Normalize, "
                   "since distances are defined on [0, 1] pixels")
        elif hi > 1.5:
            fix = "pixel values look like the 0-255 scale: divide by 255 or use v2.ToDtype(torch.float32, scale=True)"
        else:
            fix = "clamp the output to [0, 1] (e.g. .clamp(0, 1)) after adding noise or mixing"
        raise AugmentationContractError(
            "output values leave [0, 1]", property="value range", observed=f"[{lo:.4g}, {hi:.4g}]", fix=fix,
            augmentation=name,
        )
    return out.clamp_(0.0, 1.0)
