"""The robustness audit's corruption evaluation against the parts it is made of (issue 15).

    python benchmarks/bench_audit_path.py [--n-images 2000] [--data auto|both|synthetic|cifar10]
                                          [--old PATH] [--json PATH]

On N images (the CIFAR-10 test split when $PSA_DATA_ROOT holds it, else the synthetic set;
``--data both`` runs both) and two smoke-preset models (the audit's CNN; inference time does not
depend on the weights, so they are freshly initialized), in this order:

- (c old), with ``--old PATH`` (a checkout of the code before the change, e.g. ``git worktree add
  /tmp/audit_old <commit>``): (c) run by that code in a fresh process;
- (a) kernels: ``corrupt`` on the N images for all 15 x 5 variants, each corruption at one intra-op
  thread and at the default count; the faster of the two counts per corruption (the kernels at
  their best);
- (b) inference: both models' arg-max on N images 76 times (75 variants + clean; the cost does not
  depend on the pixels) through the audit's `predict`;
- (c) the audit's path: one `evaluate_corruptions` call for both models on all 75 variants, a fresh
  evaluation store (nothing cached), as `pytest_psa.robustness` makes it.

Reported: seconds of each, c / (a + b) (issue 15's goal: at most 1.5) and old c / new c.

Threads: OMP_WAIT_POLICY=PASSIVE is set as the ``psa`` command and the pytest plugin set it, so
(c) runs as it does in an audit. The load average is printed with every step: on a shared machine
compare ratios within one run. About 4 minutes on an idle 2-core machine at N = 2,000 with --old.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what cli.py and plugin.py set before torch loads

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pytest_psa._threads import single_thread
from pytest_psa.data.image_data import ImageData

SEVERITIES = (1, 2, 3, 4, 5)


def load(kind: str, n: int) -> ImageData | None:
    from pytest_psa.data.sources import available, load_data

    if kind == "cifar10":
        root = os.environ.get("PSA_DATA_ROOT")
        if not root or not available("cifar10", root=root):
            return None
        return load_data("cifar10", split="test", root=root).subset(n, seed=0)
    return load_data("synthetic", split="test").subset(n, seed=0)


def smoke_models() -> list[torch.nn.Module]:
    from pytest_psa.train import resolve_preset
    from pytest_psa.train.models import build_model

    name = resolve_preset("smoke").model
    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        out.append(build_model(name, 10).eval())
    return out


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def kernels(data: ImageData, name: str) -> tuple[float, float]:
    """Seconds for the 5 severities of `name` on one thread and on the default count."""
    from pytest_psa.measure.robustness.corruptions import corrupt

    x, ids = data.float_images(), data.indices if data.indices is not None else torch.arange(len(data))

    def run() -> None:
        for s in SEVERITIES:
            corrupt(x, name, s, seed=0, indices=ids)

    with single_thread():
        one = timed(run)
    return one, timed(run)


def inference(data: ImageData, models: list[torch.nn.Module], passes: int) -> float:
    """Seconds for `passes` arg-max passes of every model over the images, through the audit's `predict`."""
    from pytest_psa.audits.robustness_evaluation import predict

    x = data.float_images()

    def run() -> None:
        for m in models:
            for _ in range(passes):
                predict(m, x, 256)

    return timed(run)


