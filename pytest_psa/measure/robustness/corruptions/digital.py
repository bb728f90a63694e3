"""Digital corruptions: brightness, contrast, saturate, pixelate and JPEG compression.

All five are deterministic given the image. brightness and saturate are the reference's
``rgb2hsv -> change V or S -> hsv2rgb`` round trip in closed form (hue and the other HSV coordinate are
unchanged, so every RGB channel moves along a known line; no hue is ever computed). pixelate applies
PIL's BOX resampling weights as two small matrices; JPEG goes through libjpeg via torchvision, which
produces PIL's bytes for the same quality (checked in the tests).

Severity tables (rows are severities 1..5), from hendrycks/robustness ``ImageNet-C/create_c/``:
32 px ``make_cifar_c.py`` (@ca36008), 64 px ``make_tinyimagenet_c.py`` (@7a64e6a), 224 px
``make_imagenet_c.py`` (@e0377d4).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from pytest_psa.measure.robustness.corruptions.blur import apply_separable
from pytest_psa.measure.robustness.corruptions.chunking import map_chunks, whole_batch
from pytest_psa.measure.robustness.corruptions.registry import Corruption
from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

__all__ = [
    "CORRUPTIONS_DIGITAL",
    "box_resize_matrix",
    "brightness",
    "contrast",
    "jpeg_compression",
    "pixelate",
    "saturate",
]


def _rows(*values: float) -> tuple[tuple[float], ...]:
    return tuple((v,) for v in values)


def brightness(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """HSV value V = max(r, g, b) raised by c and clipped at 1, hue and saturation kept.

    With V' = min(V + c, 1) every channel scales by V'/V; a black pixel (V = 0, S = 0 by skimage's
    convention) becomes grey V'. params = (c,).
    """
    (shift,) = params
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + shift).clamp_(max=1.0)
    scaled = x * (new_value / value.clamp(min=torch.finfo(x.dtype).tiny))
    return torch.where(value > 0, scaled, new_value.expand_as(x)).clamp_(0.0, 1.0)


def contrast(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """(x - m) * c + m with m the per-image, per-channel mean, clipped. params = (c,)."""
    (factor,) = params
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * float(factor) + mean).clamp_(0.0, 1.0)


def saturate(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """HSV saturation S' = clip(S * a + b, 0, 1), hue and value kept.

    Channel k is V * (1 - S * w_k) with w_k fixed by the hue, so channel' = V - (V - channel) * S'/S.
    A grey pixel has S = 0 and hue 0 (skimage's convention), i.e. red: it becomes (V, V(1-S'), V(1-S')).
    params = (a, b).
    """
    scale, offset = params
    value = x.amax(dim=1, keepdim=True)
    spread = value - x.amin(dim=1, keepdim=True)
    saturation = torch.where(value > 0, spread / value.clamp(min=torch.finfo(x.dtype).tiny), 0.0)
    new_saturation = (saturation * scale + offset).clamp_(0.0, 1.0)
    ratio = new_saturation / saturation.clamp(min=torch.finfo(x.dtype).tiny)
    coloured = value - (value - x) * ratio
    grey_green_blue = value * (1.0 - new_saturation)
    grey = torch.cat([value, grey_green_blue, grey_green_blue], dim=1)
    return torch.where(spread > 0, coloured, grey).clamp_(0.0, 1.0)


def _hsv_round_trip_uint8(
    x: torch.Tensor, channel: int, change: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """compat='hendrycks' brightness/saturate: skimage's rgb2hsv -> change -> hsv2rgb, operation for
    operation in float64 on the 8-bit input, then clip and ``np.uint8`` truncation. Returns the uint8
    levels / 255, so the reference's float64 noise (44.99999999999999 -> 44) is reproduced too."""
    rgb = torch.round(x.to(torch.float64) * 255.0) / 255.0
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    v = rgb.amax(dim=1)
    delta = v - rgb.amin(dim=1)
    safe = torch.where(delta == 0, 1.0, delta)
    s = torch.where(delta == 0, 0.0, delta / torch.where(v == 0, 1.0, v))
    h = torch.zeros_like(v)
    h = torch.where(r == v, (g - b) / safe, h)  # later assignments win, as in skimage
    h = torch.where(g == v, 2.0 + (b - r) / safe, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe, h)
    h = torch.where(delta == 0, 0.0, torch.remainder(h / 6.0, 1.0))
    hsv = [h, s, v]
    hsv[channel] = change(hsv[channel]).clamp(0.0, 1.0)
    h, s, v = hsv
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = sector.to(torch.int64).remainder(6).unsqueeze(1)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(rgb)
    for k, channels in enumerate(table):
        out = torch.where(sector == k, torch.stack(channels, dim=1), out)
    levels = torch.floor(out.clamp(0.0, 1.0) * 255.0)
    return (levels / 255.0).to(x.dtype)


def brightness_uint8(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """compat='hendrycks' brightness: the HSV round trip as skimage computes it, truncated."""
    (shift,) = params
    return _hsv_round_trip_uint8(x, 2, lambda value: value + shift)


def saturate_uint8(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """compat='hendrycks' saturate: the HSV round trip as skimage computes it, truncated."""
    scale, offset = params
    return _hsv_round_trip_uint8(x, 1, lambda saturation: saturation * scale + offset)


@functools.lru_cache(maxsize=64)
def _box_matrix_cached(n_in: int, n_out: int) -> torch.Tensor:
    """PIL's BOX resampling weights as a float64 [n_out, n_in] matrix.

    PIL (libImaging/Resample.c) centres output pixel j at (j + 0.5) * s in input coordinates
    (s = n_in / n_out), scans inputs i in [int(centre - half + 0.5), int(centre + half + 0.5)) with
    half = max(s, 1) / 2, and gives each weight 1 when (i - centre + 0.5) / max(s, 1) lies in
    (-0.5, 0.5], else 0, then normalises. So downscaling averages one or two (or more) whole pixels
    and upscaling is nearest-neighbour; it is not an area-weighted box.
    """
    scale = n_in / n_out
    support_scale = max(scale, 1.0)
    half = 0.5 * support_scale
    weights = torch.zeros(n_out, n_in, dtype=torch.float64)
    for j in range(n_out):
        centre = (j + 0.5) * scale
        lo = max(int(centre - half + 0.5), 0)
        hi = min(int(centre + half + 0.5), n_in)
        for i in range(lo, hi):
            t = (i - centre + 0.5) / support_scale
            if -0.5 < t <= 0.5:
                weights[j, i] = 1.0
        total = weights[j].sum()
        if total > 0:
            weights[j] /= total
    return weights


def box_resize_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """:func:`_box_matrix_cached` in the caller's dtype and device."""
    return _box_matrix_cached(int(n_in), int(n_out)).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=64)
def _box_taps_cached(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The non-zero entries of :func:`_box_matrix_cached` as (input index, weight) [n_out, taps] on CPU.

    PIL's BOX row holds 1 to ceil(n_in / n_out) + 1 equal weights; shorter rows are padded with index 0
    and weight 0 (adding 0 * x changes no value).
    """
    matrix = _box_matrix_cached(n_in, n_out)
    taps = max(1, int((matrix != 0).sum(1).max()))
    index = torch.zeros(n_out, taps, dtype=torch.int64)
    weight = torch.zeros(n_out, taps, dtype=torch.float64)
    for j in range(n_out):
        nonzero = matrix[j].nonzero().squeeze(1)
        index[j, : nonzero.numel()] = nonzero
        weight[j, : nonzero.numel()] = matrix[j, nonzero]
    return index, weight


def _box_resize_axis(x: torch.Tensor, dim: int, n_out: int) -> torch.Tensor:
    """PIL's BOX resize of ``x`` along ``dim`` as a few gathers and multiply-adds (1-5 taps at the
    tables' fractions), instead of a dense GEMM that multiplies mostly zeros; upscaling is one gather."""
    index, weight = _box_taps_cached(int(x.shape[dim]), int(n_out))
    index = index.to(x.device)
    if index.shape[1] == 1 and bool((weight == 1).all()):  # nearest neighbour: copies, no arithmetic
        return x.index_select(dim, index[:, 0])
    shape = [1] * x.dim()
    shape[dim] = n_out
    weight = weight.to(dtype=x.dtype, device=x.device)
    out = x.index_select(dim, index[:, 0]).mul_(weight[:, 0].reshape(shape))
    for t in range(1, index.shape[1]):
        out.add_(x.index_select(dim, index[:, t]).mul_(weight[:, t].reshape(shape)))
    return out


#: From this size on, the float pixelate gathers instead of multiplying by dense resize matrices,
#: whose cost per pixel grows with the side (measured one thread: 32 px GEMM 6x faster, 224 px 4x slower).
_PIXELATE_GATHER_MIN_PIXELS = 64 * 64


@functools.lru_cache(maxsize=64)
def _nearest_is_pil(n_in: int, n_out: int, dtype: torch.dtype) -> bool:
    """Whether torch's "nearest-exact" upscale picks PIL's BOX-upscale source pixels for these sizes.

    Both take floor((j + 0.5) * n_in / n_out), but torch computes the scale in the input's float type,
    so the choice is checked once per size pair (on an arange) rather than assumed; the interpolation
    kernel is ~3x faster than two gathers and two transposes.
    """
    if n_out < n_in:
        return False
    probe = torch.arange(n_in, dtype=dtype).reshape(1, 1, 1, n_in)
    picked = F.interpolate(probe, size=(1, n_out), mode="nearest-exact").reshape(-1).to(torch.int64)
    index, weight = _box_taps_cached(n_in, n_out)
    return index.shape[1] == 1 and bool((weight == 1).all()) and torch.equal(picked, index[:, 0])


#: Up to this many taps per window the k x k mean runs as strided slice adds (below); beyond, avg_pool2d.
_BOX_MEAN_MAX_TAPS = 16


def _box_mean(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """``F.avg_pool2d(x, (kh, kw))`` bit for bit, as one strided slice add per tap.

    torch's CPU avg_pool2d on NCHW sums each window in row-major order from 0 in a scalar loop, then
    divides by kh * kw; here each tap is one add over all windows at once, in that order (measured one
    thread at 224 px: 2 x 2 windows 3.7x faster, 4 x 4 1.1x). Starting from the first tap instead of 0
    only differs for windows of -0.0 alone (-0.0 here, +0.0 there), which the final + 0.0 maps back.
    """
    n, c, h, w = x.shape
    if kh * kw > _BOX_MEAN_MAX_TAPS or kh * kw < 2:
        return F.avg_pool2d(x, (kh, kw))
    windows = x.reshape(n, c, h // kh, kh, w // kw, kw)
    taps = [(i, j) for i in range(kh) for j in range(kw)]
    total = torch.add(windows[:, :, :, taps[0][0], :, taps[0][1]], windows[:, :, :, taps[1][0], :, taps[1][1]])
    for i, j in taps[2:]:
        total.add_(windows[:, :, :, i, :, j])
    return total.div_(kh * kw).add_(0.0)


def _pixelate(x: torch.Tensor, fraction: float, rounding: bool) -> torch.Tensor:
    """BOX down to int(size * fraction), then BOX up (nearest neighbour).

    ``rounding``: PIL's 8-bit passes, width first, each rounded half up. Without it (floats) the passes
    are ordered for speed instead (the result differs by float rounding only): gathers along the
    height copy whole rows, so the full-size image is only ever touched by row gathers, and the
    element-wise gathers along the width run on the small image.
    """
    n, c, h, w = x.shape
    small_h, small_w = max(1, int(h * fraction)), max(1, int(w * fraction))
    if not rounding:
        if h * w < _PIXELATE_GATHER_MIN_PIXELS:  # small images: one fused GEMM per axis is cheaper
            downs = [box_resize_matrix(a, b, x.dtype, x.device) for a, b in ((h, small_h), (w, small_w))]
            ups = [box_resize_matrix(b, a, x.dtype, x.device) for a, b in ((h, small_h), (w, small_w))]
            return apply_separable(x, ups[0] @ downs[0], ups[1] @ downs[1]).clamp_(0.0, 1.0)
        if h % small_h == 0 and w % small_w == 0:  # whole factors: PIL's box is the k x k mean
            small = _box_mean(x, h // small_h, w // small_w)
        else:
            # Gathers along dim 2 copy whole rows, those along the last dim single elements (slow),
            # so the width pass runs on a transposed copy of the height-reduced image.
            reduced = _box_resize_axis(x, 2, small_h).transpose(2, 3).contiguous()  # [n, c, w, small_h]
            small = _box_resize_axis(reduced, 2, small_w).transpose(2, 3).contiguous()
        small = small.clamp_(0.0, 1.0)  # before the upscale, which only copies: 1/c times fewer values
        if x.device.type == "cpu" and _nearest_is_pil(small_h, h, x.dtype) and _nearest_is_pil(small_w, w, x.dtype):
            return F.interpolate(small, size=(h, w), mode="nearest-exact")
        widened = _box_resize_axis(small.transpose(2, 3).contiguous(), 2, w)
        return _box_resize_axis(widened.transpose(2, 3).contiguous(), 2, h)
    small = torch.floor(_box_resize_axis(x, 3, small_w).add_(0.5))
    small = torch.floor(_box_resize_axis(small, 2, small_h).add_(0.5))
    return _box_resize_axis(_box_resize_axis(small, 3, w), 2, h)  # nearest: copies of 8-bit levels


def pixelate(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """PIL BOX resize down to int(size * c) then BOX back up, on floats (no 8-bit intermediates).

    params = (c,); the reduced size uses the image's own height and width.
    """
    (fraction,) = params
    return _pixelate(x, fraction, rounding=False)


def pixelate_uint8(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """compat='hendrycks' pixelate: 8-bit input and uint8 rounding after each of PIL's four passes."""
    (fraction,) = params
    levels = torch.round(x * 255.0)
    return (_pixelate(levels, fraction, rounding=True) / 255.0).clamp_(0.0, 1.0)


def _jpeg_torchvision(levels: torch.Tensor, quality: int) -> torch.Tensor | None:
    """libjpeg round trip through torchvision.io (batched in C++), or None where it is gone.

    torchvision 0.29 deprecates its codecs in favour of TorchCodec; until they are removed they are
    ~3x faster than PIL per 32 px image and give PIL's bytes (same libjpeg settings).
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import decode_jpeg, encode_jpeg

            encoded = encode_jpeg(list(levels), quality=quality)
            return torch.stack(decode_jpeg(encoded))
    except (ImportError, AttributeError, RuntimeError):
        return None


def _jpeg_pil(levels: torch.Tensor, quality: int) -> torch.Tensor:
    """The reference's own path: PIL save(quality), then libjpeg's decoder, one image at a time.

    The decoder runs through ``Image.frombytes(..., "jpeg")`` with the arguments ``Image.open`` gives
    it (same pixels; tested), which skips the header parsing and the lazy-load machinery.
    """
    import io

    import numpy as np
    from PIL import Image

    from pytest_psa._threads import single_thread

    hwc = levels.permute(0, 2, 3, 1).contiguous().numpy()
    out = np.empty_like(hwc)
    size = (hwc.shape[2], hwc.shape[1])
    with single_thread():
        for i, image in enumerate(hwc):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "JPEG", quality=quality)
            out[i] = np.asarray(Image.frombytes("RGB", size, buffer.getbuffer(), "jpeg", "RGB", ""))
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def _jpeg_pil_float(x: torch.Tensor, quality: int) -> torch.Tensor:
    """:func:`_jpeg_pil` for float CPU images in [0, 1], image by image from and to the caller's dtype.

    Same values as ``round(x * 255)`` -> PIL -> ``.to(dtype) / 255`` (``round`` half to even, as
    np.rint), at about the cost of the reference's own uint8 plumbing. What it avoids, per 224 px image
    (measured one thread, side by side): rint, clip and cast as separate passes plus ``Image.merge``
    (the rounding and the RGB interleave are done on machine words: ``x * 255 + M`` holds the rounded
    level in its low byte, three shifted adds pack R, G, B into one uint32 per pixel, which PIL maps
    as an RGBX image without copying), ``split`` + ``np.asarray`` (three planar ``tobytes`` instead), and
    a new image per decode (one reused image; ~2 % of the decode).
    The encoder reads the same RGB bytes, so libjpeg sees the same input and the bytes are PIL's.

    ``x`` must lie in [0, 1] (``corrupt`` checks it): ``x * 255`` then needs no clip.
    """
    import io

    import numpy as np
    from PIL import Image

    n, c, h, w = x.shape
    source = x.contiguous().numpy()
    out = torch.empty((n, c, h, w), dtype=x.dtype)
    target = out.numpy()
    # M = 1.5 * 2**(mantissa bits): the float's unit in the last place is 1 on [M, M + 2**22), so
    # v + M rounds v in [0, 255] to an integer, ties to even (np.rint's rule), into the word's low byte
    single = source.dtype == np.float32
    magic = np.float32(1.5 * 2**23) if single else np.float64(1.5 * 2**52)
    word: type[np.unsignedinteger[Any]] = np.uint32 if single else np.uint64
    scaled = np.empty((c, h, w), dtype=source.dtype)
    levels = scaled.view(word)  # M + level as an unsigned integer: the level is in the low byte
    shifted = np.empty((h, w), dtype=word)
    packed_word = np.empty((h, w), dtype=word)
    # (M + r) + ((M + g) << 8) + ((M + b) << 16) - (M + (M << 8) + (M << 16)), modulo the word size
    offset = word(int(magic.view(word)) * (1 + (1 << 8) + (1 << 16)) % (1 << (8 * magic.itemsize)))
    packed = packed_word if word is np.uint32 else np.empty((h, w), dtype=np.uint32)
    # shares packed's memory: rewriting packed rewrites the image (byte order R, G, B, 0 per pixel)
    image = Image.frombuffer("RGBX", (w, h), packed, "raw", "RGBX", 0, 1)
    decoded = Image.new("RGB", (w, h))  # every decode overwrites all of it
    divisor = source.dtype.type(255.0)
    for i in range(n):
        np.multiply(source[i], 255.0, out=scaled)
        np.add(scaled, magic, out=scaled)
        np.left_shift(levels[1], 8, out=shifted)
        np.add(levels[0], shifted, out=packed_word)
        np.left_shift(levels[2], 16, out=shifted)
        np.add(packed_word, shifted, out=packed_word)
        np.subtract(packed_word, offset, out=packed_word)
        if packed is not packed_word:
            np.copyto(packed, packed_word, casting="unsafe")  # < 2**24: exact
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)  # an RGBX image is saved as its RGB bytes
        decoded.frombytes(buffer.getbuffer(), "jpeg", "RGB", "")
        for channel, band in enumerate("RGB"):
            plane = np.frombuffer(decoded.tobytes("raw", band), dtype=np.uint8).reshape(h, w)
            # uint8 / a scalar of the output's dtype computes in that dtype: torch's .to(dtype) / 255
            np.divide(plane, divisor, out=target[i, channel])
    return out


#: From this many pixels per image PIL's libjpeg-turbo (SIMD) beats torchvision's batched libjpeg per
#: image on CPU; below it, PIL's per-call overhead loses (measured side by side, one thread: 32 px
#: torchvision 0.32 vs PIL 0.50 ms, 64 px 0.55 vs 0.82, 224 px 4.0 vs 1.6).
PIL_JPEG_MIN_PIXELS = 96 * 96


@whole_batch
def jpeg_compression(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
    """Encode at JPEG ``quality`` and decode as libjpeg does with PIL's settings (4:2:0, baseline
    tables, islow DCT, fancy upsampling): the same pixels as the reference's ``PIL.Image.save``.

    The image is rounded to 8 bits first, as the reference's PIL image is. On CPU libjpeg itself runs:
    through PIL image by image for large images, through torchvision's batched codec for small ones
    (while its deprecated codecs exist). On CUDA, and on CPU when neither applies, the batched torch
    re-implementation in ``jpeg.py`` runs. Sizes that are not multiples of 16 always go through a
    library (libjpeg's edge padding). params = (quality,).

    Takes the whole batch (``whole_batch``): the per-image PIL path writes straight into the result
    (``corrupt`` would otherwise copy each block's result once more); the batched paths run on the
    blocks ``corrupt`` would have cut. Every path is per image, so neither changes a bit.
    """
    from pytest_psa.measure.robustness.corruptions import _CPU_BLOCK, _CUDA_BLOCK

    (quality,) = params
    h, w = x.shape[-2:]
    if x.device.type == "cpu" and h * w >= PIL_JPEG_MIN_PIXELS and x.shape[1] == 3:
        return _jpeg_pil_float(x.detach(), int(quality))
    block = _CPU_BLOCK if x.device.type == "cpu" else _CUDA_BLOCK
    return map_chunks(lambda piece: _jpeg_batched(piece, int(quality)), x.detach(), pixels=block // x.shape[1])


def _jpeg_batched(x: torch.Tensor, quality: int) -> torch.Tensor:
    """:func:`jpeg_compression` through torchvision's codec, PIL per image or ``jpeg.py`` (see there)."""
    from pytest_psa.measure.robustness.corruptions.jpeg import jpeg_round_trip, supports

    h, w = x.shape[-2:]
    levels = torch.round(x * 255.0).clamp_(0, 255)
    decoded = None
    if x.device.type == "cpu" or not supports(h, w):
        cpu_levels = levels.to("cpu", torch.uint8).contiguous()
        decoded = _jpeg_torchvision(cpu_levels, quality)
        if decoded is None and not supports(h, w):
            decoded = _jpeg_pil(cpu_levels, quality)
    if decoded is None:
        decoded = jpeg_round_trip(levels.to(torch.float64), quality)
    return decoded.to(device=x.device, dtype=x.dtype) / 255.0


CORRUPTIONS_DIGITAL: list[Corruption] = [
    Corruption(
        name="brightness",
        family="digital",
        kernel=brightness,
        compat_kernel=brightness_uint8,
        tables={
            32: _rows(0.05, 0.1, 0.15, 0.2, 0.3),
            64: _rows(0.1, 0.2, 0.3, 0.4, 0.5),
            224: _rows(0.1, 0.2, 0.3, 0.4, 0.5),
        },
        stochastic=False,
        deviation="closed form of the HSV round trip (no hue computed); equal up to float rounding",
    ),
    Corruption(
        name="contrast",
        family="digital",
        kernel=contrast,
        tables={
            32: _rows(0.75, 0.5, 0.4, 0.3, 0.15),
            64: _rows(0.4, 0.3, 0.2, 0.1, 0.05),
            224: _rows(0.4, 0.3, 0.2, 0.1, 0.05),
        },
        stochastic=False,
    ),
    Corruption(
        name="pixelate",
        family="digital",
        kernel=pixelate,
        compat_kernel=pixelate_uint8,
        tables={
            32: _rows(0.95, 0.9, 0.85, 0.75, 0.65),
            64: _rows(0.9, 0.8, 0.7, 0.6, 0.5),
            224: _rows(0.6, 0.5, 0.4, 0.3, 0.25),
        },
        stochastic=False,
        deviation="PIL's BOX weights on floats; PIL rounds to uint8 after each pass (compat reproduces it)",
    ),
    Corruption(
        name="jpeg_compression",
        family="digital",
        kernel=jpeg_compression,
        tables={
            32: _rows(80, 65, 58, 50, 40),
            64: _rows(65, 58, 50, 40, 25),
            224: _rows(25, 18, 15, 10, 7),
        },
        stochastic=False,
        deviation="input rounded to 8 bits (the reference's input is a PIL image already)",
    ),
    Corruption(
        name="saturate",
        family="digital",
        kernel=saturate,
        compat_kernel=saturate_uint8,
        tables={
            32: ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)),
            64: ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (30.0, 0.2)),
            224: ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2)),
        },
        stochastic=False,
        validation=True,
        deviation="closed form of the HSV round trip (no hue computed); equal up to float rounding",
    ),
]
