"""Flatness tests run tiny models, where intra-op threads cost more than they give (and on a busy
2-core runner, spinning OpenMP threads slow a double backward by 10x or more): one thread while a
module of this folder runs, restored afterwards. Module scope, so that a module's shared models are
trained at the count its tests then ask for: a CPU model's cache key names its thread count, and a
fixture trained at 2 threads was a miss for a test at 1 (CI, test_warm_run_trains_nothing...)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_psa._threads import single_thread


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    with single_thread():
        yield
