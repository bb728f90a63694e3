"""Multi-domain data: one labelled image set per domain, with one class index shared by all domains.

Two sources, both returned as `DomainData`:

- `load_domains(path)`: an image-folder tree ``root/<domain>/<class>/<file>`` (DomainBed's layout:
  PACS, OfficeHome, VLCS, ...) or a ``.tar``/``.tar.gz`` archive of one. Domains and classes are the
  sorted sub-folder names; every class must appear in every domain (a missing one is a
  `PsaUsageError` naming the domain and the class, unless ``missing_classes="allow"``). Images are
  decoded to RGB and resized to ``size`` x ``size`` (required when the images differ in size, as in
  PACS and OfficeHome); the decoded pixels are cached as ``.npz`` keyed by the file list and the size.
- `synthetic_domains()` (``"synthetic-domains"``): the synthetic shape classes (`data/synthetic.py`)
  rendered in four styles (photo-like texture, sketch-like edges, cartoon-like flat colours with an
  outline, a false-colour palette), so a model trained on some styles is measurably worse on
  another. Deterministic: image i of a domain depends only on (seed, domain, i); fast to generate.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pytest_psa._paths import default_cache_dir, default_data_root
from pytest_psa.data.folders import IMAGE_SUFFIXES, _read_npz, _write_npz, is_archive, unpack_archive
from pytest_psa.data.image_data import ImageData
from pytest_psa.data.synthetic import CLASSES, placed_shapes
from pytest_psa.errors import DataSourceError, PsaUsageError

MissingClasses = Literal["error", "allow"]
SYNTHETIC_DOMAINS_NAME = "synthetic-domains"
STYLES: tuple[str, ...] = ("photo", "sketch", "cartoon", "infrared")
DEFAULT_PER_DOMAIN = 1_500
_BLOCK = 500


@dataclass(frozen=True, eq=False)
class DomainData:
    """Per-domain `ImageData` (uint8 NCHW, labels in the shared `classes` index), in domain order."""

    domains: Mapping[str, ImageData]
    classes: tuple[str, ...]
    name: str
    source: str

    def __post_init__(self) -> None:
        if len(self.domains) < 2:
            raise PsaUsageError(
                f"multi-domain data {self.name!r} has {len(self.domains)} domain(s); leaving one domain out "
                "needs at least two",
                observed=f"domains: {list(self.domains)}",
                fix="lay the data out as root/<domain>/<class>/<file> with two or more domain folders")
        sizes = {(d.images.shape[1], *d.image_size) for d in self.domains.values()}
        if len(sizes) > 1:
            raise PsaUsageError(f"the domains of {self.name!r} differ in image shape", observed=sorted(sizes),
                                fix="load them at one resolution (load_domains(..., size=64))")
        for name, d in self.domains.items():
            if d.classes != self.classes:
                raise PsaUsageError(f"domain {name!r} of {self.name!r} uses another class index",
                                    observed=f"{d.classes} vs {self.classes}",
                                    fix="give every domain the shared class names in one order")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.domains)

    def __getitem__(self, domain: str) -> ImageData:
        if domain not in self.domains:
            raise PsaUsageError(f"{self.name!r} has no domain {domain!r}", fix=f"use one of {list(self.domains)}")
        return self.domains[domain]

    def fingerprint(self) -> str:
        """SHA-256 over the domain names and each domain's content fingerprint."""
        h = hashlib.sha256()
        for name, d in self.domains.items():
            h.update(f"{name}\0{d.fingerprint()}\0".encode())
        return h.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "domains": {k: len(v) for k, v in self.domains.items()},
                "classes": list(self.classes), "image_size": list(next(iter(self.domains.values())).image_size),
                "fingerprint": self.fingerprint()[:16]}


def pool(parts: Sequence[ImageData], *, name: str, split: str) -> ImageData:
    """The images of `parts` (one class index) as one `ImageData`, in the order given."""
    return ImageData(torch.cat([p.images for p in parts]).contiguous(), torch.cat([p.labels for p in parts]),
                     parts[0].classes, name, split, "+".join(p.source for p in parts)[:200])


