"""All 15 x 5 CIFAR-10-C corruptions on 10,000 images: pytest-psa's batched kernels vs `imagecorruptions`.

    python benchmarks/bench_corruptions.py [--n-images 10000] [--ref-images 40] [--threads 2]
                                           [--repeats 3] [--data auto|cifar10|synthetic] [--only NAME ...]
                                           [--no-reference] [--fidelity] [--json PATH]

Data: the real CIFAR-10 test split when $PSA_DATA_ROOT holds it (``--data auto``), else the synthetic
shapes set. For each corruption, side by side and interleaved (so drift on a shared machine hits both):

- ours: ``pytest_psa.corrupt`` on all N images, severities 1..5, CIFAR table, ``--threads`` torch
  threads; one-time setup (zoom operators, Poisson tables, first JPEG call) is included.
- reference: ``imagecorruptions.corrupt`` (bethgelab, PyPI 1.1.2) image by image on a random
  ``--ref-images`` subsample, severities 1..5, cv2 and numpy on one thread, extrapolated to N. It is
  NOT a project dependency: ``.venv/bin/pip install imagecorruptions`` for this script only. It applies
  ImageNet parameters at every size (its per-image work differs from the CIFAR table's; see
  docs/corruptions.md), imports ``pkg_resources`` (absent from setuptools-free environments; a
  five-line shim is installed below) and some of its corruptions fail on numpy 2 / scikit-image 0.26:
  those are reported with their exception and left out of the ratio.

Each variant is timed ``--repeats`` times, ours and the reference alternating, and the fastest run of
each counts (on a shared machine the minimum is the least disturbed measurement).

Reported: seconds per corruption (sum over 5 severities), the total for all 75 variants, the speed
ratio reference / ours over the corruptions both ran, and what is missing. ``--fidelity`` also compares
the deterministic corruptions with imagecorruptions at 224 px, where both use the ImageNet table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import types
import warnings

import numpy as np
import torch

import pytest_psa
from pytest_psa.measure.robustness.corruptions import BENCHMARK, available_corruptions, corrupt

DETERMINISTIC = ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression")


def load_images(kind: str, n: int) -> tuple[torch.Tensor, str]:
    root = os.environ.get("PSA_DATA_ROOT")
    if kind in ("auto", "cifar10") and root:
        from pytest_psa.data.sources import available

        if available("cifar10", root=root):
            data = pytest_psa.load_data("cifar10", split="test", root=root)
            return data.float_images()[:n], f"CIFAR-10 test ({min(n, len(data))} images)"
    if kind == "cifar10":
        raise SystemExit("CIFAR-10 not found: set PSA_DATA_ROOT (or use --data synthetic)")
    data = pytest_psa.load_data("synthetic", split="train")
    images = data.float_images()[:n]
    return images, f"synthetic shapes ({len(images)} images; real CIFAR-10 not found)"


def load_reference():
    """imagecorruptions.corrupt, or None with the reason."""
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        # imagecorruptions 1.1.2 only needs resource_filename(package, path) to find its frost images.
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, resource: str) -> str:
            spec = importlib.util.find_spec(package)
            return os.path.join(os.path.dirname(spec.origin), resource)

        shim.resource_filename = resource_filename
        sys.modules["pkg_resources"] = shim
    try:
        import cv2
        from imagecorruptions import corrupt as reference
    except ImportError as exc:
        return None, f"imagecorruptions not importable ({exc}); .venv/bin/pip install imagecorruptions"
    cv2.setNumThreads(1)
    return reference, ""


def time_ours(images: torch.Tensor, name: str) -> list[float]:
    seconds = []
    for severity in range(1, 6):
        start = time.perf_counter()
        corrupt(images, name, severity, seed=0)
        seconds.append(time.perf_counter() - start)
    return seconds


def time_reference(reference, images_u8: np.ndarray, name: str) -> tuple[list[float] | None, str]:
    """Seconds per image for each severity, or None and the error of the first failure."""
    per_image = []
    for severity in range(1, 6):
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for image in images_u8:
                    reference(image, corruption_name=name, severity=severity)
        except Exception as exc:  # noqa: BLE001 - the point is to record how it fails
            return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
        per_image.append((time.perf_counter() - start) / len(images_u8))
    return per_image, ""


def fidelity_224(reference) -> list[dict]:
    """Max level differences against imagecorruptions at 224 px (ImageNet table on both sides)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (2, 28, 28, 3), dtype=np.uint8)
    images = np.stack([np.asarray(Image.fromarray(s).resize((224, 224), Image.BICUBIC)) for s in small])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    rows = []
    for name in DETERMINISTIC:
        for severity in range(1, 6):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = np.stack([np.asarray(reference(im, corruption_name=name, severity=severity)) for im in images])
            ref = ref.astype(np.float64)
            ours = corrupt(x, name, severity).permute(0, 2, 3, 1).double().numpy() * 255
            compat = np.round(corrupt(x, name, severity, compat="hendrycks").permute(0, 2, 3, 1).double().numpy() * 255)
            rows.append({
                "corruption": name, "severity": severity,
                "float_max_levels": float(np.abs(ours - ref).max()),
                "compat_max_levels": float(np.abs(compat - ref).max()),
                "compat_fraction_differing": float(np.mean(compat != ref)),
            })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=int, default=10_000)
    parser.add_argument("--ref-images", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", choices=["auto", "cifar10", "synthetic"], default="auto")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--fidelity", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    images, description = load_images(args.data, args.n_images)
    n = len(images)
    names = [name for name in BENCHMARK if args.only is None or name in args.only]
    have = set(available_corruptions())
    missing = [name for name in names if name not in have]
    reference, why_not = (None, "--no-reference") if args.no_reference else load_reference()
    pick = np.random.default_rng(0).choice(n, size=min(args.ref_images, n), replace=False)
    images_u8 = (images[pick] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    print(f"data: {description}; torch threads {torch.get_num_threads()}; reference subsample {len(pick)}")
    if missing:
        print(f"missing kernels (not benchmarked): {', '.join(missing)}")
    if reference is None:
        print(f"reference: skipped ({why_not})")
    header = f"{'corruption':18s} {'ours s':>8s} {'ours ms/img':>11s} {'ref s (extrap.)':>15s} {'ratio':>7s}  note"
    print(header)
    print("-" * len(header))
    rows = []
    for name in names:
        if name in missing:
            rows.append({"corruption": name, "missing": True})
            print(f"{name:18s} {'-':>8s} {'-':>11s} {'-':>15s} {'-':>7s}  no kernel yet")
            continue
        ours, per_image, error = None, None, ""
        for _ in range(max(1, args.repeats)):
            run = time_ours(images, name)
            ours = run if ours is None else [min(a, b) for a, b in zip(ours, run)]
            if reference is not None and not error:
                ref_run, error = time_reference(reference, images_u8, name)
                if ref_run is not None:
                    per_image = ref_run if per_image is None else [min(a, b) for a, b in zip(per_image, ref_run)]
        row = {"corruption": name, "ours_s": ours, "ours_total_s": sum(ours)}
        note = ""
        if error:
            row["reference_error"] = error
            note = f"reference fails: {error}"
        elif per_image is not None:
            row["reference_s_per_image"] = per_image
            row["reference_total_s"] = sum(per_image) * n
        rows.append(row)
        ref_total = row.get("reference_total_s")
        ratio = f"{ref_total / row['ours_total_s']:7.1f}" if ref_total else f"{'-':>7s}"
        ref_text = f"{ref_total:15.1f}" if ref_total else f"{'-':>15s}"
        per_image_ms = 1000 * row["ours_total_s"] / (5 * n)
        print(f"{name:18s} {row['ours_total_s']:8.2f} {per_image_ms:11.3f} {ref_text} {ratio}  {note}")

    done = [r for r in rows if not r.get("missing")]
    both = [r for r in done if r.get("reference_total_s")]
    ours_total = sum(r["ours_total_s"] for r in done)
    summary = {
        "data": description,
        "n_images": n,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "reference_images": int(len(pick)),
        "variants_timed": 5 * len(done),
        "ours_total_s": ours_total,
        "missing": missing,
        "reference_failures": {r["corruption"]: r["reference_error"] for r in done if "reference_error" in r},
    }
    if both:
        ours_both = sum(r["ours_total_s"] for r in both)
        ref_both = sum(r["reference_total_s"] for r in both)
        summary.update(ours_on_common_s=ours_both, reference_on_common_s=ref_both, ratio=ref_both / ours_both)
    print("-" * len(header))
    print(f"ours: {5 * len(done)} variants on {n} images in {ours_total:.1f} s (goal <= 30 s for all 75 on 2 cores)")
    if both:
        print(
            f"on the {len(both)} corruptions both ran: ours {summary['ours_on_common_s']:.1f} s, imagecorruptions "
            f"{summary['reference_on_common_s']:.0f} s extrapolated from {len(pick)} images, ratio "
            f"{summary['ratio']:.1f}x (goal >= 20x)"
        )
    for name, error in summary["reference_failures"].items():
        print(f"imagecorruptions {name}: {error}")
    if args.fidelity and reference is not None:
        summary["fidelity_224"] = fidelity_224(reference)
        print("\nfidelity vs imagecorruptions at 224 px (levels of 1/255; its output is np.uint8-truncated):")
        for r in summary["fidelity_224"]:
            print(f"  {r['corruption']:17s} {r['severity']}  float max {r['float_max_levels']:.3f}  "
                  f"compat max {r['compat_max_levels']:.0f} ({100 * r['compat_fraction_differing']:.2f} % differ)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"summary": summary, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
