"""Image-folder trees (``split/class/file``) and ``.tar``/``.tar.gz`` archives of them."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pytest_psa
from pytest_psa import DataSourceError

# one colour per class, so a label can be checked against the pixels it came with
COLOURS = {"cat": (200, 30, 30), "dog": (30, 30, 200), "emu": (30, 200, 30)}


def write_tree(root: Path, *, splits=("train", "test"), per_class: int = 3, suffix: str = ".png",
               size: tuple[int, int] = (8, 8)) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for cls, colour in COLOURS.items():
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                noise = rng.integers(-10, 11, (*size, 3))
                arr = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(folder / f"{i:03d}{suffix}")
    return root


def tar_bytes(src: Path, arcname: str | None) -> bytes:
    """A deterministic tar of `src` (fixed mtimes and owners), optionally under one top folder."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            info = tar.gettarinfo(str(path), arcname=f"{arcname}/{rel}" if arcname else rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def expected_label_colours(data) -> None:
    """Every image carries the colour of the class its label names."""
    for img, label in zip(data.images, data.labels):
        colour = torch.tensor(COLOURS[data.classes[int(label)]], dtype=torch.float32)
        assert (img.float().mean((1, 2)) - colour).abs().max() < 12


@pytest.fixture
def tree(tmp_path) -> Path:
    return write_tree(tmp_path / "pets")


# -- plain folders ---------------------------------------------------------------------------
def test_image_folder(tree):
    d = pytest_psa.load_data(tree, split="test")
    assert d.classes == ("cat", "dog", "emu")  # sorted sub-folder names
    assert d.images.shape == (9, 3, 8, 8) and d.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert d.name == "pets" and d.split == "test" and d.source == str(tree)
    expected_label_colours(d)
    assert len(pytest_psa.load_data(tree, split="train")) == 9


def test_image_folder_with_n(tree):
    d = pytest_psa.load_data(tree, n=3, seed=0)
    assert sorted(d.labels.tolist()) == [0, 1, 2]
    expected_label_colours(d)


def test_image_folder_ignores_other_files(tree):
    (tree / "test" / "cat" / "notes.txt").write_text("not an image")
    (tree / "test" / "cat" / ".DS_Store").write_bytes(b"\0")
    assert len(pytest_psa.load_data(tree)) == 9


def test_image_folder_relative_to_the_data_root(tree):
    d = pytest_psa.load_data("pets", root=tree.parent)
    assert len(d) == 9


def test_missing_split_lists_what_is_there(tmp_path):
    root = write_tree(tmp_path / "only-train", splits=("train",))
    with pytest.raises(DataSourceError) as info:
        pytest_psa.load_data(root, split="test")
    assert "'test'" in str(info.value) and "train" in str(info.value) and "fix:" in str(info.value)


def test_split_without_class_folders(tmp_path):
    (tmp_path / "flat" / "test").mkdir(parents=True)
    with pytest.raises(DataSourceError, match="no class sub-folders"):
        pytest_psa.load_data(tmp_path / "flat")


def test_split_without_images(tmp_path):
    (tmp_path / "empty" / "test" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "test" / "cat" / "readme.txt").write_text("no images")
    with pytest.raises(DataSourceError, match="no image files"):
        pytest_psa.load_data(tmp_path / "empty")


def test_images_of_different_sizes(tree):
    Image.new("RGB", (9, 8)).save(tree / "test" / "dog" / "odd.png")
    with pytest.raises(DataSourceError, match="differ in size"):
        pytest_psa.load_data(tree)


def test_damaged_image(tree):
    (tree / "test" / "emu" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataSourceError) as info:
        pytest_psa.load_data(tree)
    assert "bad.png" in str(info.value)


def test_grayscale_and_palette_files_become_rgb(tmp_path):
    root = tmp_path / "modes"
    (root / "test" / "a").mkdir(parents=True)
    Image.new("L", (8, 8), 90).save(root / "test" / "a" / "gray.png")
    Image.new("RGB", (8, 8), (1, 2, 3)).convert("P").save(root / "test" / "a" / "pal.png")
    d = pytest_psa.load_data(root)
    assert d.images.shape == (2, 3, 8, 8)
    assert d.images[0].unique().tolist() == [90]


# -- archives --------------------------------------------------------------------------------
@pytest.mark.parametrize(("suffix", "top"), [(".tar.gz", "pets"), (".tar", "pets"), (".tgz", None)],
                         ids=["tar.gz-with-top-folder", "tar", "tgz-flat"])
