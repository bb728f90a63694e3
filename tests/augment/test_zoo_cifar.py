"""The zoo's proximal density on the real CIFAR-10 test split (500 images x 2 draws, seed 0), the
shape the seed paper reports for the originals on CIFAR (Table 1): DeepAugment and StyleAug leave
the proximal region empty, PixMix does not, and pairing with AugMix fills the gap (Table 7).
Bounds are one-sided at 95 % at the tool's PSA γ = 0.05 (normalized l2); with no draw within γ the
upper bound at N = 500 is 0.008."""

from __future__ import annotations

import pytest

import pytest_psa

GAMMA = 0.05
pytestmark = [pytest.mark.cifar, pytest.mark.slow]


@pytest.mark.parametrize("name", ["deepaugment-standin", "styleaug-standin-randconv", "augmix-without-proximal",
                                  "deepaugment-standin|styleaug-standin-randconv"])
def test_empty_proximal_region_on_cifar10(cifar10: pytest_psa.ImageData, name: str) -> None:
    r = pytest_psa.density(name, data=cifar10, n_images=500, draws=2)
    upper = r.interval(GAMMA, alpha=0.05, side="upper").high
    assert upper < 0.01, f"{name}: F({GAMMA}) = {r.F(GAMMA):.4f}, upper bound {upper:.4f}"


@pytest.mark.parametrize("name", ["pixmix", "deepaugment-standin|augmix", "styleaug-standin-randconv|augmix"])
def test_proximal_mass_on_cifar10(cifar10: pytest_psa.ImageData, name: str) -> None:
    r = pytest_psa.density(name, data=cifar10, n_images=500, draws=2)
    assert r.interval(GAMMA, alpha=0.05, side="lower").low > 0.05, f"{name}: F({GAMMA}) = {r.F(GAMMA):.4f}"
