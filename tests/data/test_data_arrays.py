"""`from_arrays` (HWC/CHW, uint8/float, numpy/torch) and `.npz` files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

import pytest_psa
from pytest_psa import DataSourceError, ImageData
from pytest_psa.data.image_data import from_arrays


@pytest.fixture(scope="module")
def chw_uint8() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (12, 3, 8, 10), dtype=np.uint8)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.arange(12) % 4


@pytest.mark.parametrize("layout", ["chw", "hwc"])
@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64", "int64"])
@pytest.mark.parametrize("container", ["numpy", "torch"])
def test_from_arrays_layouts_and_dtypes(chw_uint8, labels, layout, dtype, container):
    x = chw_uint8 if layout == "chw" else chw_uint8.transpose(0, 2, 3, 1)
    x = x.astype(dtype) / 255.0 if dtype.startswith("float") else x.astype(dtype)
    x = x.astype(dtype)
    if container == "torch":
        x = torch.from_numpy(np.ascontiguousarray(x))
    d = from_arrays(x, labels)
    assert isinstance(d, ImageData)
    assert d.images.dtype == torch.uint8 and d.images.shape == (12, 3, 8, 10)
    assert torch.equal(d.images, torch.from_numpy(chw_uint8))  # float -> uint8 round trip is exact
    assert d.labels.tolist() == labels.tolist() and d.labels.dtype == torch.int64
    assert d.classes == ("0", "1", "2", "3")


def test_from_arrays_grayscale_and_class_names(labels):
    x = np.random.default_rng(1).integers(0, 256, (12, 8, 8), dtype=np.uint8)
    d = from_arrays(x, labels.reshape(-1, 1), classes=["a", "b", "c", "d"], name="gray")
    assert d.images.shape == (12, 1, 8, 8) and d.classes == ("a", "b", "c", "d") and d.name == "gray"


@pytest.mark.parametrize(("images", "labels", "fragment"), [
    (np.zeros((4, 8), np.uint8), np.zeros(4), "4-D"),
    (np.full((2, 3, 4, 4), 1.5, np.float32), np.zeros(2), "[0, 1]"),
    (np.full((2, 3, 4, 4), -0.1, np.float32), np.zeros(2), "[0, 1]"),
    (np.full((2, 3, 4, 4), np.nan, np.float32), np.zeros(2), "finite"),
    (np.full((2, 3, 4, 4), 300, np.int32), np.zeros(2), "[0, 255]"),
    (np.zeros((2, 4, 4, 4), np.uint8), np.zeros(2), "channels"),  # RGBA
    (np.zeros((3, 3, 4, 4), np.uint8), np.zeros(2), "one label per image"),
    (np.zeros((0, 3, 4, 4), np.uint8), np.zeros(0), "no images"),
], ids=["2d", "float>1", "float<0", "nan", "int>255", "rgba", "label-count", "empty"])
def test_from_arrays_errors(images, labels, fragment):
    with pytest.raises(DataSourceError) as info:
        from_arrays(images, labels)
    assert fragment in str(info.value) and "fix:" in str(info.value)


def test_image_data_rejects_float_images_directly():
    with pytest.raises(DataSourceError, match="from_arrays"):
        ImageData(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64), ("a",), "x", "test", "here")


# -- .npz ------------------------------------------------------------------------------------
@pytest.mark.parametrize("keys", [("x_test", "y_test"), ("images", "labels"), ("x", "y")])
def test_npz_keys(tmp_path, chw_uint8, labels, keys):
    path = tmp_path / "set.npz"
    np.savez(path, **{keys[0]: chw_uint8.transpose(0, 2, 3, 1), keys[1]: labels})
    d = pytest_psa.load_data(path)
    assert torch.equal(d.images, torch.from_numpy(chw_uint8))
    assert d.labels.tolist() == labels.tolist()
    assert d.name == "set" and d.split == "test" and d.source == str(path)


def test_npz_picks_the_requested_split_and_class_names(tmp_path, chw_uint8, labels):
    path = tmp_path / "both.npz"
    np.savez(path, x_train=chw_uint8[:6], y_train=labels[:6], x_test=chw_uint8[6:], y_test=labels[6:],
             classes=np.array(["w", "x", "y", "z"]))
    train = pytest_psa.load_data(path, split="train")
    test = pytest_psa.load_data(path, split="test")
    assert torch.equal(train.images, torch.from_numpy(chw_uint8[:6]))
    assert torch.equal(test.images, torch.from_numpy(chw_uint8[6:]))
    assert train.classes == ("w", "x", "y", "z") and train.split == "train"


def test_npz_float_images(tmp_path, chw_uint8, labels):
    path = tmp_path / "float.npz"
    np.savez(path, images=chw_uint8.astype(np.float32) / 255, labels=labels)
    assert torch.equal(pytest_psa.load_data(path).images, torch.from_numpy(chw_uint8))


def test_npz_with_n_takes_a_seeded_subset(tmp_path, chw_uint8, labels):
    path = tmp_path / "set.npz"
    np.savez(path, images=chw_uint8, labels=labels)
    d = pytest_psa.load_data(path, n=4, seed=1)
    assert len(d) == 4 and sorted(d.labels.tolist()) == [0, 1, 2, 3]  # class-balanced
    assert torch.equal(d.images, torch.from_numpy(chw_uint8)[d.indices])


def test_npz_missing_keys_names_the_keys(tmp_path, chw_uint8, labels):
    path = tmp_path / "wrong.npz"
    np.savez(path, pixels=chw_uint8, targets=labels)
    with pytest.raises(DataSourceError) as info:
        pytest_psa.load_data(path)
    message = str(info.value)
    for key in ("pixels", "targets", "x_test", "y_test", "images", "labels"):
        assert key in message


def test_npz_label_count_mismatch(tmp_path, chw_uint8, labels):
    path = tmp_path / "short.npz"
    np.savez(path, images=chw_uint8, labels=labels[:5])
    with pytest.raises(DataSourceError, match="12 images but 5 labels"):
        pytest_psa.load_data(path)


def test_npz_with_pickled_objects_is_refused(tmp_path, labels):
    path = tmp_path / "objects.npz"
    np.savez(path, images=np.array([object()] * 12, dtype=object), labels=labels)
    with pytest.raises(DataSourceError) as info:
        pytest_psa.load_data(path)
    assert "fix:" in str(info.value)


def test_npz_that_is_not_an_archive(tmp_path):
    path = tmp_path / "text.npz"
    path.write_bytes(b"x,y\n1,2\n")
    with pytest.raises(DataSourceError, match="cannot read"):
        pytest_psa.load_data(path)


def test_truncated_npz_is_a_data_source_error(tmp_path, chw_uint8, labels):
    good = tmp_path / "good.npz"
    np.savez(good, images=chw_uint8, labels=labels)
    path = tmp_path / "truncated.npz"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # an interrupted copy
    with pytest.raises(DataSourceError, match="cannot read"):
        pytest_psa.load_data(path)
