"""Glass blur and motion blur against independent numpy re-statements of the reference (corrupt_b_reference).

Two kinds of check:
- same draws: the kernel's own random numbers fed to the numpy reference; outputs must agree to float
  rounding (glass: up to a rare 1/255 flip where float32 and float64 blurs straddle a uint8 step);
- fresh draws: the numpy reference with ``np.random`` as the reference scripts draw, compared by
  distribution (paired per-image PSNR, two-sided t test at alpha = 1e-3 per check; ~10 such checks,
  family-wise rate < 1 %). Seeds are fixed, so runs are deterministic.
"""

from __future__ import annotations

import math

import corrupt_b_reference as ref
import numpy as np
import pytest
import torch
from scipy import stats

import pytest_psa
from pytest_psa.measure.robustness.corruptions.glass import (
    GLASS_TABLES,
    _displacements,
    glass_blur,
    glass_shuffle,
    glass_shuffle_positions,
)
from pytest_psa.measure.robustness.corruptions.motion import (
    MOTION_TABLES,
    apply_motion_blur,
    motion_blur,
    motion_kernel,
    motion_offsets,
)
from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

ALPHA = 1e-3
N_IMAGES = 48


@pytest.fixture(scope="module")
def shapes() -> torch.Tensor:
    return pytest_psa.load_data("synthetic", split="test").float_images()[:N_IMAGES]


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).double().numpy()


def _paired_psnr_check(ours: list[float], theirs: list[float]) -> None:
    diff = np.asarray(ours) - np.asarray(theirs)
    t = diff.mean() / (diff.std(ddof=1) / math.sqrt(diff.size) + 1e-12)
    assert abs(t) < stats.t.isf(ALPHA / 2, diff.size - 1), (np.mean(ours), np.mean(theirs), t)


# -- glass ------------------------------------------------------------------------------------------------


def test_the_reference_statement_copies_instead_of_swapping():
    # x[a], x[b] = x[b], x[a] on an HxWx3 array: the right side holds views, so x[b] keeps its value.
    x = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    before = x.copy()
    x[1, 1], x[0, 0] = x[0, 0], x[1, 1]
    assert np.array_equal(x[1, 1], before[0, 0]) and np.array_equal(x[0, 0], before[0, 0])


