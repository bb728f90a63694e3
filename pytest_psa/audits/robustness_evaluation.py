"""Batched evaluation of models on corrupted and perturbed images, cached per model.

Every corrupted set and every perturbation frame is generated once per call and fed to all the
models that still need it (their cache entries missed), so comparing an augmented model with ERM
costs one generation, not two. Outputs are per-image predictions, which is what every metric
and interval downstream needs. Evaluation is fp32, in eval mode, without gradients; a model's
training mode is restored afterwards.

With a remote executor (``--psa-executor=ray``) the audit first calls `prefetch_evaluations`: each
missing evaluation of one model (its corruptions, its perturbation sequences, one attack) becomes a
unit (`RobustnessJob`, run by `evaluate_unit` with the very `evaluate_*` function below, on that one
model), all submitted at once; the driver stores the returned arrays under the keys a local run
uses, and the `evaluate_*` calls then read them. The local executor does not come here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pytest_psa._threads import single_thread
from pytest_psa._timings import stage
from pytest_psa.data.image_data import ImageData
from pytest_psa.audits.evaluation_cache import EvaluationStore, ModelRef, code_version, packed
from pytest_psa.execution import Executor, Unit, current_executor, is_remote

CHUNK = 1000  # images generated per corruption call (bounded memory at 224 px too)


@dataclass(frozen=True)
class Subject:
    """One model to evaluate: a label for reports, the module and its weight checksum."""

    label: str
    model: nn.Module
    checksum: str


def sample_indices(data: ImageData) -> torch.Tensor:
    """Global positions of the images (their ids for the counter-based RNG)."""
    return data.indices if data.indices is not None else torch.arange(len(data))


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Arg-max predictions of `model` (already in eval mode) for float images in [0, 1].

    One intra-op thread on CPU: for the smoke CNN at batch 100-256 it measured 4-5x faster than 2
    threads on 2 busy cores (what CI and pytest-xdist give; docs/robustness.md)."""
    dev = model_device(model)
    out = []
    with single_thread() if dev.type == "cpu" else contextlib.nullcontext():
        for i in range(0, len(images), batch_size):
            out.append(_predict_batch(model, images[i:i + batch_size], dev))
    return torch.cat(out).numpy().astype(np.int16)


def _predict_batch(model: nn.Module, images: torch.Tensor, dev: torch.device) -> torch.Tensor:
    logits: torch.Tensor = model(images.to(dev, torch.float32).contiguous(memory_format=torch.channels_last))
    if logits.ndim != 2:
        from pytest_psa.errors import PsaUsageError

        raise PsaUsageError("the model must return logits of shape (N, classes)",
                            observed=f"output shape {tuple(logits.shape)}",
                            fix="evaluate a classifier; wrap the model so forward returns (N, classes) logits")
    return logits.argmax(1).to("cpu")


def _single_threaded(frames: Iterator[torch.Tensor], dev: torch.device) -> Iterator[torch.Tensor]:
    """Generate each frame with one intra-op thread on CPU (small batches: 10-25x faster on busy cores)."""
    while True:
        with single_thread() if dev.type == "cpu" else contextlib.nullcontext():
            frame = next(frames, None)
        if frame is None:
            return
        yield frame


