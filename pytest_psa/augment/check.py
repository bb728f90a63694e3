"""`check_contract`: one augmentation, one image, one seeded draw, checked against the image contract.

Made for property-based tests (`pytest_psa.strategies.images`): the image may come in any form an
adapter receives (float or uint8 CHW tensor, PIL image, HWC numpy array), and for a plain
callable that form says how the callable expects its input.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Any

import numpy as np
import torch

from pytest_psa._threads import single_thread
from pytest_psa.augment.adapters import (
    Augmentation,
    as_augmentation,
    numpy_augmentation,
    pil_augmentation,
    tensor_augmentation,
)
from pytest_psa.augment.seeding import determinism_fix
from pytest_psa.errors import AugmentationContractError, PsaUsageError

_LIBRARIES = ("torchvision.transforms", "albumentations", "kornia")


def check_contract(aug: Any, image: Any, *, seed: int = 0) -> torch.Tensor:
    """Apply `aug` to `image` once, seeded by `seed`, and check the output; return it as float (C, H, W).

    Raises `AugmentationContractError` naming the property and the fix when the output breaks the
    image contract (type, shape, channels, dtype, finiteness, value range; docs/augmentations.md)
    or when two draws with the same seed differ (determinism: the audit replays draws by seed), first
    through `Augmentation.check_determinism` (the audit's self-check on its probe images), then on
    `image` itself.

    aug: anything `as_augmentation` takes. A plain callable is wrapped for the form of `image`:
      a PIL image -> `pil_augmentation`, an HWC numpy array -> `numpy_augmentation` (its dtype),
      a uint8 tensor -> `tensor_augmentation(dtype="uint8")`, a float tensor -> the tensor kind.
      torchvision, albumentations and kornia objects and `Augmentation`s are wrapped as
      `as_augmentation` does, whatever the image's form.
    """
    __tracebackhide__ = True
    x, form = _canonical(image)
    wrapped = _wrap(aug, form)
    with single_thread():  # small images: thread hand-offs cost more than they save
        if _first_check(aug, form, int(x.shape[0])):
            # the audit's own self-check on its probe images, once per augmentation, form and channel
            # count: a property test calls this for hundreds of images and must stay inside
            # hypothesis' default deadline; every call still compares two draws of its own image
            wrapped.check_determinism(tuple(x.shape))
            with contextlib.suppress(TypeError, KeyError):
                _PROBED[aug].add((form, int(x.shape[0])))
        first = wrapped.apply(x[None], [seed])[0]  # then the drawn image itself, edge cases included
        second = wrapped.apply(x[None], [seed])[0]
    if not torch.equal(first, second):
        diff = (first - second).abs()
        raise AugmentationContractError(
            "two draws with the same seed differ", property="determinism",
            observed=f"max |difference| {float(diff.max()):.4g} over {int((diff > 0).sum())} values",
            fix=determinism_fix(wrapped.fn),
            augmentation=wrapped.name,
        )
    return first


_PROBED: weakref.WeakKeyDictionary[Any, set[tuple[str, int]]] = weakref.WeakKeyDictionary()


def _first_check(aug: Any, form: str, channels: int) -> bool:
    """Whether the probe self-check has not yet passed for (aug, form, channels).

    An object that cannot be weakly referenced (or hashed) is probed every time."""
    try:
        return (form, channels) not in _PROBED.setdefault(aug, set())
    except TypeError:
        return True


def _wrap(aug: Any, form: str) -> Augmentation:
    if aug is None or isinstance(aug, Augmentation) or (type(aug).__module__ or "").startswith(_LIBRARIES):
        return as_augmentation(aug)
    if form == "pil":
        return pil_augmentation(aug)
    if form in ("numpy-uint8", "numpy-float"):
        return numpy_augmentation(aug, dtype="uint8" if form == "numpy-uint8" else "float")
    if form == "uint8":
        return tensor_augmentation(aug, dtype="uint8")
    return as_augmentation(aug)


def _canonical(image: Any) -> tuple[torch.Tensor, str]:
    """(float32 (C, H, W) in [0, 1], the form it came in)."""
    __tracebackhide__ = True
    if isinstance(image, torch.Tensor):
        if image.ndim == 2:
            image = image[None]
        _check_chw(tuple(image.shape), "tensor")
        if image.dtype == torch.uint8:
            return image.float().div(255.0), "uint8"
        if not image.is_floating_point():
            raise PsaUsageError("check_contract takes uint8 or float images", observed=str(image.dtype),
                                fix="pass a float tensor in [0, 1] or a uint8 tensor")
        x = image.detach().to(torch.float32)
        if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
            raise PsaUsageError("a float input image must have finite values in [0, 1]",
                                observed=f"values in [{float(x.min()):.4g}, {float(x.max()):.4g}]",
                                fix="divide 0-255 images by 255, or draw inputs with pytest_psa.strategies.images()")
        return x, "float"
    if isinstance(image, np.ndarray):
        arr = image[..., None] if image.ndim == 2 else image
        if arr.ndim != 3:
            raise PsaUsageError("a numpy input image must be (H, W) or (H, W, C)", observed=image.shape,
                                fix="pass one HWC image")
        t, form = _canonical(torch.from_numpy(arr.transpose(2, 0, 1).copy()))
        return t, "numpy-uint8" if form == "uint8" else "numpy-float"
    if type(image).__module__.startswith("PIL"):
        if image.mode not in ("L", "RGB"):
            raise PsaUsageError("a PIL input image must have mode 'L' or 'RGB'", observed=image.mode,
                                fix="convert it first, e.g. image.convert('RGB')")
        return _canonical(np.asarray(image))[0], "pil"
    raise PsaUsageError("check_contract takes one image", observed=type(image).__name__,
                        fix="pass a (C, H, W) tensor, a PIL image or an (H, W, C) numpy array, e.g. drawn "
                            "with pytest_psa.strategies.images()")


def _check_chw(shape: tuple[int, ...], what: str) -> None:
    if len(shape) != 3 or shape[0] not in (1, 3) or min(shape) < 1:
        raise PsaUsageError(f"a {what} input image must be (C, H, W) with 1 or 3 channels", observed=shape,
                            fix="pass one image, not a batch; channels first")
