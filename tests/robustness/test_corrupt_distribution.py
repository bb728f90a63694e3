"""Stochastic corruptions by distribution: the perturbation delta = corrupt(x) - x against closed forms.

Checks use fixed seeds (deterministic runs); alpha is the probability that a correct kernel fails a
check for a random seed. Each check below is two-sided at alpha = 1e-4 (z = 3.89) on a CLT statistic;
there are about 60 of them, so the family-wise rate is below 1 %.

Mid-grey images (x = 128/255) keep clipping negligible for the CIFAR table: the largest Gaussian
draw (Box-Muller on 24-bit uniforms) is 5.77 sigma = 0.58 > 0.5 only with probability ~1e-8 per element.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import pytest_psa
from pytest_psa.measure.robustness.corruptions import corrupt, get_corruption

ALPHA = 1e-4
Z = stats.norm.isf(ALPHA / 2)
N_IMAGES = 64
GREY = 128 / 255


@pytest.fixture(scope="module")
def grey() -> torch.Tensor:
    return torch.full((N_IMAGES, 3, 32, 32), GREY)


@pytest.fixture(scope="module")
def shapes() -> torch.Tensor:
    return pytest_psa.load_data("synthetic", split="test").float_images()[:N_IMAGES]


def _mean_var_checks(delta: np.ndarray, mean: float, var: float, fourth_central: float) -> None:
    """Sample mean and variance of i.i.d. values against (mean, var), normal approximations."""
    n = delta.size
    assert abs(delta.mean() - mean) < Z * math.sqrt(var / n), (delta.mean(), mean)
    var_of_var = (fourth_central - var**2) / n
    assert abs(delta.var(ddof=1) - var) < Z * math.sqrt(var_of_var), (delta.var(ddof=1), var)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_gaussian_noise_delta_is_normal_with_the_table_sigma(grey, severity):
    (sigma,) = get_corruption("gaussian_noise").params(severity, 32)
    delta = (corrupt(grey, "gaussian_noise", severity, seed=1) - grey).double().numpy().reshape(-1)
    _mean_var_checks(delta, 0.0, sigma**2, 3 * sigma**4)
    assert stats.kstest(delta / sigma, "norm").pvalue > ALPHA


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_speckle_noise_delta_is_x_times_normal(grey, severity):
    (sigma,) = get_corruption("speckle_noise").params(severity, 32)
    delta = (corrupt(grey, "speckle_noise", severity, seed=2) - grey).double().numpy().reshape(-1)
    s = GREY * sigma
    _mean_var_checks(delta, 0.0, s**2, 3 * s**4)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_shot_noise_counts_are_poisson_with_rate_x_times_c(grey, severity):
    (photons,) = get_corruption("shot_noise").params(severity, 32)
    out = corrupt(grey, "shot_noise", severity, seed=3).double().numpy().reshape(-1)
    counts = out * photons
    # outputs are counts / c (clipped at 1, i.e. counts > c, probability < 1e-6 here)
    assert np.allclose(counts, np.round(counts), atol=1e-3)
    rate = GREY * photons
    delta = out - GREY
    # delta = (K - rate) / c: mean 0, variance x / c, fourth central moment rate (1 + 3 rate) / c^4
    _mean_var_checks(delta, 0.0, GREY / photons, rate * (1 + 3 * rate) / photons**4)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_shot_noise_variance_follows_intensity(severity):
    # Var(delta) = x / c at every grey level, including off-grid (non-uint8) values.
    (photons,) = get_corruption("shot_noise").params(severity, 32)
    for level in (0.1, 0.77, 200 / 255):
        x = torch.full((16, 3, 32, 32), level)
        delta = (corrupt(x, "shot_noise", severity, seed=4) - x).double().numpy().reshape(-1)
        rate = level * photons
        if rate + 6 * math.sqrt(rate) > photons:  # clipping at 1 would bias the check
            continue
        _mean_var_checks(delta, 0.0, level / photons, rate * (1 + 3 * rate) / photons**4)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_impulse_noise_flips_the_table_fraction_half_salt_half_pepper(grey, severity):
    (amount,) = get_corruption("impulse_noise").params(severity, 32)
    out = corrupt(grey, "impulse_noise", severity, seed=5).numpy().reshape(-1)
    n = out.size
    salt, pepper = np.mean(out == 1.0), np.mean(out == 0.0)
    unchanged = np.mean(out == np.float32(GREY))
    assert salt + pepper + unchanged == pytest.approx(1.0)
    for observed, p in ((salt, amount / 2), (pepper, amount / 2), (salt + pepper, amount)):
        assert abs(observed - p) < Z * math.sqrt(p * (1 - p) / n), (observed, p)
    # flips are independent across channels (skimage flips channel elements, not pixels)
    flipped = (out != np.float32(GREY)).reshape(N_IMAGES, 3, -1)
    both = np.mean(flipped[:, 0] & flipped[:, 1])
    assert abs(both - amount**2) < Z * math.sqrt(amount**2 * (1 - amount**2) / flipped[:, 0].size)


def _psnr(clean: torch.Tensor, noisy: torch.Tensor) -> np.ndarray:
    mse = ((noisy - clean) ** 2).mean(dim=(1, 2, 3)).double().numpy()
    return 10 * np.log10(1.0 / mse)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"])
def test_psnr_falls_with_severity_on_real_images(shapes, name):
    """Per-image PSNR on synthetic shapes: each severity is lower than the previous one, judged by the
    paired mean difference's lower confidence bound (t interval, one-sided alpha = 1e-4 each)."""
    psnr = np.stack([_psnr(shapes, corrupt(shapes, name, s, seed=6)) for s in range(1, 6)])
    t = stats.t.isf(ALPHA, df=N_IMAGES - 1)
    for s in range(4):
        if name == "gaussian_noise" and s == 3:
            # sigma .09 -> .10: a small step, checked on the grey images' closed form instead
            continue
        diff = psnr[s] - psnr[s + 1]
        lower = diff.mean() - t * diff.std(ddof=1) / math.sqrt(diff.size)
        assert lower > 0, (name, s + 1, diff.mean(), lower)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_gaussian_noise_psnr_band_on_grey_images(grey, severity):
    # Without clipping MSE = sigma^2, so PSNR = -20 log10(sigma); sample MSE has relative sd sqrt(2/n).
    (sigma,) = get_corruption("gaussian_noise").params(severity, 32)
    out = corrupt(grey, "gaussian_noise", severity, seed=7)
    mse = float(((out - grey) ** 2).double().mean())
    n = out.numel()
    band = Z * math.sqrt(2 / n) * sigma**2
    assert abs(mse - sigma**2) < band
    assert abs(10 * math.log10(1 / mse) + 20 * math.log10(sigma)) < 10 * math.log10(1 + band / sigma**2) + 1e-9


def test_noise_is_keyed_by_seed_and_sample_not_by_batch(shapes):
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"):
        full = corrupt(shapes[:12], name, 3, seed=9)
        part = corrupt(shapes[5:9], name, 3, seed=9, indices=torch.arange(5, 9))
        assert torch.equal(full[5:9], part), name
        other_seed = corrupt(shapes[5:9], name, 3, seed=10, indices=torch.arange(5, 9))
        assert not torch.equal(other_seed, part), name
        reversed_order = corrupt(shapes[:12].flip(0), name, 3, seed=9, indices=torch.arange(11, -1, -1))
        assert torch.equal(reversed_order.flip(0), full), name
