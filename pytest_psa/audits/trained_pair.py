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
same arguments whichever audit asks (with a remote executor, ``--psa-executor=ray``: every
(role, seed) plan goes to `ModelCache.get_or_train_plans` at once, and the missing ones train in
parallel on the cluster), so a model trained for one audit is a cache hit for the
other. Training is seeded inside the trainer (`torch.random.fork_rng`), so the order of the
trainings changes neither the weights nor the cache keys; `order` and `roles` only keep each
audit's progress lines and training log in the order they have always had.

Before a verdict, the sanity gate (`SANITY_RULE`) checks that the comparison means something: the
training subset holds at least `MIN_TRAIN_PER_CLASS` images of every class (checked before any
training), and every trained model's clean test accuracy is clearly above chance. A baseline that
learned nothing, or an augmented model that collapsed, raises `PsaSanityError` with the numbers
(``sanity="warn"``: a `PsaWarning` instead, for research use). `TrainedPair.sanity` holds the
gate's record, which the audits keep under ``settings["sanity"]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np

from pytest_psa._timings import stage
from pytest_psa.augment.adapters import Augmentation
from pytest_psa.augment.known import check_augmentation_name, resolve_augmentation
from pytest_psa.data.image_data import ImageData
from pytest_psa.data.sources import load_data
from pytest_psa.errors import PsaSanityError, PsaUsageError, PsaWarning
from pytest_psa.execution import current_executor, is_remote
from pytest_psa.train.model_cache import ModelCache
from pytest_psa.train.plan import TrainingPlan
from pytest_psa.train.arm import TrainingArm, split_arm
from pytest_psa.train.presets import Preset, resolve_preset
from pytest_psa.train.record import TrainedModel, loss_gap

Role = Literal["subject", "baseline"]
SUBJECT: Final = "subject"  # the audited augmentation's models
BASELINE: Final = "baseline"  # the models it is compared with (ERM: no augmentation)

