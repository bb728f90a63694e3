"""Flatness tests run tiny models, where intra-op threads cost more than they give (and on a busy
2-core runner, spinning OpenMP threads slow a double backward by 10x or more): one thread while a
test of this folder runs, restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_psa._threads import single_thread


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with single_thread():
        yield
