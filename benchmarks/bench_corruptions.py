"""pytest-psa's batched corruption kernels against the per-image reference, ``imagecorruptions``.

Two modes:

    python benchmarks/bench_corruptions.py --sizes 32,64,224 --threads 1 [--images 32:200,64:64,224:16]
    python benchmarks/bench_corruptions.py --full --threads 2 [--n-images 10000] [--ref-images 40]

common options: [--repeats 3] [--data auto|cifar10|synthetic|photos] [--only NAME ...] [--clock wall|cpu]
                [--no-reference] [--fidelity] [--json PATH]

Sizes mode (default): for each size, the same images (CIFAR-10 test images, bicubic-upscaled to 64 and
224 px; the synthetic shapes without ``$PSA_DATA_ROOT``) go through ``pytest_psa.corrupt`` as one batch
and through the reference image by image, severities 1..5, interleaved ``--repeats`` times (ours, then
the reference, per corruption: drift on a shared machine hits both); the fastest run of each counts.
Reported per size and corruption: ms per image for both and the speed ratio reference / ours, then the
geometric mean of the ratios, and a side-by-side table of the ratios over the sizes. The reference
always applies its ImageNet parameters; ours applies the table of the image size (CIFAR at 32 px,
Tiny ImageNet at 64, ImageNet at 224), so only 224 px compares like with like.

Full mode: all 15 x 5 CIFAR-10-C variants on ``--n-images`` (10,000) CIFAR-10 test images at 32 px,
against the reference on a random ``--ref-images`` subsample extrapolated to N (the goal of issue 15:
<= 30 s on 2 cores and >= 20x the reference).

``--threads``: torch's thread count for ours (``corrupt`` splits a batch over that many pool threads);
the reference runs one image at a time on one thread (cv2, numba and numpy's BLAS held to one thread).
Each run prints the load average (``uptime``) before and after: compare ratios, and take final figures
on an idle machine. ``--clock cpu`` times process CPU time instead of wall time, which is steadier on a
loaded machine but hides any threads' parallelism (use it with ``--threads 1`` only).

The reference is NOT a project dependency. On numpy 2 / scikit-image 0.26 the maintained fork
``imagecorruptions-imaug`` (1.1.5; the same ``imagecorruptions`` module, numba for glass_blur) runs all
19 corruptions; bethgelab's ``imagecorruptions`` 1.1.2 fails glass_blur and fog there and imports
``pkg_resources`` (a five-line shim is installed below). Install one for this script only:
``.venv/bin/pip install --no-deps imagecorruptions-imaug scikit-image numba`` (its opencv-python
requirement is met by opencv-python-headless). A corruption the reference fails on is reported with its
exception and left out of the ratios. ``--fidelity`` also compares the deterministic corruptions with it
at 224 px, where both use the ImageNet table.

Run times on the 2-core development machine: sizes mode ~6 min at --repeats 3 (224 px dominates: the
reference's frost, glass and zoom take 20-100 ms per image there); full mode ~4 min (--repeats 3).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import sys
import time
import types
import warnings

# The reference runs on one thread: set before numpy, cv2 and numba are imported.
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import pytest_psa  # noqa: E402
from pytest_psa.measure.robustness.corruptions import BENCHMARK, available_corruptions, corrupt  # noqa: E402

DETERMINISTIC = ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression")
DEFAULT_IMAGES = {32: 200, 64: 64, 224: 16}
CLOCK = time.perf_counter


def load_avg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def load_images(kind: str, n: int) -> tuple[torch.Tensor, str]:
    root = os.environ.get("PSA_DATA_ROOT")
    if kind in ("auto", "cifar10") and root:
        from pytest_psa.data.sources import available

        if available("cifar10", root=root):
            data = pytest_psa.load_data("cifar10", split="test", root=root)
            return data.float_images()[:n], f"CIFAR-10 test ({min(n, len(data))} images)"
    if kind == "cifar10":
        raise SystemExit("CIFAR-10 not found: set PSA_DATA_ROOT (or use --data synthetic or photos)")
    if kind == "photos":
        return photo_crops(n), f"photo crops ({n} 32 px downscales of scikit-image's sample photographs)"
    data = pytest_psa.load_data("synthetic", split="train")
    images = data.float_images()[:n]
    return images, f"synthetic shapes ({len(images)} images; real CIFAR-10 not found)"


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")


def photo_crops(n: int) -> torch.Tensor:
    """CIFAR-like stand-ins where CIFAR-10 is absent: random square crops (64 px to the short side) of
    the photographs bundled with scikit-image (a dependency of the reference), BOX-downscaled to 32 px
    as CIFAR's images were; photographic texture costs JPEG and the blurs more than flat shapes do."""
    from PIL import Image
    from skimage import data as sk_data

    photos = [getattr(sk_data, name)() for name in PHOTOS]
    rng = np.random.default_rng(0)
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(rng.integers(64, min(photo.shape[:2]) + 1))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side, :3])
        crops.append(np.asarray(crop.resize((32, 32), Image.BOX)))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255)


