"""`measure_flatness`: every flatness metric of one model on fixed data, in one call."""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_psa._specs.names import FLATNESS_METRICS
from pytest_psa._version import __version__
from pytest_psa.data.sources import as_batches
from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.flatness import _noise
from pytest_psa.measure.flatness._problem import Problem, default_accuracy, select_params, to_chunks
from pytest_psa.measure.flatness._state import measuring
from pytest_psa.measure.flatness.hessian import hessian_top, hessian_trace
from pytest_psa.measure.flatness.hvp import DEFAULT_CACHE_BYTES, HessianOperator
from pytest_psa.measure.flatness.lpf import lpf
from pytest_psa.measure.flatness.pac_bayes import TARGET_TYPES, pac_bayes
from pytest_psa.measure.flatness.flatness_report import FlatnessReport
from pytest_psa.measure.flatness.metric_values import MetricResult, Setup
from pytest_psa.measure.flatness.scaling import NORMALIZATIONS, scale_for, weight_norms
from pytest_psa.measure.flatness.sharpness import eps_sharpness

METRICS: tuple[str, ...] = FLATNESS_METRICS  # declared (torch-free) in pytest_psa/_specs/names.py

# Sized for 2 CPU cores (timed there); every value is recorded in the report.
DEFAULTS: dict[str, Any] = {
    "max_images": 1000,  # first n rows of the data; 1k and 2k agreed within 1 % (§6)
    "chunk_size": 250,  # 2x faster than 1,000 per pass on CPU (§6)
    "params": "trainable",  # or "weights", a list of names, or a callable (name, param) -> bool
    "scale_invariant": False,  # also report filter-normalized (Li et al.) variants in report.invariant
    "accuracy": None,  # None: argmax / sign when the output is a classifier's; a callable; or False
    "target": 0.1,  # PAC-Bayes: allowed increase of the loss (or of the 0-1 error)
    "target_type": "loss",  # "loss" (LPF-SGD repository) or "accuracy" (0-1 error, Jiang et al. 2020)
    "mag_eps": 1e-3,  # magnitude-aware noise std sqrt(sigma^2 w^2 + mag_eps^2) (Jiang et al.)
    "sigma0": None,  # first sigma tried by the search (None: 0.01 raw, 0.05 relative)
    "sigma_rtol": 1e-3,  # relative tolerance of sigma
    "lpf_sigma": 0.01,  # Bisla et al.'s default
    "lpf_normalization": "none",  # report["lpf"]: raw weights, or "bisla" (Bisla et al.'s model.norm())
    "eps": 5e-4,  # Keskar box eps (|w| + 1)
    "ascent_steps": 10,
    "restarts": 2,
    "power_iters": 100,  # PyHessian's cap; ten gave 4.698 for a true 5.0 (tests/flatness/test_flatness_conventions.py)
    "power_tol": 1e-3,  # PyHessian's stopping rule: relative change of lambda
    "trace_samples": 10,
    "hvp_cache": "auto",  # keep first-order graphs between Hessian-vector products if they fit
    "hvp_cache_bytes": DEFAULT_CACHE_BYTES,
}
# Which settings change which metric's value: the key of a cached measurement
# (pytest_psa/audits/measurement_cache.py) holds the common ones and the metric's own.
COMMON_OPTIONS: tuple[str, ...] = ("max_images", "chunk_size", "params", "scale_invariant", "accuracy")
METRIC_OPTIONS: dict[str, tuple[str, ...]] = {
    "pac_bayes": ("n_samples", "target", "target_type", "sigma0", "sigma_rtol"),
    "pac_bayes_mag": ("n_samples", "target", "target_type", "sigma0", "sigma_rtol", "mag_eps"),
    "lpf": ("n_samples", "lpf_sigma", "lpf_normalization"),
    "eps_sharpness": ("eps", "ascent_steps", "restarts"),
    "hessian_top": ("power_iters", "power_tol", "hvp_cache", "hvp_cache_bytes"),
    "hessian_trace": ("trace_samples", "hvp_cache", "hvp_cache_bytes"),
}
_SCALED = {"pac_bayes", "lpf", "eps_sharpness", "hessian_top", "hessian_trace"}  # have a filter variant
LPF_NORMALIZATIONS = ("none", "bisla")  # the geometries report["lpf"] can be measured in


