"""Image-folder trees (``split/class/file``) and ``.tar``/``.tar.gz`` archives of them.

A split of an archive is decoded straight from it (`load_image_archive`): no file per image is written
to disk, which on a slow file system cost three times the decoding (CIFAR-10: 60,000 files). Its
pixels are cached as an uncompressed ``.npz`` (under a file lock, written to a temporary name and
renamed), so the second run loads in a fraction of a second. `unpack_archive` still unpacks the
multi-domain trees that `pytest_psa.data.domains` reads from disk.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import IO

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
        arrays = _decode([(str(f), _reader(f)) for f, _ in files], [c for _, c in files], split_dir)
        if decoded:
            _write_npz(decoded, *arrays)
    images, labels = arrays
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels), tuple(classes),
                     name or root.name, split, str(root))


def load_image_archive(archive: Path, split: str, cache_dir: Path, *, name: str) -> ImageData:
    """One split of a ``.tar``/``.tar.gz`` of a ``split/class/file`` tree, decoded from the archive.

    The same images, labels and classes as `load_image_folder` on the unpacked tree (one top folder
    that wraps the tree is descended into), without unpacking it. Decoded pixels are cached as
    ``cache_dir/archives/<name>-<content hash>-<split>.npz``; a changed archive has another hash.
    """
    folder = cache_dir / "archives"
    decoded = folder / f"{_stem(archive)}-{_file_digest(archive)[:20]}-{split}.npz"
    hit = _read_decoded(decoded)
    if hit is None:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(decoded) + ".lock"):  # two xdist workers decode once
            hit = _read_decoded(decoded)
            if hit is None:
                hit = _decode_archive(archive, split)
                _write_npz(decoded, hit[0], hit[1], classes=np.array(hit[2], dtype=str))
    images, labels, classes = hit
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels), classes, name, split, str(archive))


def _read_decoded(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None:
    """A split decoded by `load_image_archive`; None when absent or damaged (then deleted)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["images"], z["labels"], tuple(str(c) for c in z["classes"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        path.unlink(missing_ok=True)  # damaged: decode again rather than trust it
        return None


def _decode_archive(archive: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """One forward pass over the archive (a .gz is decompressed once, to its end, so its CRC is
    checked: tarfile alone stops at the end-of-archive block, before the gzip trailer), keeping the
    bytes of the files that can belong to `split`; then the folder loader's order and its decoder."""
    members: list[tarfile.TarInfo] = []
    blobs: dict[str, bytes] = {}
    try:
        with open(archive, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if gz else raw
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for m in tar:
                    members.append(m)
                    parts = _member_parts(archive, m)
                    if m.isfile() and split in parts[:2] and _is_image_name(parts[-1]):
                        f = tar.extractfile(m)
                        if f is not None:
                            blobs[m.name] = f.read()
            while stream.read(1 << 22):
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataSourceError(f"cannot read archive {archive}: {exc}",
                              fix="check that the file is a complete .tar/.tar.gz (compare its checksum)") from exc
    classes, chosen = _split_members(archive, members, split)
    missing = [m.name for m, _ in chosen if m.name not in blobs]
    if missing:
        raise DataSourceError(f"archive {archive}: {missing[0]} is a link, not an image",
                              observed=f"{len(missing)} linked image(s)", fix="pack the image files themselves")
    sources = [(m.name, partial(io.BytesIO, blobs[m.name])) for m, _ in chosen]
    images, labels = _decode(sources, [c for _, c in chosen], f"{archive} ({split!r} split)")
    return images, labels, classes


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES  # Path.suffix's rule, without a Path per member


def _member_parts(archive: Path, m: tarfile.TarInfo) -> tuple[str, ...]:
    parts = tuple(p for p in m.name.split("/") if p not in ("", "."))
    if m.name.startswith("/") or ".." in parts:
        raise DataSourceError(f"archive {archive} has a member outside its folder: {m.name}",
                              fix="pack the tree with relative paths (tar -C parent -czf out.tar.gz folder)")
    return parts


def _split_members(archive: Path, members: list[tarfile.TarInfo], split: str,
                   ) -> tuple[tuple[str, ...], list[tuple[tarfile.TarInfo, int]]]:
    """The classes and (member, label) pairs of `split`, in `load_image_folder`'s order, read from the
    member names: folders are the explicit folder members and every parent of a member."""
    paths: dict[tuple[str, ...], tarfile.TarInfo] = {}
    folders: set[tuple[str, ...]] = set()
    for m in members:
        parts = _member_parts(archive, m)
        if not parts:
            continue
        folders.update(parts[:k] for k in range(1, len(parts)))
        if m.isdir():
            folders.add(parts)
        elif m.isfile() or m.islnk() or m.issym():
            paths[parts] = m

    def children(prefix: tuple[str, ...]) -> list[str]:
        return sorted({f[len(prefix)] for f in folders if len(f) == len(prefix) + 1 and f[:len(prefix)] == prefix})

    top = [c for c in children(()) if not c.startswith(".")]
    files_at_top = [p for p in paths if len(p) == 1 and not p[0].startswith(".")]
    prefix: tuple[str, ...] = ()
    if len(top) == 1 and not files_at_top and top[0] not in ("train", "test"):
        prefix = (top[0],)  # the archive wraps the tree in one folder (cifar10/train/...)
    if prefix + (split,) not in folders:
        raise DataSourceError(f"archive {archive} has no {split!r} split",
                              observed=f"folders at its top: {children(prefix) or 'none'}",
                              fix=f"lay it out as {split}/<class>/<image files>, or ask for one of the splits present")
    classes = children(prefix + (split,))
    if not classes:
        raise DataSourceError(f"archive {archive}: {split}/ has no class sub-folders",
                              fix=f"put images under {split}/<class name>/")
    chosen = [(paths[p], label) for label, cls in enumerate(classes)
              for p in sorted((p for p in paths if p[:-1] == prefix + (split, cls)), key=lambda p: p[-1])
              if _is_image_name(p[-1])]
    return tuple(classes), chosen


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


def _decode(sources: Sequence[tuple[str, Callable[[], IO[bytes]]]], labels: list[int],
            where: object) -> tuple[np.ndarray, np.ndarray]:
    """Decode every (name, opener) to RGB uint8 and stack them NCHW in the given order; `where` names
    the split in error messages. One thread: for small images a thread pool was slower (2 threads:
    5.2 s vs 2.7 s for CIFAR-10's 50,000 JPEGs; the work between decodes holds the GIL)."""
    from PIL import Image, UnidentifiedImageError

    def rgb(source: tuple[str, Callable[[], IO[bytes]]]) -> np.ndarray:
        name, opener = source
        try:
            with opener() as f, Image.open(f) as im:
                return np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataSourceError(f"cannot decode image {name}: {exc}",
                                  fix="remove or replace the damaged file") from exc

    images: np.ndarray | None = None
    first: tuple[int, ...] = ()
    for i, source in enumerate(sources):
        arr = rgb(source)
        if images is None:
            first = arr.shape
            images = np.empty((len(sources), 3, *first[:2]), np.uint8)  # NCHW, filled in place
        elif arr.shape != first:
            raise DataSourceError(
                f"images in {where} differ in size", observed=f"{source[0]}: {arr.shape[:2]} vs {first[:2]}",
                fix="resize the data set to one size before auditing (distances compare pixels)",
            )
        images[i] = arr.transpose(2, 0, 1)
    if images is None:
        raise DataSourceError(f"{where} holds no image files",
                              fix=f"supported suffixes: {', '.join(sorted(IMAGE_SUFFIXES))}")
    return images, np.array(labels, np.int64)


def _reader(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: path.open("rb")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["images"], z["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        path.unlink(missing_ok=True)  # damaged: decode again rather than trust it
        return None


def _write_npz(path: Path, images: np.ndarray, labels: np.ndarray, classes: np.ndarray | None = None) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}.npz")
    if classes is None:
        np.savez(tmp, images=images, labels=labels)
    else:
        np.savez(tmp, images=images, labels=labels, classes=classes)
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
