"""Flatness tests run tiny models, where intra-op threads cost more than they give (and on a busy
2-core runner, spinning OpenMP threads slow a double backward by 10x or more): one thread while a
test of this folder runs, restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