@pytest.mark.parametrize(("d", "size", "passes"), [(1, 32, 2), (2, 32, 2), (3, 24, 2), (4, 20, 1)])
def test_glass_shuffle_equals_the_sequential_pixel_loop(d, size, passes):
    # d >= 2 reaches pixels the scan already rewrote, so the result depends on the order: chains of copies.
    gen = torch.Generator().manual_seed(d)
    images = torch.randint(0, 256, (3, 3, size, size), generator=gen).to(torch.uint8)
    rows, cols = glass_shuffle_positions(size, size, d)
    assert list(rows) == list(range(size - d, d, -1))
    dy = torch.randint(-d, d, (3, passes, len(rows), len(cols)), generator=gen)
    dx = torch.randint(-d, d, (3, passes, len(rows), len(cols)), generator=gen)
    out = glass_shuffle(images.float(), dy, dx, d).to(torch.uint8)
    for n in range(3):
        x = images[n].permute(1, 2, 0).numpy().copy()
        for p in range(passes):
            for i, h in enumerate(rows):
                for j, w in enumerate(cols):
                    hp, wp = h + int(dy[n, p, i, j]), w + int(dx[n, p, i, j])
                    x[h, w], x[hp, wp] = x[hp, wp], x[h, w]
        assert np.array_equal(out[n].permute(1, 2, 0).numpy(), x)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_glass_displacements_are_uniform_on_minus_d_to_d_minus_1(d):
    rng = CounterRNG(5, torch.arange(64), "glass_blur", 3)
    dy, dx = _displacements(rng, 1, 30, 30, d, stream=0)
    pairs = ((dy + d) * (2 * d) + (dx + d)).long().reshape(-1)
    assert int(dy.min()) == -d and int(dy.max()) == d - 1 and int(dx.min()) == -d and int(dx.max()) == d - 1
    counts = torch.bincount(pairs, minlength=(2 * d) ** 2).numpy()
    assert stats.chisquare(counts).pvalue > ALPHA


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_glass_blur_equals_the_reference_with_the_same_draws(shapes, severity):
    params = GLASS_TABLES[32][severity - 1]
    sigma, d, passes = params
    x = shapes[:6]
    rng = CounterRNG(11, torch.arange(6), "glass_blur", severity)
    out = glass_blur(x, params, rng).double().numpy()
    dy, dx = _displacements(rng, passes, 30, 30, d, stream=0)
    for n in range(6):
        expected = ref.glass_blur(_hwc(x[n]), sigma, d, dy[n].numpy(), dx[n].numpy())
        got = out[n].transpose(1, 2, 0)
        # float32 vs float64 blurs can straddle a uint8 step; then the second blur spreads a 1/255 jump.
        off = np.abs(got - expected) > 1e-5
        assert off.mean() < 0.01 and np.abs(got - expected).max() < 1.5 / 255


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_glass_blur_psnr_matches_the_reference_with_numpy_draws(shapes, severity):
    params = GLASS_TABLES[32][severity - 1]
    sigma, d, passes = params
    x = shapes[:24]
    out = glass_blur(x, params, CounterRNG(12, torch.arange(24), "glass_blur", severity)).double().numpy()
    np_rng = np.random.default_rng(severity)
    ours, theirs = [], []
    for n in range(24):
        clean = _hwc(x[n])
        shape = (passes, 30, 30)
        dx, dy = np_rng.integers(-d, d, shape), np_rng.integers(-d, d, shape)
        theirs.append(ref.psnr(ref.glass_blur(clean, sigma, d, dy, dx), clean))
        ours.append(ref.psnr(out[n].transpose(1, 2, 0), clean))
    _paired_psnr_check(ours, theirs)


# -- motion -----------------------------------------------------------------------------------------------


def test_motion_kernel_is_imagemagicks_one_sided_gaussian():
    weights = motion_kernel(6, 1.0)
    assert len(weights) == 13  # 2 * ceil(radius) + 1
    expected = np.exp(-(np.arange(13) ** 2) / 2.0)
    assert np.allclose(weights, expected / expected.sum(), rtol=1e-12, atol=0)
    ox, oy = motion_offsets(13, torch.tensor([0.0, 90.0, 45.0]))
    assert ox[0].tolist() == list(range(13)) and oy[0].abs().sum() == 0  # 0 deg: along +x
    assert oy[1].tolist() == list(range(13)) and ox[1].abs().sum() == 0  # 90 deg: along +y (down)
    assert ox[2].tolist() == oy[2].tolist()


def test_motion_blur_keeps_a_constant_image_constant():
    x = torch.full((40, 3, 32, 32), 0.37)
    angles = torch.linspace(-180, 180, 40, dtype=torch.float64)
    for radius, sigma in MOTION_TABLES[32] + MOTION_TABLES[224][:1]:
        assert (apply_motion_blur(x, radius, sigma, angles) - 0.37).abs().max() < 1e-6


def test_motion_blur_of_a_point_trails_against_the_angle():
    # out(x, y) = sum_i k[i] in(x + ox[i], y + oy[i]): a bright point spreads to the left at 0 degrees.
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 16, 20] = 1.0
    out = apply_motion_blur(x, 6, 2.0, torch.tensor([0.0]))[0, 0]
    row = out[16]
    assert row[21:].abs().max() == 0 and out[15].abs().max() == 0 and out[17].abs().max() == 0
    assert torch.all(row[9:21].diff() > 0)  # weights fall with distance (tap 12, 1.5e-8, is dropped)
    assert abs(float(row.sum()) - 1.0) < 1e-6



