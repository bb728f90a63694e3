"""`ImageData`: the one in-memory form every data source is turned into.

Images are kept as uint8 NCHW (compact and exact); `float_images` gives the
canonical float form in [0, 1] that augmentations and distances work on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pytest_psa.errors import DataSourceError, PsaUsageError


@dataclass(frozen=True, eq=False)
class ImageData:
    """A labelled image set: uint8 images (N, C, H, W), int64 labels (N,), class names.

    `name` says what the set is ("synthetic", "cifar10", a folder name), `split` which part
    ("train"/"test"), `source` where it came from (a path, or "embedded").
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    split: str
    source: str
    indices: torch.Tensor | None = None  # positions in the full split, when this is a subset
    _fingerprint: list[str] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        imgs, labels = self.images, self.labels
        if not isinstance(imgs, torch.Tensor) or imgs.dtype != torch.uint8 or imgs.ndim != 4:
            raise DataSourceError(
                f"data set {self.name!r}: images must be a uint8 tensor (N, C, H, W)",
                observed=describe_value(imgs),
                fix="convert with pytest_psa.data.from_arrays(images, labels), which accepts HWC/CHW, uint8 or float in [0, 1]",
            )
        if imgs.shape[1] not in (1, 3):
            raise DataSourceError(
                f"data set {self.name!r}: images must have 1 or 3 channels in dimension 1",
                observed=f"shape {tuple(imgs.shape)}",
                fix="pass channels-first images, or use from_arrays(), which detects HWC layout",
            )
        if labels.dtype != torch.int64 or labels.shape != (imgs.shape[0],):
            raise DataSourceError(
                f"data set {self.name!r}: labels must be int64 with one label per image",
                observed=f"labels {labels.dtype} {tuple(labels.shape)} for {imgs.shape[0]} images",
                fix="pass a 1-D integer label array of the same length as the images",
            )
        if len(imgs) == 0:
            raise DataSourceError(f"data set {self.name!r} ({self.split}) holds no images", fix="check the path and split")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def describe(self) -> str:
        """A short label for reports, e.g. ``cifar10/test[500 of 10000]``."""
        n = f"{len(self)}"
        return f"{self.name}/{self.split}[{n}]"

    def fingerprint(self) -> str:
        """SHA-256 over the pixels, labels and class names: identifies the content for caches."""
        if not self._fingerprint:
            h = hashlib.sha256()
            h.update(repr((tuple(self.images.shape), self.classes)).encode())
            h.update(self.images.contiguous().numpy().tobytes())
            h.update(self.labels.numpy().tobytes())
            self._fingerprint.append(h.hexdigest())
        return self._fingerprint[0]

    def float_images(self, index: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Images as float32 in [0, 1] (the canonical form), optionally only `index`."""
        imgs = self.images if index is None else self.images[index]
        return imgs.float().div_(255.0)

    def take(self, index: torch.Tensor) -> ImageData:
        """The images at `index` (positions in this set), remembering their original positions."""
        index = torch.as_tensor(index, dtype=torch.int64)
        base = self.indices[index] if self.indices is not None else index
        return ImageData(
            self.images[index].contiguous(), self.labels[index].clone(), self.classes,
            self.name, self.split, self.source, indices=base,
        )

    def subset(self, n: int | None, seed: int = 0, *, balanced: bool = True) -> ImageData:
        """A deterministic subset of `n` images chosen with `seed` (class-balanced by default).

        The same (n, seed) always picks the same images, whatever else the run does.
        """
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise DataSourceError(f"cannot take a subset of {n} images", fix="ask for at least 1 image")
        rng = np.random.Generator(np.random.PCG64(seed))
        if not balanced:
            picked = np.sort(rng.permutation(len(self))[:n])
        else:
            # round-robin over classes in a seeded order, so each class gets n / C images
            labels = self.labels.numpy()
            per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
            order: list[np.intp] = []
            depth = 0
            while len(order) < n:
                row = [p[depth] for p in per_class if depth < len(p)]
                if not row:
                    break
                order.extend(row)
                depth += 1
            picked = np.sort(np.asarray(order[:n]))
        return self.take(torch.from_numpy(picked))

    def check_available(self, n: int | None, what: str = "n") -> None:
        """Refuse a request for more images than this set holds, instead of silently auditing fewer.

        `what` names the argument in the message (``n_images``, ``n_attack_images``, ...).
        """
        if n is not None and int(n) > len(self):
            raise PsaUsageError(
                f"{what}={n} asks for more images than {self.name}/{self.split} holds ({len(self)})",
                observed=f"requested {n}, available {len(self)}",
                fix=f"pass {what}={len(self)} (all of them) or fewer, or audit a larger data set",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "split": self.split, "source": self.source,
            "n": len(self), "image_size": list(self.image_size), "channels": int(self.images.shape[1]),
            "num_classes": self.num_classes, "fingerprint": self.fingerprint()[:16],
        }


def describe_value(x: Any) -> str:
    """A short description of an array-like for error messages: type, dtype, shape."""
    if isinstance(x, torch.Tensor):
        return f"torch.Tensor {x.dtype} {tuple(x.shape)}"
    if isinstance(x, np.ndarray):
        return f"numpy {x.dtype} {x.shape}"
    return type(x).__name__


def from_arrays(
    images: Any, labels: Any, *, classes: tuple[str, ...] | list[str] | None = None,
    name: str = "arrays", split: str = "test", source: str = "arrays",
) -> ImageData:
    """Build `ImageData` from arrays: NHWC or NCHW, uint8 or float in [0, 1], numpy or torch."""
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    y = torch.as_tensor(np.asarray(labels)).to(torch.int64).reshape(-1)
    if x.ndim == 3:  # grayscale N,H,W
        x = x[:, None]
    if x.ndim != 4:
        raise DataSourceError(
            f"data set {name!r}: images must be 4-D (N, H, W, C) or (N, C, H, W)",
            observed=describe_value(x), fix="stack the images into one array with a leading batch dimension",
        )
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.is_floating_point():
        if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DataSourceError(
                f"data set {name!r}: float images must be finite and in [0, 1]",
                observed=f"range [{float(x.min()):.3g}, {float(x.max()):.3g}]",
                fix="divide uint8 pixel values by 255 (or pass them as uint8); if a Normalize transform "
                    "produced them, leave it out of the data (put it in the model): the audits read [0, 1] pixels",
            )
        x = (x * 255.0).round_().to(torch.uint8)
    elif x.dtype != torch.uint8:
        if x.min() < 0 or x.max() > 255:
            raise DataSourceError(f"data set {name!r}: integer pixels must be in [0, 255]",
                                  observed=f"range [{int(x.min())}, {int(x.max())}]", fix="pass uint8 images")
        x = x.to(torch.uint8)
    if classes is None:
        classes = tuple(str(c) for c in range(int(y.max()) + 1)) if len(y) else ()
    return ImageData(x.contiguous(), y, tuple(classes), name, split, source)
