"""`robustness(...)`: corruption, perturbation and adversarial robustness of a model, or of an augmentation vs ERM.

For an augmentation, the ERM and augmented models are trained (or loaded) through the same
`ModelCache` calls as `pytest_psa.flatness`, so models trained for a flatness audit are cache hits
here and vice versa. Both are evaluated on the same fixed, class-balanced test images under the
same corruptions (same counter-based RNG seed) and attacks, so every comparison is paired image
by image. Each model's evaluation is cached on disk (see `evaluation_cache.py`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.robustness import error_stats as M
from pytest_psa.audits.robustness_evaluation import (
    ATTACK_BATCH, CorruptionSettings, Subject, evaluate_attack, evaluate_corruptions, evaluate_perturbations,
    model_device,
)
from pytest_psa.measure.robustness.perturbations import resolve_perturbations
from pytest_psa.results.robustness import DEFAULT_ALPHA, RobustnessResult, Samples
from pytest_psa.measure.robustness.specs import resolve_attacks, resolve_corruptions, resolve_severities
from pytest_psa.audits.evaluation_cache import EvaluationStore, model_checksum

DEFAULT_N_IMAGES = 1000  # corruption sets: 75 x 1000 forward passes per model (~10 s for the smoke CNN on 2 cores)
DEFAULT_N_ATTACK_IMAGES = 500
DEFAULT_N_PERTURBATION_IMAGES = 200
EVAL_BATCH = 256  # cpu_feasibility §5: batches of ~250 evaluate ~2x faster than 1000


def robustness(
    augmentation_or_model: Any, *, data: Any = None, preset: Any = None, corruptions: Any = "cifar10-c",
    severities: Sequence[int] = (1, 2, 3, 4, 5), attacks: Any = "default", perturbations: Any = None,
    n_images: int = DEFAULT_N_IMAGES, n_attack_images: int = DEFAULT_N_ATTACK_IMAGES,
    n_perturbation_images: int = DEFAULT_N_PERTURBATION_IMAGES, perturbation_frames: int | None = None,
    seed: int | None = None, seeds: int | Sequence[int] = 1, alpha: float = DEFAULT_ALPHA, baseline: Any = None,
    reference: Any = None, reference_model: str = "AlexNet", model: Any = None, optimizer: str = "sgd",
    resolution: int | None = None, device: Any = None, cache_dir: Any = None,
    data_root: Any = None, progress: bool = False, **train_overrides: Any,
) -> RobustnessResult:
    """Measure robustness of a trained `nn.Module`, or of an augmentation against ERM.

    - A module is evaluated as it is (on its device, or a copy on `device`); `baseline=` another
      module gives the relative numbers.
    - Anything else is an augmentation (as `pytest_psa.as_augmentation` accepts; None = ERM):
      ERM and augmented models are trained per seed through the model cache (`preset`, `model`,
      `optimizer`, ``**train_overrides`` as for `pytest_psa.flatness`), `baseline` is "erm"
      (default) or another augmentation.

    `corruptions`: "cifar10-c" (the 15), "all" (+ the 4 validation ones), names, or None;
    `attacks`: "default" (see `specs.DEFAULT_ATTACKS`), specs like ``"linf:8/255:20"`` or dicts,
    or None; `perturbations`: None or "cifar10-p" (or names). `seed` keys the corruptions, the
    perturbations and the attacks' random starts; `seeds` (a count from `seed`, or a list) are
    the training seeds. `reference`: AlexNet-style error table (dict or RobustBench CSV path) for
    the normalized CE. Intervals are two-sided at 1 - `alpha`.
    """
    t_start = time.perf_counter()
    seed = 0 if seed is None else seed
    _check_int("seed", seed, 0)
    for name, v in (("n_images", n_images), ("n_attack_images", n_attack_images),
                    ("n_perturbation_images", n_perturbation_images)):
        _check_int(name, v, 1)
    M._check_alpha(alpha)
    corr, sev = resolve_corruptions(corruptions), resolve_severities(severities)
    specs, perts = resolve_attacks(attacks), resolve_perturbations(perturbations)
    store = EvaluationStore(cache_dir)
    cache_status: dict[str, str] = {}
    training: dict[str, list[dict[str, Any]]] = {}

    if is_trained_model(augmentation_or_model):
        if model is not None or train_overrides:
            raise PsaUsageError("model= and training overrides apply to augmentations, not to a trained model",
                                observed=sorted(train_overrides) or "model=", fix="drop them, or pass an augmentation")
        from pytest_psa.data.sources import load_data

        test = load_data(data, split="test", root=data_root, cache_dir=cache_dir)
        subject_name = getattr(augmentation_or_model, "psa_name", type(augmentation_or_model).__name__)
        roles = {"subject": [_subject(subject_name, augmentation_or_model, device)]}
        baseline_name = None
        if baseline is not None:
            if not is_trained_model(baseline):
                raise PsaUsageError("for a trained model, baseline= must be another trained nn.Module",
                                    observed=type(baseline).__name__, fix="pass the reference model, or no baseline")
            baseline_name = getattr(baseline, "psa_name", f"{type(baseline).__name__} (baseline)")
            roles["baseline"] = [_subject(baseline_name, baseline, device)]
        kind, seed_list, preset_name = "model", (), None
    else:
        roles, subject_name, baseline_name, test, seed_list, preset_name = _train(
            augmentation_or_model, baseline, data, data_root, cache_dir, preset, seed, seeds, model, optimizer,
            device, progress, train_overrides, cache_status, training)
        kind = "augmentation"
    t_models = time.perf_counter()

    subjects = [s for role in roles.values() for s in role]
    eval_data = test.subset(n_images, seed=0)
    timing: dict[str, float] = {"models_s": t_models - t_start}
    arrays, status, t = evaluate_corruptions(subjects, eval_data, CorruptionSettings(corr, sev, seed, resolution),
                                             store, batch_size=EVAL_BATCH)
    _note(cache_status, subjects, status, "corruptions")
    timing.update({f"corruptions_{k}": v for k, v in t.items()})
    labels = eval_data.labels.numpy()
    clean = {s.label: (a["clean"] != labels).astype(np.float64) for s, a in zip(subjects, arrays)}
    corrupted = {s.label: (a["pred"] != labels[None, None, :]).astype(np.float64) for s, a in zip(subjects, arrays)}

    flips: dict[str, np.ndarray] = {s.label: np.zeros((0, 0)) for s in subjects}
    pert_data = test.subset(n_perturbation_images, seed=0)
    if perts:
        t0 = time.perf_counter()
        arrays, status, t = evaluate_perturbations(subjects, pert_data, perts, seed, perturbation_frames, store,
                                                   batch_size=EVAL_BATCH)
        _note(cache_status, subjects, status, "perturbations")
        timing.update({f"perturbations_{k}": v for k, v in t.items()}, perturbations_s=time.perf_counter() - t0)
        flips = {s.label: np.stack([M.flip_rates(a[p], M.reference_rule(p)) for p in perts])
                 for s, a in zip(subjects, arrays)}

    adv: dict[str, dict[str, np.ndarray]] = {s.label: {} for s in subjects}
    runs: dict[str, dict[str, dict[str, Any]]] = {s.label: {} for s in subjects}
    attack_data = test.subset(n_attack_images, seed=0)
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
        _, _, dropped = M.relative_corruption_errors(samples.corruption, base_samples.corruption, alpha)
        if dropped:
            notes.append(f"relative CE undefined (the baseline made no error) for {[corr[i] for i in dropped]}; "
                         "left out of the relative mCE")
    per_seed = {role: [_seed_numbers(s.label, clean, corrupted, flips, adv, perts, corr, seed_or)
                       for s, seed_or in zip(members, seed_list or [None] * len(members))]
                for role, members in roles.items()}
    timing["total_s"] = time.perf_counter() - t_start
    return RobustnessResult(
        subject=subject_name, kind=kind, baseline=baseline_name, corruptions=corr, severities=sev,
        perturbations=perts, attacks=specs, samples=samples, baseline_samples=base_samples,
        data={**eval_data.to_dict(), "describe": f"{test.name}/{test.split}[{len(eval_data)} of {len(test)}]"},
        n_images=len(eval_data), n_attack_images=len(attack_data) if specs else 0,
        n_perturbation_images=len(pert_data) if perts else 0, seed=seed, seeds=tuple(seed_list),
        preset=preset_name, device=str(model_device(subjects[0].model)),
        settings={"corruptions": {"names": list(corr), "severities": list(sev), "seed": seed, "resolution": resolution},
                  "perturbations": {"names": list(perts), "frames": perturbation_frames, "seed": seed},
                  "attacks": {"seed": seed, "batch_size": ATTACK_BATCH, "specs": [sp.settings for sp in specs]},
                  "reference_model": reference_model if reference is not None else None, "optimizer": optimizer,
                  "alpha": alpha},
        attack_runs={role: {sp.label: [runs[s.label][sp.label] for s in members] for sp in specs}
                     for role, members in roles.items()},
        per_seed=per_seed, training=training, cache=cache_status, timing=timing,
        reference=load_reference(reference, corr, sev, reference_model) if reference is not None else None,
        notes=tuple(notes), alpha=alpha,
        repro=(f"pytest_psa.robustness(<{subject_name}>, data={test.name!r}, seed={seed}, seeds={list(seed_list)}, "
               f"preset={preset_name!r}, n_images={n_images})"),
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


def _train(aug_spec: Any, baseline: Any, data: Any, data_root: Any, cache_dir: Any, preset: Any, seed: int,
           seeds: Any, model: Any, optimizer: str, device: Any, progress: bool, overrides: dict[str, Any],
           cache_status: dict[str, str], training: dict[str, list[dict[str, Any]]]) -> tuple[Any, ...]:
    """Train or load the audited and baseline models per seed (the same cache calls as `flatness`)."""
    from pytest_psa.augment.adapters import as_augmentation
    from pytest_psa.data.sources import load_data
    from pytest_psa.train import ModelCache, resolve_preset

    if is_trained_model(baseline):
        raise PsaUsageError("for an augmentation, baseline= is 'erm' or another augmentation",
                            observed=type(baseline).__name__,
                            fix="compare trained models with robustness(model, baseline=other_model)")
    seed_list = tuple(seed + i for i in range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) \
        else tuple(int(s) for s in seeds)
    if not seed_list:
        raise PsaUsageError("robustness() needs at least one training seed", fix="seeds=1 (or a list of seeds)")
    aug = as_augmentation(aug_spec)
    base = None if baseline in ("erm", None) else as_augmentation(baseline)
    train = load_data(data, split="train", root=data_root, cache_dir=cache_dir)
    test = load_data(data, split="test", root=data_root, cache_dir=cache_dir)
    recipe = resolve_preset(preset or "smoke", **overrides)
    cache = ModelCache(cache_dir)
    base_name = "erm" if base is None else base.name
    plan = [("subject", aug, aug.name if aug.kind != "identity" else "erm")]
    if not (aug.kind == "identity" and base is None):  # ERM against itself: nothing to compare
        plan.append(("baseline", base, base_name))
    roles: dict[str, list[Subject]] = {}
    for role, which, name in plan:
        roles[role], training[role] = [], []
        for s in seed_list:
            trained = cache.get_or_train(model, train, which, preset=recipe, seed=s, device=device,
                                         optimizer=optimizer, test_data=test, progress=progress)
            label = f"{role}:{name} seed {s}"
            roles[role].append(Subject(label, trained.model, model_checksum(trained.model)))
            training[role].append(trained.record.to_dict())
            cache_status[f"{label} model"] = trained.record.cache
    return roles, plan[0][2], (plan[1][2] if len(plan) > 1 else None), test, seed_list, recipe.name


def _note(cache_status: dict[str, str], subjects: Sequence[Subject], status: Sequence[str], what: str) -> None:
    for s, st in zip(subjects, status):
        cache_status[f"{s.label} {what}"] = st


def _seed_numbers(label: str, clean: dict, corrupted: dict, flips: dict, adv: dict, perts: Sequence[str],
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
        for c, s, v in zip(rows[0][1:], rows[1][1:], named[model]):
            table.setdefault(c, {})[int(float(s))] = 1.0 - float(v)
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


__all__ = ["robustness", "load_reference"]