@pytest.mark.parametrize(
    ("channels", "low", "radius", "sigma"), [(1, -135.0, 10, 4), (3, -45.0, 9, 2.5), (3, -180.0, 6, 1)]
)
def test_run_wise_motion_blur_equals_the_per_tap_gathers_bit_for_bit(channels, low, radius, sigma):
    # the CPU batch path (angle-sorted runs of equal offsets, blocks of 256 images) against the
    # small-batch/GPU path (one gather per tap): same multiply and add per element, so the same bits
    from pytest_psa.measure.robustness.corruptions.motion import _blur_gathered, _blur_runs, _significant

    gen = torch.Generator().manual_seed(channels)
    x = torch.rand(600, channels, 32, 32, generator=gen)
    angles = torch.rand(600, generator=gen, dtype=torch.float64) * (90.0 if low > -180 else 360.0) + low
    full = motion_kernel(float(radius), float(sigma))
    weights = _significant(full)
    ox, oy = motion_offsets(len(full), angles)
    ox, oy = ox[:, : len(weights)], oy[:, : len(weights)]
    runs = _blur_runs(x, weights, ox, oy, angles)
    assert torch.equal(runs, _blur_gathered(x, weights, ox, oy))
    assert torch.equal(runs, apply_motion_blur(x, radius, sigma, angles))
    assert torch.equal(runs[7:8], apply_motion_blur(x[7:8], radius, sigma, angles[7:8]))

@pytest.mark.parametrize("severity", [1, 3, 5])
def test_motion_blur_equals_the_imagemagick_formula_with_the_same_angles(shapes, severity):
    radius, sigma = MOTION_TABLES[32][severity - 1]
    x = shapes[:16]
    rng = CounterRNG(21, torch.arange(16), "motion_blur", severity)
    out = motion_blur(x, (radius, sigma), rng).double().numpy()
    angles = rng.uniform((1,), stream=0)[:, 0].double() * 90 - 45
    for n in range(16):
        expected = ref.magick_motion_blur(_hwc(x[n]), radius, sigma, float(angles[n]))
        # the kernel drops taps weighing < 1e-6 together; float32 sums
        assert np.abs(out[n].transpose(1, 2, 0) - expected).max() < 5e-6


def test_motion_blur_angles_are_uniform_on_minus_45_to_45():
    rng = CounterRNG(0, torch.arange(4000), "motion_blur", 2)
    angles = rng.uniform((1,), stream=0)[:, 0].double().numpy() * 90 - 45
    assert stats.kstest(angles, stats.uniform(loc=-45, scale=90).cdf).pvalue > ALPHA


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_motion_blur_psnr_matches_the_reference_with_numpy_angles(shapes, severity):
    radius, sigma = MOTION_TABLES[32][severity - 1]
    x = shapes
    rng = CounterRNG(22, torch.arange(len(x)), "motion_blur", severity)
    out = motion_blur(x, (radius, sigma), rng).double().numpy()
    np_rng = np.random.default_rng(100 + severity)
    ours, theirs = [], []
    for n in range(len(x)):
        clean = _hwc(x[n])
        theirs.append(ref.psnr(ref.magick_motion_blur(clean, radius, sigma, np_rng.uniform(-45, 45)), clean))
        ours.append(ref.psnr(out[n].transpose(1, 2, 0), clean))
    _paired_psnr_check(ours, theirs)


def test_motion_blur_compat_rounds_to_8_bit_levels_like_the_png_round_trip(shapes):
    from pytest_psa.measure.robustness.corruptions.motion import motion_blur_hendrycks

    rng = CounterRNG(23, torch.arange(8), "motion_blur", 4)
    exact = motion_blur(shapes[:8], MOTION_TABLES[32][3], rng)
    levels = motion_blur_hendrycks(shapes[:8], MOTION_TABLES[32][3], rng) * 255
    assert torch.allclose(levels, levels.round(), atol=1e-3)
    assert (levels - exact * 255).abs().max() <= 0.5 + 1e-3  # rounded, not truncated
