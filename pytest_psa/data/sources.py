"""`load_data`: turn a data specification into `ImageData`.

A specification is one of: None or "synthetic" (the embedded default); "cifar10"/"cifar100"
(looked up under the data root); a path to a torchvision CIFAR root, an image-folder tree, a
``.tar``/``.tar.gz`` archive of one, or an ``.npz`` file; anything `as_image_data` takes (an
`ImageData`, an ``(images, labels)`` pair of arrays, a map-style torch ``Dataset`` of (image, label)
pairs, a ``DataLoader`` of (images, labels) batches); or a name registered with
`register_data_source`. Nothing is downloaded unless ``allow_download=True``.

`as_image_data` is the one conversion of in-memory data for the audits (density, flatness,
robustness: all go through `load_data`); `as_batches` is its twin for `measure_flatness`, which
takes the same objects but feeds the model its own inputs, with no image contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
import zipfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from pytest_psa._paths import DATA_ROOT_ENV, default_cache_dir, default_data_root
from pytest_psa.data.folders import is_archive, load_image_archive, load_image_folder
from pytest_psa.data.image_data import ImageData, from_arrays
from pytest_psa.data.synthetic import synthetic
from pytest_psa.errors import DataSourceError, PsaUsageError

SourceFactory = Callable[[str], ImageData]  # split -> data
_SOURCES: dict[str, SourceFactory] = {}
_CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def register_data_source(name: str, factory: SourceFactory, *, replace: bool = False) -> None:
    """Make ``load_data(name, split=...)`` call ``factory(split)``."""
    if name in _SOURCES and _SOURCES[name] is not factory and not replace:
        raise DataSourceError(f"a data source named {name!r} is already registered",
                              fix="choose another name, or pass replace=True")
    _SOURCES[name] = factory


def load_data(
    spec: Any = None, *, split: str = "test", root: str | Path | None = None,
    cache_dir: str | Path | None = None, allow_download: bool = False,
    n: int | None = None, seed: int = 0,
) -> ImageData:
    """Load `spec` (see the module docstring) as `ImageData`; with `n`, a seeded subset of n images.

    Asking for more images than the split holds is a `PsaUsageError` naming both counts (an audit
    never measures fewer images than it was asked to without saying so).
    """
    data = _load(spec, split, root, cache_dir, allow_download, n, seed)
    if n is None:
        return data
    data.check_available(n, "n_images")  # the audits' name for it: density passes n_images as n
    return data.subset(n, seed)


def available(name: str, *, root: str | Path | None = None) -> bool:
    """Whether `name` ("cifar10", "cifar100", a path) can be loaded here without a download."""
    try:
        _locate_named(name, _root(root)) if name in _CIFAR_DIRS else _existing_path(name, _root(root))
        return True
    except DataSourceError:
        return False


def _load(spec: Any, split: str, root: Any, cache_dir: Any, allow_download: bool,
          n: int | None, seed: int) -> ImageData:
    if spec is None or spec == "synthetic":
        return synthetic(split)
    if spec == "synthetic-clean":  # the easy variant (ERM reaches ~100 %): plumbing checks, old baselines
        return synthetic(split, variant="clean")
    if _kind(spec) is not None:
        return as_image_data(spec, n=n, seed=seed)
    if not isinstance(spec, (str, Path)):
        raise DataSourceError(
            f"cannot use a {type(spec).__name__} as a data set",
            fix="pass 'synthetic', 'cifar10', 'cifar100', a path (CIFAR root, image folder, .tar.gz, .npz), "
                "an ImageData, an (images, labels) pair of arrays, a torch Dataset of (image, label) pairs "
                "or a DataLoader of (images, labels) batches",
        )
    if isinstance(spec, str) and spec in _SOURCES:
        return _SOURCES[spec](split)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    base = _root(root)
    if isinstance(spec, str) and spec in _CIFAR_DIRS:
        return _load_path(_locate_named(spec, base, allow_download=allow_download), split, cache, spec,
                          allow_download)
    return _load_path(_existing_path(spec, base), split, cache, None, allow_download)


def _root(root: Any) -> Path | None:
    return Path(root).expanduser() if root else default_data_root()


def _existing_path(spec: str | Path, root: Path | None) -> Path:
    path = Path(spec).expanduser()
    candidates = [path] + ([root / path] if root and not path.is_absolute() else [])
    for c in candidates:
        if c.exists():
            return c
    raise DataSourceError(
        f"data set {str(spec)!r} not found",
        observed=f"looked at {', '.join(str(c) for c in candidates)}",
        fix=f"pass an existing path, or set the data root with --psa-data-root / psa_data_root / ${DATA_ROOT_ENV}",
    )


def _locate_named(name: str, root: Path | None, *, allow_download: bool = False) -> Path:
    """Find "cifar10"/"cifar100" under the root: torchvision's folder, an image folder or an archive."""
    if root is None or not root.is_dir():
        if allow_download and root is not None:
            return root
        raise DataSourceError(
            f"data set {name!r} needs a data root, and none is set" if root is None
            else f"data root {root} does not exist",
            fix=f"point --psa-data-root (ini psa_data_root, env ${DATA_ROOT_ENV}) at a folder holding "
                f"{_CIFAR_DIRS[name]}/ (torchvision's format), a {name}*/ image folder or a {name}*.tar.gz; "
                "or allow a download with --psa-allow-download",
        )
    if (root / _CIFAR_DIRS[name]).is_dir() or root.name == _CIFAR_DIRS[name]:
        return root
    matches = sorted(p for p in root.iterdir() if p.name.lower().replace("-", "").replace("_", "").startswith(name)
                     and (p.is_dir() or is_archive(p)))
    if (name == "cifar10"):  # "cifar100..." also starts with "cifar10"
        matches = [p for p in matches if not p.name.lower().replace("-", "").replace("_", "").startswith("cifar100")]
    if matches:
        return matches[0]
    if allow_download:
        return root
    raise DataSourceError(
        f"data set {name!r} not found under the data root {root}",
        observed=f"entries: {sorted(p.name for p in root.iterdir())[:10]}",
        fix=f"put {_CIFAR_DIRS[name]}/ (torchvision's format), a {name}*/ image folder or a {name}*.tar.gz there, "
            "or allow a download with --psa-allow-download",
    )