def test_archive_is_decoded_without_unpacking(tmp_path, tree, suffix, top):
    raw = tar_bytes(tree, top)
    archive = tmp_path / f"pets{suffix}"
    archive.write_bytes(gzip.compress(raw, mtime=0) if suffix != ".tar" else raw)
    cache = tmp_path / "cache"
    d = pytest_psa.load_data(archive, cache_dir=cache)
    assert d.classes == ("cat", "dog", "emu") and len(d) == 9 and d.name == "pets"
    assert d.source == str(archive)
    expected_label_colours(d)
    from_folder = pytest_psa.load_data(tree)
    assert torch.equal(d.images, from_folder.images) and torch.equal(d.labels, from_folder.labels)
    assert d.fingerprint() == from_folder.fingerprint()  # the same cache keys as the unpacked tree
    # nothing unpacked: the cache holds the decoded split (and its lock), no image file
    written = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*"))
    assert [w for w in written if not w.endswith(".lock")] == ["archives", _decoded_name(cache, "test")]


def _decoded_name(cache: Path, split: str) -> str:
    (npz,) = (cache / "archives").glob(f"*-{split}.npz")
    return npz.relative_to(cache).as_posix()


def test_archive_is_decoded_only_once_per_split(tmp_path, tree, monkeypatch):
    archive = tmp_path / "pets.tar.gz"
    archive.write_bytes(gzip.compress(tar_bytes(tree, "pets"), mtime=0))
    cache = tmp_path / "cache"
    first = pytest_psa.load_data(archive, cache_dir=cache)
    decoded = cache / _decoded_name(cache, "test")
    stamp = decoded.stat().st_mtime_ns

    def no_reading(*args, **kwargs):
        raise AssertionError("the archive was opened again")

    with monkeypatch.context() as m:
        m.setattr(tarfile, "open", no_reading)
        second = pytest_psa.load_data(archive, cache_dir=cache)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.classes == first.classes and decoded.stat().st_mtime_ns == stamp
    # the other split is read from the archive once, then cached beside the first
    train = pytest_psa.load_data(archive, split="train", cache_dir=cache)
    assert len(train) == 9 and torch.equal(train.images, pytest_psa.load_data(tree, split="train").images)
    assert (cache / _decoded_name(cache, "train")).exists()


def test_a_damaged_decoded_split_is_decoded_again(tmp_path, tree):
    archive = tmp_path / "pets.tar.gz"
    archive.write_bytes(gzip.compress(tar_bytes(tree, "pets"), mtime=0))
    cache = tmp_path / "cache"
    first = pytest_psa.load_data(archive, cache_dir=cache)
    decoded = cache / _decoded_name(cache, "test")
    decoded.write_bytes(decoded.read_bytes()[:100])  # a torn write from some other tool
    again = pytest_psa.load_data(archive, cache_dir=cache)
    assert torch.equal(first.images, again.images) and again.classes == first.classes


def test_archive_layout_errors_name_the_split_and_the_fix(tmp_path, tree):
    only_train = write_tree(tmp_path / "only-train", splits=("train",))
    archive = tmp_path / "only-train.tar.gz"
    archive.write_bytes(gzip.compress(tar_bytes(only_train, "only-train"), mtime=0))
    with pytest.raises(DataSourceError) as info:
        pytest_psa.load_data(archive, split="test", cache_dir=tmp_path / "cache")
    assert "'test'" in str(info.value) and "train" in str(info.value) and "fix:" in str(info.value)
    (tree / "test" / "emu" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(gzip.compress(tar_bytes(tree, "pets"), mtime=0))
    with pytest.raises(DataSourceError, match="bad.png"):
        pytest_psa.load_data(damaged, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "archives").glob("damaged-*.npz"))


def test_changed_archive_is_decoded_again(tmp_path, tree):
    archive = tmp_path / "pets.tar.gz"
    cache = tmp_path / "cache"
    archive.write_bytes(gzip.compress(tar_bytes(tree, "pets"), mtime=0))
    pytest_psa.load_data(archive, cache_dir=cache)
    Image.new("RGB", (8, 8), COLOURS["dog"]).save(tree / "test" / "dog" / "new.png")
    archive.write_bytes(gzip.compress(tar_bytes(tree, "pets"), mtime=0))
    assert len(pytest_psa.load_data(archive, cache_dir=cache)) == 10