class _EvalMode:
    """Put models in eval mode for the block and restore each one's mode afterwards."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.models = list(models)

    def __enter__(self) -> None:
        self.modes = [m.training for m in self.models]
        for m in self.models:
            m.eval()

    def __exit__(self, *exc: Any) -> None:
        for m, mode in zip(self.models, self.modes):
            m.train(mode)


def _entries(kind: str, subjects: Sequence[Subject], data: ImageData, settings: dict[str, Any], code: str,
             **meta: Any) -> list[tuple[str, dict[str, Any]]]:
    """(store key, stored material) per subject: the key covers everything that determines the outputs."""
    return [(EvaluationStore.key({
        "kind": kind, "model": s.checksum, "data": data.fingerprint(), "settings": settings,
        "code": code, "torch": torch.__version__, "device": model_device(s.model).type,
    }), {"kind": kind, "label": s.label, **meta, "settings": settings, "data": data.to_dict()}) for s in subjects]


def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


# -- corruptions ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CorruptionSettings:
    names: tuple[str, ...]
    severities: tuple[int, ...]
    seed: int
    resolution: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "severities": list(self.severities), "seed": self.seed,
                "resolution": self.resolution}


class CorruptedChunks:
    """The corrupted images of one evaluation, one (corruption, severity, chunk) at a time.

    Each chunk is generated once and handed to every model that still needs it (ERM and the
    augmented model, every seed), so a comparison costs one generation, not one per model, and
    memory stays at one chunk (float32, as the models see it: storing uint8 would round the
    kernels' outputs). `images` counts the corrupted images made and `seconds` the time spent
    making them: what the audit reports and the tests check.
    """

    def __init__(self, images: torch.Tensor, ids: torch.Tensor, settings: CorruptionSettings,
                 device: torch.device) -> None:
        self.source, self.ids, self.settings, self.device = images, ids, settings, device
        self.images = 0
        self.seconds = 0.0

    def __len__(self) -> int:
        n = len(self.source)
        return len(self.settings.names) * len(self.settings.severities) * len(range(0, n, CHUNK))

    def __iter__(self) -> Iterator[tuple[int, int, slice, torch.Tensor]]:
        from pytest_psa.measure.robustness.corruptions import corrupt

        s = self.settings
        for ci, name in enumerate(s.names):
            for si, sev in enumerate(s.severities):
                for part in _chunks(len(self.source), CHUNK):
                    t0 = time.perf_counter()
                    # no single_thread() here: corrupt() splits the batch over a pool of
                    # torch.get_num_threads() one-thread workers itself (same bits); at one thread it
                    # would run serially. Intra-op threads inside it were 5.5x slower on busy cores.
                    x = corrupt(self.source[part].to(self.device), name, sev, seed=s.seed, indices=self.ids[part],
                                resolution=s.resolution)
                    self.seconds += time.perf_counter() - t0
                    self.images += len(x)
                    yield ci, si, part, x


def corruption_entries(subjects: Sequence[Subject], data: ImageData,
                       settings: CorruptionSettings) -> list[tuple[str, dict[str, Any]]]:
    version = code_version("pytest_psa.measure.robustness.corruptions", "pytest_psa.audits.robustness_evaluation")
    return _entries("corruptions", subjects, data, settings.to_dict(), version)


def evaluate_corruptions(subjects: Sequence[Subject], data: ImageData, settings: CorruptionSettings,
                         store: EvaluationStore, *, batch_size: int = 256) -> tuple[list[dict[str, Any]], list[str], dict[str, float]]:
    """Clean and corrupted predictions of each subject on `data`: arrays ``clean`` [N] and ``pred`` [C, S, N].

    Returns the arrays per subject, "hit"/"miss" per subject and timing: generation and prediction
    seconds, and ``generated_images`` (corrupted images made; N x C x S when any model missed, 0 on
    a full cache hit, whatever the number of models).
    """
    timing = {"generate_s": 0.0, "predict_s": 0.0, "generated_images": 0}
    entries = corruption_entries(subjects, data, settings)
    detail = (f"{len(data)} images x {len(settings.names) * len(settings.severities)} variants, "
              f"{len(subjects)} models")

    def compute(todo: list[int], staged: bool) -> list[dict[str, np.ndarray]]:
        models = [subjects[i].model for i in todo]
        images = data.float_images()
        c, s, n = len(settings.names), len(settings.severities), len(data)
        preds = [np.zeros((c, s, n), np.int16) for _ in todo]
        chunks = CorruptedChunks(images, sample_indices(data), settings, model_device(models[0]))
        with _EvalMode(models):
            with _stage(staged, "clean", f"{n} images, {len(models)} models"):
                t0 = time.perf_counter()
                clean = [predict(m, images, batch_size) for m in models]
                timing["predict_s"] += time.perf_counter() - t0
            with _stage(staged, "corruptions", f"{detail}, {len(models)} computed"):
                for ci, si, part, x in chunks:
                    t1 = time.perf_counter()
                    for k, m in enumerate(models):
                        preds[k][ci, si, part] = predict(m, x, batch_size)
                    timing["predict_s"] += time.perf_counter() - t1
        timing["generate_s"] += chunks.seconds
        timing["generated_images"] += chunks.images
        return [{"clean": cl, "pred": p} for cl, p in zip(clean, preds)]

    arrays, status = _get_or_compute(store, entries, compute, "corruptions", detail)
    return arrays, status, timing


def _get_or_compute(store: EvaluationStore, entries: list[tuple[str, dict[str, Any]]],
                    compute: Callable[[list[int], bool], list[dict[str, np.ndarray]]], name: str,
                    detail: str) -> tuple[list[dict[str, Any]], list[str]]:
    """`store.get_or_compute` with stage timings: `compute` times its own stages; when every entry
    is on disk the load is one cached stage `name` (and a damaged entry recomputed there is timed
    by it, not twice)."""
    if all(store.path(key).is_file() for key, _ in entries):
        with stage(name, detail, cached=True) as st:
            arrays, status = store.get_or_compute(entries, lambda todo: compute(todo, False))
            st.cached = "miss" not in status
        return arrays, status
    return store.get_or_compute(entries, lambda todo: compute(todo, True))


def _stage(staged: bool, name: str, detail: str) -> contextlib.AbstractContextManager[Any]:
    return stage(name, detail) if staged else contextlib.nullcontext()


# -- perturbation sequences -----------------------------------------------------------------------
def perturbation_entries(subjects: Sequence[Subject], data: ImageData, names: Sequence[str], seed: int,
                         frames: int | None) -> list[tuple[str, dict[str, Any]]]:
    version = code_version("pytest_psa.measure.robustness.corruptions", "pytest_psa.measure.robustness.perturbations",
                           "pytest_psa.audits.robustness_evaluation")
    settings = {"names": list(names), "seed": seed, "frames": frames}
    return _entries("perturbations", subjects, data, settings, version)


def evaluate_perturbations(subjects: Sequence[Subject], data: ImageData, names: Sequence[str], seed: int,
                           frames: int | None, store: EvaluationStore, *,
                           batch_size: int = 256) -> tuple[list[dict[str, Any]], list[str], dict[str, float]]:
    """Predictions on every frame of every perturbation sequence: arrays ``<name>`` [N, T + 1] per subject."""
    from pytest_psa.measure.robustness import perturbations as P

    timing = {"generate_s": 0.0, "predict_s": 0.0}
    entries = perturbation_entries(subjects, data, names, seed, frames)

    detail = f"{len(data)} images x {len(names)} sequences, {len(subjects)} models"

    def compute(todo: list[int], staged: bool) -> list[dict[str, np.ndarray]]:
        models = [subjects[i].model for i in todo]
        dev = model_device(models[0])
        images, ids = data.float_images(), sample_indices(data)
        out: list[dict[str, np.ndarray]] = [{} for _ in todo]
        with _EvalMode(models), _stage(staged, "perturbations", f"{detail}, {len(models)} computed"):
            for name in names:
                cols: list[list[np.ndarray]] = [[] for _ in todo]
                for part in _chunks(len(data), CHUNK):
                    per_frame: list[list[np.ndarray]] = [[] for _ in todo]
                    t0 = time.perf_counter()
                    frames_it = P.sequence(name, images[part].to(dev), ids[part], seed=seed, frames=frames)
                    for frame in _single_threaded(frames_it, dev):
                        t1 = time.perf_counter()
                        for k, m in enumerate(models):
                            per_frame[k].append(predict(m, frame, batch_size))
                        t0, timing["generate_s"] = time.perf_counter(), timing["generate_s"] + (t1 - t0)
                        timing["predict_s"] += t0 - t1
                    for k in range(len(todo)):
                        cols[k].append(np.stack(per_frame[k], 1))
                for k in range(len(todo)):
                    out[k][name] = np.concatenate(cols[k], 0)
        return out

    arrays, status = _get_or_compute(store, entries, compute, "perturbations", detail)
    return arrays, status, timing


# -- attacks --------------------------------------------------------------------------------------
ATTACK_BATCH = 250  # measured on 2 CPU cores: PGD at batch 250 is 2x faster than at 1000


def attack_entries(subjects: Sequence[Subject], data: ImageData, spec: Any,
                   seed: int) -> list[tuple[str, dict[str, Any]]]:
    version = code_version("pytest_psa.measure.robustness.attacks")
    return _entries("attack", subjects, data, {**spec.settings, "seed": seed}, version, attack=spec.label)


def evaluate_attack(subjects: Sequence[Subject], data: ImageData, spec: Any, seed: int, store: EvaluationStore,
                    ) -> tuple[list[dict[str, Any]], list[str]]:
    """Run one attack (an `AttackSpec`) on each subject: arrays ``clean_correct``, ``robust_correct`` [N]
    and ``info`` (JSON: counts, timing, perturbation bound, self-checks of `run_attack`)."""
    import json

    from pytest_psa.measure.robustness.attacks import run_attack

    settings = {**spec.settings, "seed": seed}
    entries = attack_entries(subjects, data, spec, seed)

    detail = f"{spec.label}, {len(data)} images, {len(subjects)} models"

    def compute(todo: list[int], staged: bool) -> list[dict[str, np.ndarray]]:
        out = []
        images = data.float_images()
        for i in todo:
            model = subjects[i].model
            dev = model_device(model)
            with (single_thread() if dev.type == "cpu" else contextlib.nullcontext(),  # 5x faster on busy cores
                  _stage(staged, "attacks", f"{spec.label}, {len(data)} images, {subjects[i].label}")):
                result = run_attack(model, images.to(dev), data.labels.to(dev), batch_size=ATTACK_BATCH,
                                    label=spec.label, **settings)
            info = {k: v for k, v in result.to_dict().items() if k not in ("robust_interval",)}
            out.append({"clean_correct": np.asarray(result.clean_correct, bool),
                        "robust_correct": np.asarray(result.robust_correct, bool),
                        "info": np.array(json.dumps(info, default=str))})
        return out

    arrays, status = _get_or_compute(store, entries, compute, "attacks", detail)
    for a in arrays:
        a["info"] = json.loads(str(a["info"])) if not isinstance(a["info"], dict) else a["info"]
    return arrays, status


# -- as executor units ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RobustnessJob:
    """A robustness unit's plan: one evaluation ("corruptions", "perturbations" or "attack") of one model;
    `args` are the matching `evaluate_*` function's arguments after the subjects (the store excepted)."""

    kind: str
    label: str
    model: ModelRef
    data: ImageData
    args: tuple[Any, ...]


class _UnitStore(EvaluationStore):
    """No store: a unit computes every entry and keeps the arrays for the driver (which stores them)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.arrays: list[dict[str, np.ndarray]] = []

    def path(self, key: str) -> Any:
        return self.dir / "in-a-unit-nothing-is-stored" / f"{key}.npz"

    def get_or_compute(self, entries: Sequence[tuple[str, dict[str, Any]]],
                       compute: Callable[[list[int]], list[dict[str, np.ndarray]]]) -> tuple[list[dict[str, Any]], list[str]]:
        self.arrays = compute(list(range(len(entries))))
        return [dict(a) for a in self.arrays], ["miss"] * len(entries)


def evaluate_unit(job: RobustnessJob) -> dict[str, Any]:
    """The robustness unit, run where the executor puts it: the `evaluate_*` function on the shipped
    model, the arrays as the store keeps them (with their checksums)."""
    store = _UnitStore()
    with job.model.threads_set():
        subjects = [Subject(job.label, job.model.build(), job.model.checksum)]
        if job.kind == "corruptions":
            evaluate_corruptions(subjects, job.data, job.args[0], store, batch_size=job.args[1])
        elif job.kind == "perturbations":
            names, seed, frames, batch_size = job.args
            evaluate_perturbations(subjects, job.data, names, seed, frames, store, batch_size=batch_size)
        else:
            evaluate_attack(subjects, job.data, job.args[0], job.args[1], store)
    return packed(store.arrays)


def prefetch_evaluations(subjects: Sequence[Subject], store: EvaluationStore, *,
                         corruptions: tuple[ImageData, CorruptionSettings, int],
                         perturbations: tuple[ImageData, Sequence[str], int, int | None, int] | None,
                         attacks: tuple[ImageData, Sequence[Any], int], executor: Executor | None = None,
                         progress: bool = False) -> int:
    """With a remote executor, every subject's missing evaluations as units submitted at once, stored
    here (then the `evaluate_*` calls read them); returns how many were stored. Local: nothing.

    `corruptions`: (data, settings, batch size); `perturbations`: (data, names, seed, frames, batch
    size) or None; `attacks`: (data, specs, seed)."""
    executor = executor if executor is not None else current_executor()
    if not is_remote(executor) or not subjects:
        return 0
    threads = int(getattr(executor, "cpus_per_unit", 1))
    refs = {s.label: ModelRef.of(s.model, s.checksum, threads=threads) for s in subjects}
    plans: list[tuple[str, str, ImageData, tuple[Any, ...], list[tuple[str, dict[str, Any]]]]] = []
    for s in subjects:
        data, settings, batch = corruptions
        plans.append(("corruptions", "corruptions", data, (settings, batch), corruption_entries([s], data, settings)))
        if perturbations is not None:
            data, names, seed, frames, batch = perturbations
            plans.append(("perturbations", "perturbations", data, (list(names), seed, frames, batch),
                          perturbation_entries([s], data, names, seed, frames)))
        data, specs, seed = attacks
        for spec in specs:
            plans.append(("attack", f"attack {spec.label}", data, (spec, seed), attack_entries([s], data, spec, seed)))
    subject_of = [s for s in subjects for _ in range(len(plans) // len(subjects))]
    groups = []
    for s, (kind, what, data, args, entries) in zip(subject_of, plans):
        def unit_for(todo: list[int], s: Subject = s, kind: str = kind, what: str = what, data: ImageData = data,
                     args: tuple[Any, ...] = args, entries: list[tuple[str, dict[str, Any]]] = entries) -> Unit:
            ref = refs[s.label]
            return Unit(key=entries[0][0], label=f"{s.label} {what}", fn=evaluate_unit,
                        plan=RobustnessJob(kind, s.label, ref, data, args), cpus=float(threads),
                        gpus=1.0 if ref.device == "cuda" else 0.0)

        groups.append((entries, unit_for))
    with stage("robustness", detail=f"{len(groups)} evaluations of {len(subjects)} models, "
                                    f"{executor.name} executor") as st:
        stored = store.compute_remote(groups, executor, desc="psa robustness", progress=progress)
        st.cached = stored == 0
    return stored
