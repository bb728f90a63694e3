"""The embedded synthetic set: deterministic, stable subsets, balanced classes whose labels mean something."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pytest_psa
from pytest_psa import PsaUsageError
from pytest_psa.data.synthetic import CLASSES, synthetic


@pytest.fixture(scope="module")
def test_1200():
    return synthetic("test", n=1200)


def test_shape_dtype_and_metadata(test_1200):
    d = test_1200
    assert d.images.shape == (1200, 3, 32, 32) and d.images.dtype == torch.uint8
    assert d.labels.dtype == torch.int64 and d.labels.shape == (1200,)
    assert d.classes == CLASSES and d.num_classes == 10
    assert d.name == "synthetic" and d.split == "test" and d.image_size == (32, 32)
    f = d.float_images(slice(0, 5))
    assert f.dtype == torch.float32 and float(f.min()) >= 0 and float(f.max()) <= 1


def test_deterministic_from_the_seed(test_1200):
    again = synthetic("test", n=1200)
    assert torch.equal(again.images, test_1200.images) and torch.equal(again.labels, test_1200.labels)
    assert again.fingerprint() == test_1200.fingerprint()


def test_seed_and_split_change_the_images(test_1200):
    other_seed = synthetic("test", n=100, seed=1)
    train = synthetic("train", n=100)
    assert not torch.equal(other_seed.images, test_1200.images[:100])
    assert not torch.equal(train.images, test_1200.images[:100])
    assert other_seed.fingerprint() != train.fingerprint()


@pytest.mark.parametrize("n", [1, 7, 499, 500, 501, 1000])
def test_image_i_does_not_depend_on_n(test_1200, n):
    small = synthetic("test", n=n)
    assert torch.equal(small.images, test_1200.images[:n])
    assert torch.equal(small.labels, test_1200.labels[:n])


def test_returned_tensors_are_copies_so_the_cache_stays_pristine():
    a = synthetic("test", n=20)
    a.images.zero_()
    b = synthetic("test", n=20)
    assert int(b.images.max()) > 0


def test_every_class_is_present_and_balanced(test_1200):
    # labels are a permutation of arange(500) % 10 in every block of 500: full blocks are exactly balanced
    assert torch.bincount(test_1200.labels[:1000], minlength=10).tolist() == [100] * 10
    assert int(torch.bincount(test_1200.labels, minlength=10).min()) > 100


def test_labels_mean_the_shape():
    """Stripe classes are told apart by the direction of their edges, whatever colour or position."""
    d = synthetic("test", n=500)
    x = d.float_images().mean(1)  # luminance
    dy = (x[:, 1:, :] - x[:, :-1, :]).abs().flatten(1).mean(1)
    dx = (x[:, :, 1:] - x[:, :, :-1]).abs().flatten(1).mean(1)
    h = d.labels == CLASSES.index("hstripes")
    v = d.labels == CLASSES.index("vstripes")
    assert (dy[h] > dx[h]).float().mean() > 0.9
    assert (dx[v] > dy[v]).float().mean() > 0.9


def test_images_within_a_class_differ(test_1200):
    disks = test_1200.images[test_1200.labels == 0]
    assert len({img.numpy().tobytes() for img in disks}) == len(disks)


@pytest.mark.parametrize(("split", "n", "size"), [("val", 10, 32), ("test", 0, 32), ("test", 10, 4)])
def test_invalid_arguments(split, n, size):
    with pytest.raises(PsaUsageError):
        synthetic(split, n=n, size=size)


def test_other_sizes():
    d = synthetic("test", n=10, size=16)
    assert d.images.shape == (10, 3, 16, 16)


# -- subsets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [10, 55, 300])
def test_subset_is_class_balanced(test_1200, n):
    sub = test_1200.subset(n, seed=3)
    counts = torch.bincount(sub.labels, minlength=10)
    assert len(sub) == n
    assert int(counts.max()) - int(counts.min()) <= 1


def test_subset_is_deterministic_and_remembers_positions(test_1200):
    a = test_1200.subset(100, seed=5)
    b = test_1200.subset(100, seed=5)
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.images, test_1200.images[a.indices])
    assert torch.equal(a.labels, test_1200.labels[a.indices])
    assert not torch.equal(test_1200.subset(100, seed=6).indices, a.indices)


def test_subsets_are_nested_for_one_seed(test_1200):
    """A larger subset keeps the smaller one's images: growing N only adds images."""
    small = set(test_1200.subset(50, seed=2).indices.tolist())
    large = set(test_1200.subset(200, seed=2).indices.tolist())
    assert small <= large


def test_subset_of_a_subset_maps_back_to_the_full_split(test_1200):
    outer = test_1200.subset(300, seed=1)
    inner = outer.subset(40, seed=9)
    assert torch.equal(inner.images, test_1200.images[inner.indices])


def test_subset_larger_than_the_set_is_the_set(test_1200):
    assert test_1200.subset(5000) is test_1200
    with pytest.raises(pytest_psa.DataSourceError):
        test_1200.subset(0)


def test_unbalanced_subset():
    d = synthetic("test", n=100)
    sub = d.subset(30, seed=0, balanced=False)
    assert len(sub) == 30 and len(set(sub.indices.tolist())) == 30
    assert np.all(np.diff(sub.indices.numpy()) > 0)


def test_load_data_defaults_to_the_synthetic_set():
    a = pytest_psa.load_data()
    b = pytest_psa.load_data("synthetic", n=50)
    assert a.name == b.name == "synthetic" and len(a) == 2000 and len(b) == 50
    assert torch.equal(b.images, a.subset(50, 0).images)
