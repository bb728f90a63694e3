"""Density-audit overhead: time of pytest_psa.density / time of a plain per-image loop applying
the same augmentation to the same images the same number of times, measured side by side.

    python benchmarks/bench_density.py [--n-images 500] [--draws 8] [--repeats 3] [--data synthetic]

Runs are interleaved (plain, audit, plain, audit, ...) so machine drift hits both; the ratio is
taken of the medians. Two references: the loop at torch's default thread count (what a user
would write) and at one thread (what the audit uses for per-image work).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torchvision.transforms import v2

import pytest_psa

AUGMENTATIONS = {
    "AugMix": lambda: v2.AugMix(),
    "RandAugment": lambda: v2.RandAugment(),
    "TrivialAugmentWide": lambda: v2.TrivialAugmentWide(),
    "CropFlip": lambda: v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]),
    "FAR": lambda: v2.Compose([v2.RandomInvert(p=1), v2.ColorJitter(0.8, 0.8, 0.8, 0.3),
                               v2.RandomSolarize(0.5, p=1)]),
}


def plain_loop(aug, images: torch.Tensor, draws: int, threads: int) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = time.perf_counter()
        for _ in range(draws):
            for img in images:
                aug(img)
        return time.perf_counter() - t
    finally:
        torch.set_num_threads(before)


def audit(aug, data, n: int, draws: int) -> float:
    t = time.perf_counter()
    pytest_psa.density(aug, data=data, n_images=n, draws=draws, seed=0)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=500)
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", default="synthetic")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    data = pytest_psa.load_data(args.data, split="test", n=args.n_images, seed=0)
    images = data.float_images()
    default_threads = torch.get_num_threads()
    rows = []
    print(f"{args.n_images} images x {args.draws} draws, {args.repeats} interleaved repeats, "
          f"torch threads {default_threads}, data {data.describe()}")
    print(f"{'augmentation':20s} {'plain(default thr) s':>21s} {'plain(1 thr) s':>15s} {'audit s':>8s} "
          f"{'ratio vs default':>17s} {'ratio vs 1 thr':>15s}")
    for name, make in AUGMENTATIONS.items():
        aug = make()
        audit(aug, data, 20, 1)  # warm-up (first calls allocate)
        t_def, t_one, t_aud = [], [], []
        for _ in range(args.repeats):
            t_def.append(plain_loop(aug, images, args.draws, default_threads))
            t_aud.append(audit(aug, data, args.n_images, args.draws))
            t_one.append(plain_loop(aug, images, args.draws, 1))
        row = {"augmentation": name, "plain_default_s": statistics.median(t_def),
               "plain_1thread_s": statistics.median(t_one), "audit_s": statistics.median(t_aud)}
        row["ratio_vs_default"] = row["audit_s"] / row["plain_default_s"]
        row["ratio_vs_1thread"] = row["audit_s"] / row["plain_1thread_s"]
        rows.append(row)
        print(f"{name:20s} {row['plain_default_s']:21.2f} {row['plain_1thread_s']:15.2f} {row['audit_s']:8.2f} "
              f"{row['ratio_vs_default']:17.3f} {row['ratio_vs_1thread']:15.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n_images": args.n_images, "draws": args.draws, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