# -- the folder tree --------------------------------------------------------------------------------
def load_domains(spec: Any = SYNTHETIC_DOMAINS_NAME, *, size: int | None = None,
                 missing_classes: MissingClasses = "error", root: str | Path | None = None,
                 cache_dir: str | Path | None = None, n_per_domain: int | None = None, seed: int = 0) -> DomainData:
    """`spec` as `DomainData`: ``"synthetic-domains"``, a `DomainData`, a mapping domain -> anything
    `as_image_data` reads, or a path (relative paths also under the data root) to a
    ``root/<domain>/<class>/<file>`` tree or a ``.tar``/``.tar.gz`` of one. `size` resizes every image to
    size x size (needed when images differ in size); `n_per_domain` takes a seeded, class-balanced subset
    of each domain."""
    if missing_classes not in ("error", "allow"):
        raise PsaUsageError("missing_classes must be 'error' or 'allow'", observed=missing_classes,
                            fix="missing_classes='allow' trains and evaluates on the classes each domain has")
    if spec is None or spec == SYNTHETIC_DOMAINS_NAME:
        data = synthetic_domains(n_per_domain or DEFAULT_PER_DOMAIN, seed=seed, size=size or 32)
        return data
    if isinstance(spec, DomainData):
        data = spec
    elif isinstance(spec, Mapping):
        data = _from_mapping(spec, missing_classes)
    elif isinstance(spec, (str, Path)):
        path = _existing(spec, root)
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        if is_archive(path):
            path = unpack_archive(path, cache)
            data = read_domain_tree(path, size=size, missing_classes=missing_classes, cache=path / ".decoded")
        else:
            data = read_domain_tree(path, size=size, missing_classes=missing_classes, cache=cache / "domains")
    else:
        raise PsaUsageError(f"cannot read domains from a {type(spec).__name__}",
                            fix="pass 'synthetic-domains', a folder root/<domain>/<class>/<file>, a .tar.gz of one, "
                                "or a dict {domain: ImageData or (images, labels)}")
    if n_per_domain is not None:
        data = DomainData({k: _subset(v, n_per_domain, seed) for k, v in data.domains.items()}, data.classes,
                          data.name, data.source)
    return data


def _subset(d: ImageData, n: int, seed: int) -> ImageData:
    return d if n >= len(d) else d.subset(n, seed)


def _existing(spec: str | Path, root: str | Path | None) -> Path:
    path = Path(spec).expanduser()
    base = Path(root).expanduser() if root else default_data_root()
    candidates = [path] + ([base / path] if base and not path.is_absolute() else [])
    for c in candidates:
        if c.exists():
            return c
    raise PsaUsageError(f"multi-domain data {str(spec)!r} not found",
                        observed=f"looked at {', '.join(map(str, candidates))}",
                        fix="pass the folder that holds one sub-folder per domain (e.g. .../PACS), or a .tar.gz of "
                            "it; relative paths are also looked up under the data root (--psa-data-root)")


