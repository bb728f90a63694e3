"""Every test here at one torch thread, a CPU unit's count (`RayExecutor(cpus_per_unit=1)`): local and
remote runs then resolve the same plans (a CPU plan's key names its thread count), so their weights,
keys and values can be compared bit for bit, and copied models are hits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
