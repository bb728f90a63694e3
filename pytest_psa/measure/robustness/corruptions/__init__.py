"""Batched common corruptions (CIFAR-10-C, Tiny-ImageNet-C and ImageNet-C) in torch, CPU or CUDA.

``corrupt(images, "gaussian_noise", 3)`` corrupts a float batch in [0, 1] with the severity table of
its resolution (32, 64 or 224 px). Random corruptions draw from a counter-based generator keyed by
(seed, sample index, corruption, severity), so each image's result is the same alone, in any batch, in
any order and on any worker. See docs/corruptions.md for the tables and every deviation from the
reference scripts.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pytest_psa._specs.names import BENCHMARK_CORRUPTIONS as BENCHMARK
from pytest_psa._specs.names import VALIDATION_CORRUPTIONS as VALIDATION
from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.robustness.corruptions.registry import RESOLUTIONS, Corruption

if TYPE_CHECKING:
    import torch

__all__ = [
    "BENCHMARK",
    "COMPAT_MODES",
    "RESOLUTIONS",
    "VALIDATION",
    "Corruption",
    "available_corruptions",
    "corrupt",
    "get_corruption",
]

#: ``compat`` values: None (float output) or "hendrycks" (the reference's uint8 quirks).
COMPAT_MODES: tuple[str, ...] = ("hendrycks",)
_CPU_BLOCK = 1 << 20  # elements per block on CPU: a few MB per intermediate, stays cache-friendly
_CUDA_BLOCK = 1 << 26
_LEVEL_TOLERANCE = 1e-4  # in 1/255 units: float rounding of an exact level must not truncate it down


def _registry() -> dict[str, Corruption]:
    from pytest_psa.measure.robustness.corruptions.registry import registered

    return registered()


def available_corruptions(include_validation: bool = False) -> tuple[str, ...]:
    """The 15 benchmark corruptions in CIFAR-10-C order, plus the 4 validation ones if asked."""
    names = BENCHMARK + (VALIDATION if include_validation else ())
    registry = _registry()
    return tuple(name for name in names if name in registry)


def get_corruption(name: str) -> Corruption:
    """The registry record of ``name`` (kernel, severity tables, deviation note)."""
    registry = _registry()
    if not isinstance(name, str) or name not in registry:
        close = difflib.get_close_matches(str(name), list(registry), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise PsaUsageError(
            f"unknown corruption {name!r}",
            observed=name,
            fix=f"{hint}use one of {', '.join(registry)} (names as in CIFAR-10-C)",
        )
    return registry[name]


def corrupt(
    images: torch.Tensor,
    corruption: str,
    severity: int,
    *,
    seed: int = 0,
    indices: torch.Tensor | Sequence[int] | None = None,
    resolution: int | None = None,
    compat: str | None = None,
) -> torch.Tensor:
    """Corrupt a batch of float images in [0, 1] (``[N, 3, H, W]`` or ``[3, H, W]``).

    Returns a new tensor of the same shape, dtype and device. ``severity`` is 1..5 (0 returns an
    unchanged copy). The severity table is the one for the image size (32, 64 or 224 px) unless
    ``resolution`` names one explicitly (then any image size is accepted). ``indices`` are the
    images' global sample ids (default ``arange(N)``): the random draws of image ``i`` depend only on
    (seed, indices[i], corruption, severity). ``compat="hendrycks"`` reproduces the reference's
    quirks: outputs truncated to uint8 levels as ``np.uint8`` does, and PIL's 8-bit passes in
    pixelate.
    """
    import torch

    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

    record = get_corruption(corruption)
    level = _check_severity(severity)
    batch, single = _check_images(images)
    table = _pick_resolution(batch, resolution, record)
    if compat is not None and compat not in COMPAT_MODES:
        raise PsaUsageError(
            f"unknown compat mode {compat!r}", observed=compat, fix=f"use compat=None or one of {COMPAT_MODES}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise PsaUsageError("seed must be an int", observed=repr(seed), fix="pass seed=0 (or any int)")
    ids = _check_indices(indices, batch.shape[0], batch.device)
    if level == 0 or batch.shape[0] == 0:
        unchanged = batch.clone()
        return unchanged[0] if single else unchanged

    params = record.params(level, table)
    kernel = record.compat_kernel if (compat and record.compat_kernel is not None) else record.kernel
    threads = torch.get_num_threads() if batch.device.type == "cpu" else 1
    units = _work_units(batch, getattr(kernel, "whole_batch", False), threads)

    def run(start: int, stop: int) -> torch.Tensor:
        rng = CounterRNG(seed, ids[start:stop], record.name, level, device=batch.device)
        with torch.no_grad():  # grad mode is per thread: pool workers start with it on
            result = kernel(batch[start:stop], params, rng)
        return _truncate_to_uint8_levels(result) if compat else result

    if len(units) == 1:
        out = run(0, batch.shape[0]).to(batch.dtype).contiguous()  # one piece: no copy into a new tensor
    else:
        out = torch.empty_like(batch, memory_format=torch.contiguous_format)

        def fill(unit: tuple[int, int]) -> None:
            out[unit[0] : unit[1]].copy_(run(*unit))  # while the piece is still in cache

        if threads > 1:
            _run_on_threads(fill, units, threads)
        else:
            for unit in units:
                fill(unit)
    if out.data_ptr() == batch.data_ptr():
        out = out.clone()
    return out[0] if single else out


#: Below this many elements a batch is not split across threads: starting the pool costs more.
_MIN_THREADED_ELEMENTS = 64 * 3 * 32 * 32


def _work_units(batch: torch.Tensor, whole_batch: bool, threads: int) -> list[tuple[int, int]]:
    """(start, stop) pieces of the batch for the kernel: cache-sized blocks (or the whole batch for
    kernels that chunk themselves), and at least one piece per thread on CPU when the batch is big
    enough. Every kernel is per sample with per-sample random keys, so the split changes no bit."""
    n = int(batch.shape[0])
    per_image = max(1, batch[0].numel())
    block = n if whole_batch else max(1, (_CUDA_BLOCK if batch.device.type == "cuda" else _CPU_BLOCK) // per_image)
    if threads > 1 and n > 1 and batch.numel() >= _MIN_THREADED_ELEMENTS:
        block = min(block, -(-n // threads))
    return [(start, min(n, start + block)) for start in range(0, n, block)]


def _run_on_threads(fill: Callable[[tuple[int, int]], None], units: list[tuple[int, int]], threads: int) -> None:
    """``fill`` every unit on a pool of ``threads`` threads, each running torch on one intra-op thread.

    Per-image parallelism beats intra-op threads on corruptions: their ops are small (32 px images,
    per-image FFTs and libjpeg calls), and torch ops, PIL's codec and the FFTs release the GIL.
    """
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from pytest_psa._threads import single_thread

    # warnings.catch_warnings is process-wide, so the JPEG kernel's own filter for torchvision's codec
    # deprecation races between workers: set it once here, on the calling thread.
    with warnings.catch_warnings(), single_thread():
        warnings.filterwarnings("ignore", message=".*TorchVision are deprecated", category=DeprecationWarning)
        with ThreadPoolExecutor(max_workers=min(threads, len(units))) as pool:
            for done in pool.map(fill, units):  # re-raises a worker's exception here
                del done


def _truncate_to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """``np.uint8(clip(x, 0, 1) * 255) / 255``: truncation, not rounding (the reference's cast)."""
    import torch

    levels = torch.floor(x.to(torch.float64).clamp(0.0, 1.0) * 255.0 + _LEVEL_TOLERANCE)
    return (levels / 255.0).to(x.dtype)


def _check_severity(severity: object) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or not 0 <= severity <= 5:
        raise PsaUsageError(
            "severity must be an int from 1 to 5 (0 returns the images unchanged)",
            observed=repr(severity),
            fix="pass severity=1, 2, 3, 4 or 5",
        )
    return int(severity)


def _check_images(images: object) -> tuple[torch.Tensor, bool]:
    import torch

    if not isinstance(images, torch.Tensor):
        raise PsaUsageError(
            "images must be a torch.Tensor of floats in [0, 1]",
            observed=type(images).__name__,
            fix="convert first, e.g. torch.from_numpy(array).permute(0, 3, 1, 2).float() / 255",
        )
    if images.dtype not in (torch.float32, torch.float64):
        fix = (
            "divide by 255: images.float() / 255"
            if images.dtype == torch.uint8
            else "convert with images.float() (float32 or float64 are accepted)"
        )
        raise PsaUsageError("images must be float32 or float64 in [0, 1]", observed=str(images.dtype), fix=fix)
    if images.dim() not in (3, 4):
        raise PsaUsageError(
            "images must be [N, C, H, W] or [C, H, W]", observed=tuple(images.shape), fix="reshape to NCHW"
        )
    single = images.dim() == 3
    batch = images.unsqueeze(0) if single else images
    if batch.shape[1] != 3:
        fix = (
            "the corruptions are defined on RGB; for greyscale use images.expand(-1, 3, -1, -1) and "
            "average the channels of the result if you need one channel back"
            if batch.shape[1] == 1
            else "pass RGB images in channels-first layout (NCHW); NHWC input needs .permute(0, 3, 1, 2)"
        )
        raise PsaUsageError("images must have 3 (RGB) channels", observed=tuple(images.shape), fix=fix)
    if batch.shape[2] < 2 or batch.shape[3] < 2:
        raise PsaUsageError(
            "images must be at least 2 x 2 pixels", observed=tuple(images.shape), fix="pass real images"
        )
    if batch.numel():
        # one pass: aminmax propagates NaN, and +-inf fails the range check
        lo_t, hi_t = torch.aminmax(batch)
        lo, hi = float(lo_t), float(hi_t)
        if math.isnan(lo) or math.isnan(hi) or math.isinf(lo) or math.isinf(hi):
            raise PsaUsageError("images contain NaN or inf", observed="non-finite values", fix="clean the input first")
        if lo < 0.0 or hi > 1.0:
            raise PsaUsageError(
                "images must lie in [0, 1]",
                observed=f"min {lo:.4g}, max {hi:.4g}",
                fix="undo any normalisation (x * std + mean) and/or divide uint8 images by 255",
            )
    return batch, single


def _pick_resolution(batch: torch.Tensor, resolution: int | None, record: Corruption) -> int:
    sizes = tuple(sorted(record.tables))
    if resolution is not None:
        if isinstance(resolution, bool) or resolution not in sizes:
            raise PsaUsageError(
                f"no {record.name} severity table for resolution {resolution!r}",
                observed=resolution,
                fix=f"pass resolution= one of {sizes} (32: CIFAR, 64: Tiny ImageNet, 224: ImageNet)",
            )
        return int(resolution)
    h, w = int(batch.shape[2]), int(batch.shape[3])
    if h == w and h in sizes:
        return h
    raise PsaUsageError(
        f"no severity table for {h} x {w} images",
        observed=f"image size {h} x {w}; tables exist for {', '.join(f'{s} x {s}' for s in sizes)}",
        fix=f"pass resolution= one of {sizes} to choose the table explicitly (32: CIFAR, 64: Tiny "
        "ImageNet, 224: ImageNet), or resize the images to one of those sizes",
    )


def _check_indices(indices: object, n: int, device: torch.device) -> torch.Tensor:
    import torch

    if indices is None:
        return torch.arange(n, dtype=torch.int64, device=device)
    try:
        ids = torch.as_tensor(indices)
    except (TypeError, ValueError) as exc:
        raise PsaUsageError(
            "indices must be a sequence of ints", observed=repr(indices)[:80], fix="pass a list or int tensor"
        ) from exc
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dtype.is_complex:
        raise PsaUsageError(
            "indices must be integers", observed=str(ids.dtype), fix="pass torch.arange(...) or a list of ints"
        )
    ids = ids.reshape(-1)
    if ids.numel() != n:
        raise PsaUsageError(
            "indices must give one global sample id per image",
            observed=f"{ids.numel()} indices for {n} images",
            fix="pass indices of the same length as the batch (default: arange(N))",
        )
    return ids.to(device=device, dtype=torch.int64)
