"""Augmentations by name, for the ``psa`` command line: well-known torchvision policies, the
destructive one used in tests and examples, and ``module:attr`` import paths for your own.

    resolve_augmentation("augmix")                      # v2.AugMix()
    resolve_augmentation("cropflip", image_size=64)     # RandomCrop(64, padding=4) + flip
    resolve_augmentation("mypkg.augs:MyAug")            # a class is instantiated without arguments;
    resolve_augmentation("mypkg.augs:my_function")      # anything else is used as it is
    resolve_augmentation(v2.AugMix())                   # not a string: as_augmentation(obj)

`resolve_augmentation` is what takes a user's augmentation argument where a name is allowed
(`pytest_psa.density`, the ``psa`` fixture, the command line).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from pytest_psa._imports import import_object
from pytest_psa.augment.adapters import Augmentation, as_augmentation
from pytest_psa.errors import PsaUsageError


def _augmix(size: int) -> Any:
    from torchvision.transforms import v2

    return v2.AugMix()


def _randaugment(size: int) -> Any:
    from torchvision.transforms import v2

    return v2.RandAugment()


def _trivialaugment(size: int) -> Any:
    from torchvision.transforms import v2

    return v2.TrivialAugmentWide()


def _autoaugment(size: int) -> Any:
    from torchvision.transforms import v2

    policy = v2.AutoAugmentPolicy.CIFAR10 if size <= 32 else v2.AutoAugmentPolicy.IMAGENET
    return v2.AutoAugment(policy)


def _cropflip(size: int) -> Any:
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomCrop(size, padding=max(1, size // 8)), v2.RandomHorizontalFlip()])


def _destructive(size: int) -> Any:
    from torchvision.transforms import v2

    # never lands near the original image: the PSA condition's negative example
    return v2.Compose([v2.RandomInvert(p=1), v2.ColorJitter(0.8, 0.8, 0.8, 0.3), v2.RandomSolarize(0.5, p=1)])



# -- the seed paper's zoo (pytest_psa.augment.zoo); the stand-ins are named as such everywhere --
def _pixmix(size: int) -> Any:
    from pytest_psa.augment.zoo import PixMix

    return PixMix()


def _deepaugment_standin(size: int) -> Any:
    from pytest_psa.augment.zoo import DeepAugmentStandin

    return DeepAugmentStandin()


def _styleaug_standin(size: int) -> Any:
    from pytest_psa.augment.zoo import RandConvStandin

    return RandConvStandin()


def _augmix_without_proximal(size: int) -> Any:
    from pytest_psa.augment.zoo import without_proximal

    # delta = the PSA verdict's default gamma (results.density.DEFAULT_GAMMA, normalized l2)
    return without_proximal(resolve_augmentation("augmix", size), delta=0.05, distance="l2")


def _mixture(a: str, b: str) -> Callable[[int], Any]:
    def build(size: int) -> Any:
        from pytest_psa.augment.zoo import compose

        return compose(resolve_augmentation(a, size), resolve_augmentation(b, size), p=0.5)

    return build


# name -> (factory(image_size), one-line description)
KNOWN_AUGMENTATIONS: dict[str, tuple[Callable[[int], Any], str]] = {
    "augmix": (_augmix, "torchvision v2.AugMix() (severity 3, width 3)"),
    "randaugment": (_randaugment, "torchvision v2.RandAugment() (2 ops, magnitude 9)"),
    "trivialaugment": (_trivialaugment, "torchvision v2.TrivialAugmentWide()"),
    "autoaugment": (_autoaugment, "torchvision v2.AutoAugment (CIFAR-10 policy up to 32 px, else ImageNet)"),
    "cropflip": (_cropflip, "RandomCrop(size, padding=size/8) + RandomHorizontalFlip (the standard CIFAR pair)"),
    "destructive": (_destructive, "RandomInvert + ColorJitter(0.8, 0.8, 0.8, 0.3) + RandomSolarize(0.5): "
                                  "never near the original (fails the PSA check)"),
    "none": (lambda size: None, "the identity (ERM): no augmentation"),
    "pixmix": (_pixmix, "PixMix (k=4, beta=3, AugMix base ops at severity 3) on generated IFS fractals and "
                        "patterns, not the released picture set"),
    "deepaugment-standin": (_deepaugment_standin, "stand-in for DeepAugment: a random conv encoder/decoder with "
                                                  "per-draw weight and activation perturbations"),
    "styleaug-standin-randconv": (_styleaug_standin, "stand-in for StyleAug: RandConv, a random k x k convolution "
                                                     "per draw, k in {1, 3, 5, 7}"),
    "augmix-without-proximal": (_augmix_without_proximal, "AugMix with draws within l2 0.05 of the image redrawn: "
                                                          "F(gamma) = 0 for gamma <= 0.05 (the ablation)"),
    "deepaugment-standin|augmix": (_mixture("deepaugment-standin", "augmix"),
                                   "deepaugment-standin or augmix, p = 1/2 each (Table 7's DeepAug + AugMix)"),
    "styleaug-standin-randconv|augmix": (_mixture("styleaug-standin-randconv", "augmix"),
                                         "styleaug-standin-randconv or augmix, p = 1/2 each (StyleAug + AugMix)"),
    "deepaugment-standin|styleaug-standin-randconv": (
        _mixture("deepaugment-standin", "styleaug-standin-randconv"),
        "deepaugment-standin or styleaug-standin-randconv, p = 1/2 each (DeepAug + StyleAug)"),
}


def check_augmentation_name(spec: Any) -> None:
    """Refuse a string that is neither a registered name nor a ``module:attr`` path (a near miss gets a
    did-you-mean): cheap, so callers run it before loading data or training anything."""
    if not isinstance(spec, str) or ":" in spec:
        return
    key = spec.strip().lower()
    if key in KNOWN_AUGMENTATIONS:
        return
    close = difflib.get_close_matches(key, KNOWN_AUGMENTATIONS, n=1)
    if close:
        raise PsaUsageError(f"unknown augmentation {spec!r} (did you mean {close[0]!r}?)",
                            fix=f"known names: {', '.join(KNOWN_AUGMENTATIONS)} (`psa list`)")
    raise PsaUsageError(f"unknown augmentation {spec!r}",
                        fix=f"use a module:attr path or pass a callable (known names: "
                            f"{', '.join(KNOWN_AUGMENTATIONS)})")


def resolve_augmentation(spec: Any, image_size: int = 32, *, cache_key: str | None = None) -> Augmentation:
    """An `Augmentation` for a registered name or a ``module:attr`` path, named after `spec`;
    anything that is not a string goes to `as_augmentation` (with `cache_key`)."""
    if not isinstance(spec, str):
        return as_augmentation(spec, cache_key=cache_key)
    check_augmentation_name(spec)
    if ":" in spec:
        obj = _import(spec)
        label = spec.rsplit(":", 1)[1]
    else:
        key = spec.strip().lower()
        obj = KNOWN_AUGMENTATIONS[key][0](int(image_size))
        label = key
    aug = as_augmentation(obj, cache_key=cache_key)
    aug.name = label  # the tables and plots show what the user typed; the cache keys on the transform itself
    return aug


def _import(spec: str) -> Any:
    obj = import_object(spec, what="augmentation",
                        fix="give an importable module and an attribute, e.g. mypackage.augmentations:MyAugment")
    if isinstance(obj, type):
        try:
            obj = obj()
        except TypeError as exc:
            raise PsaUsageError(f"{spec} is a class that cannot be built without arguments ({exc})",
                                fix="point at an instance or a factory-made object instead of the class") from None
    return obj
