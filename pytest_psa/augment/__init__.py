"""The image contract and the adapters that put any augmentation under it (torchvision v1/v2,
PIL and tensor callables, numpy/albumentations, batched modules), and the augmentations known by name."""

from pytest_psa.augment.adapters import (
    Augmentation,
    as_augmentation,
    batched_augmentation,
    numpy_augmentation,
    pil_augmentation,
    tensor_augmentation,
)
from pytest_psa.augment.known import resolve_augmentation

__all__ = ["Augmentation", "as_augmentation", "batched_augmentation", "numpy_augmentation", "pil_augmentation",
           "resolve_augmentation", "tensor_augmentation"]
