"""The Ray executor's cost next to the local one: overhead per unit, and a 4-unit audit's speed-up.

    python benchmarks/bench_executor.py [--units 40] [--data synthetic-clean] [--n-train 1000]
                                        [--epochs 2] [--cpus 2] [--repeats 1]

Run on an otherwise idle machine (the load is printed before and after, from `uptime`). It starts
a local Ray cluster with ``--cpus`` CPUs (its start-up time is printed on its own: a session pays
it once) and measures, in the same run:

1. Overhead per unit: ``--units`` empty units (`pytest_psa.execution.probes.where`) through the
   local executor and through Ray, submitted at once (per unit: wall / units), and one at a time
   (the round-trip latency of a lone unit). Ray's figure minus local's is what a unit costs to
   ship; a training unit adds its plan and test split (pickled) and its weights (returned).
2. A 4-unit audit: the training stage of one augmentation (RandomHorizontalFlip) vs ERM with two
   seeds (`PairSpec.train`, 4 smoke trainings of ``--n-train`` images for ``--epochs`` epochs), in
   a fresh cache each time: local (one process, torch's default threads) vs Ray (the 4 units in
   parallel, one CPU and one thread each). The speed-up is local wall / Ray wall. The two runs'
   weights are not compared here: CPU weights depend on the thread count (tests/execution compare
   them at equal counts).
3. A 4-model robustness evaluation: the models of 2. trained once (locally), then the corruption
   evaluation of all four (``--eval-images`` test images, every CIFAR-10-C corruption at severity
   ``--severity``) in a fresh evaluation store each time: local (one process, each corrupted set
   generated once for the four models) vs Ray (one unit per model, each generating its own set).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time

import torch
from torchvision.transforms import v2

from pytest_psa.audits.robustness import robustness
from pytest_psa import execution
from pytest_psa.audits.trained_pair import PairSpec
from pytest_psa.execution import LocalExecutor, Unit, probes
from pytest_psa.execution.ray_executor import RayExecutor


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _units(n: int) -> list[Unit]:
    return [Unit(f"{i:064x}", f"empty unit {i}", probes.where, i) for i in range(n)]


def overhead(ex: object, n: int) -> tuple[float, float]:
    """(seconds per unit submitted together, seconds per lone unit)."""
    run = ex.run  # type: ignore[attr-defined]
    t = time.perf_counter()
    run(_units(n), progress=False)
    batch = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for u in _units(min(n, 10)):
        run([u], progress=False)
    lone = (time.perf_counter() - t) / min(n, 10)
    return batch, lone


def audit(ex: object, args: argparse.Namespace) -> float:
    """Wall seconds of the 4 trainings of RandomHorizontalFlip vs ERM, seeds 0 and 1, in a fresh cache."""
    previous = execution.use(ex)  # type: ignore[arg-type]
    try:
        with tempfile.TemporaryDirectory() as cache:
            spec = PairSpec.resolve(v2.RandomHorizontalFlip(), "erm", seeds=(0, 1), data=args.data, cache_dir=cache,
                                    preset="smoke", overrides={"n_train": args.n_train, "epochs": args.epochs})
            t = time.perf_counter()
            spec.train(progress=False, sanity="warn")
            return time.perf_counter() - t
    finally:
        execution.use(previous)


def evaluation(ex: object, args: argparse.Namespace, models: str) -> float:
    """Wall seconds of the corruption evaluation of the 4 models in `models` (a cache's models folder)."""
    previous = execution.use(ex)  # type: ignore[arg-type]
    try:
        with tempfile.TemporaryDirectory() as cache:
            shutil.copytree(models, f"{cache}/models")  # trained: only the evaluations run
            t = time.perf_counter()
            robustness(v2.RandomHorizontalFlip(), data=args.data, seeds=[0, 1], preset="smoke",
                       n_train=args.n_train, epochs=args.epochs, corruptions="cifar10-c",
                       severities=(args.severity,), attacks=None, n_images=args.eval_images,
                       sanity="warn", cache_dir=cache)
            return time.perf_counter() - t
    finally:
        execution.use(previous)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=40)
    ap.add_argument("--data", default="synthetic-clean")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="the first Ray audit runs on fresh workers")
    ap.add_argument("--eval-images", type=int, default=500)
    ap.add_argument("--severity", type=int, default=3)
    args = ap.parse_args()
    import ray
    import warnings

    warnings.simplefilter("ignore")  # the sanity gate may warn on tiny settings; timing is the point here
    print(f"load before: {_uptime()}")
    print(f"ray {ray.__version__}, torch {torch.__version__}, torch threads {torch.get_num_threads()}")
    t = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    print(f"local Ray cluster ({args.cpus} CPUs) started in {time.perf_counter() - t:.1f} s")
    local, remote = LocalExecutor(), RayExecutor()
    remote.run(_units(args.cpus), progress=False)  # warm the worker processes once
    for r in range(args.repeats):
        (lb, ll), (rb, rl) = overhead(local, args.units), overhead(remote, args.units)
        print(f"[{r}] overhead per unit: together local {lb * 1e3:.3f} ms, ray {rb * 1e3:.1f} ms "
              f"(+{(rb - lb) * 1e3:.1f} ms); alone local {ll * 1e3:.3f} ms, ray {rl * 1e3:.1f} ms "
              f"(+{(rl - ll) * 1e3:.1f} ms)")
        wl, wr = audit(local, args), audit(remote, args)
        what = "fresh workers: each imports torch first" if r == 0 else "warm workers"
        print(f"[{r}] 4-unit audit ({args.data}, n_train {args.n_train}, {args.epochs} epochs): local {wl:.1f} s, "
              f"ray {wr:.1f} s ({what}), speed-up x{wl / wr:.2f}")
    with tempfile.TemporaryDirectory() as trained:
        previous = execution.use(local)
        try:
            PairSpec.resolve(v2.RandomHorizontalFlip(), "erm", seeds=(0, 1), data=args.data, cache_dir=trained,
                             preset="smoke", overrides={"n_train": args.n_train, "epochs": args.epochs}
                             ).train(progress=False, sanity="warn")
        finally:
            execution.use(previous)
        el, er = evaluation(local, args, f"{trained}/models"), evaluation(remote, args, f"{trained}/models")
        print(f"4-model corruption evaluation ({args.eval_images} images x 15 corruptions, severity {args.severity}): "
              f"local {el:.1f} s, ray {er:.1f} s (warm workers), speed-up x{el / er:.2f}")
    ray.shutdown()
    print(f"load after: {_uptime()}")


if __name__ == "__main__":
    main()
