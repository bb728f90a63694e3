"""Snow, frost, fog and spatter: reference re-statements with the kernels' own draws, the cv2-free
operations against scipy/numpy, and the procedural frost texture against its calibration target.

Stochastic checks use fixed seeds; each is two-sided at alpha = 1e-3 (a correct kernel fails one for a
random seed with that probability; ~6 such checks here).
"""

from __future__ import annotations

import math

import corrupt_b_reference as ref
import numpy as np
import pytest
import torch
from scipy import ndimage, stats

import pytest_psa
from pytest_psa.measure.robustness.corruptions.cv_ops import (
    box_blur3,
    canny,
    distance_to_zero,
    equalize_hist,
    filter2d_u8,
)
from pytest_psa.measure.robustness.corruptions.rng import CounterRNG
from pytest_psa.measure.robustness.corruptions.weather import (
    FOG_TABLES,
    FROST_TABLES,
    SNOW_TABLES,
    SPATTER_TABLES,
    fog,
    frost,
    snow,
    spatter,
)
from pytest_psa.measure.robustness.corruptions.weather_maps import (
    FROST_CANVASES,
    FROST_TARGET_MEAN,
    FROST_TARGET_STD,
    _frost_bank,
    colour_frost,
    frost_pattern,
    frost_texture,
    plasma_fractal,
)

ALPHA = 1e-3


@pytest.fixture(scope="module")
def shapes() -> torch.Tensor:
    return pytest_psa.load_data("synthetic", split="test").float_images()[:32]


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).double().numpy()


# -- snow ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", [1, 3, 4, 5])
def test_snow_equals_the_reference_with_the_same_draws(shapes, severity):
    params = SNOW_TABLES[32][severity - 1]
    x = shapes[:8]
    rng = CounterRNG(3, torch.arange(8), "snow", severity)
    out = snow(x, params, rng).double().numpy()
    normal = rng.normal((1, 32, 32), stream=0)[:, 0].double().numpy()
    angles = rng.uniform((1,), stream=1)[:, 0].double().numpy() * 90 - 135
    for n in range(8):
        expected = ref.snow(_hwc(x[n]), params, normal[n], float(angles[n]))
        err = np.abs(out[n].transpose(1, 2, 0) - expected)
        # float32 zoom/blur vs float64 can land a layer value on the other side of an 8-bit step; the
        # layer is added twice (as is and rotated), so a flip moves a pixel by up to 2/255.
        assert (err > 1e-5).mean() < 0.02 and err.max() < 2.5 / 255


def test_snow_adds_light_and_its_angles_point_upwards():
    grey = torch.full((64, 3, 32, 32), 0.3)
    out = snow(grey, SNOW_TABLES[32][4], CounterRNG(4, torch.arange(64), "snow", 5))
    assert torch.all(out >= 0.3 - 1e-6)  # blend towards max(x, 1.5 gray + 0.5) plus snow: never darker
    angles = CounterRNG(4, torch.arange(2000), "snow", 5).uniform((1,), stream=1)[:, 0].double() * 90 - 135
    assert stats.kstest(angles.numpy(), stats.uniform(loc=-135, scale=90).cdf).pvalue > ALPHA


# -- fog ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mapsize", "decay"), [(32, 3.0), (32, 1.75), (64, 2.5), (256, 1.4)])
def test_plasma_equals_diamond_square_with_the_same_uniforms(mapsize, decay):
    rng = CounterRNG(9, torch.arange(2), "fog", 1)
    maps = plasma_fractal(rng, mapsize, decay, stream=0).numpy()
    for n in range(2):
        def uniform(level, sub, shape, n=n):
            return rng.uniform(shape, stream=3 * level + sub)[n].double().numpy()

        assert np.abs(maps[n] - ref.plasma_fractal(mapsize, decay, uniform)).max() < 1e-9


@pytest.mark.parametrize("severity", [1, 5])
def test_fog_equals_the_reference_formula(shapes, severity):
    strength, decay = FOG_TABLES[32][severity - 1]
    rng = CounterRNG(10, torch.arange(4), "fog", severity)
    out = fog(shapes[:4], (strength, decay), rng).double().numpy()
    plasma = plasma_fractal(rng, 32, decay, stream=0).numpy()
    for n in range(4):
        assert np.abs(out[n].transpose(1, 2, 0) - ref.fog(_hwc(shapes[n]), strength, plasma[n])).max() < 1e-6


