"""Fixtures shared by the whole suite.

`cifar10`: the real CIFAR-10 test split, found through $PSA_DATA_ROOT (torchvision's
``cifar-10-batches-py/``, a ``cifar10*/`` image folder or a ``cifar10*.tar.gz``). Tests that use it
carry ``@pytest.mark.cifar`` and skip, with the reason spelled out, when it is not there.
Nothing here writes outside pytest's temporary folders: the archive is decoded once per
session into a session tmp dir, never into the home directory or the work tree.
"""

from __future__ import annotations

import os

import pytest

DATA_ROOT_ENV = "PSA_DATA_ROOT"


@pytest.fixture(scope="session")
def psa_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """A cache folder for the whole session (decoded pixels, models, measurements)."""
    return tmp_path_factory.mktemp("psa-cache")


@pytest.fixture(scope="session")
def cifar10(psa_cache_dir):
    """The CIFAR-10 test split (10,000 images) as `pytest_psa.ImageData`, or a skip saying why not."""
    from pytest_psa.data.sources import available

    import pytest_psa

    root = os.environ.get(DATA_ROOT_ENV)
    if not root:
        pytest.skip(
            f"real CIFAR-10 not configured: set ${DATA_ROOT_ENV} to a folder holding cifar10*.tar.gz "
            "(e.g. ../shared/datasets/cifar10-jpeg.tar.gz), a cifar10*/ image folder, or torchvision's "
            "cifar-10-batches-py/"
        )
    if not available("cifar10", root=root):
        pytest.skip(
            f"real CIFAR-10 not found under ${DATA_ROOT_ENV}={root}: expected cifar10*.tar.gz, a cifar10*/ "
            "image folder, or torchvision's cifar-10-batches-py/ there"
        )
    return pytest_psa.load_data("cifar10", split="test", root=root, cache_dir=psa_cache_dir)


def grey_levels(split: str, n: int = 200):
    """A tiny set a model learns in a few epochs: class c is grey level 25c + 10 plus noise in
    [0, 8), 16 x 16 px (the sanity-gate tests train on it in about a second per model)."""
    import numpy as np

    from pytest_psa.data.image_data import from_arrays

    rng = np.random.default_rng({"train": 1, "test": 2}[split])
    labels = np.arange(n) % 10
    images = (labels[:, None, None, None] * 25 + 10 + rng.integers(0, 8, (n, 3, 16, 16))).astype(np.uint8)
    return from_arrays(images, labels, name="levels", split=split)


@pytest.fixture(scope="module")
def sanity_levels() -> str:
    """Registers `grey_levels` as the data source "sanity-levels" and returns that name."""
    from pytest_psa.data.sources import register_data_source

    register_data_source("sanity-levels", grey_levels, replace=True)
    return "sanity-levels"
