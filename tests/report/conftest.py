"""Shared by the report and CLI tests: one model cache for the session (the tiny flatness models are
trained once and reused by the pytester run and the `psa audit` run), one torch thread while a test
trains, and the heavy modules loaded before any in-process pytester run snapshots sys.modules."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib  # noqa: F401
import matplotlib.figure  # noqa: F401
import scipy.stats  # noqa: F401
import torch  # noqa: F401
import torchvision.transforms.v2  # noqa: F401
from matplotlib.backends import backend_agg  # noqa: F401

import pytest
import pytest_psa.augment.adapters  # noqa: F401
import pytest_psa.audits.density  # noqa: F401
import pytest_psa.audits.flatness  # noqa: F401
from pytest_psa._threads import single_thread

# the smallest flatness comparison that still has an interval (2 seeds): 4 models of 8 steps each
TINY_FLATNESS = {"seeds": 2, "metrics": ["lpf"], "epochs": 1, "n_train": 500, "batch_size": 64, "n_measure": 100,
                 "sanity": "warn"}  # at chance after one epoch: the reports' plumbing, no verdict


@pytest.fixture(scope="session")
def report_cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("report-models")


@pytest.fixture
def tiny_flatness() -> dict:
    return dict(TINY_FLATNESS)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with single_thread():
        yield
