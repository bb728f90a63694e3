"""`load_data` specs: torch Datasets, registered sources, CIFAR in torchvision's format, and clear errors."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pytest_psa
from pytest_psa import DataSourceError, ImageData
from pytest_psa.data import sources
from pytest_psa.audits.density import density


class PairDataset(torch.utils.data.Dataset):
    """(image, label) pairs in the form a user's Dataset returns them; counts how often it is read."""

    def __init__(self, n: int = 40, form: str = "tensor") -> None:
        rng = np.random.default_rng(0)
        self.pixels = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        self.targets = [i % 5 for i in range(n)]
        self.form = form
        self.classes = ["a", "b", "c", "d", "e"]
        self.reads = 0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        self.reads += 1
        hwc = self.pixels[i]
        if self.form == "pil":
            img = Image.fromarray(hwc)
        elif self.form == "numpy":
            img = hwc
        elif self.form == "float-tensor":
            img = torch.from_numpy(hwc).permute(2, 0, 1).float() / 255
        else:
            img = torch.from_numpy(hwc).permute(2, 0, 1)
        return img, torch.tensor(self.targets[i])


@pytest.mark.parametrize("form", ["tensor", "float-tensor", "numpy", "pil"])
def test_dataset_of_pairs(form):
    ds = PairDataset(form=form)
    d = pytest_psa.load_data(ds)
    assert isinstance(d, ImageData) and len(d) == 40 and d.classes == tuple(ds.classes)
    assert torch.equal(d.images, torch.from_numpy(ds.pixels).permute(0, 3, 1, 2))
    assert d.labels.tolist() == ds.targets


def test_dataset_with_n_reads_only_the_items_it_needs():
    ds = PairDataset(n=200)
    d = pytest_psa.load_data(ds, n=12, seed=3)
    assert len(d) == 12 and ds.reads == 12
    assert len(set(d.indices.tolist())) == 12
    for img, i, label in zip(d.images, d.indices.tolist(), d.labels.tolist()):
        assert torch.equal(img, torch.from_numpy(ds.pixels[i]).permute(2, 0, 1))
        assert label == ds.targets[i]
    again = pytest_psa.load_data(PairDataset(n=200), n=12, seed=3)
    assert torch.equal(again.indices, d.indices)


def test_density_on_a_dataset():
    r = density(lambda x: x.flip(-1), data=PairDataset(n=30), n_images=10, draws=2)
    assert r.n_images == 10 and r.draws == 2