def _load_path(path: Path, split: str, cache: Path, name: str | None, allow_download: bool) -> ImageData:
    label = name or _name_of(path)
    if path.is_file() and path.suffix == ".npz":
        return load_npz(path, split)
    if is_archive(path):
        return load_image_archive(path, split, cache, name=label)
    if path.is_dir():
        for variant, sub in _CIFAR_DIRS.items():
            if (path / sub).is_dir() or path.name == sub or (name == variant and allow_download):
                return load_cifar(path.parent if path.name == sub else path, split, variant, allow_download)
        return load_image_folder(path, split, name=label)
    raise DataSourceError(
        f"do not know how to read {path}",
        fix="use a CIFAR root, an image folder (split/class/file), a .tar/.tar.gz of one, or an .npz",
    )


def _name_of(path: Path) -> str:
    name = path.name
    for suffix in (".tar.gz", ".tgz", ".tar", ".npz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_cifar(root: Path, split: str, variant: str = "cifar10", allow_download: bool = False) -> ImageData:
    """CIFAR-10/100 in torchvision's own on-disk format (the pickled batches under `root`)."""
    from torchvision import datasets

    cls = datasets.CIFAR10 if variant == "cifar10" else datasets.CIFAR100
    if split not in ("train", "test"):
        raise DataSourceError(f"CIFAR has 'train' and 'test' splits, not {split!r}")
    try:
        ds = cls(str(root), train=split == "train", download=allow_download)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted"
        raise DataSourceError(
            f"{variant} at {root} is missing or damaged: {exc}",
            fix=f"place torchvision's {_CIFAR_DIRS[variant]}/ folder under {root}, or pass --psa-allow-download",
        ) from exc
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return ImageData(images, torch.as_tensor(ds.targets, dtype=torch.int64), tuple(ds.classes),
                     variant, split, str(root))


def load_npz(path: Path, split: str) -> ImageData:
    """An ``.npz`` with ``x_<split>``/``y_<split>`` (or ``images``/``labels``), HWC or CHW, uint8 or float."""
    found = None
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            for xk, yk in ((f"x_{split}", f"y_{split}"), ("images", "labels"), ("x", "y")):
                if xk in keys and yk in keys:
                    classes = tuple(str(c) for c in z["classes"]) if "classes" in keys else None
                    found = z[xk], z[yk], classes
                    break
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataSourceError(f"cannot read {path}: {exc}",
                              fix="write it with numpy.savez(path, x_test=..., y_test=...) (no pickled objects)") from exc
    if found is None:
        raise DataSourceError(f"{path} has no arrays for split {split!r}", observed=f"keys: {sorted(keys)}",
                              fix=f"store x_{split}/y_{split} (or images/labels) arrays in the .npz")
    images, labels, classes = found
    if len(images) != len(labels):
        raise DataSourceError(f"{path}: {len(images)} images but {len(labels)} labels",
                              fix="store one label per image")
    return from_arrays(images, labels, classes=classes, name=_name_of(path), split=split, source=str(path))


# -- in-memory data: ImageData, (images, labels) arrays, Datasets, DataLoaders ----------------------
def _kind(obj: Any) -> str | None:
    """Which in-memory form `obj` is: "image_data", "arrays", "loader", "iterable", "dataset", or None."""
    if isinstance(obj, ImageData):
        return "image_data"
    if (isinstance(obj, (tuple, list)) and len(obj) == 2 and isinstance(obj[0], (torch.Tensor, np.ndarray))
            and isinstance(obj[1], (torch.Tensor, np.ndarray, list, tuple)) and len(obj[0]) == len(obj[1])):
        return "arrays"  # (images, labels); a list of two (image, label) pairs holds tuples, not arrays
    if isinstance(obj, torch.utils.data.DataLoader):
        return "loader"
    if isinstance(obj, torch.utils.data.IterableDataset):
        return "iterable"
    if isinstance(obj, torch.utils.data.Dataset) or (
            hasattr(obj, "__getitem__") and hasattr(obj, "__len__")
            and not isinstance(obj, (str, bytes, Path, Mapping, np.ndarray, torch.Tensor))):
        return "dataset"
    return None


def as_image_data(obj: Any, *, n: int | None = None, seed: int = 0, name: str | None = None) -> ImageData:
    """`obj` as `ImageData` (uint8 NCHW), the form every audit works on.

    `obj`: an `ImageData` (returned as it is); an ``(images, labels)`` pair of tensors or numpy arrays
    (NCHW or NHWC, uint8 or float in [0, 1]); a map-style torch ``Dataset`` of (image, label) pairs
    (image: PIL, HWC numpy or CHW tensor; with `n`, only a seeded random subset of n items is read);
    a ``DataLoader`` (or an ``IterableDataset``) yielding (images, labels) batches, read to its end,
    a shuffled one in index order so that the same loader always gives the same data. Float images
    must be in [0, 1]: put a ``Normalize`` in the model, not in the data the audit reads. With `n`,
    the others give `ImageData.subset(n, seed)` (class-balanced), as `load_data` does.
    """
    kind = _kind(obj)
    if kind == "dataset":
        return from_dataset(obj, n=n, seed=seed, name=name)
    if kind == "image_data":
        return _subset(cast(ImageData, obj), n, seed)
    if kind == "arrays":
        return _subset(from_arrays(obj[0], obj[1], name=name or "arrays", source=type(obj[0]).__name__), n, seed)
    if kind in ("loader", "iterable"):
        return _subset(_from_batches(obj, name), n, seed)
    raise DataSourceError(
        f"cannot read images from a {type(obj).__name__}",
        fix="pass an ImageData, an (images, labels) pair of arrays, a torch Dataset of (image, label) pairs "
            "or a DataLoader of (images, labels) batches",
    )


def _subset(data: ImageData, n: int | None, seed: int) -> ImageData:
    data.check_available(n, "n_images")
    return data.subset(n, seed)


def as_batches(data: Any, *, batch_size: int = 256) -> Any:
    """`data` in a form `measure_flatness` iterates: a map-style ``Dataset`` becomes an in-order
    ``DataLoader`` (default collation, what training on it would feed the model), a shuffled
    ``DataLoader`` its in-order twin; anything else (an (inputs, targets) pair, an `ImageData`,
    a list or other iterable of batches) is returned as it is. No image contract: inputs stay as the
    model takes them."""
    kind = _kind(data)
    if kind == "dataset" and (isinstance(data, torch.utils.data.Dataset) or not isinstance(data, Iterable)):
        return _Collated(torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False))
    if kind == "loader":
        return _Collated(_in_order(data))
    if kind == "iterable":  # yields single (input, target) items
        return _Collated(torch.utils.data.DataLoader(data, batch_size=batch_size))
    return data