# -- frost --------------------------------------------------------------------------------------------------


def test_frost_texture_meets_its_calibration_target():
    # Calibrated on a fixed batch with another key; check on 256 fresh samples. The per-sample means
    # vary (like crops of real photos), so the bound is a t interval over samples, alpha = 1e-3.
    texture = frost_texture(CounterRNG(123, torch.arange(256), "frost", 2), 32, 32, 0.2).double()
    per_sample = texture.mean(dim=(2, 3))  # [256, 3]
    t = stats.t.isf(ALPHA / 2, 255)
    for c in range(3):
        mean, se = per_sample[:, c].mean().item(), per_sample[:, c].std().item() / math.sqrt(256)
        assert abs(mean - FROST_TARGET_MEAN[c]) < t * se + 0.01, (c, mean)  # + clipping bias allowance
        spread = texture[:, c].std().item()
        assert abs(spread - FROST_TARGET_STD[c]) < 0.15 * FROST_TARGET_STD[c], (c, spread)
    assert FROST_TARGET_MEAN[2] > FROST_TARGET_MEAN[0]  # bluish ice
    # differs across samples: neighbouring samples' textures are nearly uncorrelated
    flat = texture[:, 1].reshape(256, -1)
    corr = np.corrcoef(flat[:64].numpy())
    assert np.abs(corr[np.triu_indices(64, 1)]).mean() < 0.2


def test_frost_texture_is_a_coloured_crop_of_a_canvas():
    # Each sample's texture is a window of one of the canvases drawn once per size, at a random place,
    # as the reference crops its photos; colouring a crop equals cropping the coloured canvas, bit for bit.
    rng = CounterRNG(5, torch.arange(40), "frost", 3)
    pattern = frost_pattern(rng, 32, 32, 0.2)
    assert torch.equal(frost_texture(rng, 32, 32, 0.2), colour_frost(pattern))
    bank = _frost_bank(32, 32, 0.2, "cpu")
    assert bank.shape[0] == FROST_CANVASES and bank.shape[-1] > 32
    windows = bank.unfold(1, 32, 1).unfold(2, 32, 1)  # [K, top, left, 32, 32]
    for sample in pattern[:5, 0]:
        assert len(_windows_equal_to(windows, sample)) >= 1
    places = {tuple(_windows_equal_to(windows, s)[0].tolist()) for s in pattern[:, 0]}
    assert len(places) > 30  # 40 samples, distinct crops almost always