def _check_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise PsaUsageError(
            f"measure_flatness: unknown metric {unknown[0]!r}",
            observed=list(names),
            fix=f"choose from {', '.join(METRICS)}",
        )
    if not names:
        raise PsaUsageError("measure_flatness: no metrics requested", fix=f"choose from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def _check_config(config: dict[str, Any], n_samples: int) -> dict[str, Any]:
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise PsaUsageError(
            f"measure_flatness: unknown option {unknown[0]!r}",
            fix=f"options are n_samples, {', '.join(DEFAULTS)}",
        )
    cfg = {**DEFAULTS, **config}
    if not isinstance(n_samples, int) or n_samples < 2 or n_samples % 2:
        raise PsaUsageError(
            "measure_flatness: n_samples must be an even integer >= 2",
            observed=n_samples,
            fix="noise draws come in antithetic pairs (z, -z); use e.g. n_samples=16",
        )
    if cfg["target_type"] not in TARGET_TYPES:
        raise PsaUsageError(f"measure_flatness: unknown target_type {cfg['target_type']!r}",
                            fix=f"use one of {TARGET_TYPES}")
    if cfg["lpf_normalization"] not in LPF_NORMALIZATIONS:
        raise PsaUsageError(f"measure_flatness: unknown lpf_normalization {cfg['lpf_normalization']!r}",
                            fix=f"use one of {LPF_NORMALIZATIONS} (scale_invariant=True adds the filter variant)")
    for key in ("chunk_size", "ascent_steps", "restarts", "power_iters", "trace_samples"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise PsaUsageError(f"measure_flatness: {key} must be a positive integer", observed=cfg[key],
                                fix=f"use e.g. {key}={DEFAULTS[key]}")
    for key in ("target", "lpf_sigma", "eps", "power_tol", "sigma_rtol"):
        if not cfg[key] > 0:
            raise PsaUsageError(f"measure_flatness: {key} must be > 0", observed=cfg[key],
                                fix=f"use e.g. {key}={DEFAULTS[key]}")
    if cfg["max_images"] is not None and (not isinstance(cfg["max_images"], int) or cfg["max_images"] < 1):
        raise PsaUsageError("measure_flatness: max_images must be a positive integer or None",
                            observed=cfg["max_images"], fix="use e.g. max_images=1000")
    return cfg


def metric_settings(metric: str, n_samples: int = 16, **config: Any) -> dict[str, Any] | None:
    """Every setting that changes `metric`'s value (defaults filled in, checked as `measure_flatness`
    checks them), or None when one of them is not plain data (a callable `params` or `accuracy`):
    such a measurement cannot be named by its settings, so it is not cached."""
    (name,) = _check_metrics(metric)
    cfg = {**_check_config(config, n_samples), "n_samples": n_samples}
    out = {k: cfg[k] for k in (*COMMON_OPTIONS, *METRIC_OPTIONS[name])}
    plain = (str, int, float, bool, type(None))
    if not all(isinstance(v, plain) or (isinstance(v, (list, tuple)) and all(isinstance(i, str) for i in v))
               for v in out.values()):
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _device_of(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _loss_name(loss: Callable[..., Any]) -> str:
    return getattr(loss, "__name__", None) or type(loss).__name__


def measure_flatness(
    model: nn.Module,
    data: Any,
    *,
    metrics: str | Sequence[str] = METRICS,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    seed: int | None = None,
    n_samples: int = 16,
    device: str | torch.device | None = None,
    **config: Any,
) -> FlatnessReport:
    """Measure the flatness of `model` at its current weights on fixed `data`.

    `data`: a tuple ``(inputs, targets)``, an ``ImageData`` (uint8 images become float in [0, 1]),
    a map-style ``Dataset`` of ``(x, y)`` items, a ``DataLoader`` (a shuffled one is read in index
    order) or another iterable of ``(x, y)`` batches; the first ``max_images`` rows are used, in order.
    `loss`: ``(output, target) -> mean loss`` (default: mean cross-entropy).
    `n_samples`: noise draws per sigma for pac_bayes / pac_bayes_mag / lpf (antithetic pairs).
    `seed`: all draws come from it (a fresh one is drawn and recorded when None).
    Other options and their defaults are in ``DEFAULTS``. The model is measured in eval mode and
    handed back with its modes, parameters, buffers and gradients exactly as they were.
    """
    t0 = time.perf_counter()
    names = _check_metrics(metrics)
    cfg = _check_config(config, n_samples)
    data = as_batches(data, batch_size=cfg["chunk_size"])  # Datasets and shuffled loaders: in index order
    if not isinstance(model, nn.Module):
        raise PsaUsageError("measure_flatness: model must be a torch.nn.Module", observed=type(model).__name__,
                            fix="pass the trained nn.Module itself")
    if seed is None:
        seed = secrets.randbits(63)  # recorded in the report, so the run can be repeated
    dev = torch.device(device) if device is not None else _device_of(model)
    work = model
    if dev != _device_of(model):  # measure a copy: the caller's model stays where it is
        work = copy.deepcopy(model).to(dev)
    loss_fn = loss if loss is not None else F.cross_entropy
    acc = cfg["accuracy"]
    accuracy_fn = None if acc is False else (default_accuracy if acc is None else acc)
    results: dict[str, MetricResult] = {}
    invariant: dict[str, MetricResult] = {}
    with measuring(work):
        params = select_params(work, cfg["params"])
        chunks = to_chunks(data, max_images=cfg["max_images"], chunk_size=cfg["chunk_size"], device=dev)
        problem = Problem(work, chunks, loss_fn, params, accuracy_fn)
        if not torch.isfinite(torch.tensor(problem.loss0)):
            raise PsaUsageError(
                "measure_flatness: the loss at the unperturbed weights is not finite",
                observed=problem.loss0,
                fix="check the model's output and the loss on this data (diverged training, wrong targets?)",
            )
        setups = {
            norm: Setup(params=params, n_params=problem.n_params, normalization=norm, loss=_loss_name(loss_fn),
                        n_images=problem.n_images, chunk_size=cfg["chunk_size"], device=str(dev),
                        dtype=str(problem.dtype).replace("torch.", ""))
            for norm in NORMALIZATIONS
        }
        scales: dict[str, torch.Tensor | None] = {}

        def scale_of(norm: str) -> torch.Tensor | None:
            if norm not in scales:
                scales[norm] = scale_for(problem, norm)
            return scales[norm]

        op = None
        for metric in names:
            primary = cfg["lpf_normalization"] if metric == "lpf" else "none"
            variants = [(primary, results)]
            if cfg["scale_invariant"] and metric in _SCALED:
                variants.append(("filter", invariant))
            for norm, sink in variants:
                mseed = _noise.derive_seed(seed, METRICS.index(metric), NORMALIZATIONS.index(norm))
                scale, setup = scale_of(norm), setups[norm]
                if metric in ("pac_bayes", "pac_bayes_mag"):
                    mag = metric == "pac_bayes_mag"
                    if mag:
                        scale = None  # magnitude-aware noise is its own invariant geometry
                    r: MetricResult = pac_bayes(
                        problem, target=cfg["target"], target_type=cfg["target_type"], magnitude=mag,
                        mag_eps=cfg["mag_eps"], n_samples=n_samples, sigma0=cfg["sigma0"],
                        rtol=cfg["sigma_rtol"], seed=mseed, scale=scale, setup=setup)
                elif metric == "lpf":
                    r = lpf(problem, sigma=cfg["lpf_sigma"], n_samples=n_samples, seed=mseed, scale=scale, setup=setup)
                elif metric == "eps_sharpness":
                    r = eps_sharpness(problem, eps=cfg["eps"], steps=cfg["ascent_steps"],
                                      restarts=cfg["restarts"], seed=mseed, scale=scale, setup=setup)
                else:
                    if op is None:  # one operator: its cached graphs serve both Hessian metrics
                        op = HessianOperator(problem, cache=cfg["hvp_cache"], cache_bytes=cfg["hvp_cache_bytes"])
                    if metric == "hessian_top":
                        r = hessian_top(op, max_iter=cfg["power_iters"], tol=cfg["power_tol"],
                                        seed=mseed, scale=scale, setup=setup)
                    else:
                        r = hessian_trace(op, n_samples=cfg["trace_samples"], seed=mseed, scale=scale, setup=setup)
                sink[metric] = r
        op = None  # free the cached graphs before the state check
        norms = weight_norms(problem)
    return FlatnessReport(
        results=results, invariant=invariant, loss0=problem.loss0, accuracy=problem.accuracy0,
        n_images=problem.n_images, weight_norms=norms,
        weight_norm=float(sum(v * v for v in norms.values()) ** 0.5), seed=seed, device=str(dev),
        seconds=time.perf_counter() - t0,
        config={"metrics": names, "n_samples": n_samples, **cfg},
        versions={"torch": torch.__version__, "pytest_psa": __version__},
    )
