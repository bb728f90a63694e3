"""Density-audit overhead (issue 15): time of pytest_psa.density / time of a plain per-image loop
applying the same augmentation to the same images the same number of times, measured side by side.

    python benchmarks/bench_density.py [--n-images 500] [--draws 8] [--repeats 5] [--data synthetic] [--json out.json]

One intra-op thread for both (the audit's per-image work runs single-threaded; on 32 px images a
second thread only adds hand-offs). Runs are interleaved (plain, audit, plain, audit, ...) so drift
hits both; the ratio is taken of the medians, of wall time and of process CPU time. The audit
includes everything a user waits for: data selection, the probe (determinism self-check, reported
separately as probe_s), seeding, contract checks and distances. The machine's load (`os.getloadavg`)
is printed before and after: figures taken under load are not comparable. Goal: ratio <= 1.10.

Two columns locate a gap: ``seeded`` is the plain loop with one ``torch.manual_seed`` per draw from the
audit's own seed table (the same draws as the audit: the same operations of RandAugment etc. are
picked), and ``outside s`` is the audit's time outside its augmentation calls (data, probe, distances,
result; ``timing["augment_s"]`` subtracted), so ``audit / seeded`` near 1 with a small ``outside s``
says the audit adds little beyond seeding and that the rest of ``ratio`` is the draws themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


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


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--n-images", type=int, default=500)
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--data", default="synthetic")
    p.add_argument("--only", nargs="*", choices=sorted(AUGMENTATIONS), help="a subset of the augmentations")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = pytest_psa.load_data(args.data, split="test", n=args.n_images, seed=0)
    images = data.float_images()
    before = load()
    print(f"{args.n_images} images x {args.draws} draws, {args.repeats} interleaved repeats, 1 torch thread, "
          f"data {data.describe()}, torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"before: {before}")
    positions = data.indices.numpy() if data.indices is not None else np.arange(len(data))
    seeds = draw_seeds(0, positions, args.draws)
    print(f"{'augmentation':20s} {'plain s':>8s} {'seeded s':>8s} {'audit s':>8s} {'ratio':>6s} {'cpu ratio':>9s} "
          f"{'audit/seeded':>12s} {'outside s':>9s} {'probe s':>8s}")
    rows = []
    for name in args.only or list(AUGMENTATIONS):
        aug = AUGMENTATIONS[name]()
        pytest_psa.density(aug, data=data, n_images=20, draws=1, seed=0)  # warm-up: first calls allocate
        plain_wall, plain_cpu, seeded_wall, audit_wall, audit_cpu, probe, outside = [], [], [], [], [], [], []
        for _ in range(args.repeats):
            w, c, _ = _timed(lambda: plain_loop(aug, images, args.draws))
            plain_wall.append(w)
            plain_cpu.append(c)
            seeded_wall.append(_timed(lambda: seeded_loop(aug, images, seeds))[0])
            w, c, result = _timed(lambda: pytest_psa.density(aug, data=data, n_images=args.n_images,
                                                             draws=args.draws, seed=0))
            audit_wall.append(w)
            audit_cpu.append(c)
            probe.append(result.timing["probe_s"])
            outside.append(w - result.timing["augment_s"])
        row = {"augmentation": name, "plain_s": statistics.median(plain_wall), "audit_s": statistics.median(audit_wall),
               "seeded_s": statistics.median(seeded_wall), "outside_augmentation_s": statistics.median(outside),
               "plain_cpu_s": statistics.median(plain_cpu), "audit_cpu_s": statistics.median(audit_cpu),
               "probe_s": statistics.median(probe)}
        row["ratio"] = row["audit_s"] / row["plain_s"]
        row["cpu_ratio"] = row["audit_cpu_s"] / row["plain_cpu_s"]
        row["audit_over_seeded"] = row["audit_s"] / row["seeded_s"]
        rows.append(row)
        print(f"{name:20s} {row['plain_s']:8.2f} {row['seeded_s']:8.2f} {row['audit_s']:8.2f} {row['ratio']:6.3f} "
              f"{row['cpu_ratio']:9.3f} {row['audit_over_seeded']:12.3f} {row['outside_augmentation_s']:9.3f} "
              f"{row['probe_s']:8.3f}")
    after = load()
    print(f"after: {after}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n_images": args.n_images, "draws": args.draws, "repeats": args.repeats, "threads": 1,
                       "load_before": before, "load_after": after, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
