"""`robustness(...)`: corruption, perturbation and adversarial robustness of a model, or of an augmentation vs ERM.

Two entry points over one evaluator (`_evaluate`): `robustness_of_model` evaluates trained
modules as they are, `robustness_of_augmentation` trains (or loads) the models first;
`robustness` takes either and dispatches with `is_trained_model`. For an augmentation, the ERM
and augmented models come from `trained_pair`, the same `ModelCache` entries as
`pytest_psa.flatness` uses, so models trained for a flatness audit are cache hits here and vice
versa. Both are evaluated on the same fixed, class-balanced test images under the
same corruptions (same counter-based RNG seed) and attacks, so every comparison is paired image
by image. Each model's evaluation is cached on disk (see `evaluation_cache.py`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from pytest_psa.audits.evaluation_cache import EvaluationStore, model_checksum
from pytest_psa.audits.robustness_evaluation import (
    ATTACK_BATCH, CorruptionSettings, Subject, evaluate_attack, evaluate_corruptions, evaluate_perturbations,
    model_device, prefetch_evaluations,
)
from pytest_psa.audits.trained_pair import BASELINE, SUBJECT, PairSpec, Sanity, seed_list
from pytest_psa.data.image_data import ImageData
from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.robustness import error_stats as M
from pytest_psa.measure.robustness.perturbations import resolve_perturbations
from pytest_psa.measure.robustness.specs import AttackSpec, resolve_attacks, resolve_corruptions, resolve_severities
from pytest_psa.results.robustness import DEFAULT_ALPHA, RobustnessResult, Samples

DEFAULT_N_IMAGES = 1000  # corruption sets: 75 x 1000 forward passes per model (~10 s for the smoke CNN on 2 cores)
DEFAULT_N_ATTACK_IMAGES = 500
DEFAULT_N_PERTURBATION_IMAGES = 200
EVAL_BATCH = 256  # measured on 2 CPU cores: batches of ~250 evaluate ~2x faster than 1000


def robustness(
    augmentation_or_model: Any, *, data: Any = None, preset: Any = None, corruptions: Any = "cifar10-c",
    severities: Sequence[int] = (1, 2, 3, 4, 5), attacks: Any = "default", perturbations: Any = None,
    n_images: int = DEFAULT_N_IMAGES, n_attack_images: int = DEFAULT_N_ATTACK_IMAGES,
    n_perturbation_images: int = DEFAULT_N_PERTURBATION_IMAGES, perturbation_frames: int | None = None,
    seed: int | None = None, seeds: int | Sequence[int] = 1, alpha: float = DEFAULT_ALPHA, baseline: Any = None,
    reference: Any = None, reference_model: str = "AlexNet", model: Any = None, optimizer: str = "sgd",
    resolution: int | None = None, device: Any = None, cache_dir: Any = None,
    data_root: Any = None, progress: bool = False, sanity: Sanity = "error", trainer: Any = None,
    **train_overrides: Any,
) -> RobustnessResult:
    """Measure robustness of a trained `nn.Module`, or of an augmentation against ERM.

    - A module is evaluated as it is (on its device, or a copy on `device`); `baseline=` another
      module gives the relative numbers (`robustness_of_model`).
    - Anything else is an augmentation (as `pytest_psa.as_augmentation` accepts; None = ERM):
      ERM and augmented models are trained per seed through the model cache (`preset`, `model`,
      `optimizer`, `trainer`, ``**train_overrides`` as for `pytest_psa.flatness`), `baseline` is "erm"
      (default) or another augmentation (`robustness_of_augmentation`).

    `corruptions`: "cifar10-c" (the 15), "all" (+ the 4 validation ones), names, or None;
    `attacks`: "default" (see `specs.DEFAULT_ATTACKS`), specs like ``"linf:8/255:20"`` or dicts,
    or None; `perturbations`: None or "cifar10-p" (or names). `seed` keys the corruptions, the
    perturbations and the attacks' random starts; `seeds` (a count from `seed`, or a list) are
    the training seeds. `reference`: AlexNet-style error table (dict or RobustBench CSV path) for
    the normalized CE. Intervals are two-sided at 1 - `alpha`. `sanity` (augmentations): "error"
    refuses trained models that learned nothing (`trained_pair.SANITY_RULE`), "warn" measures anyway.
    Asking for more images (n_images, ...) than the test split holds is a `PsaUsageError`.
    """
    t_start = time.perf_counter()
    settings = _settings(corruptions, severities, attacks, perturbations, n_images, n_attack_images,
                         n_perturbation_images, perturbation_frames, seed, alpha, reference, reference_model,
                         resolution)
    if is_trained_model(augmentation_or_model):
        if model is not None or trainer is not None or train_overrides:
            raise PsaUsageError("model=, trainer= and training overrides apply to augmentations, "
                                "not to a trained model",
                                observed=sorted(train_overrides) or ("model=" if model is not None else "trainer="),
                                fix="drop them, or pass an augmentation")
        audited = _model_subjects(augmentation_or_model, baseline, data=data, data_root=data_root,
                                  cache_dir=cache_dir, device=device)
    else:
        audited = _augmentation_subjects(
            augmentation_or_model, baseline, seed=settings.seed, seeds=seeds, data=data, data_root=data_root,
            cache_dir=cache_dir, preset=preset, model=model, optimizer=optimizer, device=device, progress=progress,
            overrides=train_overrides, sanity=sanity, trainer=trainer)
    return _evaluate(audited, settings, EvaluationStore(cache_dir), optimizer=optimizer, t_start=t_start)


def robustness_of_model(
    model: nn.Module, *, baseline: nn.Module | None = None, data: Any = None, corruptions: Any = "cifar10-c",
    severities: Sequence[int] = (1, 2, 3, 4, 5), attacks: Any = "default", perturbations: Any = None,
    n_images: int = DEFAULT_N_IMAGES, n_attack_images: int = DEFAULT_N_ATTACK_IMAGES,
    n_perturbation_images: int = DEFAULT_N_PERTURBATION_IMAGES, perturbation_frames: int | None = None,
    seed: int | None = None, alpha: float = DEFAULT_ALPHA, reference: Any = None, reference_model: str = "AlexNet",
    resolution: int | None = None, device: Any = None, cache_dir: Any = None, data_root: Any = None,
) -> RobustnessResult:
    """Robustness of a trained classifier as it is (on its device, or a copy on `device`), against
    another trained `baseline` module if given; the evaluation arguments are `robustness`'s.
    ``robustness(model, ...)`` calls this."""
    t_start = time.perf_counter()
    settings = _settings(corruptions, severities, attacks, perturbations, n_images, n_attack_images,
                         n_perturbation_images, perturbation_frames, seed, alpha, reference, reference_model,
                         resolution)
    if not is_trained_model(model):
        raise PsaUsageError("robustness_of_model() needs a trained nn.Module with parameters",
                            observed=type(model).__name__, fix="pass augmentations to robustness_of_augmentation()")
    audited = _model_subjects(model, baseline, data=data, data_root=data_root, cache_dir=cache_dir, device=device)
    # "sgd": what robustness(model) has always recorded (the default of its optimizer= argument)
    return _evaluate(audited, settings, EvaluationStore(cache_dir), optimizer="sgd", t_start=t_start)


def robustness_of_augmentation(
    augmentation: Any, *, baseline: Any = "erm", seeds: int | Sequence[int] = 1, data: Any = None,
    preset: Any = None, model: Any = None, optimizer: str = "sgd", corruptions: Any = "cifar10-c",
    severities: Sequence[int] = (1, 2, 3, 4, 5), attacks: Any = "default", perturbations: Any = None,
    n_images: int = DEFAULT_N_IMAGES, n_attack_images: int = DEFAULT_N_ATTACK_IMAGES,
    n_perturbation_images: int = DEFAULT_N_PERTURBATION_IMAGES, perturbation_frames: int | None = None,
    seed: int | None = None, alpha: float = DEFAULT_ALPHA, reference: Any = None, reference_model: str = "AlexNet",
    resolution: int | None = None, device: Any = None, cache_dir: Any = None, data_root: Any = None,
    progress: bool = False, sanity: Sanity = "error", trainer: Any = None, **train_overrides: Any,
) -> RobustnessResult:
    """Robustness of models trained with `augmentation` (None = ERM) against models trained with
    `baseline` ("erm" or another augmentation), per training seed (`seeds`: a count from `seed`,
    or a list), through the model cache (`trained_pair`); the other arguments are `robustness`'s.
    ``robustness(augmentation, ...)`` calls this."""
    t_start = time.perf_counter()
    settings = _settings(corruptions, severities, attacks, perturbations, n_images, n_attack_images,
                         n_perturbation_images, perturbation_frames, seed, alpha, reference, reference_model,
                         resolution)
    if is_trained_model(augmentation):
        raise PsaUsageError("robustness_of_augmentation() got a trained model, not an augmentation",
                            observed=type(augmentation).__name__, fix="evaluate it with robustness_of_model()")
    audited = _augmentation_subjects(
        augmentation, baseline, seed=settings.seed, seeds=seeds, data=data, data_root=data_root, cache_dir=cache_dir,
        preset=preset, model=model, optimizer=optimizer, device=device, progress=progress, overrides=train_overrides,
        sanity=sanity, trainer=trainer)
    return _evaluate(audited, settings, EvaluationStore(cache_dir), optimizer=optimizer, t_start=t_start)


@dataclass(frozen=True)
class _Settings:
    """What to evaluate, validated: the same for both entry points."""

    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    attacks: tuple[AttackSpec, ...]
    perturbations: tuple[str, ...]
    n_images: int
    n_attack_images: int
    n_perturbation_images: int
    perturbation_frames: int | None
    seed: int
    alpha: float
    reference: Any
    reference_model: str
    resolution: int | None


def _settings(corruptions: Any, severities: Sequence[int], attacks: Any, perturbations: Any, n_images: int,
              n_attack_images: int, n_perturbation_images: int, perturbation_frames: int | None, seed: int | None,
              alpha: float, reference: Any, reference_model: str, resolution: int | None) -> _Settings:
    seed = 0 if seed is None else seed
    _check_int("seed", seed, 0)
    for name, v in (("n_images", n_images), ("n_attack_images", n_attack_images),
                    ("n_perturbation_images", n_perturbation_images)):
        _check_int(name, v, 1)
    M._check_alpha(alpha)
    corr, sev = resolve_corruptions(corruptions), resolve_severities(severities)
    specs, perts = resolve_attacks(attacks), resolve_perturbations(perturbations)
    return _Settings(corr, sev, specs, perts, n_images, n_attack_images,
                     n_perturbation_images, perturbation_frames, seed, alpha, reference, reference_model, resolution)


@dataclass(frozen=True)
class _Audited:
    """Who is evaluated: the subjects per role ("subject", and "baseline" if any) and where they came from."""

    kind: str  # "model" or "augmentation"
    roles: dict[str, list[Subject]]
    subject: str
    baseline: str | None
    test: ImageData
    seeds: tuple[int, ...] = ()
    preset: str | None = None
    training: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cache: dict[str, str] = field(default_factory=dict)  # model cache status per subject
    sanity: dict[str, Any] | None = None  # trained_pair's sanity gate record (trained models only)
    training_loss: dict[str, Any] | None = None  # trained_pair's clean-training-loss comparison (TrainedPair.training_loss)


def _model_subjects(model: nn.Module, baseline: Any, *, data: Any, data_root: Any, cache_dir: Any,
                    device: Any) -> _Audited:
    from pytest_psa.data.sources import load_data

    test = load_data(data, split="test", root=data_root, cache_dir=cache_dir)
    subject_name = getattr(model, "psa_name", type(model).__name__)
    roles = {"subject": [_subject(subject_name, model, device)]}
    baseline_name = None
    if baseline is not None:
        if not is_trained_model(baseline):
            raise PsaUsageError("for a trained model, baseline= must be another trained nn.Module",
                                observed=type(baseline).__name__, fix="pass the reference model, or no baseline")
        baseline_name = getattr(baseline, "psa_name", f"{type(baseline).__name__} (baseline)")
        roles["baseline"] = [_subject(baseline_name, baseline, device)]
    return _Audited("model", roles, subject_name, baseline_name, test)


def _augmentation_subjects(augmentation: Any, baseline: Any, *, seed: int, seeds: int | Sequence[int], data: Any,
                           data_root: Any, cache_dir: Any, preset: Any, model: Any, optimizer: str, device: Any,
                           progress: bool, overrides: dict[str, Any], sanity: Sanity = "error",
                           trainer: Any = None) -> _Audited:
    """Train or load the audited and baseline models per seed (`trained_pair`: the same cache entries as `flatness`)."""
    if is_trained_model(baseline):
        raise PsaUsageError("for an augmentation, baseline= is 'erm' or another augmentation",
                            observed=type(baseline).__name__,
                            fix="compare trained models with robustness(model, baseline=other_model)")
    seeds_ = seed_list(seeds, first=seed)
    if not seeds_:
        raise PsaUsageError("robustness() needs at least one training seed", fix="seeds=1 (or a list of seeds)")
    spec = PairSpec.resolve(augmentation, baseline, seeds=seeds_, data=data, data_root=data_root,
                            cache_dir=cache_dir, preset=preset, overrides=overrides)
    erm_alone = spec.compares_nothing  # ERM against ERM trained the same way: nothing to compare
    # every seed of the audited augmentation, then every seed of the baseline: the order robustness has always trained in
    pair = spec.train(model=model, optimizer=optimizer, device=device, progress=progress,
                      roles=(SUBJECT,) if erm_alone else (SUBJECT, BASELINE), order="role",
                      sanity=sanity, trainer=trainer)
    names = {SUBJECT: pair.role_name(SUBJECT), BASELINE: pair.baseline_name}
    roles: dict[str, list[Subject]] = {}
    cache: dict[str, str] = {}
    for role in pair.roles:
        roles[role] = []
        for trained, s in zip(pair.models(role), pair.seeds):
            label = f"{role}:{names[role]} seed {s}"
            roles[role].append(Subject(label, trained.model, model_checksum(trained.model)))
            cache[f"{label} model"] = trained.record.cache
    return _Audited("augmentation", roles, names[SUBJECT], None if erm_alone else names[BASELINE], pair.test_data,
                    seeds=pair.seeds, preset=pair.preset.name, training={r: pair.records(r) for r in pair.roles},
                    cache=cache, sanity=pair.sanity, training_loss=pair.training_loss())


def _evaluate(audited: _Audited, ev: _Settings, store: EvaluationStore, *, optimizer: str,
              t_start: float) -> RobustnessResult:
    """Corruption, perturbation and attack evaluation of every subject, paired image by image, as a result."""
    roles, test, seed = audited.roles, audited.test, ev.seed
    corr, sev, specs, perts = ev.corruptions, ev.severities, ev.attacks, ev.perturbations
    seed_list_, cache_status = audited.seeds, dict(audited.cache)
    t_models = time.perf_counter()
    for what, n, used in (("n_images", ev.n_images, True), ("n_attack_images", ev.n_attack_images, bool(specs)),
                          ("n_perturbation_images", ev.n_perturbation_images, bool(perts))):
        if used:
            test.check_available(n, what)  # never audit fewer images than asked without saying so

    subjects = [s for role in roles.values() for s in role]
    eval_data = test.subset(ev.n_images, seed=0)
    timing: dict[str, float] = {"models_s": t_models - t_start}
    # a remote executor (--psa-executor=ray): every subject's missing evaluations computed at once, then read
    prefetch_evaluations(subjects, store, corruptions=(eval_data, CorruptionSettings(corr, sev, seed, ev.resolution),
                                                       EVAL_BATCH),
                         perturbations=((test.subset(ev.n_perturbation_images, seed=0), perts, seed,
                                         ev.perturbation_frames, EVAL_BATCH) if perts else None),
                         attacks=(test.subset(ev.n_attack_images, seed=0), specs, seed))
    arrays, status, t = evaluate_corruptions(subjects, eval_data, CorruptionSettings(corr, sev, seed, ev.resolution),
                                             store, batch_size=EVAL_BATCH)
    _note(cache_status, subjects, status, "corruptions")
    timing.update({f"corruptions_{k}": v for k, v in t.items()})
    labels = eval_data.labels.numpy()
    clean = {s.label: (a["clean"] != labels).astype(np.float64) for s, a in zip(subjects, arrays)}
    corrupted = {s.label: (a["pred"] != labels[None, None, :]).astype(np.float64) for s, a in zip(subjects, arrays)}

    flips: dict[str, np.ndarray] = {s.label: np.zeros((0, 0)) for s in subjects}
    pert_data = test.subset(ev.n_perturbation_images, seed=0)
    if perts:
        t0 = time.perf_counter()
        arrays, status, t = evaluate_perturbations(subjects, pert_data, perts, seed, ev.perturbation_frames, store,
                                                   batch_size=EVAL_BATCH)
        _note(cache_status, subjects, status, "perturbations")
        timing.update({f"perturbations_{k}": v for k, v in t.items()}, perturbations_s=time.perf_counter() - t0)
        flips = {s.label: np.stack([M.flip_rates(a[p], M.reference_rule(p)) for p in perts])
                 for s, a in zip(subjects, arrays)}

    adv: dict[str, dict[str, np.ndarray]] = {s.label: {} for s in subjects}
    runs: dict[str, dict[str, dict[str, Any]]] = {s.label: {} for s in subjects}
    attack_data = test.subset(ev.n_attack_images, seed=0)
    t0 = time.perf_counter()
    for spec in specs:
        arrays, status = evaluate_attack(subjects, attack_data, spec, seed, store)
        _note(cache_status, subjects, status, f"attack {spec.label}")
        for s, a in zip(subjects, arrays):
            adv[s.label][spec.label] = 1.0 - a["robust_correct"].astype(np.float64)
            runs[s.label][spec.label] = a["info"]
    timing["attacks_s"] = time.perf_counter() - t0

    def role_samples(role: str) -> Samples:
        labs = [s.label for s in roles[role]]
        return Samples(
            clean=np.mean([clean[x] for x in labs], 0), corruption=np.mean([corrupted[x] for x in labs], 0),
            flips=np.mean([flips[x] for x in labs], 0) if perts else np.zeros((0, len(pert_data))),
            adversarial={sp.label: np.mean([adv[x][sp.label] for x in labs], 0) for sp in specs})

    samples = role_samples("subject")
    base_samples = role_samples("baseline") if "baseline" in roles else None
    notes = []
    if base_samples is not None and corr:
        _, _, dropped = M.relative_corruption_errors(samples.corruption, base_samples.corruption, ev.alpha)
        if dropped:
            notes.append(f"relative CE undefined (the baseline made no error) for {[corr[i] for i in dropped]}; "
                         "left out of mce_ratio")
    per_seed = {role: [_seed_numbers(s.label, clean, corrupted, flips, adv, perts, corr, seed_or)
                       for s, seed_or in zip(members, seed_list_ or [None] * len(members))]
                for role, members in roles.items()}
    timing["total_s"] = time.perf_counter() - t_start
    reference, reference_model = ev.reference, ev.reference_model
    return RobustnessResult(
        subject=audited.subject, kind=audited.kind, baseline=audited.baseline, corruptions=corr, severities=sev,
        perturbations=perts, attacks=specs, samples=samples, baseline_samples=base_samples,
        data={**eval_data.to_dict(), "describe": f"{test.name}/{test.split}[{len(eval_data)} of {len(test)}]"},
        n_images=len(eval_data), n_attack_images=len(attack_data) if specs else 0,
        n_perturbation_images=len(pert_data) if perts else 0, seed=seed, seeds=tuple(seed_list_),
        preset=audited.preset, device=str(model_device(subjects[0].model)),
        settings={"corruptions": {"names": list(corr), "severities": list(sev), "seed": seed,
                                  "resolution": ev.resolution},
                  "perturbations": {"names": list(perts), "frames": ev.perturbation_frames, "seed": seed},
                  "attacks": {"seed": seed, "batch_size": ATTACK_BATCH, "specs": [sp.settings for sp in specs]},
                  "reference_model": reference_model if reference is not None else None, "optimizer": optimizer,
                  "alpha": ev.alpha, "sanity": audited.sanity, "training_loss": audited.training_loss},
        attack_runs={role: {sp.label: [runs[s.label][sp.label] for s in members] for sp in specs}
                     for role, members in roles.items()},
        per_seed=per_seed, training=audited.training, cache=cache_status, timing=timing,
        reference=load_reference(reference, corr, sev, reference_model) if reference is not None else None,
        notes=tuple(notes), alpha=ev.alpha,
        repro=(f"pytest_psa.robustness(<{audited.subject}>, data={test.name!r}, seed={seed}, "
               f"seeds={list(seed_list_)}, preset={audited.preset!r}, n_images={ev.n_images})"),
    )


def is_trained_model(obj: Any) -> bool:
    """A classifier to evaluate, not an augmentation: an `nn.Module` with parameters that is not a
    torchvision or kornia transform (those are modules too, mostly without parameters)."""
    if not isinstance(obj, nn.Module):
        return False
    if type(obj).__module__.startswith(("torchvision.transforms", "kornia.augmentation")):
        return False
    return next(obj.parameters(), None) is not None


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PsaUsageError(f"{name} must be an int >= {minimum}", observed=value)


def _subject(label: str, model: nn.Module, device: Any) -> Subject:
    if device is not None and model_device(model) != _torch_device(device):
        model = copy.deepcopy(model).to(_torch_device(device))  # never move the caller's model
    return Subject(label, model, model_checksum(model))


def _torch_device(device: Any) -> Any:
    import torch

    return torch.device(device)


def _note(cache_status: dict[str, str], subjects: Sequence[Subject], status: Sequence[str], what: str) -> None:
    for s, st in zip(subjects, status):
        cache_status[f"{s.label} {what}"] = st


def _seed_numbers(label: str, clean: dict[str, np.ndarray], corrupted: dict[str, np.ndarray],
                  flips: dict[str, np.ndarray], adv: dict[str, dict[str, np.ndarray]], perts: Sequence[str],
                  corr: Sequence[str], seed: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"model": label, "seed": seed, "clean_error": float(clean[label].mean())}
    if corr:
        out["mce"] = float(corrupted[label].mean())
    if perts:
        out["mfp"] = float(flips[label].mean())
    for k, v in adv[label].items():
        out[f"adv_error({k})"] = float(v.mean())
    return out


def load_reference(reference: Any, corruptions: Sequence[str], severities: Sequence[int], model: str) -> np.ndarray:
    """Reference errors [C, S] from a dict ({corruption: [e1..e5]} or {corruption: {severity: e}}, errors)
    or a RobustBench ``unaggregated_results.csv`` path (row `model`, accuracies -> 1 - accuracy)."""
    import csv

    if isinstance(reference, (str, Path)):
        path = Path(reference)
        try:
            rows = list(csv.reader(path.open()))
        except OSError as exc:
            raise PsaUsageError(f"cannot read the reference table {path}", observed=str(exc),
                                fix="pass a RobustBench unaggregated_results.csv path or a dict of errors") from None
        if len(rows) < 3:
            raise PsaUsageError(f"{path} is not in RobustBench's layout (2 header rows, one row per model)")
        named = {r[0]: r[1:] for r in rows[2:] if r}
        if model not in named:
            raise PsaUsageError(f"no row {model!r} in {path}", observed=sorted(named)[:10],
                                fix="pass reference_model= naming one of the rows")
        table: dict[str, dict[int, float]] = {}
        for c, sev, accuracy in zip(rows[0][1:], rows[1][1:], named[model]):
            table.setdefault(c, {})[int(float(sev))] = 1.0 - float(accuracy)
    elif isinstance(reference, dict):
        table = {c: (dict(v) if isinstance(v, dict) else {i + 1: e for i, e in enumerate(v)})
                 for c, v in reference.items()}
    else:
        raise PsaUsageError("reference must be a dict of errors or a CSV path", observed=type(reference).__name__)
    out = np.zeros((len(corruptions), len(severities)))
    for ci, c in enumerate(corruptions):
        for si, s in enumerate(severities):
            v = table.get(c, {}).get(s, table.get(c, {}).get(str(s)))  # type: ignore[call-overload]
            if v is None or not 0 < float(v) <= 1:
                raise PsaUsageError(f"the reference table has no usable error for {c} severity {s}", observed=v,
                                    fix="give errors in (0, 1] for every measured corruption and severity")
            out[ci, si] = float(v)
    return out


__all__ = ["is_trained_model", "load_reference", "robustness", "robustness_of_augmentation", "robustness_of_model"]