def upscale(images: torch.Tensor, size: int) -> torch.Tensor:
    """32 px images to ``size`` px by PIL's bicubic resize on 8-bit levels (photo-like inputs at 224 px)."""
    if images.shape[-1] == size:
        return images
    from PIL import Image

    u8 = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    big = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in u8])
    return torch.from_numpy(big).permute(0, 3, 1, 2).float().div_(255)


def load_reference():
    """(imagecorruptions.corrupt, "name version") or (None, the reason)."""
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
        return None, (f"imagecorruptions not importable ({exc}); .venv/bin/pip install --no-deps "
                      "imagecorruptions-imaug scikit-image numba")
    cv2.setNumThreads(1)
    for dist in ("imagecorruptions-imaug", "imagecorruptions"):
        try:
            return reference, f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return reference, "imagecorruptions (version unknown)"


def time_ours(images: torch.Tensor, name: str) -> list[float]:
    seconds = []
    for severity in range(1, 6):
        start = CLOCK()
        corrupt(images, name, severity, seed=0)
        seconds.append(CLOCK() - start)
    return seconds


def time_reference(reference, images_u8: np.ndarray, name: str) -> tuple[list[float] | None, str]:
    """Seconds per image for each severity, or None and the error of the first failure."""
    per_image = []
    for severity in range(1, 6):
        start = CLOCK()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for image in images_u8:
                    reference(image, corruption_name=name, severity=severity)
        except Exception as exc:  # noqa: BLE001 - the point is to record how it fails
            return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
        per_image.append((CLOCK() - start) / len(images_u8))
    return per_image, ""


