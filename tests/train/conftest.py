"""Shared fixtures for the training tests: tiny synthetic data and a cache under tmp_path."""

from __future__ import annotations

import pytest
import torch

from pytest_psa.data.synthetic import synthetic
from pytest_psa.train import ModelCache



@pytest.fixture(scope="session")
def tiny_train():
    return synthetic("train", n=1000, variant="clean")  # the thresholds below were measured on the clean set


@pytest.fixture(scope="session")
def tiny_test():
    return synthetic("test", n=500, variant="clean")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    # never touch the user's cache, even through the default location
    monkeypatch.setenv("PSA_CACHE_DIR", str(tmp_path / "default-cache"))
    return ModelCache(tmp_path / "cache")


@pytest.fixture(autouse=True)
def one_thread():
    """Train with one intra-op thread: on a shared or xdist-loaded 2-core runner two OpenMP threads
    spin-wait for a busy core and a step gets 5-25x slower (measured: an 8-epoch SAM run took
    2 s quiet, 21-29 s contended with 2 threads, 4-5 s with 1 thread either way)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def quick():
    """Cheap training settings for cache/plumbing tests (3 steps; nothing needs to be learned)."""
    return dict(n_train=300, epochs=1, batch_size=100, train_eval_n=0, progress=False)
