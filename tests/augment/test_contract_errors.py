"""Malformed augmentations fail with `AugmentationContractError`: property, observed value and fix.

Each case is something a user can really write. The error must be catchable as the package's
error, as TypeError and as ValueError, name the broken property (``.property`` and the message),
show what was observed, and say how to fix it; never a bare traceback from torch internals.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from contract_helper import synthetic_images
from torch import nn
from torchvision.transforms import v2

import pytest_psa
from pytest_psa import (
    AugmentationContractError,
    PsaError,
    as_augmentation,
    batched_augmentation,
    numpy_augmentation,
    tensor_augmentation,
)
from pytest_psa.audits.density import density

SEEDS = [1, 2, 3, 4]


class SharedParamsShift(nn.Module):
    """A batched module that draws ONE shift for the whole batch (what v2 does on a batch)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 0.2 * (torch.rand(()) - 0.5)).clamp(0, 1)


def albumentations_without_dict(*, image: np.ndarray) -> np.ndarray:
    return image[:, ::-1].copy()  # forgot to wrap it as {"image": ...}


def raises_inside(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(7, -1)  # RuntimeError from torch


def half_on_every_sample(x: torch.Tensor) -> torch.Tensor:
    return x * float("nan")


# (id, augmentation, property, fragments the message must contain: observed value and fix)
CASES = [
    ("float-0-255", lambda x: x * 255.0, "value range", ["[0, 255]", "0-255", "255"]),
    ("normalized-negative", lambda x: x - 0.5, "value range", ["-0.5", "normalized", "Normalize"]),
    ("nan", half_on_every_sample, "finiteness", ["NaN", "division by zero"]),
    ("inf", lambda x: x + float("inf"), "finiteness", ["Inf", "division by zero"]),
    ("wrong-size", v2.CenterCrop(24), "shape", ["(3, 24, 24)", "(3, 32, 32)", "size"]),
    ("channels", v2.Grayscale(), "channels", ["(1, 32, 32)", "3 -> 1", "num_output_channels=3"]),
    ("batch-dim", lambda x: x[None], "shape", ["(1, 3, 32, 32)", "batch dimension"]),
    ("uint8-from-float", v2.ToDtype(torch.uint8, scale=True), "dtype",
     ["torch.uint8", "ToDtype(torch.float32, scale=True)"]),
    ("returns-none", lambda x: None, "type", ["NoneType", "in place"]),
    ("returns-pil", v2.ToPILImage(), "type", ["Image", "pil_augmentation"]),
    ("returns-numpy", lambda x: x.numpy(), "type", ["ndarray", "numpy_augmentation"]),
    ("raises", raises_inside, "exception", ["RuntimeError", "torch.Tensor torch.float32 (3, 32, 32)",
                                            "pil_augmentation"]),
    ("shared-batch-params", batched_augmentation(SharedParamsShift()), "independent draws",
     ["identical outputs within a batch", "tensor_augmentation"]),
    ("albumentations-no-dict", numpy_augmentation(albumentations_without_dict, albumentations=True), "type",
     ["ndarray", "dict", "'image'"]),
    ("numpy-4d", numpy_augmentation(lambda img: img[None]), "shape", ["(1, 32, 32, 3)", "(H, W, C)"]),
    ("numpy-int32", numpy_augmentation(lambda img: img.astype(np.int32)), "dtype", ["int32", "uint8"]),
    ("uint8-kind-returns-float-255", tensor_augmentation(lambda x: x.float(), dtype="uint8"), "value range",
     ["255", "0-255"]),
]


def _apply(aug):
    return as_augmentation(aug).apply(synthetic_images(len(SEEDS)), SEEDS)


@pytest.mark.parametrize(("aug", "prop", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_augmentation_raises_a_contract_error(aug, prop, fragments):
    with pytest.raises(AugmentationContractError) as info:
        _apply(aug)
    err = info.value
    assert isinstance(err, PsaError) and isinstance(err, TypeError) and isinstance(err, ValueError)
    assert err.property == prop
    message = str(err)
    assert f"{prop}:" in message  # the property is named in the text, not only in the attribute
    assert "observed:" in message and "fix:" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"
    assert "Traceback" not in message


@pytest.mark.parametrize("catch_as", [TypeError, ValueError, PsaError])
def test_contract_error_is_catchable_as(catch_as):
    with pytest.raises(catch_as):
        _apply(lambda x: x * 255.0)


@pytest.mark.parametrize("obj", [42, "RandAugment", [v2.AugMix()]], ids=["int", "str", "list"])
def test_not_callable(obj):
    with pytest.raises(AugmentationContractError) as info:
        as_augmentation(obj)
    assert info.value.property == "callable"
    assert type(obj).__name__ in str(info.value) and "fix:" in str(info.value)


def test_exception_is_chained_and_named_not_a_traceback():
    def broken(x):
        raise KeyError("magnitude")

    with pytest.raises(AugmentationContractError) as info:
        _apply(broken)
    err = info.value
    assert err.property == "exception"
    assert isinstance(err.__cause__, KeyError)  # the original error is kept for whoever needs it
    assert "KeyError" in str(err) and "magnitude" in str(err)
    assert "Traceback" not in str(err)


def test_contract_error_names_the_augmentation():
    with pytest.raises(AugmentationContractError) as info:
        _apply(v2.CenterCrop(24))
    assert "CenterCrop" in str(info.value) and "CenterCrop" in info.value.augmentation


def test_density_surfaces_the_contract_error():
    with pytest.raises(AugmentationContractError) as info:
        density(lambda x: x * 255.0, data=pytest_psa.synthetic("test", n=10), n_images=10, draws=1)
    assert info.value.property == "value range"


def test_contract_error_for_the_second_image_is_still_caught():
    """A violation on any image of the batch fails, not only on the first one."""
    calls = {"n": 0}

    def bad_on_second(x):
        calls["n"] += 1
        return x if calls["n"] != 2 else x + 2.0

    with pytest.raises(AugmentationContractError) as info:
        _apply(bad_on_second)
    assert info.value.property == "value range"


def test_small_round_off_outside_the_range_is_tolerated_and_clamped():
    y = _apply(lambda x: (x * 1.00001).clamp(max=1.00005))
    assert float(y.max()) <= 1.0


IMAGENET_NORMALIZE = v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def test_imagenet_normalize_is_a_value_range_error():
    with pytest.raises(AugmentationContractError) as info:
        _apply(IMAGENET_NORMALIZE)
    assert info.value.property == "value range"


def test_imagenet_normalize_gets_the_normalized_hint():
    with pytest.raises(AugmentationContractError) as info:
        _apply(IMAGENET_NORMALIZE)
    assert "normalized" in str(info.value) and "0-255" not in str(info.value)
