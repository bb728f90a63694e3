"""`TrainingArm`: one side of a comparison trained its own way (an optimizer, FGSM-AT, other preset fields).

The flatness and robustness audits train the audited augmentation and its baseline with one preset
and one optimizer. To compare "augmentation vs flat-minima optimizer" (seed paper, Appendix E.2) or
"augmentation vs adversarial training", give either side as an arm:

    from pytest_psa.train import arm
    psa.flatness(TrivialAugmentWide(), baseline=arm(None, optimizer="sam"))     # TA vs ERM + SAM
    psa.robustness(arm(None, regime="fgsm_at"))                                 # ERM + FGSM-AT vs ERM
    psa.robustness(arm(AugMix(), regime="fgsm_at"), baseline=arm(None, regime="fgsm_at"))  # AT + AugMix vs AT

An arm's optimizer replaces the audit's `optimizer=` for that side and its preset fields go on top
of the audit's preset and overrides; everything else (data, the training subset, seeds) is shared.
Each arm trains through the model cache like any other model (its fields are part of the key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_psa.errors import PsaUsageError
from pytest_psa.train.plan import OPTIMIZERS
from pytest_psa.train.presets import resolve_preset

# the pair must train on the same images: these stay the audit's
_SHARED_FIELDS = ("n_train", "subset_seed")


@dataclass(frozen=True)
class TrainingArm:
    """An augmentation (None = ERM) with its own optimizer and preset fields; build it with `arm(...)`."""

    augmentation: Any = None
    optimizer: str | None = None  # None: the audit's optimizer
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise PsaUsageError(f"unknown optimizer {self.optimizer!r} for a training arm", observed=self.optimizer,
                                fix=f"use one of {OPTIMIZERS}, or None for the audit's")
        shared = sorted(set(self.overrides) & set(_SHARED_FIELDS))
        if shared:
            raise PsaUsageError(f"a training arm cannot change {shared}: both sides of a comparison train on the "
                                "same images", observed=shared, fix="pass them to the audit (n_train=...) instead")
        resolve_preset("smoke", **dict(self.overrides))  # unknown fields and bad values fail here, before training

    @property
    def suffix(self) -> str:
        """What the arm adds to its augmentation's name: ``+sam``, ``+fgsm_at(8/255)``, ``+lr=0.05``."""
        parts = [self.optimizer] if self.optimizer not in (None, "sgd") else []
        fields = dict(self.overrides)
        if fields.pop("regime", None) == "fgsm_at":
            eps = float(fields.pop("at_epsilon", 8 / 255))
            parts.append(f"fgsm_at({eps * 255:.3g}/255)")
        parts += [f"{k}={v}" for k, v in sorted(fields.items())]
        return "".join(f"+{p}" for p in parts)

    def optimizer_for(self, default: str) -> str:
        return self.optimizer if self.optimizer is not None else default

    def to_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "overrides": dict(self.overrides), "suffix": self.suffix}


def arm(augmentation: Any = None, *, optimizer: str | None = None, **overrides: Any) -> TrainingArm:
    """One side of a comparison: `augmentation` (None = ERM) trained with `optimizer` ("sgd", "sam",
    "asam"; None = the audit's) and the preset fields `overrides` (``regime="fgsm_at", at_epsilon=4/255``)."""
    if isinstance(augmentation, TrainingArm):
        raise PsaUsageError("arm() got a training arm as its augmentation", fix="pass the augmentation itself")
    return TrainingArm(augmentation, optimizer, dict(overrides))


def split_arm(obj: Any) -> tuple[Any, TrainingArm | None]:
    """(the augmentation, the arm or None) of what an audit got as its subject or baseline."""
    if isinstance(obj, TrainingArm):
        return obj.augmentation, obj
    return obj, None


__all__ = ["TrainingArm", "arm", "split_arm"]