def side_by_side(reference, images: torch.Tensor, ref_images: torch.Tensor, name: str, repeats: int):
    """(ours seconds per severity, reference seconds per image per severity or None, error)."""
    images_u8 = (ref_images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    ours, per_image, error = None, None, ""
    for severity in range(1, 6):  # one-time setup (operators, tables, caches) out of the timed runs
        corrupt(images[:2], name, severity)
    if reference is not None:  # and the reference's (numba compiles glass_blur on its first call)
        time_reference(reference, images_u8[:1], name)
    for _ in range(max(1, repeats)):
        run = time_ours(images, name)
        ours = run if ours is None else [min(a, b) for a, b in zip(ours, run)]
        if reference is not None and not error:
            ref_run, error = time_reference(reference, images_u8, name)
            if ref_run is not None:
                per_image = ref_run if per_image is None else [min(a, b) for a, b in zip(per_image, ref_run)]
    return ours, per_image, error


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def sizes_mode(args, reference, why_not: str) -> dict:
    counts = dict(DEFAULT_IMAGES)
    for item in filter(None, (args.images or "").split(",")):
        size, count = item.split(":")
        counts[int(size)] = int(count)
    sizes = [int(s) for s in args.sizes.split(",")]
    base, description = load_images(args.data, max(counts.get(s, 16) for s in sizes))
    names = [name for name in BENCHMARK if args.only is None or name in args.only]
    print(f"data: {description}, upscaled per size; torch threads {torch.get_num_threads()} "
          f"(ours); reference {why_not or reference_name(reference)}, one image at a time, one thread; "
          f"clock {args.clock}; fastest of {args.repeats}")
    print(f"before: {load_avg()}")
    results: dict[int, list[dict]] = {}
    for size in sizes:
        images = upscale(base[: counts.get(size, 16)], size).contiguous()
        n = len(images)
        print(f"\n{size} px, {n} images ({'ImageNet' if size == 224 else 'Tiny ImageNet' if size == 64 else 'CIFAR'}"
              f" table for ours, ImageNet parameters for the reference)")
        header = f"{'corruption':18s} {'ours ms/img':>11s} {'ref ms/img':>11s} {'ratio':>7s}  note"
        print(header + "\n" + "-" * len(header))
        rows = []
        for name in names:
            ours, per_image, error = side_by_side(reference, images, images, name, args.repeats)
            ours_ms = 1000 * sum(ours) / (5 * n)
            row = {"corruption": name, "ours_ms_per_image": ours_ms}
            if per_image is not None:
                row["reference_ms_per_image"] = 1000 * sum(per_image) / 5
                row["ratio"] = row["reference_ms_per_image"] / ours_ms
            if error:
                row["reference_error"] = error
            rows.append(row)
            ref_text = f"{row['reference_ms_per_image']:11.3f}" if "ratio" in row else f"{'-':>11s}"
            ratio = f"{row['ratio']:7.2f}" if "ratio" in row else f"{'-':>7s}"
            print(f"{name:18s} {ours_ms:11.3f} {ref_text} {ratio}  {('reference fails: ' + error) if error else ''}",
                  flush=True)
        ratios = [r["ratio"] for r in rows if "ratio" in r]
        below = [r["corruption"] for r in rows if "ratio" in r and r["ratio"] < 1]
        print(f"geometric mean {geometric_mean(ratios):.2f}x over {len(ratios)} corruptions; "
              f"below 1x: {', '.join(below) or 'none'}")
        results[size] = rows
    print(f"\nratio reference / ours (threads {torch.get_num_threads()}):")
    print(f"{'corruption':18s} " + " ".join(f"{str(s) + ' px':>8s}" for s in sizes))
    for i, name in enumerate(names):
        cells = [results[s][i].get("ratio") for s in sizes]
        print(f"{name:18s} " + " ".join(f"{c:8.2f}" if c else f"{'-':>8s}" for c in cells))
    print(f"{'geometric mean':18s} " + " ".join(
        f"{geometric_mean([r['ratio'] for r in results[s] if 'ratio' in r]):8.2f}" for s in sizes))
    print(f"after: {load_avg()}")
    return {"mode": "sizes", "data": description, "threads": torch.get_num_threads(), "clock": args.clock,
            "reference": why_not or reference_name(reference), "results": {str(k): v for k, v in results.items()}}


def reference_name(reference) -> str:
    return REFERENCE_NAME if reference is not None else "none"


REFERENCE_NAME = ""


def full_mode(args, reference, why_not: str) -> dict:
    images, description = load_images(args.data, args.n_images)
    n = len(images)
    names = [name for name in BENCHMARK if args.only is None or name in args.only]
    have = set(available_corruptions())
    missing = [name for name in names if name not in have]
    pick = np.random.default_rng(0).choice(n, size=min(args.ref_images, n), replace=False)

    print(f"data: {description}; torch threads {torch.get_num_threads()}; reference "
          f"{why_not or reference_name(reference)} on a subsample of {len(pick)}, extrapolated; clock {args.clock}")
    print(f"before: {load_avg()}")
    if missing:
        print(f"missing kernels (not benchmarked): {', '.join(missing)}")
    header = f"{'corruption':18s} {'ours s':>8s} {'ours ms/img':>11s} {'ref s (extrap.)':>15s} {'ratio':>7s}  note"
    print(header)
    print("-" * len(header))
    rows = []
    for name in names:
        if name in missing:
            rows.append({"corruption": name, "missing": True})
            print(f"{name:18s} {'-':>8s} {'-':>11s} {'-':>15s} {'-':>7s}  no kernel yet")
            continue
        ours, per_image, error = side_by_side(reference, images, images[pick], name, args.repeats)
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
        print(f"{name:18s} {row['ours_total_s']:8.2f} {per_image_ms:11.3f} {ref_text} {ratio}  {note}", flush=True)

    done = [r for r in rows if not r.get("missing")]
    both = [r for r in done if r.get("reference_total_s")]
    ours_total = sum(r["ours_total_s"] for r in done)
    summary = {
        "mode": "full",
        "data": description,
        "n_images": n,
        "threads": torch.get_num_threads(),
        "clock": args.clock,
        "repeats": args.repeats,
        "reference": why_not or reference_name(reference),
        "reference_images": int(len(pick)),
        "variants_timed": 5 * len(done),
        "ours_total_s": ours_total,
        "missing": missing,
        "reference_failures": {r["corruption"]: r["reference_error"] for r in done if "reference_error" in r},
        "rows": rows,
    }
    if both:
        ours_both = sum(r["ours_total_s"] for r in both)
        ref_both = sum(r["reference_total_s"] for r in both)
        summary.update(ours_on_common_s=ours_both, reference_on_common_s=ref_both, ratio=ref_both / ours_both)
    print("-" * len(header))
    print(f"ours: {5 * len(done)} variants on {n} images in {ours_total:.1f} s on {torch.get_num_threads()} "
          f"thread(s) (goal <= 30 s for all 75 on 2 cores)")
    if both:
        print(
            f"on the {len(both)} corruptions both ran: ours {summary['ours_on_common_s']:.1f} s, reference "
            f"{summary['reference_on_common_s']:.0f} s extrapolated from {len(pick)} images, ratio "
            f"{summary['ratio']:.1f}x (goal >= 20x)"
        )
    for name, error in summary["reference_failures"].items():
        print(f"reference {name}: {error}")
    print(f"after: {load_avg()}")
    return summary


# -- --limits: what the reference's own library calls leave attainable at 224 px ---------------------------

#: The reference's severity parameters at 224 px for the library calls below (imagecorruptions 1.1.x).
_JPEG_Q = (25, 18, 15, 10, 7)
_PIXELATE_C = (0.6, 0.5, 0.4, 0.3, 0.25)
_DEFOCUS_C = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))
_GLASS_SIGMA = (0.7, 0.9, 1, 1.1, 1.5)
_ZOOM_C = ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03))
_ELASTIC_ALPHA = (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12)
_SNOW_ZOOM = (3, 2, 4, 4.5, 2.5)
_BRIGHTNESS_C = (0.1, 0.2, 0.3, 0.4, 0.5)

