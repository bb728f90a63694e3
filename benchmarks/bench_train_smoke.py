"""Smoke-preset training: time and accuracy, ERM and TrivialAugmentWide, synthetic and real CIFAR-10.

    python benchmarks/bench_train_smoke.py                                   # synthetic only
    python benchmarks/bench_train_smoke.py --cifar-tar ../shared/datasets/cifar10-jpeg.tar.gz
    python benchmarks/bench_train_smoke.py --cifar-tar ... --only cifar --set epochs=6 --autocast off

The CIFAR-10 archive (``train/<class>/*.jpg``, ``test/<class>/*.jpg``) is read straight from
the .tar.gz and decoded with PIL; the decoded arrays are kept in an uncompressed .npz under
the temp folder for the next run (nothing is unpacked into the work tree). Each training runs
in a fresh process (measured on 2 CPU cores: a long-lived process can slow down), and the numbers
go to stdout as a table and, with --json, to a file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

AUGS = {"none": None, "ta": "TrivialAugmentWide", "cropflip": "CropFlip", "augmix": "AugMix"}


def decode_cifar(tar_path: Path) -> dict[str, np.ndarray]:
    """uint8 arrays (N, 32, 32, 3) and int64 labels for both splits, classes sorted by name."""
    cache = Path(tempfile.gettempdir()) / f"psa-cifar10-{_file_id(tar_path)}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    from PIL import Image

    t = time.perf_counter()
    found: dict[str, list[tuple[str, str, bytes]]] = {"train": [], "test": []}
    with tarfile.open(tar_path, "r:*") as tar:
        for m in tar:
            parts = Path(m.name).parts
            if not m.isfile() or len(parts) < 3 or not m.name.lower().endswith((".jpg", ".jpeg", ".png")):
                continue
            split, cls = parts[-3], parts[-2]
            if split in found:
                found[split].append((cls, m.name, tar.extractfile(m).read()))  # type: ignore[union-attr]
    classes = sorted({c for c, _, _ in found["train"]})
    out: dict[str, np.ndarray] = {"classes": np.array(classes)}
    for split, items in found.items():
        items.sort(key=lambda it: (it[0], it[1]))
        out[f"{split}_x"] = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for _, _, b in items])
        out[f"{split}_y"] = np.array([classes.index(c) for c, _, _ in items], dtype=np.int64)
    print(f"decoded {sum(len(v) for v in found.values())} JPEGs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    np.savez(cache, **out)
    return out


def _file_id(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def _augmentation(name: str) -> Any:
    from torchvision.transforms import v2

    if name == "none":
        return None
    if name == "ta":
        return v2.TrivialAugmentWide()
    if name == "cropflip":
        return v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])
    if name == "augmix":
        return v2.AugMix()
    raise SystemExit(f"unknown augmentation {name!r}; use one of {sorted(AUGS)}")


def run_one(dataset: str, aug: str, seed: int, overrides: dict[str, Any], tar: str | None) -> dict[str, Any]:
    """One training in this process; returns the record plus the data-loading time."""
    import torch

    from pytest_psa.data.image_data import from_arrays
    from pytest_psa.data.synthetic import synthetic
    from pytest_psa.train import train

    t = time.perf_counter()
    if dataset == "synthetic":
        tr, te = synthetic("train"), synthetic("test")
    else:
        arrays = decode_cifar(Path(tar))  # type: ignore[arg-type]
        classes = tuple(str(c) for c in arrays["classes"])
        tr = from_arrays(arrays["train_x"], arrays["train_y"], classes=classes, name="cifar10", split="train",
                         source=str(tar))
        te = from_arrays(arrays["test_x"], arrays["test_y"], classes=classes, name="cifar10", split="test",
                         source=str(tar))
    load_s = time.perf_counter() - t
    rec = train(None, tr, _augmentation(aug), preset="smoke", seed=seed, test_data=te, progress=False,
                **overrides).record
    out = rec.to_dict()
    out.update(dataset=dataset, aug_key=aug, load_s=load_s, threads=torch.get_num_threads(),
               loadavg=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cifar-tar", type=Path, help="CIFAR-10 JPEG .tar.gz (train/<class>/*.jpg, test/...)")
    ap.add_argument("--only", choices=["synthetic", "cifar"], help="run one data set only")
    ap.add_argument("--augs", default="none,ta", help=f"comma-separated, from {sorted(AUGS)} (default none,ta)")
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="preset override, e.g. --set epochs=6 --set n_train=20000 (repeatable)")
    ap.add_argument("--autocast", choices=["auto", "bf16", "off"], help="shortcut for --set autocast=...")
    ap.add_argument("--json", type=Path, help="write all records to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    overrides: dict[str, Any] = {}
    for item in args.set:
        k, _, v = item.partition("=")
        overrides[k] = json.loads(v) if v not in ("auto", "off", "bf16", "cpu", "cuda") else v
    if args.autocast:
        overrides["autocast"] = args.autocast
    if args.child:  # one training in a fresh process
        dataset, aug, seed = json.loads(args.child)
        print(json.dumps(run_one(dataset, aug, seed, overrides, str(args.cifar_tar) if args.cifar_tar else None)))
        return 0

    datasets = [d for d in ("synthetic", "cifar") if args.only in (None, d)]
    if "cifar" in datasets and args.cifar_tar is None:
        if args.only == "cifar":
            raise SystemExit("--only cifar needs --cifar-tar PATH")
        datasets.remove("cifar")
    if "cifar" in datasets:
        decode_cifar(args.cifar_tar)  # once, before the timed runs
    results = []
    for dataset in datasets:
        for aug in args.augs.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                cmd = [sys.executable, __file__, "--child", json.dumps([dataset, aug, seed]), *sum(
                    (["--set", s] for s in args.set), [])]
                if args.autocast:
                    cmd += ["--autocast", args.autocast]
                if args.cifar_tar:
                    cmd += ["--cifar-tar", str(args.cifar_tar)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
                if proc.returncode:
                    print(proc.stderr, file=sys.stderr)
                    return proc.returncode
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results.append(r)
                print(_row(r), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


_HEADER_PRINTED = []


def _num(x: float | None, width: int) -> str:
    return f"{x:>{width}.4f}" if x is not None else f"{'-':>{width}}"


def _row(r: dict[str, Any]) -> str:
    cols = [
        ("data", f"{r['dataset']:<9}"), ("aug", f"{r['aug_key']:<8}"), ("seed", f"{r['seed']:>4}"),
        ("n x ep", f"{r['n_train']:>6} x {r['epochs']:<2}"), ("amp", f"{r['autocast']:<4}"),
        ("wrk", f"{r['workers']:>3}"), ("train s", f"{r['wall_s']:>7.1f}"),
        ("s/epoch", f"{r['s_per_epoch']:>7.2f}"), ("wait s", f"{r['data_wait_s']:>6.1f}"),
        ("img/s", f"{r['images_per_s']:>6.0f}"), ("eval s", f"{r['eval_s']:>6.1f}"),
        ("train acc", _num(r["train_accuracy"], 9)), ("test acc", _num(r["test_accuracy"], 8)),
        ("final loss", f"{r['final_loss']:>10.3f}"), ("load", f"{r.get('loadavg') or 0:>4.1f}"),
    ]
    line = " | ".join(v for _, v in cols)
    if not _HEADER_PRINTED:
        _HEADER_PRINTED.append(1)
        head = " | ".join(f"{k:>{len(v)}}" for k, v in cols)
        return head + "\n" + "-" * len(head) + "\n" + line
    return line


if __name__ == "__main__":
    sys.exit(main())