class _Collated:
    """Iterate a DataLoader, turning a collation failure into an error that names the fix."""

    def __init__(self, loader: torch.utils.data.DataLoader[Any]) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.loader)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except TypeError as exc:  # default_collate on PIL images, strings, ...
                if "collate" not in str(exc):
                    raise
                raise DataSourceError(
                    f"cannot batch the Dataset's items: {exc}",
                    fix="return tensors or numpy arrays from __getitem__ (e.g. add transforms.ToTensor()), "
                        "or pass a DataLoader with its own collate_fn",
                ) from exc
            yield batch


def _in_order(loader: torch.utils.data.DataLoader[Any]) -> torch.utils.data.DataLoader[Any]:
    """A shuffled loader over a map-style Dataset re-read in index order (same collate_fn and batch size)."""
    if not isinstance(loader.sampler, torch.utils.data.RandomSampler):
        return loader
    return torch.utils.data.DataLoader(loader.dataset, batch_size=loader.batch_size or 1, shuffle=False,
                                       collate_fn=loader.collate_fn, drop_last=loader.drop_last)


def _from_batches(source: Iterable[Any], name: str | None) -> ImageData:
    """Read every (images, labels) batch of a DataLoader / IterableDataset into one `ImageData`."""
    loader: Iterable[Any] = source
    single = False  # a DataLoader(batch_size=None) yields single (image, label) items
    if isinstance(source, torch.utils.data.DataLoader):
        ordered = _in_order(source)
        single = ordered.batch_size is None and ordered.batch_sampler is None
        loader = _Collated(ordered)
    elif isinstance(source, torch.utils.data.IterableDataset):
        loader = _Collated(torch.utils.data.DataLoader(source, batch_size=256))
    dataset = getattr(source, "dataset", source)
    label = name or type(dataset).__name__
    images, labels = [], []
    for i, batch in enumerate(loader):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise DataSourceError(
                f"batch {i} of the {type(source).__name__} is a {type(batch).__name__}, not (images, labels)",
                fix="yield (images, labels) batches (a Dataset returning (image, label) pairs does)",
            )
        x, y = (torch.as_tensor(np.asarray(batch[0]))[None], [batch[1]]) if single else (batch[0], batch[1])
        part = from_arrays(x, y, name=label)
        images.append(part.images)
        labels.append(part.labels)
    if not images:
        raise DataSourceError(f"the {type(source).__name__} yielded no batches", fix="pass a non-empty one")
    shapes = {tuple(x.shape[1:]) for x in images}
    if len(shapes) > 1:
        raise DataSourceError(f"the {type(source).__name__}'s images differ in size", observed=sorted(shapes)[:3],
                              fix="add a fixed-size transform (e.g. Resize + CenterCrop) to the Dataset")
    classes = getattr(dataset, "classes", None)
    return from_arrays(torch.cat(images), torch.cat(labels), classes=classes, name=label,
                       split="dataloader" if isinstance(source, torch.utils.data.DataLoader) else "dataset",
                       source=type(dataset).__qualname__)


