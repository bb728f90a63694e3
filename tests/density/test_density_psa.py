"""The PSA check end to end: torchvision's AugMix, RandAugment and TrivialAugmentWide satisfy it at a
small γ, a deliberately far augmentation does not, on the synthetic set and on real CIFAR-10.

Every audit is the default size (500 images x 8 draws, seed 0) and runs once per module; the tests
read the cached result. strict=True passes only when the (1 - alpha) lower bound, alpha = 1e-3,
reaches min_density: a pass is evidence, not the absence of a failure.
"""

from __future__ import annotations

import re

import pytest
from torchvision.transforms import v2

from pytest_psa import PSAViolation
from pytest_psa.audits.density import density

pytestmark = pytest.mark.slow  # default-size audits (500 images x 8 draws) of four augmentations

GAMMA, MIN_DENSITY = 0.05, 0.05

AUGMENTATIONS = {
    "AugMix": lambda: v2.AugMix(),
    "RandAugment": lambda: v2.RandAugment(),
    "TrivialAugmentWide": lambda: v2.TrivialAugmentWide(),
    "FAR": lambda: v2.Compose([v2.RandomInvert(p=1), v2.ColorJitter(0.8, 0.8, 0.8, 0.3),
                               v2.RandomSolarize(0.5, p=1)]),
}
NEAR = ["AugMix", "RandAugment", "TrivialAugmentWide"]


class Audits:
    """Runs each default-size audit at most once, on first use."""

    def __init__(self, data) -> None:
        self.data = data
        self.results = {}

    def __getitem__(self, name):
        if name not in self.results:
            self.results[name] = density(AUGMENTATIONS[name](), data=self.data)
        return self.results[name]


@pytest.fixture(scope="module")
def synthetic_audits():
    return Audits(None)  # the default data: the embedded synthetic set


@pytest.fixture(scope="module")
def cifar_audits(cifar10):
    return Audits(cifar10)


def _record(request, name, r) -> None:
    """Keep the measured eCDF with the test report (JUnit properties with --junitxml)."""
    props = request.node.user_properties
    props += [(f"{name} F({g:g})", round(r.F(g), 4)) for g in r.gammas]
    props.append((f"{name} identity", round(r.identity_fraction, 4)))


def _check_far_failure(r, data_label: str) -> None:
    with pytest.raises(PSAViolation) as info:
        r.assert_psa(gamma=GAMMA, min_density=MIN_DENSITY, strict=True)
    err = info.value
    assert isinstance(err, AssertionError) and err.result is r
    message = str(err)
    assert "PSA condition violated" in message and data_label in message
    assert re.search(r"γ\s+F_N\(γ\)", message), message  # the table header
    assert re.search(rf"^\s+{GAMMA:g}\s+0\.\d{{4}}\s+\[0\.\d{{4}}, 0\.\d{{4}}\]", message, re.M), message
    assert "FAIL" in message
    assert "N=500" in message and "K=8" in message and "distance l2" in message and "seed=0" in message
    assert "reproduce:" in message and "n_images=500" in message and "draws=8" in message
    # not even the lenient check passes: the data show F(γ) below min_density
    with pytest.raises(PSAViolation):
        r.assert_psa(gamma=GAMMA, min_density=MIN_DENSITY)


def test_synthetic_audits_use_the_defaults(synthetic_audits):
    r = synthetic_audits["TrivialAugmentWide"]
    assert r.n_images == 500 and r.draws == 8 and r.seed == 0 and r.distance == "l2"
    assert r.data["name"] == "synthetic"


@pytest.mark.parametrize("name", NEAR)
def test_near_augmentation_passes_on_synthetic(synthetic_audits, name, request):
    r = synthetic_audits[name]
    _record(request, name, r)
    r.assert_psa(gamma=GAMMA, min_density=MIN_DENSITY, strict=True)


def test_far_augmentation_fails_on_synthetic(synthetic_audits, request):
    r = synthetic_audits["FAR"]
    _record(request, "FAR", r)
    _check_far_failure(r, "synthetic/test[500]")


def test_identity_fractions_on_synthetic(synthetic_audits):
    """TrivialAugmentWide returns x itself on part of its draws (the Identity op, magnitude-0 bins);
    AugMix mixes, so never exactly. The check above passes TA without counting those draws too."""
    assert synthetic_audits["AugMix"].identity_fraction == 0.0
    ta = synthetic_audits["TrivialAugmentWide"]
    assert ta.identity_fraction > 0.02
    ta.assert_psa(gamma=GAMMA, min_density=MIN_DENSITY, strict=True, exclude_identity=True)


@pytest.mark.cifar
@pytest.mark.parametrize("name", NEAR)
def test_near_augmentation_passes_on_cifar10(cifar_audits, name, request):
    r = cifar_audits[name]
    _record(request, name, r)
    assert r.data["name"] == "cifar10" and r.n_images == 500
    r.assert_psa(gamma=GAMMA, min_density=MIN_DENSITY, strict=True)


@pytest.mark.cifar
def test_far_augmentation_fails_on_cifar10(cifar_audits, request):
    r = cifar_audits["FAR"]
    _record(request, "FAR", r)
    _check_far_failure(r, "cifar10/test[500]")


@pytest.mark.cifar
def test_cifar10_fixture_is_the_test_split(cifar10):
    assert len(cifar10) == 10_000 and cifar10.images.shape[1:] == (3, 32, 32)
    assert cifar10.classes[0] == "airplane" and cifar10.num_classes == 10
    assert sorted(cifar10.labels.bincount().tolist()) == [1000] * 10
