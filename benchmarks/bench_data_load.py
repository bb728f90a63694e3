"""Cold load of an image archive: decoded straight from it vs unpacked to disk, then decoded (issue 15).

    python benchmarks/bench_data_load.py [--archive PATH] [--splits train,test] [--repeats 2]

Default archive: ``$PSA_DATA_ROOT/cifar10*.tar.gz`` (60,000 JPEGs, 19.8 MB). Each repeat, in one
process and alternating which goes first, times with an empty cache folder each:

- (ours) ``pytest_psa.load_data(archive, split=...)`` for every split: the archive is read and each
  split decoded from memory in a thread per core, then cached as ``.npz``;
- (ref) what ``load_data`` did before (and what a user does by hand with torchvision's
  ``ImageFolder``): ``tarfile.extractall(filter="data")`` into the cache folder, then
  ``pytest_psa.data.folders.load_image_folder`` on the unpacked tree (the same decoder, one file open
  per image).

Both give the same pixels, labels and classes (checked every repeat). The removal of each cache
folder is not timed. Printed: wall seconds per side and split, ref / ours, files written, and the load
average before and after (compare ratios; take figures on an idle machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

import pytest_psa
from pytest_psa.data.folders import _single_top_folder, load_image_folder


def load_avg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def find_archive() -> Path:
    root = os.environ.get("PSA_DATA_ROOT")
    found = sorted(Path(root).glob("cifar10*.tar.gz")) if root else []
    found = [p for p in found if not p.name.startswith("cifar100")]
    if not found:
        sys.exit("no archive: pass --archive PATH or set $PSA_DATA_ROOT to a folder holding cifar10*.tar.gz")
    return found[0]


def ours(archive: Path, splits: list[str], cache: Path) -> tuple[dict[str, float], dict[str, pytest_psa.ImageData]]:
    times, data = {}, {}
    for split in splits:
        t0 = time.perf_counter()
        data[split] = pytest_psa.load_data(archive, split=split, cache_dir=cache)
        times[split] = time.perf_counter() - t0
    return times, data


def reference(archive: Path, splits: list[str], cache: Path) -> tuple[dict[str, float], dict[str, pytest_psa.ImageData]]:
    t0 = time.perf_counter()
    target = cache / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    tree = _single_top_folder(target)
    times = {"unpack": time.perf_counter() - t0}
    data = {}
    for split in splits:
        t0 = time.perf_counter()
        data[split] = load_image_folder(tree, split, cache=tree)
        times[split] = time.perf_counter() - t0
    return times, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=None)
    parser.add_argument("--splits", default="train,test")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    archive = args.archive or find_archive()
    splits = args.splits.split(",")
    print(f"{archive} ({archive.stat().st_size / 1e6:.1f} MB), splits {splits}, torch {torch.__version__}")
    print("before:", load_avg())
    rows = []
    for r in range(args.repeats):
        order = [("ours", ours), ("ref", reference)] if r % 2 == 0 else [("ref", reference), ("ours", ours)]
        got = {}
        for name, fn in order:
            cache = Path(tempfile.mkdtemp(prefix=f"psa-load-{name}-"))
            try:
                times, data = fn(archive, splits, cache)
                files = sum(1 for _ in cache.rglob("*"))
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            got[name] = (times, data, files)
        for split in splits:
            a, b = got["ours"][1][split], got["ref"][1][split]
            if not (torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.classes == b.classes):
                sys.exit(f"repeat {r}: {split} differs between the two loads")
        t_ours, t_ref = sum(got["ours"][0].values()), sum(got["ref"][0].values())
        rows.append((t_ours, t_ref))
        print(f"repeat {r} ({order[0][0]} first): ours {t_ours:.1f} s {_fmt(got['ours'][0])}, {got['ours'][2]} files "
              f"| ref {t_ref:.1f} s {_fmt(got['ref'][0])}, {got['ref'][2]} files | ref / ours {t_ref / t_ours:.2f}")
    print("after:", load_avg())
    best_ours, best_ref = min(o for o, _ in rows), min(r for _, r in rows)
    print(f"fastest of {len(rows)}: ours {best_ours:.1f} s, ref {best_ref:.1f} s, ref / ours {best_ref / best_ours:.2f}; "
          "pixels, labels and classes equal in every repeat")


def _fmt(times: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k} {v:.1f}" for k, v in times.items()) + ")"


if __name__ == "__main__":
    main()
