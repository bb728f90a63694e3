"""Run a corruption kernel over cache-sized chunks of the batch.

The multi-step kernels (glass, snow, frost, fog, spatter, elastic) chain dozens of elementwise passes.
On a whole 10,000-image CIFAR batch every pass streams hundreds of megabytes through memory; on chunks
of ~256 images the intermediates stay in cache. Measured on the 2-core CI machine, side by side in one
process: glass_blur 34 -> 13, spatter 193 -> 53, frost 69 -> 25 "reference passes" (one ``x * a + b``
over the batch) for all five severities. Kernels only do per-sample work and draw every number from the sample's
own counter-RNG key, so chunking changes no output bit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

import torch

if TYPE_CHECKING:
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

__all__ = ["CHUNK_PIXELS", "GROUPED_CHUNK_PIXELS", "chunked", "map_chunks", "rng_slice", "whole_batch"]

#: Pixels (per channel) per chunk: 256 CIFAR images, 64 at 64 px, 5 at 224 px.
CHUNK_PIXELS = 256 * 32 * 32
#: For kernels that motion-blur: 1024 CIFAR images, enough for long runs of equal tap offsets.
GROUPED_CHUNK_PIXELS = 1024 * 32 * 32

Kernel = Callable[[torch.Tensor, tuple[Any, ...], "CounterRNG"], torch.Tensor]


def rng_slice(rng: CounterRNG, start: int, stop: int) -> CounterRNG:
    """The generator of samples ``start:stop`` of ``rng``'s batch (same key, same numbers per sample)."""
    from pytest_psa.measure.robustness.corruptions.rng import CounterRNG

    return CounterRNG(rng.seed, rng.indices[start:stop], rng.corruption, rng.severity, device=rng.device)


@overload
def chunked(kernel: Kernel, *, pixels: int = ...) -> Kernel: ...


@overload
def chunked(kernel: None = None, *, pixels: int = ...) -> Callable[[Kernel], Kernel]: ...


def chunked(kernel: Kernel | None = None, *, pixels: int = CHUNK_PIXELS) -> Kernel | Callable[[Kernel], Kernel]:
    """Wrap a per-sample kernel so a batch runs in chunks of about ``pixels`` pixels per channel.

    Use as ``@chunked`` or ``@chunked(pixels=...)``: kernels that motion-blur want larger chunks
    (:data:`GROUPED_CHUNK_PIXELS`), since their samples are grouped by blur direction within a chunk.
    """

    def wrap(inner: Kernel) -> Kernel:
        @functools.wraps(inner)
        def run(x: torch.Tensor, params: tuple[Any, ...], rng: CounterRNG) -> torch.Tensor:
            n = x.shape[0]
            per_chunk = max(1, pixels // max(1, x.shape[-1] * x.shape[-2]))
            if n <= per_chunk:
                return inner(x, params, rng)
            out = torch.empty_like(x)
            for start in range(0, n, per_chunk):
                stop = min(n, start + per_chunk)
                out[start:stop] = inner(x[start:stop], params, rng_slice(rng, start, stop))
            return out

        return whole_batch(run)

    return wrap(kernel) if kernel is not None else wrap


def whole_batch(kernel: Kernel) -> Kernel:
    """Mark a kernel that sizes its own chunks: a caller should hand it the whole batch at once
    (``corrupt`` checks ``kernel.whole_batch``), since splitting it smaller only costs speed."""
    kernel.whole_batch = True  # type: ignore[attr-defined]
    return kernel


def map_chunks(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor, pixels: int = CHUNK_PIXELS) -> torch.Tensor:
    """``fn(*tensors)`` computed on matching chunks along dim 0 (``fn`` must be per sample)."""
    n = tensors[0].shape[0]
    per_chunk = max(1, pixels // max(1, tensors[0].shape[-1] * tensors[0].shape[-2]))
    if n <= per_chunk:
        return fn(*tensors)
    pieces = [fn(*(t[start : start + per_chunk] for t in tensors)) for start in range(0, n, per_chunk)]
    return torch.cat(pieces)
