"""Cost of the ``l2_aligned`` distance next to ``l2`` and next to the augmentation itself.

    python benchmarks/bench_aligned.py [--n-images 1000] [--draws 8] [--repeats 3] [--data synthetic]
                                       [--augmentation CropFlip]

For N images × K draws, on the same augmented batches and with one intra-op thread (as the audit
runs them), it times, side by side and interleaved (so machine drift hits all of them):

- augment: applying the augmentation, image by image, K times (what the audit pays anyway);
- l2: the pixel distance of every draw;
- l2_aligned: the aligned distance of every draw, with its per-chunk preparation of the clean images
  (the Fourier transforms of x and its flip) included;
- feature: the feature distance with the default encoder's architecture (the small CNN; its weights
  do not change the cost, so an untrained one is used and nothing is trained), clean chunks
  encoded once.

Reported: medians over repeats, the ratio l2_aligned / l2, and the goal's ratio
(l2_aligned − l2) / augment: the extra cost of the alignment search relative to the augmentation
(goal: <= 1). Then the whole audit, `pytest_psa.density` with each distance, as a ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torchvision.transforms import v2

import pytest_psa
from pytest_psa._threads import single_thread
from pytest_psa.audits.density import draw_seeds
from pytest_psa.measure.density.distances import DistanceContext, get_distance
from pytest_psa.measure.density.distances_feature import feature_distance
from pytest_psa.train.models import build_model

AUGMENTATIONS = {
    "CropFlip": lambda: v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]),
    "TrivialAugmentWide": lambda: v2.TrivialAugmentWide(),
    "AugMix": lambda: v2.AugMix(),
}
CHUNK = 256  # the audit's default chunk size


def timed_pass(aug, images: torch.Tensor, seeds, distances) -> dict[str, float]:
    """One pass over all chunks and draws: time the augmentation and each distance separately."""
    spent = {"augment": 0.0, **{d.name: 0.0 for d in distances}}
    for start in range(0, len(images), CHUNK):
        x = images[start:start + CHUNK]
        with single_thread():
            refs = []
            for d in distances:
                t = time.perf_counter()
                refs.append(d.reference(x))
                spent[d.name] += time.perf_counter() - t
        for j in range(seeds.shape[1]):
            t = time.perf_counter()
            y = aug.apply(x, seeds[start:start + CHUNK, j])
            spent["augment"] += time.perf_counter() - t
            with single_thread():
                for d, ref in zip(distances, refs):
                    t = time.perf_counter()
                    d.measure(ref, y)
                    spent[d.name] += time.perf_counter() - t
    return spent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-images", type=int, default=1000)
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", default="synthetic")
    p.add_argument("--augmentation", default="CropFlip", choices=sorted(AUGMENTATIONS))
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    data = pytest_psa.load_data(args.data, split="test", n=args.n_images, seed=0)
    images = data.float_images()
    positions = data.indices.numpy() if data.indices is not None else torch.arange(len(data)).numpy()
    seeds = draw_seeds(0, positions, args.draws)
    aug = pytest_psa.as_augmentation(AUGMENTATIONS[args.augmentation]())
    ctx = DistanceContext(images=data)
    encoder = build_model("small_cnn", data.num_classes)
    distances = [get_distance("l2").bind(ctx), get_distance("l2_aligned").bind(ctx), feature_distance(encoder)]
    timed_pass(aug, images[:64], seeds[:64, :1], distances)  # warm-up

    runs = []
    for _ in range(args.repeats):
        runs.append(timed_pass(aug, images, seeds, distances))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    ratio_l2 = med["l2_aligned"] / med["l2"]
    ratio_aug = (med["l2_aligned"] - med["l2"]) / med["augment"]
    print(f"{data.describe()}, {args.n_images} images x {args.draws} draws, augmentation {args.augmentation}, "
          f"{args.repeats} repeats, one torch thread")
    print(f"  augment {med['augment']:.3f} s   l2 {med['l2']:.3f} s   l2_aligned {med['l2_aligned']:.3f} s   "
          f"feature {med['feature']:.3f} s")
    print(f"  l2_aligned / l2                         = {ratio_l2:.1f}")
    print(f"  (l2_aligned - l2) / augment (goal <= 1) = {ratio_aug:.3f}")
    print(f"  (feature - l2) / augment                = {(med['feature'] - med['l2']) / med['augment']:.3f}")

    audits = {"l2": [], "l2_aligned": []}
    for _ in range(args.repeats):
        for name in audits:
            t = time.perf_counter()
            pytest_psa.density(aug, data=data, n_images=args.n_images, draws=args.draws, distance=name, seed=0)
            audits[name].append(time.perf_counter() - t)
    audit_med = {k: statistics.median(v) for k, v in audits.items()}
    audit_ratio = audit_med["l2_aligned"] / audit_med["l2"]
    print(f"  audit: density(distance='l2') {audit_med['l2']:.2f} s, density(distance='l2_aligned') "
          f"{audit_med['l2_aligned']:.2f} s, ratio {audit_ratio:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data": data.describe(), "n_images": args.n_images, "draws": args.draws,
                       "augmentation": args.augmentation, "median_s": med, "aligned_over_l2": ratio_l2,
                       "extra_over_augment": ratio_aug, "audit_s": audit_med, "audit_ratio": audit_ratio,
                       "runs": runs}, f, indent=2)


if __name__ == "__main__":
    main()
