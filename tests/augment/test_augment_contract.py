"""Every supported kind of augmentation meets the image contract through its adapter."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from contract_helper import check_augmentation, synthetic_images
from torch import nn
from torchvision import transforms as v1
from torchvision.transforms import v2

import pytest_psa
from pytest_psa import (
    as_augmentation,
    batched_augmentation,
    numpy_augmentation,
    pil_augmentation,
    tensor_augmentation,
)
from pytest_psa.audits.density import density


# -- tiny stand-ins for libraries that are not installed ---------------------------------------
class TinyAlbumentations:
    """albumentations-style: ``aug(image=hwc_uint8)["image"]``, drawing from numpy and `random`."""

    def __init__(self, p: float = 0.5, limit: int = 40) -> None:
        self.p, self.limit = p, limit

    def __call__(self, *, image: np.ndarray, **kwargs) -> dict:
        out = image
        if random.random() < self.p:
            out = out[:, ::-1]  # horizontal flip
        shift = np.random.randint(-self.limit, self.limit + 1)
        out = np.clip(out.astype(np.int16) + shift, 0, 255).astype(np.uint8)
        return {"image": out, **kwargs}


class TinyKornia(nn.Module):
    """kornia-style: a batched module that draws its parameters per sample from the torch RNG."""

    def __init__(self, max_shift: float = 0.1) -> None:
        super().__init__()
        self.max_shift = max_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        shift = (torch.rand(b, 1, 1, 1) * 2 - 1) * self.max_shift
        flip = torch.rand(b) < 0.5
        out = (x + shift).clamp(0, 1)
        return torch.where(flip[:, None, None, None], out.flip(-1), out)


def albumentations_lookalike():
    cls = type("HorizontalFlipPlus", (TinyAlbumentations,), {"__module__": "albumentations.augmentations.fake"})
    return cls()


def kornia_lookalike():
    cls = type("RandomShiftFlip", (TinyKornia,), {"__module__": "kornia.augmentation.fake"})
    return cls()


def noisy(x: torch.Tensor) -> torch.Tensor:
    return (x + 0.05 * torch.randn_like(x)).clamp(0, 1)


def hwc_uint8_noise(img: np.ndarray) -> np.ndarray:
    assert img.dtype == np.uint8 and img.shape[-1] == 3
    return np.clip(img.astype(np.int16) + np.random.randint(-20, 21, img.shape), 0, 255).astype(np.uint8)


def hwc_float_gamma(img: np.ndarray) -> np.ndarray:
    assert img.dtype == np.float32 and img.shape[-1] == 3
    return img ** np.random.uniform(0.7, 1.4)


FAR = v2.Compose([v2.RandomInvert(p=1), v2.ColorJitter(0.8, 0.8, 0.8, 0.3), v2.RandomSolarize(0.5, p=1)])

CASES = [
    # (id, augmentation, expected adapter kind, stochastic)
    ("v1-hflip", v1.RandomHorizontalFlip(), "pil", True),
    ("v1-crop-pad", v1.RandomCrop(32, padding=4), "pil", True),
    ("v1-colorjitter", v1.ColorJitter(0.4, 0.4, 0.4), "pil", True),
    ("v1-augmix", v1.AugMix(), "pil", True),
    ("v1-compose-totensor", v1.Compose([v1.RandomHorizontalFlip(), v1.ToTensor()]), "pil", True),
    ("v2-augmix", v2.AugMix(), "tensor", True),
    ("v2-randaugment", v2.RandAugment(), "tensor", True),
    ("v2-trivialaugment", v2.TrivialAugmentWide(), "tensor", True),
    ("v2-rrc", v2.RandomResizedCrop(32, antialias=True), "tensor", True),
    ("v2-far", FAR, "tensor", True),
    ("v2-uint8-randaugment", tensor_augmentation(v2.RandAugment(), dtype="uint8"), "tensor", True),
    ("v2-uint8-augmix", tensor_augmentation(v2.AugMix(), dtype="uint8"), "tensor", True),
    ("tensor-fn-noise", noisy, "tensor", True),
    ("tensor-fn-deterministic", lambda x: x.flip(-1), "tensor", False),
    ("numpy-uint8", numpy_augmentation(hwc_uint8_noise), "numpy", True),
    ("numpy-float", numpy_augmentation(hwc_float_gamma, dtype="float"), "numpy", True),
    ("albumentations-explicit", numpy_augmentation(TinyAlbumentations(), albumentations=True), "numpy", True),
    ("albumentations-detected", albumentations_lookalike(), "numpy", True),
    ("kornia-explicit", batched_augmentation(TinyKornia()), "batched", True),
    ("kornia-detected", kornia_lookalike(), "batched", True),
]


@pytest.mark.parametrize(("aug", "kind", "stochastic"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_augmentation_meets_the_contract(aug, kind, stochastic):
    check_augmentation(aug, kind=kind, stochastic=stochastic)


def test_grayscale_images_through_the_pil_adapter():
    x = synthetic_images(6, channels=1)
    report = check_augmentation(v1.RandomHorizontalFlip(), kind="pil", images=x)
    assert report.outputs.shape == (6, 1, 32, 32)


def test_pil_adapter_round_trip_is_exact():
    """A PIL round trip of an image with uint8 levels changes nothing: the identity stays an identity."""
    x = synthetic_images(4)
    y = pil_augmentation(lambda im: im).apply(x, [1, 2, 3, 4])
    assert torch.equal(x, y)


def test_none_is_the_identity():
    aug = as_augmentation(None)
    assert aug.kind == "identity"
    x = synthetic_images(3)
    assert torch.equal(aug.apply(x, [1, 2, 3]), x)


def test_as_augmentation_passes_an_augmentation_through():
    aug = tensor_augmentation(noisy)
    assert as_augmentation(aug) is aug


def test_seeded_draws_match_torch_manual_seed():
    """A draw seeded with s is the draw torch would make after manual_seed(s): no hidden extra state."""
    aug = v2.RandomResizedCrop(32, antialias=True)
    x = synthetic_images(1)
    y = as_augmentation(aug).apply(x, [1234])[0]
    state = torch.get_rng_state()
    try:
        torch.manual_seed(1234)
        expected = aug(x[0].clone())
    finally:
        torch.set_rng_state(state)
    assert torch.equal(y, expected)


def python_random_flip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1) if random.random() < 0.5 else x


def test_tensor_callable_using_python_random_is_seeded_and_isolated():
    check_augmentation(python_random_flip, kind="tensor")


def test_v2_transform_on_a_batch_shares_parameters_so_the_adapter_goes_per_image():
    """The reason per-image application exists: v2 on a batch draws ONE parameter set."""
    x = synthetic_images(1).expand(16, 3, 32, 32).clone()
    aug = v2.RandomResizedCrop(32, antialias=True)
    state = torch.get_rng_state()
    try:
        torch.manual_seed(0)
        batch_out = aug(x)
    finally:
        torch.set_rng_state(state)
    assert all(torch.equal(batch_out[0], batch_out[i]) for i in range(16))
    per_image = as_augmentation(aug).apply(x, list(range(16)))
    assert len({per_image[i].numpy().tobytes() for i in range(16)}) > 1


def test_batched_module_is_deterministic_per_call_and_seeded_by_the_first_seed():
    """Documented behaviour: a batched module gets one seed per call (seeds[0])."""
    aug = batched_augmentation(TinyKornia())
    x = synthetic_images(6)
    a = aug.apply(x, [5, 6, 7, 8, 9, 10])
    b = aug.apply(x, [5, 60, 70, 80, 90, 100])
    assert torch.equal(a, b)
    c = aug.apply(x, [6, 6, 7, 8, 9, 10])
    assert not torch.equal(a, c)


def test_density_leaves_global_rng_untouched():
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    density(numpy_augmentation(hwc_uint8_noise), data=pytest_psa.synthetic("test", n=20),
                       n_images=20, draws=2)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1])
    assert random.getstate() == before[2]


# -- the helper itself can fail ---------------------------------------------------------------
_PRIVATE = torch.Generator().manual_seed(0)


def unseeded_noise(x: torch.Tensor) -> torch.Tensor:
    """Draws from a private generator the audit cannot seed: not reproducible."""
    return (x + 0.05 * torch.randn(x.shape, generator=_PRIVATE)).clamp(0, 1)


def test_helper_catches_an_unseeded_augmentation():
    with pytest.raises(AssertionError, match="different outputs"):
        check_augmentation(unseeded_noise)


def test_helper_catches_an_augmentation_that_never_varies():
    with pytest.raises(AssertionError, match="identical draws"):
        check_augmentation(lambda x: x.flip(-1), stochastic=True)