def read_domain_tree(root: Path, *, size: int | None = None, missing_classes: MissingClasses = "error",
                     cache: Path | None = None) -> DomainData:
    """Read ``root/<domain>/<class>/<file>``: domains and classes are the sorted folder names."""
    root = Path(root)
    domains = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if root.is_dir() else []
    if not domains:
        raise PsaUsageError(f"{root} holds no domain folders",
                            fix=f"lay it out as {root}/<domain>/<class>/<image files> (DomainBed's layout)")
    per_domain = {d: sorted(p.name for p in (root / d).iterdir() if p.is_dir() and not p.name.startswith("."))
                  for d in domains}
    empty = [d for d, cs in per_domain.items() if not cs]
    if empty:
        raise PsaUsageError(f"domain {empty[0]!r} in {root} has no class folders",
                            observed=f"{root / empty[0]} holds image files or nothing, not <class>/ folders",
                            fix=f"put its images under {root / empty[0]}/<class name>/, or remove the folder")
    classes = sorted(set().union(*per_domain.values()))
    missing = [(d, c) for d in domains for c in classes if c not in per_domain[d]]
    if missing and missing_classes == "error":
        d, c = missing[0]
        more = f" (and {len(missing) - 1} more: {', '.join(f'{x}/{y}' for x, y in missing[1:4])})" \
            if len(missing) > 1 else ""
        raise PsaUsageError(f"class {c!r} is missing from domain {d!r} in {root}{more}",
                            observed=f"domain {d!r} has classes {per_domain[d]}",
                            fix=f"add {root / d / c}/ with its images, remove class {c!r} from the other domains, "
                                "or pass missing_classes='allow' (each domain is then trained and evaluated on the "
                                "classes it has; accuracies over domains then cover different classes)")
    files = {d: [(f, classes.index(c)) for c in per_domain[d] for f in sorted((root / d / c).iterdir())
                 if f.suffix.lower() in IMAGE_SUFFIXES] for d in domains}
    for d, fs in files.items():
        if not fs:
            raise PsaUsageError(f"domain {d!r} in {root} holds no image files",
                                fix=f"supported suffixes: {', '.join(sorted(IMAGE_SUFFIXES))}")
    out = {d: _decoded(fs, root / d, size, cache, classes, d) for d, fs in files.items()}
    return DomainData({d: ImageData(torch.from_numpy(x), torch.from_numpy(y), tuple(classes), d, "all", str(root / d))
                       for d, (x, y) in out.items()}, tuple(classes), root.name, str(root))


def _decoded(files: list[tuple[Path, int]], folder: Path, size: int | None, cache: Path | None,
             classes: list[str], domain: str) -> tuple[np.ndarray, np.ndarray]:
    """Decoded uint8 NCHW pixels and labels of `files`; cached as .npz under a key of the files and size."""
    key = hashlib.sha256(json.dumps(
        [size, classes] + [[str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns, c] for f, c in files]
    ).encode()).hexdigest()[:20]
    target = cache / f"{domain}-{size or 'native'}-{key}.npz" if cache is not None else None
    if target is not None:
        hit = _read_npz(target)
        if hit is not None and len(hit[0]) == len(files):
            return hit
    arrays = _decode_resized(files, folder, size)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_npz(target, *arrays)  # written to a temporary name, then renamed: never half there
    return arrays


def _decode_resized(files: list[tuple[Path, int]], folder: Path, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    images, first = [], None
    for f, _ in files:
        try:
            with Image.open(f) as im:
                rgb = im.convert("RGB")
                if size is not None and rgb.size != (size, size):
                    rgb = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
                arr = np.asarray(rgb)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataSourceError(f"cannot decode image {f}: {exc}", fix="remove or replace the damaged file") from exc
        if first is None:
            first = arr.shape
        elif arr.shape != first:
            raise PsaUsageError(f"images in {folder} differ in size",
                                observed=f"{f.name}: {arr.shape[:2]} vs {first[:2]}",
                                fix="pass size=<pixels> (e.g. size=64) to resize every image to size x size")
        images.append(arr)
    return (np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)),
            np.array([c for _, c in files], np.int64))


def _from_mapping(spec: Mapping[Any, Any], missing_classes: MissingClasses) -> DomainData:
    from pytest_psa.data.sources import as_image_data

    parts = {str(k): as_image_data(v, name=str(k)) for k, v in spec.items()}
    first = next(iter(parts.values()), None)
    classes = first.classes if first is not None else ()
    for k, d in parts.items():
        if d.classes != classes:
            raise PsaUsageError(f"domain {k!r} has other class names than {next(iter(parts))!r}",
                                observed=f"{d.classes} vs {classes}", fix="give every domain the same classes")
        present = set(np.unique(d.labels.numpy()).tolist())
        absent = [classes[c] for c in range(len(classes)) if c not in present]
        if absent and missing_classes == "error":
            raise PsaUsageError(f"class {absent[0]!r} is missing from domain {k!r}",
                                fix="add images of it, or pass missing_classes='allow'")
    return DomainData(parts, tuple(classes), "domains", "mapping")


