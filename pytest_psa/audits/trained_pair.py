"""The models an augmentation audit compares: the audited augmentation and its baseline, trained per seed.

`flatness` and `robustness` (and any later audit of an augmentation) ask the same question of
the training layer: "the model trained with this augmentation, and the one trained with the
baseline (ERM, or another augmentation), for each of these seeds". This module answers it once:

    spec = PairSpec.resolve(augmentation, "erm", seeds=seed_list(3, first=0), data=..., preset="smoke")
    pair = spec.train(model=None, optimizer="sgd", device=None, progress=True)
    pair.models(SUBJECT), pair.models(BASELINE)   # TrainedModels, one per seed, in seed order

Resolving (`PairSpec.resolve`: wrap the augmentations, load the train and test splits once,
resolve the preset once) and training (`PairSpec.train`) are two steps so that an audit can
derive what it measures from the resolved data and preset, and fail on a bad argument, before
any model is trained. Every model goes through the public `ModelCache.get_or_train` with the
same arguments whichever audit asks, so a model trained for one audit is a cache hit for the
other. Training is seeded inside the trainer (`torch.random.fork_rng`), so the order of the
trainings changes neither the weights nor the cache keys; `order` and `roles` only keep each
audit's progress lines and training log in the order they have always had.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pytest_psa.augment.adapters import Augmentation, as_augmentation
from pytest_psa.data.image_data import ImageData
from pytest_psa.data.sources import load_data
from pytest_psa.errors import PsaUsageError
from pytest_psa.train.model_cache import ModelCache
from pytest_psa.train.presets import Preset, resolve_preset
from pytest_psa.train.record import TrainedModel

Role = Literal["subject", "baseline"]
SUBJECT: Final = "subject"  # the audited augmentation's models
BASELINE: Final = "baseline"  # the models it is compared with (ERM: no augmentation)


def seed_list(seeds: int | Sequence[int], first: int) -> tuple[int, ...]:
    """Training seeds from a count or an explicit list: a count ``k`` is ``first, first + 1, ..., first + k - 1``.

    `pytest_psa.flatness` counts from ``first=0`` (``seeds=3`` is 0, 1, 2); `pytest_psa.robustness`
    counts from its ``seed`` argument (``seed=5, seeds=2`` is 5, 6). An explicit list is taken as
    given (the `psa` fixture always passes one). A bool is neither (TypeError). The result may be
    empty: each audit says in its own words that it needs at least one seed.
    """
    if isinstance(seeds, bool):
        raise TypeError("seeds must be a count or a list of seeds, not a bool")
    if isinstance(seeds, int):
        return tuple(first + i for i in range(seeds))
    return tuple(int(s) for s in seeds)


@dataclass(frozen=True)
class PairSpec:
    """What to train: the audited augmentation, its baseline, the data, the preset and the seeds (all resolved)."""

    subject: Augmentation
    baseline: Augmentation | None  # None: ERM (no augmentation)
    train_data: ImageData
    test_data: ImageData
    preset: Preset
    seeds: tuple[int, ...]
    cache_dir: Any = None

    @classmethod
    def resolve(cls, augmentation: Any, baseline: Any = "erm", *, seeds: Sequence[int], data: Any = None,
                data_root: Any = None, cache_dir: Any = None, preset: Any = None,
                overrides: Mapping[str, Any] | None = None) -> PairSpec:
        """Wrap the augmentations (`baseline` "erm" or None is ERM), load both splits of `data` once and
        resolve `preset` (default "smoke") with the training `overrides` once."""
        seeds = tuple(int(s) for s in seeds)
        if not seeds:
            raise PsaUsageError("a trained pair needs at least one seed", fix="pass seeds=seed_list(1, first=0)")
        subject = as_augmentation(augmentation)
        base = None if baseline in ("erm", None) else as_augmentation(baseline)
        train_data = load_data(data, split="train", root=data_root, cache_dir=cache_dir)
        test_data = load_data(data, split="test", root=data_root, cache_dir=cache_dir)
        recipe = resolve_preset(preset or "smoke", **dict(overrides or {}))
        return cls(subject, base, train_data, test_data, recipe, seeds, cache_dir)

    @property
    def subject_name(self) -> str:
        """The audited augmentation's name ("none" for the identity)."""
        return self.subject.name

    @property
    def baseline_name(self) -> str:
        """"erm", or the baseline augmentation's name."""
        return "erm" if self.baseline is None else self.baseline.name

    def train(self, *, model: Any = None, optimizer: str = "sgd", device: Any = None, progress: bool = True,
              roles: Sequence[Role] = (SUBJECT, BASELINE), order: Literal["seed", "role"] = "role") -> TrainedPair:
        """Train (or load from the model cache) one model per (role, seed).

        `roles` lists the roles to train, in training order; `order` "role" trains every seed of a
        role before the next role, "seed" trains every role of a seed before the next seed.
        """
        unknown = [r for r in roles if r not in (SUBJECT, BASELINE)]
        if unknown or not roles or len(set(roles)) != len(roles):
            raise PsaUsageError(f"roles must name {SUBJECT!r} and/or {BASELINE!r} once each", observed=list(roles))
        if order not in ("seed", "role"):
            raise PsaUsageError("order must be 'seed' or 'role'", observed=order)
        cache = ModelCache(self.cache_dir)
        steps = ([(r, s) for r in roles for s in self.seeds] if order == "role"
                 else [(r, s) for s in self.seeds for r in roles])
        trained: dict[str, list[TrainedModel]] = {r: [] for r in roles}
        for role, seed in steps:
            which = self.subject if role == SUBJECT else self.baseline
            trained[role].append(cache.get_or_train(
                model, self.train_data, which, preset=self.preset, seed=seed, device=device,
                optimizer=optimizer, test_data=self.test_data, progress=progress))  # type: ignore[arg-type]
        return TrainedPair(self, {r: tuple(trained[r]) for r in roles})


