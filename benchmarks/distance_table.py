"""F_N(γ) under the pixel, aligned and feature distances for five augmentations (issue 7's table).

    PSA_DATA_ROOT=/path/holding/cifar10 python benchmarks/distance_table.py [--data cifar10]
        [--n-images 500] [--draws 8] [--seed 0] [--cache-dir DIR] [--json out.json]

For each augmentation and each distance it runs ``pytest_psa.density`` (the same N images and the
same seeded draws for every distance, so the rows compare distances on identical augmented
images) and prints F_N(γ) at γ ∈ {0.02, 0.05, 0.1} with 95 % intervals (images as the unit), the
identity share, the median distance and, for ``l2_aligned``, which alignments won. The ``feature``
distance uses the default encoder: the smoke-preset ERM baseline for the data, from the model cache
(trained and stored on first use: about 32 s for CIFAR-10 on 2 quiet CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from torchvision.transforms import v2

import pytest_psa
from pytest_psa.measure.density.distances_aligned import describe_alignment

AUGMENTATIONS = {
    "crop+flip": lambda: v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]),
    "AugMix": lambda: v2.AugMix(),
    "TrivialAugmentWide": lambda: v2.TrivialAugmentWide(),
    "RandAugment": lambda: v2.RandAugment(),
    "invert+solarize+jitter": lambda: v2.Compose([v2.RandomInvert(p=1), v2.ColorJitter(0.8, 0.8, 0.8, 0.3),
                                                  v2.RandomSolarize(0.5, p=1)]),
}
DISTANCES = ("l2", "l2_aligned", "feature")
GAMMAS = (0.02, 0.05, 0.1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="cifar10")
    p.add_argument("--data-root", default=os.environ.get("PSA_DATA_ROOT"))
    p.add_argument("--n-images", type=int, default=500)
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="model/data cache (default: $PSA_CACHE_DIR or ~/.cache/pytest-psa)")
    p.add_argument("--json", help="write every result's to_dict() here")
    args = p.parse_args()

    rows, results = [], []
    for aug_name, make in AUGMENTATIONS.items():
        for dist in DISTANCES:
            t = time.perf_counter()
            r = pytest_psa.density(make(), data=args.data, data_root=args.data_root, cache_dir=args.cache_dir,
                                   n_images=args.n_images, draws=args.draws, distance=dist, seed=args.seed)
            spent = time.perf_counter() - t
            cells = []
            for g in GAMMAS:
                iv = r.interval(g, 0.05)
                cells.append(f"{iv.estimate:.3f} [{iv.low:.3f}, {iv.high:.3f}]")
            rows.append((aug_name, dist, *cells, f"{100 * r.identity_fraction:.1f}%", f"{r.quantile(0.5):.3f}"))
            results.append({"augmentation_label": aug_name, "wall_s": spent, **r.to_dict()})
            alignment = r.alignment()
            note = "" if alignment is None else "  " + describe_alignment(alignment)
            if dist == "feature":
                params = r.distance_info["params"]
                note = (f"  encoder {params.get('encoder')} (test accuracy {params.get('test_accuracy')}, "
                        f"cache {params.get('cache')}, key {str(params.get('cache_key'))[:12]})")
            print(f"{aug_name:24s} {dist:10s} {spent:6.1f} s{note}", flush=True)

    header = ("augmentation", "distance", *(f"F({g:g}) [95%]" for g in GAMMAS), "identity", "median d")
    print()
    print(f"{args.data}, {args.n_images} test images x {args.draws} draws, seed {args.seed}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