Sanity = Literal["error", "warn"]
SANITY_ALPHA: Final = 0.01
SANITY_MIN_MARGIN: Final = 0.05  # accuracy above chance, as a fraction: a significant 0.101 is no model
MIN_TRAIN_PER_CLASS: Final = 10
SANITY_RULE: Final = (
    f"a model learned something when its clean test accuracy (fraction correct on the whole test split) "
    f"is at least chance + {SANITY_MIN_MARGIN:g} and a one-sided exact binomial test rejects "
    f"'accuracy <= chance' at alpha = {SANITY_ALPHA:g}; chance is the largest class share of the test "
    f"images (1/C for a balanced split)"
)


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
    subject_arm: TrainingArm | None = None   # the subject trained its own way (`pytest_psa.train.arm`)
    baseline_arm: TrainingArm | None = None  # the baseline trained its own way (e.g. ERM + SAM)

    @classmethod
    def resolve(cls, augmentation: Any, baseline: Any = "erm", *, seeds: Sequence[int], data: Any = None,
                data_root: Any = None, cache_dir: Any = None, preset: Any = None,
                overrides: Mapping[str, Any] | None = None) -> PairSpec:
        """Wrap the augmentations (a transform, a name `psa list` shows such as "augmix", or a module:attr
        path, built for the data's image size; `baseline` "erm" or None is ERM), load both splits of `data` once and
        resolve `preset` (default "smoke") with the training `overrides` once. Either side may be a
        `TrainingArm` (`pytest_psa.train.arm(aug, optimizer=..., **preset_fields)`): that side then
        trains with its own optimizer and preset fields on top of the shared recipe."""
        seeds = tuple(int(s) for s in seeds)
        if not seeds:
            raise PsaUsageError("a trained pair needs at least one seed", fix="pass seeds=seed_list(1, first=0)")
        augmentation, subject_arm = split_arm(augmentation)
        baseline, baseline_arm = split_arm(baseline)
        check_augmentation_name(augmentation)  # a misspelt name fails before the data is loaded
        if baseline not in ("erm", None):
            check_augmentation_name(baseline)
        train_data = load_data(data, split="train", root=data_root, cache_dir=cache_dir)
        test_data = load_data(data, split="test", root=data_root, cache_dir=cache_dir)
        # a name ("augmix") or module:attr path is built for the data's image size, as density() and psa audit do
        size = max(train_data.image_size)
        subject = resolve_augmentation(augmentation, image_size=size)
        base = None if baseline in ("erm", None) else resolve_augmentation(baseline, image_size=size)
        recipe = resolve_preset(preset or "smoke", **dict(overrides or {}))
        return cls(subject, base, train_data, test_data, recipe, seeds, cache_dir, subject_arm, baseline_arm)

    @property
    def subject_name(self) -> str:
        """The audited augmentation's name ("none" for the identity), with its arm's suffix (``+sam``)."""
        suffix = self.subject_arm.suffix if self.subject_arm else ""
        return ("erm" if suffix and self.subject.kind == "identity" else self.subject.name) + suffix

    @property
    def baseline_name(self) -> str:
        """"erm", or the baseline augmentation's name, with its arm's suffix (``erm+sam``)."""
        return ("erm" if self.baseline is None else self.baseline.name) + (
            self.baseline_arm.suffix if self.baseline_arm else "")

    @property
    def compares_nothing(self) -> bool:
        """ERM audited against ERM trained the same way: there is no second side to train."""
        same = (self.subject_arm or TrainingArm()).to_dict() == (self.baseline_arm or TrainingArm()).to_dict()
        return self.subject.kind == "identity" and self.baseline is None and same

    def role_training(self, role: str, optimizer: str) -> tuple[Preset, str]:
        """(preset, optimizer) a role trains with: the shared ones, with the role's arm on top."""
        which = self.subject_arm if role == SUBJECT else self.baseline_arm
        if which is None:
            return self.preset, optimizer
        return resolve_preset(self.preset, **dict(which.overrides)), which.optimizer_for(optimizer)

    def train(self, *, model: Any = None, optimizer: str = "sgd", device: Any = None, progress: bool = True,
              roles: Sequence[Role] = (SUBJECT, BASELINE), order: Literal["seed", "role"] = "role",
              sanity: Sanity = "error", trainer: Any = None) -> TrainedPair:
        """Train (or load from the model cache) one model per (role, seed), then run the sanity gate.

        `trainer`: the user's training recipe for both roles (`pytest_psa.train.user_trainer`), None = built-in.

        `roles` lists the roles to train, in training order; `order` "role" trains every seed of a
        role before the next role, "seed" trains every role of a seed before the next seed.
        `sanity` "error" refuses (`PsaSanityError`) a training set with fewer than
        `MIN_TRAIN_PER_CLASS` images of a class, before training, and models that fail
        `SANITY_RULE`; "warn" warns (`PsaWarning`) and goes on.
        """
        if sanity not in ("error", "warn"):
            raise PsaUsageError("sanity must be 'error' (refuse a verdict on models that learned nothing) "
                                "or 'warn'", observed=sanity, fix="sanity='error' (the default) or sanity='warn'")
        size = self.training_set_size()
        _gate(size["passed"], sanity, lambda: self._too_small(size))
        unknown = [r for r in roles if r not in (SUBJECT, BASELINE)]
        if unknown or not roles or len(set(roles)) != len(roles):
            raise PsaUsageError(f"roles must name {SUBJECT!r} and/or {BASELINE!r} once each", observed=list(roles))
        if order not in ("seed", "role"):
            raise PsaUsageError("order must be 'seed' or 'role'", observed=order)
        cache = ModelCache(self.cache_dir)
        steps = ([(r, s) for r in roles for s in self.seeds] if order == "role"
                 else [(r, s) for s in self.seeds for r in roles])
        trained: dict[str, list[TrainedModel]] = {r: [] for r in roles}
        executor = current_executor()
        if is_remote(executor):  # every missing (role, seed) submitted at once (--psa-executor=ray)
            plans = []
            for role, seed in steps:
                recipe, role_optimizer = self.role_training(role, optimizer)
                plans.append(TrainingPlan.resolve(
                    model, self.train_data, self.subject if role == SUBJECT else self.baseline, preset=recipe,
                    seed=seed, device=device, optimizer=role_optimizer, trainer=trainer))
            with stage("training", detail=f"{len(plans)} models, {executor.name} executor") as timing:
                models = cache.get_or_train_plans(plans, test_data=self.test_data, progress=progress,
                                                  executor=executor)
                timing.cached = all(m.record.cache == "hit" for m in models)
            for (role, _), got in zip(steps, models):
                trained[role].append(got)
            steps = []
        for role, seed in steps:
            which = self.subject if role == SUBJECT else self.baseline
            recipe, role_optimizer = self.role_training(role, optimizer)
            with stage("training", detail=f"{role} seed {seed}") as timing:
                trained[role].append(cache.get_or_train(
                    model, self.train_data, which, preset=recipe, seed=seed, device=device,
                    optimizer=role_optimizer, test_data=self.test_data, progress=progress,  # type: ignore[arg-type]
                    trainer=trainer))
                timing.cached = trained[role][-1].record.cache == "hit"
        pair = TrainedPair(self, {r: tuple(trained[r]) for r in roles})
        record = pair.sanity_record(sanity, size)
        object.__setattr__(pair, "sanity", record)  # frozen: set once, here
        _gate(record["passed"], sanity, lambda: pair._learned_nothing(record))
        return pair

    def training_set_size(self) -> dict[str, Any]:
        """The images per class of the subset every model of this pair trains on (the preset's
        ``n_train`` class-balanced subset), against `MIN_TRAIN_PER_CLASS`."""
        subset = self.train_data.subset(self.preset.n_train, seed=self.preset.subset_seed)
        counts = np.bincount(subset.labels.numpy(), minlength=self.train_data.num_classes)
        smallest = int(counts.argmin())
        return {"n_train": len(subset), "num_classes": int(len(counts)), "min_per_class": int(counts[smallest]),
                "smallest_class": self.train_data.classes[smallest] if smallest < len(self.train_data.classes)
                else str(smallest), "min_train_per_class": MIN_TRAIN_PER_CLASS,
                "passed": bool(counts[smallest] >= MIN_TRAIN_PER_CLASS)}

    def _too_small(self, size: dict[str, Any]) -> PsaSanityError:
        need = MIN_TRAIN_PER_CLASS * size["num_classes"]
        return PsaSanityError(
            f"sanity gate: the training set is too small to measure anything (at least "
            f"{MIN_TRAIN_PER_CLASS} images of every class are needed)",
            observed=f"{size['n_train']} training images of {self.train_data.describe()}, "
                     f"{size['min_per_class']} of class {size['smallest_class']!r}",
            fix=f"train on at least {need} class-balanced images (n_train={need} or more, or n_train=None for "
                f"all of them) or on a larger data set; sanity='warn' measures anyway (research use)",
            record={"training_set": size})