def audit_path(data: ImageData, models: list[torch.nn.Module], names: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """Seconds of `evaluate_corruptions` for both models on `names`, nothing cached; and its own timing."""
    from pytest_psa.audits.evaluation_cache import EvaluationStore, model_checksum
    from pytest_psa.audits.robustness_evaluation import CorruptionSettings, Subject, evaluate_corruptions

    subjects = [Subject(f"m{k}", m, model_checksum(m)) for k, m in enumerate(models)]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        _, status, timing = evaluate_corruptions(subjects, data, CorruptionSettings(names, SEVERITIES, 0),
                                                 EvaluationStore(d), batch_size=256)
        seconds = time.perf_counter() - t0
    assert status == ["miss", "miss"], status
    return seconds, timing


def old_path(old: Path, kind: str, n: int) -> dict[str, Any]:
    """(c) for all corruptions, run by the code at `old` in a fresh process (same environment)."""
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "import bench_audit_path as B\n"
        "from pytest_psa.measure.robustness.corruptions import BENCHMARK\n"
        f"data = B.load({kind!r}, {n})\n"
        "s, t = B.audit_path(data, B.smoke_models(), tuple(BENCHMARK))\n"
        "import pytest_psa\n"
        "print(json.dumps({'seconds': s, 'timing': t, 'code': pytest_psa.__file__}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(old)}
    # cwd = the old checkout: "-c" puts the working directory first on sys.path
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=old, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench(kind: str, n: int, old: Path | None) -> dict[str, Any] | None:
    from pytest_psa.measure.robustness.corruptions import BENCHMARK

    data = load(kind, n)
    if data is None:
        print(f"{kind}: not found (set PSA_DATA_ROOT to a folder holding CIFAR-10); skipped")
        return None
    models = smoke_models()
    names = tuple(BENCHMARK)
    print(f"\n{kind}: {len(data)} images, 2 x {resolve_model_name()} models, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    out: dict[str, Any] = {"data": kind, "n_images": len(data)}
    if old is not None:  # first, so the new code's warm-up below does not favour it
        prev = old_path(old, kind, n)
        out.update(c_old_s=prev["seconds"], c_old_timing=prev["timing"], c_old_code=prev["code"])
        print(f"(c) old code ({prev['code']}): {prev['seconds']:.1f} s (generation {prev['timing']['generate_s']:.1f} s,"
              f" prediction {prev['timing']['predict_s']:.1f} s); load {os.getloadavg()[0]:.1f}", flush=True)
    # warm-up: first-call setup (zoom operators, JPEG tables) is paid once, not by one column
    audit_path(data.subset(16, seed=0), models, names)
    rows: list[dict[str, Any]] = []
    for name in names:
        a1, a2 = kernels(data, name)
        rows.append({"corruption": name, "a_one_thread_s": a1, "a_default_threads_s": a2})
    a = sum(min(r["a_one_thread_s"], r["a_default_threads_s"]) for r in rows)
    print(f"(a) kernels, 75 variants: {a:.1f} s (one thread {sum(r['a_one_thread_s'] for r in rows):.1f} s, "
          f"default {sum(r['a_default_threads_s'] for r in rows):.1f} s; the faster per corruption counts); "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    passes = len(names) * len(SEVERITIES) + 1  # + the clean images
    b = inference(data, models, passes)
    print(f"(b) inference, 2 models x {passes} x {len(data)} images: {b:.1f} s; load {os.getloadavg()[0]:.1f}",
          flush=True)
    c, timing = audit_path(data, models, names)
    ratio = c / (a + b)
    print(f"(c) the audit's evaluate_corruptions, both models: {c:.1f} s (generation {timing['generate_s']:.1f} s, "
          f"prediction {timing['predict_s']:.1f} s, {int(timing['generated_images'])} images generated); "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"    c / (a + b) = {ratio:.2f} (goal <= 1.5)" +
          (f"; old c / new c = {out['c_old_s'] / c:.2f}" if old is not None else ""), flush=True)
    out.update(rows=rows, a_kernels_s=a, b_inference_s=b, c_audit_s=c, c_timing=timing, ratio_c_over_a_plus_b=ratio,
               load_after=os.getloadavg()[0])
    return out


def resolve_model_name() -> str:
    from pytest_psa.train import resolve_preset

    return resolve_preset("smoke").model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-images", type=int, default=2000)
    ap.add_argument("--data", choices=("auto", "both", "synthetic", "cifar10"), default="auto")
    ap.add_argument("--old", type=Path, default=None, help="checkout of the code before the change (its repo root)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.old is not None and not (args.old / "pytest_psa" / "__init__.py").is_file():
        raise SystemExit(f"--old {args.old}: no pytest_psa package there")
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    t0 = time.perf_counter()
    have_cifar = load("cifar10", 1) is not None
    kinds = {"both": ("synthetic", "cifar10"), "auto": ("cifar10",) if have_cifar else ("synthetic",)}.get(
        args.data, (args.data,))
    results = [r for k in kinds if (r := bench(k, args.n_images, args.old)) is not None]
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"wall {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "loadavg_end": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
