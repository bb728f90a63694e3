"""Cached flatness measurements: a model's flatness is measured once per setting, then read back.

A flatness value is a deterministic function of the model's weights, the measured images, the
metric and every setting that changes it (`measure.metric_settings`: PAC-Bayes target, LPF sigma
and normalization, Hessian iterations and tolerance, n_samples, max_images, ...), the seed, the
device kind and the code and library versions. One entry per (model, metric) holds the metric's
result (and its filter-normalized variant when asked for) with the clean loss, accuracy and weight
norms of the measurement, in the evaluation store's ``<root>/flatness`` folder
(`pytest_psa.audits.evaluation_cache.EvaluationStore`: atomic writes, a lock per key, a checksum per
entry; a damaged entry warns and is measured again).

The entry is JSON text inside the store's npz (loaded with ``allow_pickle=False``; nothing executes
on load). Floats round-trip exactly (``json`` writes ``repr``; NaN and inf as their literals), so a
warm measurement returns the very values the cold one did. Measurements whose settings are not
plain data (a callable ``params`` or ``accuracy``) or that have no seed are measured and not stored.

With a remote executor (``--psa-executor=ray``) an audit first calls `prefetch` with all its models:
each model's missing metrics become one unit (`FlatnessJob`: the model as a `ModelRef`, the images,
metrics, seed and settings; `measure_unit` runs it), all submitted at once; the driver stores what
comes back under the keys a local measurement would use, and `measure_cached` then reads them.
With the local executor `prefetch` does nothing and `measure_cached` measures as before.
"""

from __future__ import annotations

import dataclasses
import json
import time
import typing
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_psa._timings import stage
from pytest_psa._version import __version__
from pytest_psa.audits.evaluation_cache import EvaluationStore, ModelRef, code_version, model_checksum, packed
from pytest_psa.execution import Executor, Unit, current_executor, is_remote
from pytest_psa.measure.flatness import metric_values
from pytest_psa.measure.flatness.flatness_report import FlatnessReport
from pytest_psa.measure.flatness.measure import measure_flatness, metric_settings
from pytest_psa.measure.flatness.metric_values import MetricResult

KIND = "flatness"
#: Process-wide counts of metric values "loaded" from and "computed" into the store (what tests and
#: benchmarks read to see that a warm audit measured nothing).
stats: Counter[str] = Counter()

_RESULT_TYPES = {c.__name__: c for c in (
    metric_values.MetricResult, metric_values.PacBayesResult, metric_values.LPFResult,
    metric_values.EpsSharpnessResult, metric_values.HessianTopResult, metric_values.HessianTraceResult)}
_BASE = ("loss0", "accuracy", "n_images", "weight_norms", "weight_norm", "device", "versions")


def result_to_state(r: MetricResult) -> dict[str, Any]:
    """A metric result as plain data (its class name and fields), for `result_from_state`."""
    return {"type": type(r).__name__, "fields": dataclasses.asdict(r)}


def result_from_state(state: dict[str, Any]) -> MetricResult:
    """The metric result `result_to_state` wrote: same class, same values (tuples restored)."""
    result: MetricResult = _build(_RESULT_TYPES[state["type"]], state["fields"])
    return result


