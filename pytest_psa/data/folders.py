"""Image-folder trees (``split/class/file``) and ``.tar``/``.tar.gz`` archives of them.

An archive is unpacked once into the cache (under a file lock, into a temporary folder that is
renamed into place, so an interrupted unpack never looks complete), and its decoded pixels are
cached as an uncompressed ``.npz`` next to it: the second run loads in a fraction of a second.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from pytest_psa.data.image_data import ImageData
from pytest_psa.errors import DataSourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def load_image_folder(root: Path, split: str, *, name: str | None = None, cache: Path | None = None) -> ImageData:
    """Read ``root/split/<class>/<image>``; classes are the sorted sub-folder names."""
    split_dir = root / split
    if not split_dir.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise DataSourceError(
            f"image folder {root} has no {split!r} split",
            observed=f"sub-folders: {present or 'none'}",
            fix=f"lay it out as {root}/{split}/<class>/<image files>, or ask for one of the splits present",
        )
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataSourceError(f"{split_dir} has no class sub-folders",
                              fix=f"put images under {split_dir}/<class name>/")
    files = [(f, c) for c, cls in enumerate(classes) for f in sorted((split_dir / cls).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataSourceError(f"{split_dir} holds no image files",
                              fix=f"supported suffixes: {', '.join(sorted(IMAGE_SUFFIXES))}")
    decoded = cache / f"{split}.npz" if cache else None
    arrays = _read_npz(decoded) if decoded else None
    if arrays is None or len(arrays[0]) != len(files):
        arrays = _decode(files, split_dir)
        if decoded:
            _write_npz(decoded, *arrays)
    images, labels = arrays
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels), tuple(classes),
                     name or root.name, split, str(root))


def unpack_archive(archive: Path, cache_dir: Path) -> Path:
    """Unpack `archive` once into ``cache_dir/archives/<content hash>/`` and return that folder."""
    key = _file_digest(archive)[:20]
    target = cache_dir / "archives" / f"{_stem(archive)}-{key}"
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / ".complete").exists():  # another worker finished while we waited
            return target
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)  # an earlier, interrupted unpack
        try:
            _verify_gzip(archive)
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")  # refuses absolute paths and links out of tmp
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataSourceError(f"cannot unpack {archive}: {exc}",
                                  fix="check that the file is a complete .tar/.tar.gz (compare its checksum)") from exc
        inner = _single_top_folder(tmp)
        (inner / ".complete").write_text("ok\n")
        os.replace(inner, target)
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _verify_gzip(archive: Path) -> None:
    """Read a .gz to its end so its CRC is checked: tarfile stops at the end-of-archive block,
    before the gzip trailer, so a flipped byte in a member would otherwise load silently."""
    with open(archive, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return
    with gzip.open(archive, "rb") as f:
        while f.read(1 << 22):
            pass


def _single_top_folder(tmp: Path) -> Path:
    """Archives often wrap the tree in one folder (cifar10/train/...): descend into it."""
    entries = [p for p in tmp.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not (tmp / "train").exists() and not (tmp / "test").exists():
        return entries[0]
    return tmp


def _decode(files: list[tuple[Path, int]], split_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    first = None
    images = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataSourceError(f"cannot decode image {f}: {exc}",
                                  fix="remove or replace the damaged file") from exc
        if first is None:
            first = arr.shape
        elif arr.shape != first:
            raise DataSourceError(
                f"images in {split_dir} differ in size", observed=f"{f.name}: {arr.shape[:2]} vs {first[:2]}",
                fix="resize the data set to one size before auditing (distances compare pixels)",
            )
        images.append(arr)
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)), np.array([c for _, c in files], np.int64)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["images"], z["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        path.unlink(missing_ok=True)  # damaged: decode again rather than trust it
        return None


def _write_npz(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}.npz")
    np.savez(tmp, images=images, labels=labels)
    os.replace(tmp, path)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