#: "must call": our kernel makes the same library call (bit-exact output needs it), so its time is a hard
#: floor of ours. "reproduced": our kernel recomputes that call's arithmetic in torch (same formula, own
#: code, float output), so the call's time estimates the work but bounds nothing.
LIBRARY_STAGES = {
    "jpeg_compression": ("must call", "PIL save(JPEG, q) + libjpeg decode (Image.frombytes, reused image)"),
    "pixelate": ("reproduced", "PIL resize BOX down + NEAREST up"),
    "zoom_blur": ("reproduced", "scipy.ndimage.zoom(order=1) per zoom factor (clipped_zoom)"),
    "defocus_blur": ("reproduced", "cv2.filter2D with the disk, three channels"),
    "glass_blur": ("reproduced", "skimage gaussian twice (the numba shuffle excluded)"),
    "elastic_transform": ("reproduced", "skimage gaussian on dx, dy + scipy map_coordinates(order=1)"),
    "snow": ("reproduced", "scipy zoom of the snow layer (clipped_zoom) + cv2 RGB2GRAY"),
    "brightness": ("reproduced", "skimage rgb2hsv + hsv2rgb (ours: closed form, no HSV)"),
}


def _stage_runner(name: str, images_u8: np.ndarray):
    """A callable timing nothing but the reference's library calls for ``name``, all five severities,
    on every image (inputs prepared outside: PIL images, float copies, disks, random fields)."""
    import cv2
    from PIL import Image
    from scipy.ndimage import map_coordinates
    from skimage import color
    from skimage.filters import gaussian

    from imagecorruptions.corruptions import clipped_zoom, disk

    h, w = images_u8.shape[1:3]
    if name == "jpeg_compression":
        import io

        pils = [Image.fromarray(im) for im in images_u8]
        decoded = Image.new("RGB", (w, h))

        def run() -> None:
            for q in _JPEG_Q:
                for pil in pils:
                    buffer = io.BytesIO()
                    pil.save(buffer, "JPEG", quality=q)
                    decoded.frombytes(buffer.getbuffer(), "jpeg", "RGB", "")
        return run
    if name == "pixelate":
        pils = [Image.fromarray(im) for im in images_u8]

        def run() -> None:
            for c in _PIXELATE_C:
                for pil in pils:
                    pil.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.NEAREST)
        return run
    floats = [im / 255.0 for im in images_u8]
    if name == "zoom_blur":
        floats32 = [f.astype(np.float32) for f in floats]

        def run() -> None:
            for start, stop, step in _ZOOM_C:
                for x in floats32:
                    for factor in np.arange(start, stop, step):
                        clipped_zoom(x, factor)
        return run
    if name == "defocus_blur":
        disks = [disk(radius=r, alias_blur=a) for r, a in _DEFOCUS_C]

        def run() -> None:
            for kernel in disks:
                for x in floats:
                    for d in range(3):
                        cv2.filter2D(x[:, :, d], -1, kernel)
        return run
    if name == "glass_blur":
        def run() -> None:
            for sigma in _GLASS_SIGMA:
                for x in floats:
                    gaussian(gaussian(x, sigma=sigma, channel_axis=-1), sigma=sigma, channel_axis=-1)
        return run
    if name == "elastic_transform":
        rng = np.random.default_rng(0)
        sigma = np.array((h, w)) * 0.01
        fields = [rng.uniform(-h * 0.005, h * 0.005, size=(2, h, w)) for _ in floats]
        yy, xx, zz = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
        grids = [(np.reshape(yy + 0.3, (-1, 1)), np.reshape(xx - 0.2, (-1, 1)), np.reshape(zz, (-1, 1)))]
        floats32 = [f.astype(np.float32) for f in floats]

        def run() -> None:
            for alpha in _ELASTIC_ALPHA:
                for x, (fx, fy) in zip(floats32, fields):
                    (gaussian(fx, sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
                    (gaussian(fy, sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
                    map_coordinates(x, grids[0], order=1, mode="reflect")
        return run
    if name == "snow":
        rng = np.random.default_rng(0)
        layers = [rng.normal(size=(h, w, 1)) for _ in floats]
        floats32 = [f.astype(np.float32) for f in floats]

        def run() -> None:
            for factor in _SNOW_ZOOM:
                for x, layer in zip(floats32, layers):
                    clipped_zoom(layer, factor)
                    cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
        return run
    if name == "brightness":
        def run() -> None:
            for _ in _BRIGHTNESS_C:
                for x in floats:
                    color.hsv2rgb(color.rgb2hsv(x))
        return run
    raise KeyError(name)


def limits_mode(args, reference, why_not: str) -> dict:
    """224 px: per corruption, ours and the reference side by side (the ratios now), ours at severity 0
    (``corrupt``'s validation and one copy of the batch: the least any kernel costs through it) and the
    reference's library calls (``LIBRARY_STAGES``); the attainable ratio is reference / (that floor)."""
    if reference is None:
        raise SystemExit(f"--limits needs the reference: {why_not}")
    size = 224
    counts = dict(DEFAULT_IMAGES)
    counts.update({int(k): int(v) for k, v in (i.split(":") for i in filter(None, (args.images or "").split(",")))})
    n = counts[size]
    base, description = load_images(args.data, n)
    images = upscale(base, size).contiguous()
    images_u8 = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    names = [name for name in BENCHMARK if args.only is None or name in args.only]
    print(f"limits at {size} px: {description}; torch threads {torch.get_num_threads()}; reference "
          f"{reference_name(reference)}, one thread; clock {args.clock}; fastest of {args.repeats}")
    print(f"before: {load_avg()}")
    print("ms per image (5 severities); now: reference / ours in this run; sev0: ours at severity 0 (validation and "
          "one copy); lib: the reference's library call; cap: reference / (sev0 + lib if 'must call' else sev0)")
    header = (f"{'corruption':18s} {'ref ms':>8s} {'ours ms':>8s} {'now':>6s} {'sev0 ms':>8s} {'lib ms':>8s} "
              f"{'kind':>10s} {'cap':>7s}  library call; ours / it")
    rows = []
    severity0: list[float] = []  # the same work for every corruption: the fastest of all runs counts
    for name in names:
        ours, per_image, error = side_by_side(reference, images, images, name, args.repeats)
        if per_image is None:
            print(f"{name:18s} reference fails: {error}")
            continue
        severity0 += [_timed(lambda: corrupt(images, name, 0)) / len(images) for _ in range(max(1, args.repeats))]
        row = {"corruption": name, "reference_ms": 1000 * sum(per_image) / 5,
               "ours_ms": 1000 * sum(ours) / (5 * len(images))}
        row["ratio_now"] = row["reference_ms"] / row["ours_ms"]
        kind, what = LIBRARY_STAGES.get(name, ("", ""))
        if kind:
            run = _stage_runner(name, images_u8)
            run()  # warm-up (imports, caches)
            stage_s = min(_timed(run) for _ in range(max(1, args.repeats))) / (5 * len(images))
            row.update(library_ms=1000 * stage_s, library_kind=kind, library_call=what)
        rows.append(row)
        print(f"  {name}: reference {row['reference_ms']:.3f} ms, ours {row['ours_ms']:.3f} ms", flush=True)
    floor_ms = 1000 * min(severity0)
    print(header + "\n" + "-" * len(header))
    for row in rows:
        kind, what = row.get("library_kind", ""), row.get("library_call", "")
        row["severity0_ms"] = floor_ms
        row["cap"] = row["reference_ms"] / (floor_ms + (row["library_ms"] if kind == "must call" else 0.0))
        if kind:
            row["ours_over_library"] = row["ours_ms"] / row["library_ms"]
        lib = f"{row['library_ms']:8.3f}" if kind else f"{'-':>8s}"
        extra = f"{what}; ours / it {row['ours_over_library']:.2f}" if kind else what
        print(f"{row['corruption']:18s} {row['reference_ms']:8.3f} {row['ours_ms']:8.3f} {row['ratio_now']:6.2f} "
              f"{floor_ms:8.3f} {lib} {kind or '-':>10s} {row['cap']:7.1f}  {extra}")
    now = geometric_mean([r["ratio_now"] for r in rows])
    hard = [r for r in rows if r.get("library_kind") == "must call"]
    with_caps = geometric_mean([r["cap"] if r in hard else r["ratio_now"] for r in rows])
    all_caps = geometric_mean([r["cap"] for r in rows])
    print(f"\ngeometric mean now {now:.2f}x over {len(rows)}")
    others = [r["ratio_now"] for r in rows if r not in hard]
    need = (5.0 ** len(rows) / math.prod(r["cap"] for r in hard)) ** (1 / len(others)) if others else float("nan")
    for r in hard:
        print(f"{r['corruption']}: at most {r['cap']:.2f}x (reference / (the library calls it must make + "
              f"severity-0 cost)); now {r['ratio_now']:.2f}x")
    print(f"hard-capped kernels at their caps, the others as now: {with_caps:.2f}x; 5x then needs the other "
          f"{len(others)} at a geometric mean of {need:.2f}x (now {geometric_mean(others):.2f}x)")
    print(f"every kernel at its floor (severity-0 cost, plus the calls it must make): {all_caps:.1f}x (a bound "
          "no kernel reaches: real kernels do arithmetic)")
    slower = [f"{r['corruption']} {r['ours_over_library']:.1f}x" for r in rows
              if r.get("library_kind") == "reproduced" and r["ours_over_library"] > 1]
    print("reproduced kernels slower than the reference's library call for the same arithmetic (ours / it): "
          + (", ".join(slower) or "none") + " (not a cap: an estimate of headroom)")
    print(f"after: {load_avg()}")
    return {"mode": "limits", "size": size, "data": description, "threads": torch.get_num_threads(),
            "clock": args.clock, "rows": rows, "geomean_now": now, "geomean_hard_caps_others_now": with_caps,
            "geomean_all_floors": all_caps, "geomean_needed_from_the_others": need}


def _timed(fn) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


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
    global CLOCK, REFERENCE_NAME
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="32,64,224", help="sizes mode: comma-separated image sizes")
    parser.add_argument("--images", default=None, help="images per size, e.g. 32:200,64:64,224:16")
    parser.add_argument("--full", action="store_true", help="all 75 variants on --n-images at 32 px")
    parser.add_argument("--limits", action="store_true", help="224 px: the ratio each kernel could reach given "
                        "the reference's library calls it must make or reproduces, and the geometric mean that caps")
    parser.add_argument("--n-images", type=int, default=10_000)
    parser.add_argument("--ref-images", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--data", choices=["auto", "cifar10", "synthetic", "photos"], default="auto",
                        help="auto: CIFAR-10 under $PSA_DATA_ROOT, else synthetic shapes; photos: crops "
                        "of scikit-image's sample photographs at 32 px (CIFAR-like, needs scikit-image)")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--fidelity", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    reference, why_not = (None, "skipped (--no-reference)") if args.no_reference else load_reference()
    if reference is not None:
        REFERENCE_NAME, why_not = why_not, ""
    if args.limits:
        summary = limits_mode(args, reference, why_not)
    else:
        summary = full_mode(args, reference, why_not) if args.full else sizes_mode(args, reference, why_not)
    if args.fidelity and reference is not None:
        summary["fidelity_224"] = fidelity_224(reference)
        print("\nfidelity vs the reference at 224 px (levels of 1/255; its output is np.uint8-truncated):")
        for r in summary["fidelity_224"]:
            print(f"  {r['corruption']:17s} {r['severity']}  float max {r['float_max_levels']:.3f}  "
                  f"compat max {r['compat_max_levels']:.0f} ({100 * r['compat_fraction_differing']:.2f} % differ)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=1)


if __name__ == "__main__":
    main()