def _build(cls: Any, fields: dict[str, Any]) -> Any:
    """``cls(**fields)`` with nested dataclasses built and JSON's lists turned back into tuples."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        v, hint = fields[f.name], hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            v = _build(hint, v)
        elif typing.get_origin(hint) is tuple and isinstance(v, list):
            v = tuple(v)
        kwargs[f.name] = v
    return cls(**kwargs)


def _key_material(checksum: str, fingerprint: str, metric: str, settings: dict[str, Any], seed: int,
                  device: str) -> dict[str, Any]:
    import torch

    return {"kind": KIND, "model": checksum, "data": fingerprint, "metric": metric, "settings": settings,
            "seed": seed, "loss": "cross_entropy", "device": device, "torch": torch.__version__,
            "pytest_psa": __version__,
            "code": code_version("pytest_psa.measure.flatness", "pytest_psa.audits.measurement_cache")}


def measure_cached(model: Any, data: Any, *, metrics: Sequence[str], seed: int, store: EvaluationStore,
                   device: Any = None, detail: str = "", options: dict[str, Any] | None = None) -> FlatnessReport:
    """`measure_flatness(model, data, metrics=metrics, seed=seed, device=device, **options)`, each
    metric read from `store` when it was measured before under the same key, else measured (the
    missing metrics in one call) and stored. `data` is an ``ImageData`` (its fingerprint is part of
    the key). The report's ``cached`` says, per metric, whether its value came from the store; the
    work is timed as stage "flatness" (`pytest_psa._timings`), cached when every metric was."""
    options = dict(options or {})
    n_samples = options.pop("n_samples", 16)
    names = list(dict.fromkeys(metrics))
    with stage("flatness", detail=detail) as st:
        t0 = time.perf_counter()
        settings = {m: metric_settings(m, n_samples, **options) for m in names}
        if any(s is None for s in settings.values()):  # not nameable: measure, do not store
            report = measure_flatness(model, data, metrics=names, seed=seed, device=device, n_samples=n_samples,
                                      **options)
            stats["computed"] += len(names)
            return dataclasses.replace(report, cached={m: False for m in names})
        entries, _ = _entries(model, data, names, settings, seed, device)

        def compute(todo: list[int]) -> list[dict[str, np.ndarray]]:
            todo_metrics = [names[i] for i in todo]
            report = measure_flatness(model, data, metrics=todo_metrics, seed=seed, device=device,
                                      n_samples=n_samples, **options)
            return _entry_arrays(report, todo_metrics)

        arrays, status = store.get_or_compute(entries, compute)
        docs = [json.loads(str(a["entry"])) for a in arrays]
        stats["loaded"] += status.count("hit")
        stats["computed"] += status.count("miss")
        base = docs[0]["base"]
        config = {**docs[0]["config"], "metrics": tuple(names)}
        st.cached = all(s == "hit" for s in status)
        return FlatnessReport(
            results={m: result_from_state(d["result"]) for m, d in zip(names, docs)},
            invariant={m: result_from_state(d["invariant"]) for m, d in zip(names, docs) if d["invariant"]},
            loss0=base["loss0"], accuracy=base["accuracy"], n_images=base["n_images"],
            weight_norms=base["weight_norms"], weight_norm=base["weight_norm"], seed=seed, device=base["device"],
            seconds=time.perf_counter() - t0, config=config, versions=base["versions"],
            cached={m: s == "hit" for m, s in zip(names, status)})


def _entries(model: Any, data: Any, names: list[str], settings: dict[str, Any], seed: int,
             device: Any) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """(store key, material) per metric, and the device kind the keys name."""
    import torch

    first = next((t for t in (*model.parameters(), *model.buffers())), None)
    dev = torch.device(device) if device is not None else (first.device if first is not None else torch.device("cpu"))
    checksum, fingerprint = model_checksum(model), data.fingerprint()
    entries = []
    for m in names:
        material = _key_material(checksum, fingerprint, m, settings[m] or {}, seed, dev.type)
        entries.append((EvaluationStore.key(material), material))
    return entries, dev.type


def _entry_arrays(report: FlatnessReport, metrics: list[str]) -> list[dict[str, np.ndarray]]:
    """One stored entry per metric of `report`: its result, the measurement's base numbers, its config."""
    base = {k: getattr(report, k) for k in _BASE}
    out = []
    for m in metrics:
        doc = {"result": result_to_state(report.results[m]), "base": base,
               "invariant": result_to_state(report.invariant[m]) if m in report.invariant else None,
               "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in report.config.items()}}
        out.append({"entry": np.array(json.dumps(doc, sort_keys=True))})
    return out


# -- as executor units ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FlatnessJob:
    """A flatness unit's plan: one model's missing metrics on `data`; its store keys name all of it."""

    model: ModelRef
    data: Any
    metrics: tuple[str, ...]
    seed: int
    n_samples: int
    options: dict[str, Any]


def measure_unit(job: FlatnessJob) -> dict[str, Any]:
    """The flatness unit, run where the executor puts it: `measure_flatness` of the shipped model,
    the entries as `measure_cached` stores them (plain arrays, with their checksums)."""
    with job.model.threads_set():
        model = job.model.build()
        report = measure_flatness(model, job.data, metrics=list(job.metrics), seed=job.seed, device=None,
                                  n_samples=job.n_samples, **job.options)
    return packed(_entry_arrays(report, list(job.metrics)))


def prefetch(models: Sequence[tuple[Any, int]], data: Any, *, metrics: Sequence[str], store: EvaluationStore,
             device: Any = None, options: dict[str, Any] | None = None, executor: Executor | None = None,
             progress: bool = False) -> int:
    """With a remote executor, measure every missing metric of every ``(model, seed)`` as units submitted
    at once and store the values (then `measure_cached` reads them); returns how many were stored.
    The local executor (or settings that are not stored): nothing happens here."""
    executor = executor if executor is not None else current_executor()
    options = dict(options or {})
    n_samples = options.pop("n_samples", 16)
    names = list(dict.fromkeys(metrics))
    settings = {m: metric_settings(m, n_samples, **options) for m in names}
    if not is_remote(executor) or not models or any(s is None for s in settings.values()):
        return 0
    threads = int(getattr(executor, "cpus_per_unit", 1))
    groups = []
    for model, seed in models:
        entries, kind = _entries(model, data, names, settings, seed, device)
        ref = ModelRef.of(model, entries[0][1]["model"], device=kind, threads=threads)

        def unit_for(todo: list[int], ref: ModelRef = ref, seed: int = seed,
                     entries: list[tuple[str, dict[str, Any]]] = entries) -> Unit:
            job = FlatnessJob(ref, data, tuple(names[i] for i in todo), seed, n_samples, options)
            key = EvaluationStore.key({"unit": [entries[i][0] for i in todo]})
            return Unit(key=key, label=f"flatness {','.join(job.metrics)} seed {seed}", fn=measure_unit, plan=job,
                        cpus=float(threads), gpus=1.0 if kind == "cuda" else 0.0)

        groups.append((entries, unit_for))
    with stage("flatness", detail=f"{len(models)} models, {executor.name} executor") as st:
        stored = store.compute_remote(groups, executor, desc="psa flatness", progress=progress)
        st.cached = stored == 0
    return stored


__all__ = ["KIND", "FlatnessJob", "measure_cached", "measure_unit", "prefetch", "result_from_state",
           "result_to_state", "stats"]