def from_dataset(dataset: Any, *, n: int | None = None, seed: int = 0, name: str | None = None) -> ImageData:
    """Materialize (a seeded random subset of n items of) a Dataset of (image, label) pairs."""
    total = len(dataset)
    if total == 0:
        raise DataSourceError("the Dataset is empty", fix="pass a Dataset with at least one item")
    if n is not None and n > total:
        raise PsaUsageError(f"n_images={n} asks for more images than the {type(dataset).__name__} holds ({total})",
                            observed=f"requested {n}, available {total}",
                            fix=f"pass n_images={total} (all of them) or fewer, or a larger data set")
    rng = np.random.Generator(np.random.PCG64(seed))
    picked = np.sort(rng.permutation(total)[:n]) if n is not None and n < total else np.arange(total)
    images, labels = [], []
    for i in picked.tolist():
        try:
            item = dataset[i]
        except Exception as exc:  # the user's Dataset failed: say which item and why
            raise DataSourceError(f"reading item {i} of the Dataset raised {type(exc).__name__}: {exc}",
                                  fix="check the Dataset's __getitem__ (it must return (image, label))") from exc
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataSourceError(
                f"Dataset item {i} is a {type(item).__name__}, not an (image, label) pair",
                fix="return (image, label) from __getitem__ (image: PIL, HWC numpy, or CHW tensor)",
            )
        images.append(_as_chw(item[0], i))
        labels.append(int(item[1]))
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        raise DataSourceError("Dataset images differ in size", observed=sorted(shapes)[:3],
                              fix="add a fixed-size transform (e.g. Resize + CenterCrop) to the Dataset")
    data = from_arrays(torch.stack(images), labels, classes=getattr(dataset, "classes", None),
                       name=name or type(dataset).__name__, split="dataset", source=type(dataset).__qualname__)
    return ImageData(data.images, data.labels, data.classes, data.name, data.split, data.source,
                     indices=torch.from_numpy(picked))


def _as_chw(img: Any, i: int) -> torch.Tensor:
    if isinstance(img, torch.Tensor):
        t = img
    elif isinstance(img, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(img))
        t = t.permute(2, 0, 1) if t.ndim == 3 and t.shape[-1] in (1, 3) else t
    elif hasattr(img, "convert"):  # PIL
        t = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)
    else:
        raise DataSourceError(f"Dataset item {i}: cannot read an image from a {type(img).__name__}",
                              fix="return a PIL image, an HWC numpy array or a CHW tensor")
    if t.is_floating_point():
        t = (t.clamp(0, 1) * 255).round().to(torch.uint8) if float(t.min()) >= 0 and float(t.max()) <= 1 else t
    return t