@dataclass(frozen=True)
class TrainedPair:
    """The trained models of a `PairSpec`: per role, one `TrainedModel` per seed, in seed order."""

    spec: PairSpec
    trained: Mapping[str, tuple[TrainedModel, ...]]
    sanity: dict[str, Any] = field(default_factory=dict)  # the gate's record (`sanity_record`), set by train

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

    def role_name(self, role: str) -> str:
        """Who a role's models are, in messages: "erm", or the augmentation's name (plus an arm's suffix)."""
        if role == BASELINE:
            return self.baseline_name
        return "erm" if self.spec.subject.kind == "identity" and not self.spec.subject_arm else self.subject_name

    def training_loss(self) -> dict[str, Any] | None:
        """The clean training loss each side reached and whether they differ by more than the tolerance
        (`pytest_psa.train.record.loss_gap`: ``note`` is the verdicts' line); None with one side only."""
        if SUBJECT not in self.trained or BASELINE not in self.trained:
            return None
        return loss_gap(self.records(BASELINE), self.records(SUBJECT), baseline_name=self.role_name(BASELINE),
                        subject_name=self.role_name(SUBJECT))

    def sanity_record(self, mode: Sanity = "error", training_set: dict[str, Any] | None = None) -> dict[str, Any]:
        """`SANITY_RULE` applied to every trained model: its clean test accuracy, the chance level, the
        one-sided exact binomial p-value (scipy's `binomtest`) and whether it passed; JSON-ready."""
        from scipy.stats import binomtest

        test = self.test_data
        shares = np.bincount(test.labels.numpy(), minlength=test.num_classes) / len(test)
        chance = float(shares.max())
        models = []
        for role in self.roles:
            for t, seed in zip(self.trained[role], self.seeds):
                n, accuracy = _test_accuracy(t, test)
                correct = int(round(accuracy * n))
                p_value = float(binomtest(correct, n, chance, alternative="greater").pvalue) if chance < 1 else 1.0
                models.append({
                    "role": role, "name": self.role_name(role), "seed": int(seed), "clean_test_accuracy": accuracy,
                    "correct": correct, "test_images": n, "p_value": p_value,
                    "passed": bool(accuracy >= chance + SANITY_MIN_MARGIN and p_value < SANITY_ALPHA)})
        return {"rule": SANITY_RULE, "alpha": SANITY_ALPHA, "min_margin": SANITY_MIN_MARGIN, "chance": chance,
                "chance_convention": "largest class share of the test images", "mode": mode,
                "training_set": training_set or self.spec.training_set_size(), "models": models,
                "passed": all(m["passed"] for m in models)}

    def _learned_nothing(self, record: dict[str, Any]) -> PsaSanityError:
        failed = [m for m in record["models"] if not m["passed"]]
        baseline_failed = any(m["role"] == BASELINE for m in failed)
        only_subject = BASELINE not in self.roles
        who = failed[0]["name"]
        if baseline_failed or only_subject:
            problem = (f"sanity gate: the baseline {self.baseline_name} did not learn, so no verdict compares "
                       f"{self.role_name(SUBJECT)} with it" if baseline_failed else
                       f"sanity gate: the model trained with {who} did not learn, so its numbers say nothing")
            fix = ("train longer or on more images (epochs=..., n_train=...), or use a larger preset; check that "
                   "the labels match the images")
        else:
            problem = (f"sanity gate: the model trained with {self.subject_name} collapsed (its accuracy is not "
                       f"clearly above chance while the baseline {self.baseline_name}'s is), so no verdict compares "
                       "them")
            fix = ("check the augmentation: does it keep the label (a crop that cuts the object out, a colour change "
                   "on colour-coded classes)? is it far too strong? audit it with psa.density(...) first")
        lines = list(dict.fromkeys(  # ERM audited against ERM: one line per model, not per role
            f"{m['name']} seed {m['seed']}: clean test accuracy {m['clean_test_accuracy']:.3f} "
            f"({m['correct']}/{m['test_images']}), binomial p = {m['p_value']:.2g}"
            f"{'' if m['passed'] else '  <- fails'}" for m in record["models"]))
        observed = (f"chance {record['chance']:.3f}; rule: {record['rule']}\n    " + "\n    ".join(lines))
        return PsaSanityError(problem, observed=observed,
                              fix=f"{fix}; sanity='warn' measures anyway (research use: the verdict is then "
                                  "about models that learned nothing)", record=record)


