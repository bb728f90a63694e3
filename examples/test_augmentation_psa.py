"""How an augmentation repository puts the PSA condition under test.

Run: python -m pytest examples -p no:cacheprovider
With real data: PSA_DATA_ROOT=/path/to/datasets python -m pytest examples --psa-data=cifar10
"""

import pytest
import torch
from torchvision.transforms import v2

import pytest_psa

# A deliberately destructive augmentation: it never lands near the original image.
FAR = v2.Compose([v2.RandomInvert(p=1), v2.ColorJitter(0.8, 0.8, 0.8, 0.3), v2.RandomSolarize(0.5, p=1)])


def my_augmentation(image: torch.Tensor) -> torch.Tensor:
    """A plain function on one float (C, H, W) image in [0, 1]: mild noise plus a random flip."""
    if torch.rand(()) < 0.5:
        image = image.flip(-1)
    return (image + 0.03 * torch.randn_like(image)).clamp(0, 1)


@pytest.mark.psa(gamma=0.05, min_density=0.05)
@pytest.mark.parametrize("augmentation", [v2.AugMix(), v2.RandAugment(), v2.TrivialAugmentWide()],
                         ids=["augmix", "randaugment", "trivialaugment"])
def test_standard_augmentations_are_proximal(psa, augmentation):
    psa.check(augmentation)  # runs the check the marker describes


def test_my_function_with_its_own_thresholds(psa):
    result = psa.density(my_augmentation, n_images=200, draws=4)
    # half the draws are a flip (far in pixel space); the other half are within noise level 0.03
    result.assert_psa(gamma=0.05, min_density=0.2)
    assert 0.3 < result.F(0.05) < 0.7


def test_identity_draws_are_visible_and_can_be_left_out(psa):
    result = psa.density(v2.TrivialAugmentWide(), n_images=200)
    print(result.table())
    assert result.identity_fraction > 0.03  # the Identity op and magnitude-0 bins return x as is
    assert result.F(0.02, exclude_identity=True) < result.F(0.02)


@pytest.mark.psa(distance="l1_mean", gamma=0.03, min_density=0.05)
def test_a_user_defined_distance(psa):
    psa.check(v2.AugMix())


@pytest.mark.xfail(raises=pytest_psa.PSAViolation, strict=True,
                   reason="demonstration: a destructive augmentation fails the PSA check")
@pytest.mark.psa(gamma=0.05, min_density=0.05)
def test_a_far_augmentation_fails(psa):
    psa.check(FAR)


# Robustness is asserted directly, against ERM trained through the same cache (flatness is only a
# measurement). Small settings so that it runs in about a minute on 2 CPU cores; drop them for the
# full 15 x 5 corruptions and the default attacks.
SMALL_ROBUSTNESS = dict(corruptions=["gaussian_noise", "contrast", "jpeg_compression"], attacks=["l2:0.25:7"],
                        n_images=500, n_attack_images=100)


@pytest.mark.psa(vs_erm={"mce": "+5pp"}, max_adv_error={"l2,0.25": 1.0})
def test_my_augmentation_is_not_less_robust_than_erm(psa):
    result = psa.robustness(my_augmentation, **SMALL_ROBUSTNESS)
    print(result.table())
    result.assert_budget()