# -- the procedural set -----------------------------------------------------------------------------
def synthetic_domains(n_per_domain: int = DEFAULT_PER_DOMAIN, *, seed: int = 0, size: int = 32,
                      styles: Sequence[str] = STYLES, n_classes: int = len(CLASSES)) -> DomainData:
    """The synthetic shape classes in each of `styles` (``photo``, ``sketch``, ``cartoon``, ``infrared``),
    `n_per_domain` images each, deterministic from `seed`. `n_classes` keeps the first k shapes (disk,
    square, triangle, ring, ...): an easier task that a tiny training learns (tests)."""
    unknown = [s for s in styles if s not in STYLES]
    if unknown or len(set(styles)) != len(styles):
        raise PsaUsageError(f"unknown or repeated style {unknown[0] if unknown else list(styles)!r}",
                            fix=f"choose distinct styles from {list(STYLES)}")
    if not 2 <= n_classes <= len(CLASSES):
        raise PsaUsageError(f"n_classes must be in [2, {len(CLASSES)}]", observed=n_classes)
    if n_per_domain < 1 or size < 16:
        raise PsaUsageError("synthetic-domains needs n_per_domain >= 1 and size >= 16",
                            observed=f"n_per_domain={n_per_domain}, size={size}")
    domains = {}
    for style in styles:
        x, y = _style_images(style, int(n_per_domain), int(seed), int(size), int(n_classes))
        classes = CLASSES[:n_classes]
        domains[style] = ImageData(torch.from_numpy(x.copy()), torch.from_numpy(y.copy()), classes, style, "all",
                                   f"embedded(seed={seed}, size={size}, style={style}, classes={n_classes})")
    return DomainData(domains, CLASSES[:n_classes], SYNTHETIC_DOMAINS_NAME,
                      f"embedded(seed={seed}, size={size}, classes={n_classes})")


