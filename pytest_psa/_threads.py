"""One intra-op torch thread for small per-image work."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run with one intra-op thread, restoring the count afterwards. On 32x32 images thread hand-offs
    cost more than they save: measured 2-5x slower with 2 threads, up to 50x on 2 busy cores, and
    2-3x slower with OMP_WAIT_POLICY=PASSIVE (which the plugin sets for training's sake)."""
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)
