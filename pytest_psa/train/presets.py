"""Training presets: frozen recipes, overridable field by field.

    resolve_preset("smoke", epochs=2)          # == dataclasses.replace(PRESETS["smoke"], epochs=2)

The numbers behind each choice are in docs/training.md (measured on the 2-core CI machine
for ``smoke``; the ``fast`` recipe follows the fast-CIFAR-10 ResNet-9 recipe; ``paper`` is
the seed paper's Appendix C.1.1 / C.1.2 configuration).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from pytest_psa.errors import PsaUsageError

Schedule = Literal["onecycle", "cosine", "constant"]
Autocast = Literal["auto", "bf16", "fp16", "off"]
Regime = Literal["standard", "fgsm_at"]
REGIMES: tuple[str, ...] = ("standard", "fgsm_at")
SCHEDULES: tuple[str, ...] = ("onecycle", "cosine", "constant")
# fields that change the weights only when their switch is on: left out of the key otherwise, so
# plans that use neither keep the keys (and the cached models) they had before these fields existed
_STOPPING_FIELDS = ("target_train_loss", "target_eval_n")
_AT_FIELDS = ("regime", "at_epsilon", "at_alpha")


@dataclass(frozen=True)
class Preset:
    """One training recipe. Every field is part of the model cache key (see `key_fields`)."""

    name: str
    model: str = "small_cnn"           # used when train() gets no model
    epochs: int = 10
    n_train: int | None = None         # class-balanced subset of the training data; None = all of it
    subset_seed: int = 0               # fixed, so ERM and augmented runs of any seed see the same images
    batch_size: int = 256
    lr: float = 0.1                    # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: Schedule = "onecycle"    # over all `epochs` (the cap when a target loss is set)
    warmup_frac: float = 0.25          # onecycle: share of steps rising to `lr`; cosine/constant: linear warm-up share
    label_smoothing: float = 0.0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    autocast: Autocast = "auto"        # auto: bf16 on CUDA, bf16 on CPUs with native bf16, else off
    channels_last: bool = True
    sam_rho: float = 0.05              # radius for optimizer="sam" (Foret et al.)
    asam_rho: float = 0.5              # radius for optimizer="asam" (Kwon et al., CIFAR-10 value)
    asam_eta: float = 0.01
    aug_microbatch: int = 1            # >1 shares augmentation parameters within groups (faster, not i.i.d.)
    workers: int | Literal["auto"] = "auto"  # DataLoader workers for augmentation; no effect on results
    eval_batch_size: int = 256         # measured on 2 CPU cores: batches of ~250 evaluate ~2x faster than 1000
    train_eval_n: int | None = 10_000  # clean training images evaluated for the record (None = all)
    large_image_model: str | None = None   # model for images above 32 px (paper: ResNet-18)
    large_image_overrides: tuple[tuple[str, Any], ...] = ()
    # stopping rule (Jiang et al. 2020): stop after the first epoch whose clean training loss (mean
    # cross-entropy in nats, eval mode, on `target_eval_n` un-augmented training images) is <= the
    # target; `epochs` is then the cap. None: train all `epochs`.
    target_train_loss: float | None = None
    target_eval_n: int | None = 2_000  # the fixed class-balanced subset (subset_seed) the rule reads; None = all
    # "fgsm_at": FGSM adversarial training with a random start (Wong et al. 2020), on the augmented batch
    regime: Regime = "standard"
    at_epsilon: float = 8 / 255        # L-inf radius on the [0, 1] pixel scale
    at_alpha: float | None = None      # the gradient-sign step; None = 1.25 * at_epsilon (Wong et al.)

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs={self.epochs} (need >= 1)")
        if self.batch_size < 2:
            problems.append(f"batch_size={self.batch_size} (BatchNorm needs >= 2)")
        if self.n_train is not None and self.n_train < 2:
            problems.append(f"n_train={self.n_train} (need >= 2 or None)")
        if not self.lr > 0:
            problems.append(f"lr={self.lr} (need > 0)")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule={self.schedule!r} (use one of {SCHEDULES})")
        if self.autocast not in ("auto", "bf16", "fp16", "off"):
            problems.append(f"autocast={self.autocast!r} (use 'auto', 'bf16', 'fp16' or 'off')")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device={self.device!r} (use 'auto', 'cpu' or 'cuda')")
        if not 0 <= self.warmup_frac < 1:
            problems.append(f"warmup_frac={self.warmup_frac} (need 0 <= x < 1)")
        if self.aug_microbatch < 1:
            problems.append(f"aug_microbatch={self.aug_microbatch} (need >= 1)")
        if self.workers != "auto" and (not isinstance(self.workers, int) or self.workers < 0):
            problems.append(f"workers={self.workers!r} (use 'auto' or an int >= 0)")
        if self.target_train_loss is not None and not self.target_train_loss > 0:
            problems.append(f"target_train_loss={self.target_train_loss} (need > 0 nats, or None for no stopping rule)")
        if self.target_eval_n is not None and self.target_eval_n < 1:
            problems.append(f"target_eval_n={self.target_eval_n} (need >= 1 or None)")
        if self.regime not in REGIMES:
            problems.append(f"regime={self.regime!r} (use one of {REGIMES})")
        if not 0 < self.at_epsilon <= 1:
            problems.append(f"at_epsilon={self.at_epsilon} (need 0 < eps <= 1 on the [0, 1] scale, e.g. 8/255)")
        if self.at_alpha is not None and not self.at_alpha > 0:
            problems.append(f"at_alpha={self.at_alpha} (need > 0, or None for 1.25 * at_epsilon)")
        if problems:
            raise PsaUsageError(f"invalid training preset {self.name!r}", observed="; ".join(problems),
                                fix="correct the listed fields")

    def for_image_size(self, size: int) -> Preset:
        """The recipe for images of `size` px: large images switch model and overrides (paper C.1.2)."""
        if size <= 32 or self.large_image_model is None:
            return self
        return dataclasses.replace(self, model=self.large_image_model, **dict(self.large_image_overrides),
                                   large_image_model=None, large_image_overrides=())

    @property
    def at_step(self) -> float:
        """The FGSM step α: `at_alpha`, else 1.25 ε (Wong et al. 2020)."""
        return self.at_alpha if self.at_alpha is not None else 1.25 * self.at_epsilon

    def key_fields(self) -> dict[str, Any]:
        """The fields that determine the trained weights (for the cache key)."""
        d = dataclasses.asdict(self)
        for k in ("workers", "eval_batch_size", "train_eval_n", "name"):  # speed / reporting only
            d.pop(k)
        if self.target_train_loss is None:
            for k in _STOPPING_FIELDS:
                d.pop(k)
        if self.regime == "standard":
            for k in _AT_FIELDS:
                d.pop(k)
        d["large_image_overrides"] = [list(p) for p in self.large_image_overrides]
        return d

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["large_image_overrides"] = [list(p) for p in self.large_image_overrides]
        return d


PRESETS: dict[str, Preset] = {
    # CPU, 2 cores: the small CNN on up to 50k images x 4 epochs (see docs/training.md for the numbers)
    "smoke": Preset(
        name="smoke", model="small_cnn", epochs=4, n_train=None, batch_size=256, lr=0.1,
        schedule="onecycle", warmup_frac=0.25, device="cpu",
    ),
    # CPU, 2 cores: train until the clean training loss reaches 0.3 nats (capped), so ERM and augmented
    # models are compared at the same training loss, not at the same budget (docs/training.md, measured)
    "converged": Preset(
        name="converged", model="small_cnn", epochs=60, n_train=10_000, batch_size=128, lr=0.05,
        schedule="constant", warmup_frac=0.02, device="cpu", target_train_loss=0.3, target_eval_n=2_000,
    ),
    # GPU presets say device="cuda": on a CPU they would run for hours, so they fail fast instead
    # (train(..., device="cpu") still forces them there)
    # one GPU, fast-CIFAR-10 recipe: ResNet-9, batch 512, short one-cycle, label smoothing, bf16
    "fast": Preset(
        name="fast", model="resnet9", epochs=16, batch_size=512, lr=0.4, weight_decay=5e-4,
        schedule="onecycle", warmup_frac=0.2, label_smoothing=0.2, device="cuda",
    ),
    # the seed paper (C.1.1): WRN-40-2, 200 epochs, SGD lr 0.1, momentum 0.9, wd 5e-4, cosine, batch 128
    # (AugMix code); larger images (C.1.2): ResNet-18, 50 epochs, lr 0.01
    "paper": Preset(
        name="paper", model="wrn40_2", epochs=200, batch_size=128, lr=0.1, momentum=0.9, nesterov=True,
        weight_decay=5e-4, schedule="cosine", warmup_frac=0.0, device="cuda",
        large_image_model="resnet18", large_image_overrides=(("epochs", 50), ("lr", 0.01)),
    ),
}


def resolve_preset(preset: str | Preset, **overrides: Any) -> Preset:
    """A preset by name (or as given) with `overrides` applied; unknown names/fields raise clearly."""
    if isinstance(preset, str):
        base = PRESETS.get(preset)
        if base is None:
            raise PsaUsageError(f"unknown training preset {preset!r}", observed=preset,
                                fix=f"use one of {sorted(PRESETS)} or a Preset instance")
    elif isinstance(preset, Preset):
        base = preset
    else:
        raise PsaUsageError("preset must be a name or a Preset", observed=type(preset).__name__,
                            fix=f"use one of {sorted(PRESETS)}")
    if not overrides:
        return base
    known = {f.name for f in dataclasses.fields(Preset)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise PsaUsageError(f"unknown preset field(s) {unknown}", observed=unknown,
                            fix=f"overridable fields: {sorted(known - {'name'})}")
    return dataclasses.replace(base, **overrides)
