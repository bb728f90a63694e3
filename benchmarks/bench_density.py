"""Density-audit overhead (issue 15): time of pytest_psa.density / time of a plain per-image loop
applying the same augmentation to the same images the same number of times, measured side by side.

    nice -n 10 python benchmarks/bench_density.py [--n-images 500] [--draws 8] [--repeats 9] [--clock cpu]
        [--only CropFlip ...] [--json out.json]

One intra-op thread for both (the audit's per-image work runs single-threaded; on 32 px images a
second thread only adds hand-offs). Each repeat times plain, seeded, plain under inference mode and
the audit back to back, in an order that alternates from repeat to repeat, and takes the ratio
within the repeat: drift and load hit both sides of a pair alike. The figures are the median of
those paired ratios and their interquartile range. `--clock cpu` (the default) is process CPU time
(`time.process_time`): it counts every thread of the process and none of the time spent waiting
for a core, so it holds up on a loaded machine where wall time (`--clock wall`) swings 0.75-1.77;
the audit starts no thread or process (the script checks the thread count). The audit includes
everything a user waits for: data selection, the probe (determinism self-check), seeding, contract
checks, distances and the result. The load (`os.getloadavg`) is printed before and after.
Goal: ratio <= 1.10.

Columns that locate a gap: ``seeded`` is the plain loop with one seeding per draw from the audit's
own seed table (the same draws as the audit); ``infer`` is the plain loop under
``torch.inference_mode`` (what the audit does for torchvision pipelines with a pixel distance, so
``audit/infer`` is the audit's own overhead on top of the augmentation); ``outside s`` is the
audit's wall time outside its augmentation calls (``timing["augment_s"]`` subtracted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

import pytest_psa
from pytest_psa.audits.density import draw_seeds

AUGMENTATIONS: dict[str, Callable[[], Any]] = {
    "CropFlip": lambda: v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]),
    "RandAugment": lambda: v2.RandAugment(),
    "TrivialAugmentWide": lambda: v2.TrivialAugmentWide(),
    "AugMix": lambda: v2.AugMix(),
}


def clock(kind: str) -> Callable[[], float]:
    return time.process_time if kind == "cpu" else time.perf_counter


def plain_loop(aug: Any, images: torch.Tensor, draws: int) -> None:
    """What a user would write: apply the transform to each image, `draws` times, no seeding or checks."""
    for _ in range(draws):
        for img in images:
            aug(img)


def seeded_loop(aug: Any, images: torch.Tensor, seeds: np.ndarray) -> None:
    """The plain loop with the audit's per-draw seeding (the same draws), nothing else."""
    manual_seed = torch.default_generator.manual_seed
    for j in range(seeds.shape[1]):
        for img, seed in zip(images, seeds[:, j].tolist()):
            manual_seed(seed & ((1 << 63) - 1))
            aug(img)


def inference_loop(aug: Any, images: torch.Tensor, draws: int) -> None:
    """The plain loop without autograd bookkeeping, as the audit runs torchvision's transforms."""
    with torch.inference_mode():
        plain_loop(aug, images, draws)


def threads() -> int:
    """Threads of this process (Linux), to check that the audit starts none that a clock could miss."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def paired(values: list[float], base: list[float]) -> tuple[float, float, float]:
    """Median and quartiles of the per-repeat ratios values[i] / base[i]."""
    ratios = [v / b for v, b in zip(values, base)]
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), q1, q3


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--n-images", type=int, default=500)
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="cpu: process CPU time (default; use it on a loaded machine), wall: elapsed time")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--only", nargs="*", choices=sorted(AUGMENTATIONS), help="a subset of the augmentations")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    torch.set_num_threads(1)
    now = clock(args.clock)
    data = pytest_psa.load_data(args.data, split="test", n=args.n_images, seed=0)
    images = data.float_images()
    before = load()
    print(f"{args.n_images} images x {args.draws} draws, {args.repeats} alternating repeats, {args.clock} clock, "
          f"1 torch thread, data {data.describe()}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")
    print(f"before: {before}")
    positions = data.indices.numpy() if data.indices is not None else np.arange(len(data))
    seeds = draw_seeds(0, positions, args.draws)
    print(f"{'augmentation':20s} {'plain s':>8s} {'seeded s':>8s} {'infer s':>8s} {'audit s':>8s} {'ratio':>6s} "
          f"{'ratio IQR':>11s} {'seeded':>6s} {'audit/infer':>11s} {'outside s':>9s} {'probe s':>8s}")
    rows = []
    for name in args.only or list(AUGMENTATIONS):
        aug = AUGMENTATIONS[name]()
        pytest_psa.density(aug, data=data, n_images=20, draws=1, seed=0)  # warm-up: first calls allocate
        timed: dict[str, list[float]] = {"plain": [], "seeded": [], "infer": [], "audit": []}
        probe, outside, spawned = [], [], 0
        for r in range(args.repeats):
            runs: list[tuple[str, Callable[[], Any]]] = [
                ("plain", lambda: plain_loop(aug, images, args.draws)),
                ("seeded", lambda: seeded_loop(aug, images, seeds)),
                ("infer", lambda: inference_loop(aug, images, args.draws)),
                ("audit", lambda: pytest_psa.density(aug, data=data, n_images=args.n_images, draws=args.draws,
                                                     seed=0))]
            for key, fn in runs if r % 2 == 0 else runs[::-1]:
                started_threads, t0, w0 = threads(), now(), time.perf_counter()
                out = fn()
                timed[key].append(now() - t0)
                if key == "audit":
                    spawned = max(spawned, threads() - started_threads)
                    probe.append(out.timing["probe_s"])
                    outside.append(time.perf_counter() - w0 - out.timing["augment_s"])
        ratio, q1, q3 = paired(timed["audit"], timed["plain"])
        row = {"augmentation": name, "clock": args.clock, **{f"{k}_s": statistics.median(v) for k, v in timed.items()},
               "ratio": ratio, "ratio_q1": q1, "ratio_q3": q3,
               "seeded_ratio": paired(timed["seeded"], timed["plain"])[0],
               "audit_over_infer": paired(timed["audit"], timed["infer"])[0],
               "outside_augmentation_wall_s": statistics.median(outside), "probe_wall_s": statistics.median(probe),
               "threads_started_by_audit": spawned}
        rows.append(row)
        print(f"{name:20s} {row['plain_s']:8.3f} {row['seeded_s']:8.3f} {row['infer_s']:8.3f} {row['audit_s']:8.3f} "
              f"{ratio:6.3f} {q1:5.3f}-{q3:5.3f} {row['seeded_ratio']:6.3f} {row['audit_over_infer']:11.3f} "
              f"{row['outside_augmentation_wall_s']:9.3f} {row['probe_wall_s']:8.3f}"
              + (f"  (the audit started {spawned} threads)" if spawned else ""))
    after = load()
    print(f"after: {after}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n_images": args.n_images, "draws": args.draws, "repeats": args.repeats, "threads": 1,
                       "clock": args.clock,
                       "load_before": before, "load_after": after, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