def _windows_equal_to(windows: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """The [K, top, left] indices of every window equal to `sample`, bit for bit, in index order. Every
    such window has the sample's corner pixel, so only those are compared whole (comparing all 75k
    windows per sample took 12 CPU-s for the test's 45 searches)."""
    idx = torch.nonzero(windows[..., 0, 0] == sample[0, 0])
    whole = (windows[idx[:, 0], idx[:, 1], idx[:, 2]] == sample).flatten(1).all(-1)
    return idx[whole]


def test_frost_is_the_reference_blend_of_image_and_texture(shapes):
    rng = CounterRNG(7, torch.arange(8), "frost", 5)
    image_coef, frost_coef, scale = FROST_TABLES[32][4]
    out = frost(shapes[:8], FROST_TABLES[32][4], rng)
    texture = frost_texture(rng, 32, 32, scale)
    assert torch.allclose(out, (shapes[:8] * image_coef + texture * frost_coef).clamp(0, 1), atol=1e-6)


# -- spatter ------------------------------------------------------------------------------------------------



def test_fog_at_224_px_stays_within_float_rounding_of_the_float64_plasma():
    # from 128 px the plasma is drawn in float32 (speed); against the float64 map of the same draws
    # the output moves by far less than the reference's 8-bit step (1 / 255)
    from pytest_psa.measure.robustness.corruptions.weather_maps import next_power_of_two

    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    for strength, decay in FOG_TABLES[224]:
        rng = CounterRNG(11, torch.arange(2), "fog", 4)
        out = fog(x, (strength, decay), rng).double()
        plasma = plasma_fractal(rng, next_power_of_two(224), decay, stream=0)[:, :224, :224].unsqueeze(1)
        peak = x.double().amax(dim=(1, 2, 3), keepdim=True)
        expected = ((x.double() + plasma * strength) * (peak / (peak + strength))).clamp(0.0, 1.0)
        assert (out - expected).abs().max() < 2e-6

@pytest.mark.parametrize("severity", [4, 5])
def test_spatter_mud_equals_the_reference_with_the_same_draws(shapes, severity):
    params = SPATTER_TABLES[32][severity - 1]
    rng = CounterRNG(8, torch.arange(8), "spatter", severity)
    out = spatter(shapes[:8], params, rng).double().numpy()
    normal = rng.normal((32, 32), stream=0).double().numpy()
    for n in range(8):
        err = np.abs(out[n].transpose(1, 2, 0) - ref.spatter_mud(_hwc(shapes[n]), params, normal[n]))
        assert (err > 1e-4).mean() < 0.01  # a blurred mask value at the 0.8 cut may flip in float32


@pytest.mark.parametrize("severity", [1, 2, 3])
def test_spatter_liquid_adds_turquoise_water_only(shapes, severity):
    params = SPATTER_TABLES[32][severity - 1]
    x = shapes[:16] * 0.5  # room below 1, so nothing clips
    out = spatter(x, params, CounterRNG(9, torch.arange(16), "spatter", severity))
    delta = (out - x).double()
    assert torch.all(delta >= -1e-7)
    water = torch.tensor([175, 238, 238], dtype=torch.float64) / 255
    m = delta / water.view(1, 3, 1, 1)
    assert torch.allclose(m[:, 0], m[:, 1], atol=1e-6) and torch.allclose(m[:, 0], m[:, 2], atol=1e-6)
    peaks = m[:, 0].amax(dim=(1, 2))
    wet = peaks > 0
    assert wet.float().mean() > 0.5  # most images get some water at these thresholds
    assert torch.allclose(peaks[wet], torch.full_like(peaks[wet], params[4]), atol=1e-5)  # max-normalized


def test_distance_to_zero_is_the_capped_euclidean_distance():
    gen = torch.Generator().manual_seed(0)
    nonzero = torch.rand(6, 32, 40, generator=gen) > 0.02
    nonzero[5] = True  # no zero pixel at all: the cap everywhere
    got = distance_to_zero(nonzero, 20.0).numpy()
    for n in range(5):
        expected = np.minimum(ndimage.distance_transform_edt(nonzero[n].numpy()), 20.0)
        assert np.abs(got[n] - expected).max() < 1e-5
    assert np.all(got[5] == 20.0)


def test_equalize_hist_follows_opencvs_lut():
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(3, 40, (4, 16, 16), generator=gen)
    images[3] = 17  # flat image: unchanged
    got = equalize_hist(images)
    for n in range(3):
        img = images[n].numpy()
        hist = np.bincount(img.reshape(-1), minlength=256)
        first = int(np.flatnonzero(hist)[0])
        scale = 255.0 / (img.size - hist[first])
        cdf = np.cumsum(hist) - hist[first]
        lut = np.where(np.arange(256) <= first, 0, np.clip(np.round(cdf * scale), 0, 255))
        assert np.array_equal(got[n].numpy(), lut[img])
    assert torch.all(got[3] == 17)


def test_box_blur_and_filter2d_match_scipy_with_reflect101_borders():
    gen = torch.Generator().manual_seed(2)
    image = torch.randint(0, 256, (3, 12, 15), generator=gen).float()
    box = box_blur3(image).numpy()
    kernel = [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]
    emboss = filter2d_u8(image, kernel).numpy()
    for n in range(3):
        img = image[n].double().numpy()
        assert np.abs(box[n] - ndimage.uniform_filter(img, 3, mode="mirror")).max() < 1e-4
        corr = ndimage.correlate(img, np.array(kernel, dtype=np.float64), mode="mirror")
        assert np.array_equal(emboss[n], np.clip(np.round(corr), 0, 255))


def test_canny_traces_the_outline_of_a_bright_square():
    image = torch.zeros(1, 32, 32)
    image[0, 8:24, 10:22] = 200.0
    edges = canny(image, 50, 150)[0].numpy()
    outline = np.zeros((32, 32), dtype=bool)
    outline[8:24, 10:22] = True
    boundary = outline ^ ndimage.binary_erosion(outline)
    near = ndimage.binary_dilation(boundary, iterations=1)
    assert edges.any() and not (edges & ~near).any()  # every edge pixel hugs the square's border
    for side in (edges[8:24, 9:11], edges[8:24, 21:23], edges[7:9, 10:22], edges[23:25, 10:22]):
        assert side.sum() >= 10  # all four sides are traced
    assert not canny(torch.full((1, 16, 16), 90.0), 50, 150).any()