def test_named_cifar10_archive_is_found_under_the_root(tmp_path, tree):
    """"cifar10" finds a cifar10*.tar.gz under the root, and never a cifar100* one."""
    root = tmp_path / "datasets"
    root.mkdir()
    (root / "cifar100-other.tar.gz").write_bytes(b"not this one")
    (root / "cifar10-tiny.tar.gz").write_bytes(gzip.compress(tar_bytes(tree, "tiny"), mtime=0))
    d = pytest_psa.load_data("cifar10", root=root, cache_dir=tmp_path / "cache")
    assert d.name == "cifar10" and len(d) == 9
    assert pytest_psa.data.sources.available("cifar10", root=root)
    assert not pytest_psa.data.sources.available("cifar10", root=tmp_path / "cache")


def _no_leftover_folders(cache: Path) -> list[str]:
    """What a failed read left in the cache: nothing but lock files may remain."""
    archives = cache / "archives"
    return [p.name for p in archives.iterdir() if not p.name.endswith(".lock")] if archives.exists() else []


def test_truncated_archive_is_an_error_and_leaves_nothing_half_written(tmp_path, tree):
    good = gzip.compress(tar_bytes(tree, "pets"), mtime=0)
    archive = tmp_path / "pets.tar.gz"
    archive.write_bytes(good[: len(good) // 2])  # an interrupted download
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError) as info:
        pytest_psa.load_data(archive, cache_dir=cache)
    assert "cannot read archive" in str(info.value) and "checksum" in str(info.value)
    assert _no_leftover_folders(cache) == []
    # once the file is whole again, it loads
    archive.write_bytes(good)
    assert len(pytest_psa.load_data(archive, cache_dir=cache)) == 9


def test_not_an_archive_at_all(tmp_path):
    archive = tmp_path / "fake.tar.gz"
    archive.write_bytes(b"<html>404 Not Found</html>")
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError, match="cannot read archive"):
        pytest_psa.load_data(archive, cache_dir=cache)
    assert _no_leftover_folders(cache) == []


def test_archive_member_escaping_the_folder_is_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"evil"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(buf.getvalue())
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(DataSourceError):
        pytest_psa.load_data(archive, cache_dir=cache)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert _no_leftover_folders(cache) == []


def _invalid_deflate_midstream(raw: bytes) -> bytes:
    """A gzip whose deflate stream is valid up to the middle of a member's data, then holds an invalid
    block type (tarfile wraps a zlib error met while reading a header, not one met in member data)."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        files = [m for m in tar.getmembers() if m.isfile()]
    member = files[len(files) // 2]
    cut = member.offset_data + member.size // 2
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = co.compress(raw[:cut]) + co.flush(zlib.Z_FULL_FLUSH) + b"\x07" + bytes(64)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + body


def test_corrupt_compressed_data_is_an_error_and_leaves_nothing_half_written(tmp_path):
    # members larger than gzip's read-ahead buffer, so the corruption is met while copying member data
    root = write_tree(tmp_path / "big", splits=("test",), per_class=2, suffix=".bmp", size=(96, 96))
    archive = tmp_path / "big.tar.gz"
    archive.write_bytes(_invalid_deflate_midstream(tar_bytes(root, "big")))
    cache = tmp_path / "cache"
    try:
        with pytest.raises(DataSourceError, match="cannot read archive"):
            pytest_psa.load_data(archive, cache_dir=cache)
    finally:
        leftovers = _no_leftover_folders(cache)
    assert leftovers == []


def test_flipped_byte_in_an_archive_is_detected(tmp_path):
    root = tmp_path / "bmp"
    write_tree(root, splits=("test",), per_class=2, suffix=".bmp")
    raw = tar_bytes(root, "bmp")
    good = gzip.compress(raw, compresslevel=0, mtime=0)  # stored blocks: the member bytes appear verbatim
    pixels = (root / "test" / "cat" / "000.bmp").read_bytes()[-24:]
    at = good.find(pixels)
    assert at > 0
    bad = bytearray(good)
    bad[at] ^= 0xFF
    with pytest.raises(OSError, match="CRC"):  # gzip itself knows the file is damaged
        gzip.decompress(bytes(bad))
    archive = tmp_path / "bmp.tar.gz"
    archive.write_bytes(bytes(bad))
    with pytest.raises(DataSourceError):
        pytest_psa.load_data(archive, cache_dir=tmp_path / "cache")
