"""Speed paths of the corruption kernels give the same values as the plain ones (issue 15).

- ``corrupt`` splits a CPU batch over ``torch.get_num_threads()`` pool threads: bit-identical to one
  thread, for every corruption and both output modes.
- defocus_blur's FFT path (large disks), pixelate's gather path (large images) and JPEG's per-image PIL
  path agree with the exact sums / the batched paths / PIL itself.
- the plasma fractal on compact lattices is the reference's strided recursion, bit for bit.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import pytest_psa
from pytest_psa.measure.robustness.corruptions import available_corruptions, corrupt


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return pytest_psa.load_data("synthetic", split="test").float_images()[:96]


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _one_thread(fn):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", available_corruptions(include_validation=True))
def test_the_thread_pool_gives_the_single_thread_bits(batch, two_threads, name):
    from pytest_psa.measure.robustness.corruptions import _work_units

    assert len(_work_units(batch, True, 2)) == 2  # the batch really is split across the pool
    for severity in (1, 5):
        pooled = corrupt(batch, name, severity, seed=3)
        single = _one_thread(lambda: corrupt(batch, name, severity, seed=3))
        assert torch.equal(pooled, single), (name, severity)
    compat = corrupt(batch, name, 3, compat="hendrycks")
    assert torch.equal(compat, _one_thread(lambda: corrupt(batch, name, 3, compat="hendrycks"))), name


def test_a_worker_error_reaches_the_caller(batch, two_threads, monkeypatch):
    import dataclasses

    from pytest_psa.measure.robustness import corruptions

    def broken(x, params, rng):
        raise RuntimeError("kernel failed")

    record = dataclasses.replace(corruptions.get_corruption("contrast"), kernel=broken)
    monkeypatch.setattr(corruptions, "get_corruption", lambda name: record)
    with pytest.raises(RuntimeError, match="kernel failed"):
        corrupt(batch, "contrast", 2)


def _exact_correlation(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """float64 reflect-101 correlation as a plain sum of shifted images."""
    from pytest_psa.measure.robustness.corruptions.blur import reflect101_index

    side = kernel.shape[0]
    pad = side // 2
    n, c, h, w = x.shape
    padded = x.double().index_select(2, reflect101_index(h, pad)).index_select(3, reflect101_index(w, pad))
    out = torch.zeros(n, c, h, w, dtype=torch.float64)
    for a in range(side):
        for b in range(side):
            out += kernel[a, b] * padded[:, :, a : a + h, b : b + w]
    return out.clamp(0, 1)


@pytest.mark.parametrize("radius_alias", [(3.0, 0.1), (6.0, 0.5), (10.0, 0.5)])
def test_the_defocus_fft_path_equals_the_exact_correlation(radius_alias):
    from pytest_psa.measure.robustness.corruptions.blur import FFT_MIN_SIDE, defocus_blur, defocus_kernel

    kernel = defocus_kernel(*radius_alias)
    assert kernel.shape[0] >= FFT_MIN_SIDE  # these take the FFT path
    x = torch.rand(3, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    exact = _exact_correlation(x, kernel)
    assert (defocus_blur(x, radius_alias, None).double() - exact).abs().max() < 2e-6
    assert (defocus_blur(x.double(), radius_alias, None) - exact).abs().max() < 1e-12
    alone = defocus_blur(x[1:2], radius_alias, None)
    assert torch.equal(alone[0], defocus_blur(x, radius_alias, None)[1])  # one transform per image


@pytest.mark.parametrize("size", [64, 100, 224, 230])
@pytest.mark.parametrize("fraction", [0.95, 0.6, 0.5, 0.4, 0.3, 0.25])
def test_pixelate_paths_agree_with_pil(size, fraction):
    from pytest_psa.measure.robustness.corruptions.digital import _pixelate

    rng = np.random.default_rng(size)
    img = rng.integers(0, 256, (2, size, size + 6, 3), dtype=np.uint8)
    small = (int(size * fraction), int((size + 6) * fraction))
    ref = np.stack([
        np.asarray(Image.fromarray(im).resize(small[::-1], Image.BOX).resize((size + 6, size), Image.BOX)) for im in img
    ])
    x = torch.from_numpy(img).permute(0, 3, 1, 2).float() / 255
    compat = _pixelate(torch.round(x * 255), fraction, rounding=True).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(compat, ref)  # PIL's four 8-bit passes, bit for bit
    floats = _pixelate(x, fraction, rounding=False).permute(0, 2, 3, 1).numpy() * 255
    assert np.abs(floats - ref).max() <= 1.0 + 1e-4  # PIL rounds after each pass, floats do not


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_box_mean_is_avg_pool2d_bit_for_bit(dtype):
    """pixelate's whole-factor downscale: strided slice adds in avg_pool2d's order give its bits, signed
    zeros included (windows of -0.0 only, of -0.0 and +0.0), for square and oblong windows, on a
    non-contiguous input too."""
    from pytest_psa.measure.robustness.corruptions.digital import _box_mean

    x = torch.rand(2, 3, 48, 60, dtype=dtype)
    x[0, 0, :8, :8] = -0.0
    x[0, 1, :4, :6] = 0.0
    x[0, 1, 0, :6] = -0.0
    x[1, 2, :12] = (torch.arange(60, dtype=dtype) / 255).expand(12, 60)  # 8-bit levels
    for kh, kw in ((2, 2), (3, 3), (4, 4), (2, 3), (4, 2), (6, 6)):
        for images in (x, x.transpose(2, 3).contiguous().transpose(2, 3)):
            ours, ref = _box_mean(images, kh, kw), torch.nn.functional.avg_pool2d(images, (kh, kw))
            assert torch.equal(ours, ref), (kh, kw)
            assert torch.equal(torch.signbit(ours), torch.signbit(ref)), (kh, kw)


def test_jpeg_per_image_path_gives_pil_pixels():
    from pytest_psa.measure.robustness.corruptions.digital import PIL_JPEG_MIN_PIXELS, _jpeg_pil_float

    size = 112
    assert size * size >= PIL_JPEG_MIN_PIXELS
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    for dtype in (torch.float32, torch.float64):
        x = torch.from_numpy(img).permute(0, 3, 1, 2).to(dtype) / 255
        ours = _jpeg_pil_float(x, 18)
        for i, im in enumerate(img):
            buffer = io.BytesIO()
            Image.fromarray(im).save(buffer, "JPEG", quality=18)
            ref = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1).to(dtype) / 255.0
            assert torch.equal(ours[i], ref), (dtype, i)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_jpeg_word_rounding_is_rint_on_any_float(dtype):
    """The per-image path rounds ``x * 255`` on machine words (x * 255 + M, low byte) and packs RGB into
    uint32 words: the pixels of np.rint + clip + uint8 -> PIL, on floats between levels, on the exact
    ties k + 0.5 (to even) and on 0, 1 and -0.0, for both dtypes and the corrupt() entry."""
    from pytest_psa.measure.robustness.corruptions.digital import _jpeg_pil_float

    rng = np.random.default_rng(7)
    values = rng.random((2, 3, 96, 112))
    levels = rng.integers(0, 255, values.shape)
    values[0, :, :32] = (levels[0, :, :32] + 0.5) / 255  # ties, where the dtype keeps them exact
    values[0, :, 32:40] = 0.0
    values[0, :, 40:48] = 1.0
    values[1, :, :8] = -0.0
    x = torch.from_numpy(values).to(dtype)
    scaled = x.numpy() * x.numpy().dtype.type(255.0)
    assert int((scaled == np.floor(scaled) + 0.5).sum()) > 1000  # the ties are really there
    expected = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    assert np.any(expected != np.floor(scaled + 0.5))  # half-up rounding would differ
    for quality in (90, 15):
        ours = _jpeg_pil_float(x, quality)
        assert ours.dtype == dtype
        for i, image in enumerate(expected):
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(buffer, "JPEG", quality=quality)
            ref = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1).to(dtype) / 255.0
            assert torch.equal(ours[i], ref), (dtype, quality, i)
    square = x[:, :, :96, :96].contiguous()
    via_corrupt = corrupt(square, "jpeg_compression", 2, resolution=224)
    assert torch.equal(via_corrupt, _jpeg_pil_float(square, 18))  # whole batch, no block copies


@pytest.mark.parametrize("size", [32, 224])
def test_fog_in_place_is_the_out_of_place_formula_bit_for_bit(size):
    """fog scales its own plasma map and the sum in place: the bits of
    ``((x + plasma * c) * (peak / (peak + c))).clamp(0, 1)`` computed out of place, and the plasma's
    in-place min-max normalization is ``(g - min) / max`` on the raw lattice."""
    from pytest_psa.measure.robustness.corruptions import get_corruption
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG
    from pytest_psa.measure.robustness.corruptions.weather import fog
    from pytest_psa.measure.robustness.corruptions.weather_maps import next_power_of_two, plasma_fractal

    x = torch.rand(3, 3, size, size)
    strength, decay = get_corruption("fog").params(4, size)
    dtype = torch.float32 if size >= 128 else torch.float64
    rng = CounterRNG(2, torch.arange(3), "fog", 4)
    plasma = plasma_fractal(rng, next_power_of_two(size), float(decay), stream=0, dtype=dtype)
    plasma = plasma[:, :size, :size].to(x.dtype).unsqueeze(1)
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    expected = ((x + plasma * float(strength)) * (peak / (peak + float(strength)))).clamp(0.0, 1.0)
    assert torch.equal(fog(x, (strength, decay), rng), expected)
    raw = plasma_fractal(rng, 8, 2.0, stream=0)
    assert float(raw.amin()) == 0.0 and float(raw.amax()) == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_impulse_noise_is_the_nested_where_bit_for_bit(dtype):
    """impulse_noise's two masked fills select what ``where(u < a, where(u < a/2, 1, 0), x)`` does,
    -0.0 kept where nothing flips."""
    from pytest_psa.measure.robustness.corruptions.noise import impulse_noise
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

    x = torch.rand(3, 3, 40, 40, dtype=dtype)
    x[0, :, :6] = -0.0
    for amount in (0.03, 0.27, 0.9):
        rng = CounterRNG(1, torch.arange(3), "impulse_noise", 5)
        u = rng.uniform((3, 40, 40), stream=0)
        salt = torch.where(u < 0.5 * amount, 1.0, 0.0).to(dtype)
        expected = torch.where(u < amount, salt, x)
        got = impulse_noise(x, (amount,), rng)
        assert got.dtype == dtype and torch.equal(got, expected)
        assert torch.equal(torch.signbit(got), torch.signbit(expected))
        assert 0 < int((got == 1).sum()) and 0 < int(((got == 0) & (x != 0)).sum())


def _strided_plasma(rng, mapsize: int, decay: float, stream: int) -> torch.Tensor:
    """The reference's recursion on strided views of the full map (the previous implementation)."""
    n = rng.n
    grid = torch.zeros((n, mapsize, mapsize), dtype=torch.float64)
    step, wibble, level = mapsize, 100.0, 0

    def wibbled_mean(total, sub):
        noise = rng.uniform(tuple(total.shape[1:]), stream=stream + 3 * level + sub).double()
        return total / 4 + wibble * (noise * (2 * wibble) - wibble)

    while step >= 2:
        half = step // 2
        corners = grid[:, 0:mapsize:step, 0:mapsize:step]
        squares = corners + torch.roll(corners, shifts=-1, dims=1)
        squares = squares + torch.roll(squares, shifts=-1, dims=2)
        grid[:, half:mapsize:step, half:mapsize:step] = wibbled_mean(squares, 0)
        centres = grid[:, half:mapsize:step, half:mapsize:step]
        corners = grid[:, 0:mapsize:step, 0:mapsize:step]
        left = centres + torch.roll(centres, shifts=1, dims=1) + corners + torch.roll(corners, shifts=-1, dims=2)
        grid[:, 0:mapsize:step, half:mapsize:step] = wibbled_mean(left, 1)
        top = centres + torch.roll(centres, shifts=1, dims=2) + corners + torch.roll(corners, shifts=-1, dims=1)
        grid[:, half:mapsize:step, 0:mapsize:step] = wibbled_mean(top, 2)
        step //= 2
        wibble /= decay
        level += 1
    grid = grid - grid.amin(dim=(1, 2), keepdim=True)
    return grid / grid.amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)


@pytest.mark.parametrize("mapsize", [2, 4, 32, 256])
def test_the_compact_plasma_is_the_strided_recursion_bit_for_bit(mapsize):
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG
    from pytest_psa.measure.robustness.corruptions.weather_maps import plasma_fractal

    rng = CounterRNG(3, torch.arange(5), "fog", 2)
    assert torch.equal(plasma_fractal(rng, mapsize, 1.7, stream=5), _strided_plasma(rng, mapsize, 1.7, 5))