@functools.lru_cache(maxsize=16)  # callers get copies, so the cached arrays stay pristine
def _style_images(style: str, n: int, seed: int, size: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    blocks = [_style_block(style, seed, b, size, k) for b in range((n + _BLOCK - 1) // _BLOCK)]
    return np.concatenate([b[0] for b in blocks])[:n], np.concatenate([b[1] for b in blocks])[:n]


def _style_block(style: str, seed: int, block: int, size: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    # each style its own stream: a domain's images do not change when styles are added or dropped
    rng = np.random.Generator(np.random.PCG64([seed, 40 + STYLES.index(style), block]))
    m = _BLOCK
    labels, mask, _ = placed_shapes(rng, m, size, k, min_radius=6.0)
    img = _RENDER[style](rng, mask, size)
    img += rng.normal(0.0, 0.02, img.shape)
    return (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8), labels


def _edges(mask: np.ndarray) -> np.ndarray:
    """Outline strength in [0, 1] of each coverage mask (M, S, S): its gradient magnitude."""
    gy, gx = np.gradient(mask, axis=(1, 2))
    return np.asarray(np.clip(2.0 * np.hypot(gx, gy), 0.0, 1.0))


def _smooth_noise(rng: np.random.Generator, m: int, size: int, cells: int) -> np.ndarray:
    """Per-image value noise (M, S, S) in about [-1, 1]: a coarse random grid, bilinearly upsampled."""
    coarse = rng.uniform(-1.0, 1.0, (m, cells + 1, cells + 1))
    t = np.linspace(0.0, cells, size)
    i0 = np.minimum(t.astype(int), cells - 1)
    f = t - i0
    rows = coarse[:, i0] * (1 - f)[None, :, None] + coarse[:, i0 + 1] * f[None, :, None]
    return np.asarray(rows[:, :, i0] * (1 - f)[None, None, :] + rows[:, :, i0 + 1] * f[None, None, :])


def _photo(rng: np.random.Generator, mask: np.ndarray, size: int) -> np.ndarray:
    # natural-ish: textured backgrounds and textured, shaded objects, moderate contrast
    m = len(mask)
    bg = rng.uniform(0.2, 0.8, (m, 3))
    fg = np.clip(bg + rng.choice([-1.0, 1.0], (m, 1)) * rng.uniform(0.3, 0.5, (m, 1)) + rng.uniform(-0.2, 0.2, (m, 3)),
                 0.0, 1.0)
    texture = 0.08 * _smooth_noise(rng, m, size, 4) + 0.04 * _smooth_noise(rng, m, size, 12)
    shade = 0.1 * _smooth_noise(rng, m, size, 2)
    base = bg[:, :, None, None] + mask[:, None] * (fg - bg)[:, :, None, None]
    return np.asarray(base + (texture + shade)[:, None])


def _sketch(rng: np.random.Generator, mask: np.ndarray, size: int) -> np.ndarray:
    # pencil on paper: light background, grey strokes along the outline only, faint paper grain
    m = len(mask)
    paper = rng.uniform(0.85, 1.0, (m, 1, 1, 1)) + rng.uniform(-0.03, 0.03, (m, 3, 1, 1))
    ink = rng.uniform(0.05, 0.45, (m, 1, 1, 1))
    stroke = _edges(mask) * rng.uniform(0.7, 1.0, (m, 1, 1))
    grain = 0.03 * _smooth_noise(rng, m, size, 16)
    return np.asarray(paper + stroke[:, None] * (ink - paper) + grain[:, None])


_CARTOON_COLOURS = np.array([[0.95, 0.2, 0.2], [0.2, 0.7, 0.25], [0.2, 0.35, 0.95], [0.98, 0.85, 0.1],
                             [0.9, 0.3, 0.85], [0.1, 0.85, 0.9], [1.0, 0.55, 0.1], [0.55, 0.3, 0.9]])


def _cartoon(rng: np.random.Generator, mask: np.ndarray, size: int) -> np.ndarray:
    # flat saturated fills from a small palette, a flat background, a thick dark outline
    m = len(mask)
    fill = _CARTOON_COLOURS[rng.integers(0, len(_CARTOON_COLOURS), m)]
    bg = np.where(rng.random((m, 1)) < 0.5, 0.92, 0.25) + rng.uniform(-0.05, 0.05, (m, 3))
    flat = (mask > 0.5).astype(np.float64)
    outline = np.clip(1.6 * _edges(mask), 0.0, 1.0)
    img = bg[:, :, None, None] + flat[:, None] * (fill - bg)[:, :, None, None]
    return np.asarray(img * (1.0 - outline[:, None]))


def _infrared(rng: np.random.Generator, mask: np.ndarray, size: int) -> np.ndarray:
    # a false-colour palette: one "temperature" channel mapped through a hot colour map (black-red-yellow)
    m = len(mask)
    heat = (rng.uniform(0.05, 0.35, (m, 1, 1)) + mask * rng.uniform(0.3, 0.6, (m, 1, 1))
            + 0.08 * _smooth_noise(rng, m, size, 3))
    heat = np.clip(heat, 0.0, 1.0)
    return np.stack([np.clip(3 * heat, 0, 1), np.clip(3 * heat - 1, 0, 1), np.clip(3 * heat - 2, 0, 1)], axis=1)


_RENDER = {"photo": _photo, "sketch": _sketch, "cartoon": _cartoon, "infrared": _infrared}

__all__ = ["DEFAULT_PER_DOMAIN", "STYLES", "SYNTHETIC_DOMAINS_NAME", "DomainData", "load_domains", "pool",
           "read_domain_tree", "synthetic_domains"]