@pytest.mark.parametrize(("bad", "fragment"), [
    (lambda i: "not a pair", "not an (image, label) pair"),
    (lambda i: (object(), 0), "cannot read an image"),
], ids=["not-a-pair", "not-an-image"])
def test_dataset_item_errors(bad, fragment):
    class Bad(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return bad(i)

    with pytest.raises(DataSourceError, match=re.escape(fragment)):
        pytest_psa.load_data(Bad())


def test_dataset_of_mixed_sizes():
    class Mixed(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.zeros(3, 8, 8 + i, dtype=torch.uint8), 0

    with pytest.raises(DataSourceError, match="differ in size"):
        pytest_psa.load_data(Mixed())


def test_empty_dataset():
    with pytest.raises(DataSourceError, match="empty"):
        pytest_psa.load_data(PairDataset(n=0))


def test_image_data_is_its_own_spec():
    d = pytest_psa.synthetic("test", n=10)
    assert pytest_psa.load_data(d) is d


# -- errors for unknown specs and missing roots ----------------------------------------------
@pytest.mark.parametrize("spec", [42, 3.5, object()], ids=["int", "float", "object"])
def test_unusable_spec(spec):
    with pytest.raises(DataSourceError) as info:
        pytest_psa.load_data(spec)
    assert "fix:" in str(info.value) and "synthetic" in str(info.value)


def test_dict_spec_is_a_data_source_error():
    with pytest.raises(DataSourceError):
        pytest_psa.load_data({"images": np.zeros((2, 3, 4, 4), np.uint8), "labels": np.zeros(2)})


def test_unknown_name_or_path(tmp_path, monkeypatch):
    monkeypatch.delenv("PSA_DATA_ROOT", raising=False)
    with pytest.raises(DataSourceError) as info:
        pytest_psa.load_data("imagenet-tiny", root=tmp_path)
    message = str(info.value)
    assert "not found" in message and str(tmp_path / "imagenet-tiny") in message
    assert "PSA_DATA_ROOT" in message and "--psa-data-root" in message


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_named_set_without_a_data_root(monkeypatch, name):
    monkeypatch.delenv("PSA_DATA_ROOT", raising=False)
    with pytest.raises(DataSourceError) as info:
        pytest_psa.load_data(name)
    message = str(info.value)
    assert "needs a data root" in message
    assert "PSA_DATA_ROOT" in message and "--psa-data-root" in message
    assert ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python") in message
    assert not sources.available(name)


def test_named_set_with_a_data_root_that_does_not_exist(tmp_path):
    with pytest.raises(DataSourceError, match="does not exist"):
        pytest_psa.load_data("cifar10", root=tmp_path / "nowhere")


def test_named_set_missing_from_the_data_root(tmp_path):
    (tmp_path / "mnist").mkdir()
    with pytest.raises(DataSourceError) as info:
        pytest_psa.load_data("cifar10", root=tmp_path)
    assert "not found under the data root" in str(info.value) and "mnist" in str(info.value)
    assert "fix:" in str(info.value)


def test_data_root_from_the_environment(tmp_path, monkeypatch):
    np.savez(tmp_path / "tiny.npz", images=np.zeros((2, 3, 4, 4), np.uint8), labels=np.array([0, 1]))
    monkeypatch.setenv("PSA_DATA_ROOT", str(tmp_path))
    assert len(pytest_psa.load_data("tiny.npz")) == 2
    assert sources.available("tiny.npz")


def test_nothing_downloads_by_default(tmp_path, monkeypatch):
    """Without allow_download, torchvision's downloader is never reached."""
    from torchvision.datasets import utils as tv_utils

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(tv_utils, "download_url", refuse)
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", refuse)
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataSourceError):
        pytest_psa.load_data("cifar10", root=tmp_path)


# -- registered sources ----------------------------------------------------------------------
@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(sources, "_SOURCES", {})
    return sources


def test_register_data_source(registry):
    calls = []

    def factory(split):
        calls.append(split)
        return pytest_psa.synthetic(split, n=30, seed=7)

    registry.register_data_source("my-shapes", factory)
    d = pytest_psa.load_data("my-shapes", split="train", n=10)
    assert calls == ["train"] and len(d) == 10 and d.split == "train"
    assert torch.equal(d.images, pytest_psa.synthetic("train", n=30, seed=7).images[d.indices])
    r = density(None, data="my-shapes", n_images=5, draws=1)
    assert r.n_images == 5 and r.identity_fraction == 1.0


def test_register_data_source_twice(registry):
    registry.register_data_source("x", lambda split: pytest_psa.synthetic(split, n=5))
    with pytest.raises(DataSourceError, match="already registered"):
        registry.register_data_source("x", lambda split: pytest_psa.synthetic(split, n=6))
    registry.register_data_source("x", lambda split: pytest_psa.synthetic(split, n=6), replace=True)
    assert len(pytest_psa.load_data("x")) == 6


# -- CIFAR in torchvision's own on-disk format -----------------------------------------------
# torchvision checks every batch file against a fixed md5 (CIFAR10.train_list/test_list/meta), so
# no fake can pass its integrity check: without the real files, only the clear errors are testable.
# `test_fake_cifar_layout_with_the_integrity_check_bypassed` checks our conversion of the pickled
# layout by switching torchvision's md5 check off for that one test.
def write_fake_cifar(root: Path, n: int = 10) -> tuple[np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    chw = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = [i % 10 for i in range(n)]
    batch = {"batch_label": "testing batch 1 of 1", "labels": labels, "data": chw.reshape(n, -1),
             "filenames": [f"{i}.png" for i in range(n)]}
    for name in ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]:
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": n, "num_vis": 3072}, f)
    return chw, labels


def test_cifar_folder_that_is_missing_its_files(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(DataSourceError) as info:
        pytest_psa.load_data("cifar10", root=tmp_path)
    message = str(info.value)
    assert "missing or damaged" in message and "cifar-10-batches-py" in message and "fix:" in message


@pytest.mark.parametrize("spec", ["name", "root", "batches-folder"])
def test_cifar_with_damaged_files(tmp_path, spec):
    write_fake_cifar(tmp_path)  # right names, wrong content: fails torchvision's md5 check
    target = {"name": "cifar10", "root": tmp_path, "batches-folder": tmp_path / "cifar-10-batches-py"}[spec]
    with pytest.raises(DataSourceError, match="missing or damaged"):
        pytest_psa.load_data(target, root=tmp_path)


def test_cifar_has_only_train_and_test(tmp_path):
    write_fake_cifar(tmp_path)
    with pytest.raises(DataSourceError, match="'train' and 'test'"):
        pytest_psa.load_data("cifar10", root=tmp_path, split="val")


def test_fake_cifar_layout_with_the_integrity_check_bypassed(tmp_path, monkeypatch):
    from torchvision.datasets import cifar

    if not hasattr(cifar, "check_integrity"):
        pytest.skip("torchvision's CIFAR module no longer has check_integrity to bypass")
    chw, labels = write_fake_cifar(tmp_path)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    d = pytest_psa.load_data("cifar10", root=tmp_path)
    assert d.name == "cifar10" and d.split == "test" and d.classes[0] == "airplane"
    assert torch.equal(d.images, torch.from_numpy(chw))  # the pickled rows are CHW planes
    assert d.labels.tolist() == labels
    assert len(pytest_psa.load_data("cifar10", root=tmp_path, split="train")) == 5 * len(labels)