@dataclass(frozen=True)
class TrainedPair:
    """The trained models of a `PairSpec`: per role, one `TrainedModel` per seed, in seed order."""

    spec: PairSpec
    trained: Mapping[str, tuple[TrainedModel, ...]]

    @property
    def subject_name(self) -> str:
        return self.spec.subject_name

    @property
    def baseline_name(self) -> str:
        return self.spec.baseline_name

    @property
    def train_data(self) -> ImageData:
        return self.spec.train_data

    @property
    def test_data(self) -> ImageData:
        return self.spec.test_data

    @property
    def preset(self) -> Preset:
        return self.spec.preset

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.spec.seeds

    @property
    def roles(self) -> tuple[str, ...]:
        """The trained roles, in training order."""
        return tuple(self.trained)

    def models(self, role: str) -> tuple[TrainedModel, ...]:
        """The role's trained models, one per seed (`seeds`), each with its `record` (``record.cache``: hit/miss)."""
        return self.trained[role]

    def records(self, role: str) -> list[dict[str, Any]]:
        """The role's training records as dicts, one per seed (what the audit results keep under ``training``)."""
        return [t.record.to_dict() for t in self.trained[role]]


def train_pair(augmentation: Any, baseline: Any = "erm", *, seeds: Sequence[int], data: Any = None,
               data_root: Any = None, cache_dir: Any = None, preset: Any = None,
               overrides: Mapping[str, Any] | None = None, model: Any = None, optimizer: str = "sgd",
               device: Any = None, progress: bool = True, roles: Sequence[Role] = (SUBJECT, BASELINE),
               order: Literal["seed", "role"] = "role") -> TrainedPair:
    """`PairSpec.resolve(...)` then `.train(...)`: the audited and baseline models for each seed."""
    spec = PairSpec.resolve(augmentation, baseline, seeds=seeds, data=data, data_root=data_root,
                            cache_dir=cache_dir, preset=preset, overrides=overrides)
    return spec.train(model=model, optimizer=optimizer, device=device, progress=progress, roles=roles, order=order)


__all__ = ["BASELINE", "SUBJECT", "PairSpec", "TrainedPair", "seed_list", "train_pair"]
