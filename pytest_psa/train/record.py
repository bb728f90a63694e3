"""`TrainingRecord` (what a training run did and measured) and `TrainedModel` (the model plus its record)."""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class TrainingRecord:
    """Plain numbers and settings of one training run; ``to_dict()`` is JSON-ready.

    Times are seconds: ``wall_s`` is the whole call, ``train_s`` the optimization steps,
    ``data_wait_s`` the time the steps waited for batches (augmentation not hidden by the
    workers), ``eval_s`` the accuracy evaluations. ``cache`` is "off" (plain `train`),
    "miss" (trained and stored) or "hit" (loaded, not trained).
    """

    model: str
    num_params: int
    preset: str
    preset_fields: dict[str, Any]
    optimizer: str
    seed: int
    device: str
    device_kind: str
    dtype: str
    autocast: str
    channels_last: bool
    deterministic: bool
    epochs: int
    n_train: int
    batch_size: int
    steps: int
    final_loss: float
    train_accuracy: float | None
    train_loss: float | None
    test_accuracy: float | None
    test_loss: float | None
    wall_s: float
    train_s: float
    data_wait_s: float
    eval_s: float
    images_per_s: float
    s_per_epoch: float
    workers: int
    augmentation: str
    augmentation_identity: str
    data: dict[str, Any]
    test_data: dict[str, Any] | None
    versions: dict[str, str]
    created: str
    cache: str = "off"
    cache_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingRecord:
        """Rebuild from `to_dict()` output; unknown keys (from a newer version) go to ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in d.items() if k in names}
        extra = dict(known.pop("extra", {}) or {})
        extra.update({k: v for k, v in d.items() if k not in names})
        return cls(**known, extra=extra)

    def summary(self) -> str:
        """One line for logs and reports."""
        acc = f"test acc {self.test_accuracy:.3f}" if self.test_accuracy is not None else "no test set"
        return (f"{self.model} + {self.augmentation} [{self.preset}, {self.optimizer}, seed {self.seed}]: "
                f"{acc}, final loss {self.final_loss:.3f}, {self.epochs} epochs x {self.n_train} images in "
                f"{self.wall_s:.1f} s on {self.device_kind} ({self.autocast}), cache {self.cache}")


@dataclass(frozen=True)
class TrainedModel:
    """A trained model (eval mode) and the record of how it came to be."""

    model: nn.Module
    record: TrainingRecord

    def __iter__(self):  # type: ignore[no-untyped-def]
        # allows `model, record = train(...)`
        return iter((self.model, self.record))


def versions() -> dict[str, str]:
    """Versions that can change trained weights (part of the cache key)."""
    import torch
    import torchvision

    from pytest_psa._version import __version__

    return {
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "python": platform.python_version(), "pytest_psa": __version__,
    }
