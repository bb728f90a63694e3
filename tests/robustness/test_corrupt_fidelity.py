"""Deterministic corruptions against the reference formulas, re-derived here with numpy, PIL and scipy.

The references follow hendrycks/robustness ``ImageNet-C/create_c/make_*_c.py`` step by step
(skimage's HSV conversion, cv2's disk kernel and reflect-101 borders, scipy's order-1 zoom, PIL's BOX
resize and JPEG), written from their documented semantics with no cv2 or skimage. Two comparisons:

- float: our float output against the reference's float output before its uint8 cast; the bound is
  1/255 (max abs difference), and the measured values are far below it except pixelate, where PIL
  rounds to uint8 after each resize pass (up to exactly 1/255 by construction).
- compat="hendrycks": our output against the reference's ``np.uint8(...)`` (truncation) or PIL's
  uint8 bytes: at most one level apart, and bit-exact for pixelate and JPEG.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

import pytest_psa
from pytest_psa.measure.robustness.corruptions import corrupt, get_corruption

ONE_LEVEL = 1.0 / 255.0


# -- test images ---------------------------------------------------------------------------------------


def _hard_images(n: int, size: int, seed: int) -> np.ndarray:
    """uint8 NHWC images with the HSV edge cases: grey, black, white, ties between channel maxima."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    img[:, 0, :, :] = rng.integers(0, 256, (n, size, 1), dtype=np.uint8)  # grey row
    img[:, 1, : size // 2] = 0  # black
    img[:, 1, size // 2 :] = 255  # white
    img[:, 2, :, 2] = img[:, 2, :, 0]  # r == b ties
    img[:, 3, :, 1] = img[:, 3, :, 0]  # r == g ties
    return img


@pytest.fixture(scope="module")
def images32() -> np.ndarray:
    """24 synthetic shapes + 8 random images with edge cases, uint8 NHWC."""
    shapes = pytest_psa.load_data("synthetic", split="test").images[:24].permute(0, 2, 3, 1).numpy()
    return np.concatenate([shapes, _hard_images(8, 32, seed=1)])


def _ours(img_u8: np.ndarray, name: str, severity: int, **kw) -> np.ndarray:
    x = torch.from_numpy(img_u8).permute(0, 3, 1, 2).float() / 255.0
    return corrupt(x, name, severity, **kw).permute(0, 2, 3, 1).double().numpy()


# -- skimage-style HSV, from its documented definition ----------------------------------------------


def rgb2hsv(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(-1)
    delta = v - rgb.min(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(delta == 0, 0.0, delta / v)
        h = np.zeros_like(v)
        h = np.where(r == v, (g - b) / delta, h)
        h = np.where(g == v, 2.0 + (b - r) / delta, h)
        h = np.where(b == v, 4.0 + (r - g) / delta, h)
    h = np.where(delta == 0, 0.0, (h / 6.0) % 1.0)
    return np.stack([h, s, v], -1)


def hsv2rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    i = i.astype(int) % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(hsv.shape)
    for k, (rr, gg, bb) in enumerate(choices):
        m = i == k
        out[..., 0] = np.where(m, rr, out[..., 0])
        out[..., 1] = np.where(m, gg, out[..., 1])
        out[..., 2] = np.where(m, bb, out[..., 2])
    return out


def ref_brightness(img: np.ndarray, c: float) -> np.ndarray:
    hsv = rgb2hsv(img / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1)


def ref_saturate(img: np.ndarray, c: tuple[float, float]) -> np.ndarray:
    hsv = rgb2hsv(img / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1)


def ref_contrast(img: np.ndarray, c: float) -> np.ndarray:
    x = img / 255.0
    means = x.mean(axis=(1, 2), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


# -- cv2-free disk kernel and filter2D ------------------------------------------------------------------


def _reflect_correlate_1d(a: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    half = len(taps) // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (half, half)
    padded = np.pad(a, pad, mode="reflect")  # numpy 'reflect' is cv2's BORDER_REFLECT_101
    out = np.zeros_like(a, dtype=np.float64)
    for k, w in enumerate(taps):
        out += w * np.take(padded, np.arange(k, k + a.shape[axis]), axis=axis)
    return out


def ref_disk(radius: float, alias_blur: float) -> np.ndarray:
    if radius <= 8:
        grid, ksize = np.arange(-8, 9), 3
    else:
        grid, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(grid, grid)
    disk = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    disk /= np.sum(disk)
    d = np.arange(ksize) - (ksize - 1) / 2
    taps = np.exp(-(d**2) / (2 * alias_blur**2))
    taps /= taps.sum()
    return _reflect_correlate_1d(_reflect_correlate_1d(disk.astype(np.float64), taps, 0), taps, 1)


def ref_defocus(img: np.ndarray, c: tuple[float, float]) -> np.ndarray:
    x = img / 255.0
    kernel = ref_disk(*c)
    half = kernel.shape[0] // 2
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (half, half), (half, half), (0, 0)), mode="reflect")
    out = np.zeros_like(x)
    for a in range(kernel.shape[0]):
        for b in range(kernel.shape[1]):
            if kernel[a, b] != 0:
                out += kernel[a, b] * padded[:, a : a + h, b : b + w]
    return np.clip(out, 0, 1)


# -- scipy-free clipped zoom (scipy.ndimage.zoom order=1 semantics) --------------------------------------


def _linear_zoom_axis(a: np.ndarray, zoom: float, axis: int) -> np.ndarray:
    n_in = a.shape[axis]
    n_out = int(round(n_in * zoom))
    coord = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    lo = np.floor(coord).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (coord - lo).reshape([-1 if d == axis else 1 for d in range(a.ndim)])
    return np.take(a, lo, axis=axis) * (1 - frac) + np.take(a, hi, axis=axis) * frac


def ref_clipped_zoom(img: np.ndarray, zoom: float) -> np.ndarray:
    """One HWC image: centre crop ceil(h / z), linear zoom, centre trim to h (the reference's helper)."""
    h = img.shape[0]
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    crop = img[top : top + ch, top : top + ch].astype(np.float64)
    zoomed = _linear_zoom_axis(_linear_zoom_axis(crop, zoom, 0), zoom, 1).astype(np.float32)
    trim = (zoomed.shape[0] - h) // 2
    return zoomed[trim : trim + h, trim : trim + h]


def ref_zoom_blur(img: np.ndarray, stop: float, step: float) -> np.ndarray:
    out_all = []
    for one in img:
        x = (one / 255.0).astype(np.float32)
        out = np.zeros_like(x)
        zooms = np.arange(1, stop, step)
        for z in zooms:
            out += ref_clipped_zoom(x, z)
        out_all.append(np.clip((x + out) / (len(zooms) + 1), 0, 1))
    return np.stack(out_all).astype(np.float64)


# -- PIL references ---------------------------------------------------------------------------------


def ref_pixelate(img: np.ndarray, c: float) -> np.ndarray:
    out = []
    for one in img:
        size = one.shape[0]
        pil = Image.fromarray(one).resize((int(size * c), int(size * c)), Image.BOX).resize((size, size), Image.BOX)
        out.append(np.asarray(pil))
    return np.stack(out)


def ref_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    out = []
    for one in img:
        buf = io.BytesIO()
        Image.fromarray(one).save(buf, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buf)))
    return np.stack(out)


# -- tests -------------------------------------------------------------------------------------------


def _assert_float_and_compat(images: np.ndarray, name: str, severity: int, ref_float: np.ndarray, bound: float):
    ours = _ours(images, name, severity)
    diff = float(np.abs(ours - ref_float).max())
    assert diff <= bound, f"{name} severity {severity}: max |ours - reference| = {diff * 255:.3g}/255"
    # compat: the reference's np.uint8 truncation of clip(...) * 255
    ref_levels = np.uint8(np.clip(ref_float, 0, 1) * 255).astype(int)
    ours_levels = np.round(_ours(images, name, severity, compat="hendrycks") * 255).astype(int)
    level_diff = np.abs(ours_levels - ref_levels)
    assert level_diff.max() <= 1, f"{name} severity {severity}: compat differs by {level_diff.max()} levels"
    # Truncation is sensitive to float noise only next to a level: the reference gets
    # 44.99999999999999 -> 44 where the exact value is 45, and its noise (float32 cv2 kernels, skimage's
    # operation order) is not ours; we compute in float32 and count values within 1e-4 below a level as
    # that level. So every disagreement must lie within 2e-4 of a level; everywhere else the levels agree
    # exactly (rounding instead of truncating would break this at about half of all elements).
    scaled = np.clip(ref_float, 0, 1)[level_diff > 0] * 255
    off = np.abs(scaled - np.round(scaled))
    assert np.all(off < 2e-4), f"{name} severity {severity}: flips {off.max():.3g} levels away from a level"
    return diff, level_diff


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_brightness_matches_the_hsv_round_trip(images32, severity):
    (c,) = get_corruption("brightness").params(severity, 32)
    _, levels = _assert_float_and_compat(images32, "brightness", severity, ref_brightness(images32, c), 1e-5)
    assert levels.max() == 0  # compat replays skimage's float64 HSV arithmetic: bit-exact truncation


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_saturate_matches_the_hsv_round_trip(images32, severity):
    c = get_corruption("saturate").params(severity, 32)
    _, levels = _assert_float_and_compat(images32, "saturate", severity, ref_saturate(images32, c), 1e-5)
    assert levels.max() == 0


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_contrast_matches_the_reference(images32, severity):
    (c,) = get_corruption("contrast").params(severity, 32)
    _assert_float_and_compat(images32, "contrast", severity, ref_contrast(images32, c), 1e-5)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_defocus_blur_matches_the_disk_kernel_reference(images32, severity):
    c = get_corruption("defocus_blur").params(severity, 32)
    _assert_float_and_compat(images32, "defocus_blur", severity, ref_defocus(images32, c), 1e-5)


@pytest.mark.parametrize(("severity", "stop"), [(1, 1.06), (2, 1.11), (3, 1.16), (4, 1.21), (5, 1.26)])
def test_zoom_blur_matches_the_clipped_zoom_reference(images32, severity, stop):
    zooms = get_corruption("zoom_blur").params(severity, 32)
    assert len(zooms) == [7, 12, 16, 21, 26][severity - 1]  # float arange quirk of the reference
    _assert_float_and_compat(images32, "zoom_blur", severity, ref_zoom_blur(images32, stop, 0.01), 1e-5)


def test_the_scipy_free_zoom_reference_equals_scipy_ndimage_zoom():
    # Guards the hand-written reference above: same numbers as scipy.ndimage.zoom(order=1).
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3)).astype(np.float32)
    for z in np.arange(1, 1.26, 0.01):
        h = 32
        ch = int(np.ceil(h / z))
        top = (h - ch) // 2
        scipy_zoomed = ndimage.zoom(img[top : top + ch, top : top + ch], (z, z, 1), order=1)
        trim = (scipy_zoomed.shape[0] - h) // 2
        np.testing.assert_allclose(ref_clipped_zoom(img, z), scipy_zoomed[trim : trim + h, trim : trim + h], atol=1e-6)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_gaussian_blur_matches_scipy_gaussian_filter(images32, severity):
    (sigma,) = get_corruption("gaussian_blur").params(severity, 32)
    x = images32 / 255.0
    ref = np.clip(ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest", truncate=4.0), 0, 1)
    _assert_float_and_compat(images32, "gaussian_blur", severity, ref, 1e-5)


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_pixelate_matches_pil_box_resize(images32, severity):
    (c,) = get_corruption("pixelate").params(severity, 32)
    ref = ref_pixelate(images32, c)
    ours = _ours(images32, "pixelate", severity)
    # PIL rounds to uint8 after each of its passes; the float kernel does not: at most one level.
    assert np.abs(ours * 255 - ref).max() <= 1.0 + 1e-4
    compat = np.round(_ours(images32, "pixelate", severity, compat="hendrycks") * 255)
    assert np.array_equal(compat, ref)  # bit-exact with PIL's 8-bit passes emulated


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_jpeg_matches_pil_bit_for_bit(images32, severity):
    (quality,) = get_corruption("jpeg_compression").params(severity, 32)
    ref = ref_jpeg(images32, quality)
    assert np.array_equal(np.round(_ours(images32, "jpeg_compression", severity) * 255), ref)
    assert np.array_equal(np.round(_ours(images32, "jpeg_compression", severity, compat="hendrycks") * 255), ref)


@pytest.mark.parametrize("quality", [95, 80, 65, 58, 50, 40, 25, 18, 15, 10, 7, 1])
def test_every_jpeg_path_gives_pil_pixels(images32, quality):
    """The batched torch codec (CUDA, and CPU once torchvision drops its deprecated codecs), libjpeg
    through torchvision and the per-image PIL fallback all reproduce PIL bit for bit."""
    from pytest_psa.measure.robustness.corruptions.digital import _jpeg_pil, _jpeg_torchvision
    from pytest_psa.measure.robustness.corruptions.jpeg import jpeg_round_trip

    levels = torch.from_numpy(images32).permute(0, 3, 1, 2).contiguous()
    ref = torch.from_numpy(ref_jpeg(images32, quality)).permute(0, 3, 1, 2)
    assert torch.equal(jpeg_round_trip(levels, quality).to(torch.uint8), ref)
    assert torch.equal(_jpeg_pil(levels[:4], quality), ref[:4])
    tv = _jpeg_torchvision(levels, quality)
    assert tv is None or torch.equal(tv, ref)


def test_torch_jpeg_matches_pil_at_64_and_224_px():
    from pytest_psa.measure.robustness.corruptions.jpeg import jpeg_round_trip

    for size in (48, 64, 224):
        img = _hard_images(2, size, seed=size)
        smooth = np.asarray(Image.fromarray(img[0]).resize((size // 7, size // 7)).resize((size, size), Image.BICUBIC))
        img = np.concatenate([img, smooth[None]])
        for quality in (80, 25, 7):
            ref = torch.from_numpy(ref_jpeg(img, quality)).permute(0, 3, 1, 2)
            ours = jpeg_round_trip(torch.from_numpy(img).permute(0, 3, 1, 2), quality).to(torch.uint8)
            assert torch.equal(ours, ref), (size, quality)


@pytest.mark.parametrize("size", [64, 224])
def test_larger_tables_match_the_references(size):
    """Tiny ImageNet and ImageNet tables: defocus (radius > 8 uses the 21 x 21 grid and 5 x 5 blur),
    zoom, brightness, contrast, pixelate and JPEG on two images each."""
    img = _hard_images(2, size, seed=size)
    sev = 5
    checks = {
        "defocus_blur": ref_defocus(img, get_corruption("defocus_blur").params(sev, size)),
        "brightness": ref_brightness(img, *get_corruption("brightness").params(sev, size)),
        "contrast": ref_contrast(img, *get_corruption("contrast").params(sev, size)),
        "zoom_blur": ref_zoom_blur(img, *({64: (1.26, 0.01), 224: (1.31, 0.03)}[size])),
    }
    for name, ref in checks.items():
        diff = float(np.abs(_ours(img, name, sev) - ref).max())
        assert diff <= 1e-5, (name, size, diff)
    pix = ref_pixelate(img, *get_corruption("pixelate").params(sev, size))
    assert np.array_equal(np.round(_ours(img, "pixelate", sev, compat="hendrycks") * 255), pix)
    jpg = ref_jpeg(img, *get_corruption("jpeg_compression").params(sev, size))
    assert np.array_equal(np.round(_ours(img, "jpeg_compression", sev) * 255), jpg)


def test_defocus_radius_above_eight_uses_the_wide_grid():
    kernel = get_corruption("defocus_blur")  # ImageNet severity 5: radius 10
    from pytest_psa.measure.robustness.corruptions.blur import defocus_kernel

    ours = defocus_kernel(*kernel.params(5, 224)).numpy()
    ref = ref_disk(10.0, 0.5)
    assert ours.shape == ref.shape == (21, 21)
    np.testing.assert_allclose(ours, ref, atol=1e-7)
    small = defocus_kernel(0.3, 0.4).numpy()  # trimmed: the disk is one pixel, blurred by 3 x 3
    np.testing.assert_allclose(small, ref_disk(0.3, 0.4)[7:10, 7:10], atol=1e-7)
    assert abs(ref_disk(0.3, 0.4).sum() - small.sum()) < 1e-7


@pytest.mark.slow
@pytest.mark.cifar
def test_real_cifar_images_match_the_references(cifar10):
    """Real photographs (textures, saturated colours, JPEG-like blocks) on top of the synthetic shapes:
    32 CIFAR-10 test images at severity 5, every deterministic corruption within 1/255 (float) and
    JPEG/pixelate-compat bit-exact."""
    img = cifar10.images[:32].permute(0, 2, 3, 1).numpy()
    for sev in (5,):
        refs = {
            "brightness": ref_brightness(img, *get_corruption("brightness").params(sev, 32)),
            "saturate": ref_saturate(img, get_corruption("saturate").params(sev, 32)),
            "contrast": ref_contrast(img, *get_corruption("contrast").params(sev, 32)),
            "defocus_blur": ref_defocus(img, get_corruption("defocus_blur").params(sev, 32)),
            "zoom_blur": ref_zoom_blur(img, [1.06, 1.11, 1.16, 1.21, 1.26][sev - 1], 0.01),
        }
        for name, ref in refs.items():
            _assert_float_and_compat(img, name, sev, ref, 1e-4)
        pix = ref_pixelate(img, *get_corruption("pixelate").params(sev, 32))
        assert np.array_equal(np.round(_ours(img, "pixelate", sev, compat="hendrycks") * 255), pix)
        jpg = ref_jpeg(img, *get_corruption("jpeg_compression").params(sev, 32))
        assert np.array_equal(np.round(_ours(img, "jpeg_compression", sev) * 255), jpg)
