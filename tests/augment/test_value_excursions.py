"""A float pipeline that adds noise without clamping is audited on its own values (issue 12, "Inputs").

Its images leave [0, 1] only as a tail: they are kept unclamped (distances and training see what the
model sees), the observed range goes into the result, and one `PsaWarning` names the augmentation and
the range. Wrong scales still fail: 0-255 values, mean/std-normalized ones, noise far too strong.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from contract_helper import synthetic_images
from torchvision.transforms import v2

import pytest_psa
from pytest_psa import AugmentationContractError, PsaWarning, as_augmentation, batched_augmentation
from pytest_psa.audits.density import density, draw_seeds
from pytest_psa.augment.contract import check_batch

SEEDS = [1, 2, 3, 4]
DATA = pytest_psa.synthetic("test", n=40)


def noise(x: torch.Tensor) -> torch.Tensor:
    return x + 0.05 * torch.randn_like(x)


def test_plain_noise_is_kept_unclamped() -> None:
    x = synthetic_images(len(SEEDS))
    with pytest.warns(PsaWarning):
        y = as_augmentation(noise).apply(x, SEEDS)
    assert float(y.min()) < 0 or float(y.max()) > 1
    torch.manual_seed(SEEDS[0])
    assert torch.equal(y[0], noise(x[0]))  # exactly the pipeline's values, not clamped ones


def test_density_measures_the_unclamped_values_and_records_the_range() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = density(noise, data=DATA, n_images=40, draws=3, chunk_size=8)
    ours = [w for w in caught if issubclass(w.category, PsaWarning) and "leave [0, 1]" in str(w.message)]
    assert len(ours) == 1  # once, although 5 chunks x 3 draws left [0, 1]
    assert "noise" in str(ours[0].message) and "[-0." in str(ours[0].message)
    seen = r.to_dict()["environment"]["augmentation_range"]
    assert seen["min"] < 0 and seen["max"] > 1 and 0 < seen["outside_unit_interval"] <= seen["outputs"] == 120
    # the l2 distance is the RMS of the unclamped difference
    x = DATA.float_images(slice(0, 1))
    with pytest.warns(PsaWarning):
        y = as_augmentation(noise).apply(x, [int(draw_seeds(0, [0], 1)[0, 0])])
    assert r.distances[0, 0] == pytest.approx(float((y - x).pow(2).mean().sqrt()), rel=1e-5)


def test_clamped_pipelines_record_their_range_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PsaWarning)
        r = density(lambda x: noise(x).clamp(0, 1), data=DATA, n_images=10, draws=2)
    seen = r.environment["augmentation_range"]
    assert 0 <= seen["min"] and seen["max"] <= 1 and seen["outside_unit_interval"] == 0


def test_kornia_gaussian_noise_is_audited() -> None:
    kornia_aug = pytest.importorskip("kornia.augmentation")
    with pytest.warns(PsaWarning, match="RandomGaussianNoise"):
        r = density(kornia_aug.RandomGaussianNoise(std=0.05, p=1.0), data=DATA, n_images=20, draws=2)
    assert r.environment["augmentation_range"]["min"] < 0


def test_kornia_default_noise_is_too_strong() -> None:
    kornia_aug = pytest.importorskip("kornia.augmentation")
    with pytest.raises(AugmentationContractError, match="lower its std") as info:
        density(kornia_aug.RandomGaussianNoise(p=1.0), data=DATA, n_images=10, draws=1)  # std=1.0
    assert info.value.property == "value range"


@pytest.mark.parametrize(("aug", "fix"), [
    (lambda x: x * 255.0 + 0.05 * torch.randn_like(x), "0-255"),
    (v2.Compose([v2.GaussianNoise(sigma=0.05, clip=False),
                 v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])]), "Normalize"),
    (lambda x: (x - 0.5) / 0.5, "Normalize"),
    (lambda x: x + 0.3 * torch.randn_like(x), "lower its std"),
    (lambda x: x + 0.5, "clamp"),
], ids=["0-255+noise", "noise+imagenet-normalize", "normalize-0.5", "sigma-0.3", "brightened"])
def test_wrong_scales_still_fail(aug: object, fix: str) -> None:
    with pytest.raises(AugmentationContractError) as info:
        as_augmentation(aug).apply(synthetic_images(len(SEEDS)), SEEDS)
    assert info.value.property == "value range" and fix in str(info.value)
    assert "(at most 5% may be)" in str(info.value)  # the error states the rule it applied


def test_round_off_is_clamped_per_image_and_excursions_are_kept() -> None:
    x = synthetic_images(2)
    out = torch.stack([x[0] * 1.00001, x[1] + 0.05 * torch.randn_like(x[1])])
    kept = out[1].clone()
    checked = check_batch(out.clone(), "mixed")
    assert float(checked[0].max()) <= 1.0  # round-off: clamped
    assert torch.equal(checked[1], kept)  # an excursion: as it came


def test_a_batched_module_with_noise_is_kept_too() -> None:
    class Noise(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 0.05 * torch.randn_like(x)

    aug = batched_augmentation(Noise())
    with pytest.warns(PsaWarning):
        y = aug.apply(synthetic_images(len(SEEDS)), SEEDS)
    assert aug.observed_range == (float(y.min()), float(y.max()))
    assert 0 < aug.excursion_images <= aug.checked_images == len(SEEDS)
