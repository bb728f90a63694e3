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
    # the stopping rule's outcome (target, reached, epochs used of the cap, final clean training loss, per-epoch
    # history, convention); None when the preset sets no target_train_loss
    stopping: dict[str, Any] | None = None
    # FGSM-AT's settings and its catastrophic-overfitting check (`adversarial.robust_accuracy`); None otherwise
    adversarial: dict[str, Any] | None = None
    # the user's training recipe (`train.user_trainer`): its identity, and whether the built-in trainer stood in
    # (a pytest_psa_train hook that declined); None for the built-in trainer
    recipe: dict[str, Any] | None = None
    # CPU: the intra-op threads it computed with (the plan's, part of the key); None on GPU and in old records
    threads: int | None = None

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
        regime = f", FGSM-AT eps {self.adversarial['epsilon'] * 255:.3g}/255" if self.adversarial else ""
        stop = ""
        if self.stopping:
            s = self.stopping
            stop = (f", clean train loss {s['final_clean_train_loss']:.3f} "
                    f"{'<=' if s['reached'] else '>'} target {s['target_train_loss']:g} "
                    f"({'reached' if s['reached'] else 'cap hit'})")
        return (f"{self.model} + {self.augmentation} [{self.preset}, {self.optimizer}{regime}, seed {self.seed}]: "
                f"{acc}, final loss {self.final_loss:.3f}{stop}, {self.epochs} epochs x {self.n_train} images in "
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


# -- the training loss a comparison's models reached -------------------------------------------
LOSS_GAP_TOLERANCE = 0.05  # nats: models whose clean training losses differ by more were not trained equally far
LOSS_CONVENTION = ("clean training loss: mean cross-entropy in nats, eval mode, on the un-augmented training "
                   "images of the record's train_eval_n subset (the stopping rule's value when the record has none)")


def reached_train_loss(record: dict[str, Any]) -> float | None:
    """The clean training loss a model reached (see `LOSS_CONVENTION`), from its record dict; None if unmeasured."""
    if record.get("train_loss") is not None:
        return float(record["train_loss"])
    stop = record.get("stopping") or {}
    value = stop.get("final_clean_train_loss")
    return None if value is None else float(value)


def loss_gap(baseline: list[dict[str, Any]], subject: list[dict[str, Any]], *, baseline_name: str,
             subject_name: str, tolerance: float = LOSS_GAP_TOLERANCE) -> dict[str, Any]:
    """The clean training losses of a comparison's two sides (records, one per seed) and whether they differ.

    ``differs`` is True when the seed means differ by more than `tolerance` nats; ``note`` then says
    that the comparison is confounded with how far each side trained (Jiang et al. 2020), else None.
    """
    def side(records: list[dict[str, Any]]) -> tuple[list[float | None], float | None]:
        values = [reached_train_loss(r) for r in records]
        known = [v for v in values if v is not None]
        return values, (sum(known) / len(known) if known and len(known) == len(values) else None)

    b_values, b_mean = side(baseline)
    s_values, s_mean = side(subject)
    stops = [r.get("stopping") for r in (*baseline, *subject)]
    not_reached = [f"{n} seed {r.get('seed')}" for n, recs in ((baseline_name, baseline), (subject_name, subject))
                   for r in recs if (r.get("stopping") or {}).get("reached") is False]
    gap = None if b_mean is None or s_mean is None else s_mean - b_mean
    differs = gap is not None and abs(gap) > tolerance
    note = None
    if differs:
        assert gap is not None and b_mean is not None and s_mean is not None
        note = (f"training losses differ: clean training loss {subject_name} {s_mean:.3f} vs {baseline_name} "
                f"{b_mean:.3f} nats ({gap:+.3f}, tolerance {tolerance:g}); the comparison is confounded with how far "
                "each model trained: stop both at the same loss (preset='converged', or target_train_loss=...)")
        if not_reached:
            note += f"; the stopping rule's cap was hit by {', '.join(not_reached)}"
    return {"baseline": b_values, "subject": s_values, "baseline_mean": b_mean, "subject_mean": s_mean,
            "gap": gap, "tolerance": tolerance, "differs": differs, "note": note,
            "stopping_rule": any(s is not None for s in stops), "cap_hit": not_reached,
            "convention": LOSS_CONVENTION + "; gap = subject mean - baseline mean over seeds"}
