"""The flatness part of an audit cold vs warm, and the cold PAC-Bayes search before vs after (issue 15).

1. Measurement cache: the flatness audit's measurements of one trained (ERM, augmented) pair with an
   empty measurement store (cold: every metric measured) and again (warm: every value read back),
   through `pytest_psa.audits.measurement_cache.measure_cached`, the code path `flatness()` takes.
2. Cold PAC-Bayes: the sigma search after issue 15 (``solver="secant"``: stops on its residual)
   against the search before it (``solver="brent"``, kept as the reference), on the same model,
   data and draws, under both targets: seconds, sigma evaluations and forward passes, and how far
   apart the two sigmas are (stated precision: 2 rtol in log sigma). eps-sharpness is timed beside
   them; its cost is fixed by its definition (steps x restarts gradient passes), so it is unchanged.

Ratios are taken within one run; `uptime` is printed before and after (the load changes seconds,
not the ratios much). Runs on the synthetic set, and on CIFAR-10 as well when PSA_DATA_ROOT holds it.

    python benchmarks/bench_warm_audit.py [--n-images 1000] [--n-samples 16] [--epochs 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pytest_psa.audits.evaluation_cache import EvaluationStore
from pytest_psa.audits.measurement_cache import KIND, measure_cached
from pytest_psa.audits.trained_pair import BASELINE, SUBJECT, PairSpec
from pytest_psa.augment.known import resolve_augmentation
from pytest_psa.data.sources import load_data
from pytest_psa.measure.flatness.measure import DEFAULTS
from pytest_psa.measure.flatness._problem import Problem, default_accuracy, select_params, to_chunks
from pytest_psa.measure.flatness.metric_values import Setup
from pytest_psa.measure.flatness.pac_bayes import pac_bayes
from pytest_psa.measure.flatness.sharpness import eps_sharpness
from pytest_psa.results.flatness import DEFAULT_METRICS


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def one_dataset(data: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = PairSpec.resolve(resolve_augmentation("trivialaugment"), "erm", seeds=[0], data=data,
                            cache_dir=args.cache_dir, preset="smoke", overrides={"epochs": args.epochs})
    pair = spec.train(roles=(BASELINE, SUBJECT), order="seed", progress=False, sanity="warn")
    recipe = spec.preset
    measured = spec.train_data.subset(recipe.n_train, recipe.subset_seed).subset(args.n_images, seed=0)
    models = [pair.models(BASELINE)[0].model, pair.models(SUBJECT)[0].model]
    opts = {"n_samples": args.n_samples}
    out: dict[str, Any] = {"data": data, "n_images": len(measured)}

    # 1. cold vs warm measurement of the audit's metrics, through the audit's own code path
    with tempfile.TemporaryDirectory() as store_dir:
        times = {}
        for phase in ("cold", "warm"):
            store = EvaluationStore(store_dir, kind=KIND)
            t0 = time.perf_counter()
            reports = [measure_cached(m, measured, metrics=DEFAULT_METRICS, seed=0, store=store, options=opts)
                       for m in models]
            times[phase] = time.perf_counter() - t0
            out[f"{phase}_computed"], out[f"{phase}_hits"] = store.computed, store.hits
            out[f"{phase}_values"] = [{k: r.value for k, r in rep.results.items()} for rep in reports]
        out["cold_s"], out["warm_s"] = times["cold"], times["warm"]
        out["warm_same_values"] = out["cold_values"] == out["warm_values"]

    # 2. cold PAC-Bayes before (brent) vs after (secant), and eps-sharpness, on the ERM model
    net = models[0]
    chunks = to_chunks(measured, max_images=None, chunk_size=DEFAULTS["chunk_size"], device=torch.device("cpu"))
    problem = Problem(net, chunks, F.cross_entropy, select_params(net, "trainable"), default_accuracy)
    setup = Setup(params=problem.names, n_params=problem.n_params, normalization="none", loss="cross_entropy",
                  n_images=problem.n_images, chunk_size=DEFAULTS["chunk_size"], device="cpu", dtype="float32")
    for target_type in ("loss", "accuracy"):
        row: dict[str, Any] = {}
        for solver in ("brent", "secant"):
            t0 = time.perf_counter()
            r = pac_bayes(problem, target=0.1, target_type=target_type, n_samples=args.n_samples, seed=7,
                          rtol=DEFAULTS["sigma_rtol"], setup=setup, solver=solver)
            row[solver] = {"seconds": time.perf_counter() - t0, "evaluations": r.evaluations,
                           "forward_passes": r.forward_passes, "sigma": r.sigma, "sigma_se": r.sigma_se}
        row["log_sigma_gap"] = abs(math.log(row["secant"]["sigma"]) - math.log(row["brent"]["sigma"]))
        row["speedup"] = row["brent"]["seconds"] / row["secant"]["seconds"]
        out[f"pac_bayes_{target_type}"] = row
    t0 = time.perf_counter()
    e = eps_sharpness(problem, eps=DEFAULTS["eps"], steps=DEFAULTS["ascent_steps"], restarts=DEFAULTS["restarts"],
                      seed=7, setup=setup)
    out["eps_sharpness"] = {"seconds": time.perf_counter() - t0, "gradient_passes": e.gradient_passes,
                            "value": e.value}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-images", type=int, default=1000)
    ap.add_argument("--n-samples", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4, help="smoke preset epochs of the trained pair")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "pytest-psa-bench")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    doc: dict[str, Any] = {"uptime_before": uptime(), "torch_threads": torch.get_num_threads(), "runs": []}
    print(doc["uptime_before"])
    sets = ["synthetic"] + (["cifar10"] if _has_cifar() else [])
    for data in sets:
        res = one_dataset(data, args)
        doc["runs"].append(res)
        print(f"[{data}, {res['n_images']} images] flatness measurements of the pair: cold {res['cold_s']:.2f} s "
              f"({res['cold_computed']} values measured), warm {res['warm_s']:.3f} s ({res['warm_hits']} read back, "
              f"{res['warm_computed']} measured; same values: {res['warm_same_values']}); "
              f"ratio {res['cold_s'] / res['warm_s']:.0f}x")
        for tt in ("loss", "accuracy"):
            row = res[f"pac_bayes_{tt}"]
            b, s = row["brent"], row["secant"]
            print(f"  pac_bayes ({tt} target): brent {b['seconds']:.2f} s / {b['evaluations']} sigmas / "
                  f"{b['forward_passes']} passes; secant {s['seconds']:.2f} s / {s['evaluations']} / "
                  f"{s['forward_passes']}; speedup {row['speedup']:.2f}x; |d log sigma| {row['log_sigma_gap']:.2e} "
                  f"(se of log sigma {s['sigma_se'] / s['sigma']:.2e})")
        e = res["eps_sharpness"]
        print(f"  eps_sharpness: {e['seconds']:.2f} s, {e['gradient_passes']} gradient passes (unchanged)")
    doc["uptime_after"] = uptime()
    print(doc["uptime_after"])
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1, default=str))
    return doc


def _has_cifar() -> bool:
    root = os.environ.get("PSA_DATA_ROOT")
    if not root:
        return False
    try:
        load_data("cifar10", split="test", root=root)
    except Exception:
        return False
    return True


if __name__ == "__main__":
    main(sys.argv[1:])
