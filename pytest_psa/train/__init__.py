"""Training and the trained-model cache: models, presets, the trainer, SAM/ASAM.

    from pytest_psa.train import train, ModelCache
    trained = ModelCache().get_or_train("small_cnn", data, augmentation, preset="smoke", seed=0)
    trained.model, trained.record.test_accuracy

    plan = TrainingPlan.resolve("small_cnn", data, augmentation, preset="smoke", seed=0)
    plan.fingerprint                   # the cache key; train_plan(plan) executes it

Importing this package imports torch; ``import pytest_psa`` does not import it.
"""

from __future__ import annotations

from pytest_psa.train.arm import TrainingArm, arm
from pytest_psa.train.model_cache import CacheEntry, ModelCache, default_cache_dir
from pytest_psa.train.models import MODELS, build_model
from pytest_psa.train.plan import TrainingPlan
from pytest_psa.train.presets import PRESETS, Preset, resolve_preset
from pytest_psa.train.record import TrainedModel, TrainingRecord
from pytest_psa.train.sam import SAM
from pytest_psa.train.trainer import evaluate, train, train_plan

__all__ = [
    "MODELS",
    "PRESETS",
    "SAM",
    "CacheEntry",
    "ModelCache",
    "Preset",
    "TrainedModel",
    "TrainingArm",
    "TrainingPlan",
    "TrainingRecord",
    "arm",
    "build_model",
    "default_cache_dir",
    "evaluate",
    "resolve_preset",
    "train",
    "train_plan",
]