def train_pair(augmentation: Any, baseline: Any = "erm", *, seeds: Sequence[int], data: Any = None,
               data_root: Any = None, cache_dir: Any = None, preset: Any = None,
               overrides: Mapping[str, Any] | None = None, model: Any = None, optimizer: str = "sgd",
               device: Any = None, progress: bool = True, roles: Sequence[Role] = (SUBJECT, BASELINE),
               order: Literal["seed", "role"] = "role", sanity: Sanity = "error", trainer: Any = None) -> TrainedPair:
    """`PairSpec.resolve(...)` then `.train(...)`: the audited and baseline models for each seed."""
    spec = PairSpec.resolve(augmentation, baseline, seeds=seeds, data=data, data_root=data_root,
                            cache_dir=cache_dir, preset=preset, overrides=overrides)
    return spec.train(model=model, optimizer=optimizer, device=device, progress=progress, roles=roles, order=order,
                      sanity=sanity, trainer=trainer)


def _test_accuracy(trained: TrainedModel, test: ImageData) -> tuple[int, float]:
    """(test images, clean accuracy) from the training record; evaluated here when the record has none."""
    rec = trained.record
    if rec.test_accuracy is not None and rec.test_data and rec.test_data.get("fingerprint") == test.fingerprint():
        return int(rec.test_data["n"]), float(rec.test_accuracy)
    from pytest_psa.train.trainer import evaluate

    accuracy, _ = evaluate(trained.model, test)
    return len(test), float(accuracy)


def _gate(passed: bool, mode: Sanity, refusal: Callable[[], PsaSanityError]) -> None:
    __tracebackhide__ = True
    if passed:
        return
    error = refusal()
    if mode == "error":
        raise error
    warnings.warn(PsaWarning(f"{error} (sanity='warn': measuring anyway)"), stacklevel=4)


__all__ = ["BASELINE", "MIN_TRAIN_PER_CLASS", "SANITY_ALPHA", "SANITY_MIN_MARGIN", "SANITY_RULE", "SUBJECT",
           "PairSpec", "Sanity", "TrainedPair", "seed_list", "train_pair"]
