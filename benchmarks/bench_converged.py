"""The "converged" preset on real CIFAR-10: the clean training loss each model reaches, its epochs and wall time.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_converged.py --data-root ../shared/datasets
    python benchmarks/bench_converged.py --data-root ... --augs none,ta --set epochs=80 --json out.json

Trains ERM and TrivialAugmentWide (seed 0) with `preset="converged"` (train until the clean training
loss on 2,000 fixed training images is <= the target, capped; docs/training.md) and prints, per model:
whether the target was reached, the epochs used of the cap, the final clean training loss, the
per-epoch history, the test accuracy and the wall time, with `uptime`'s load before and after.
Each training runs in this process, one after the other (no cache).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

AUGS = {"none": None, "ta": "TrivialAugmentWide"}


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return None if text == "None" else text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=os.environ.get("PSA_DATA_ROOT"), help="folder holding CIFAR-10")
    ap.add_argument("--augs", default="none,ta", help=f"comma-separated from {sorted(AUGS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--set", action="append", default=[], help="preset override field=value (repeatable)")
    ap.add_argument("--json", default=None, help="write the rows to this file")
    args = ap.parse_args()

    import torch
    from torchvision.transforms import v2

    from pytest_psa.data.sources import load_data
    from pytest_psa.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    train_data = load_data("cifar10", split="train", root=args.data_root)
    test_data = load_data("cifar10", split="test", root=args.data_root)
    rows = []
    for name in args.augs.split(","):
        aug = v2.TrivialAugmentWide() if AUGS[name] == "TrivialAugmentWide" else None
        load_before = _load()
        t0 = time.perf_counter()
        rec = train(None, train_data, aug, preset="converged", seed=args.seed, test_data=test_data,
                    progress=False, **overrides).record
        wall = time.perf_counter() - t0
        stop = rec.stopping or {}
        row = {"augmentation": rec.augmentation, "reached": stop.get("reached"), "epochs_used": rec.epochs,
               "epoch_cap": stop.get("epoch_cap"), "target": stop.get("target_train_loss"),
               "final_clean_train_loss": stop.get("final_clean_train_loss"), "history": stop.get("history"),
               "train_loss_10k": rec.train_loss, "test_accuracy": rec.test_accuracy, "wall_s": round(wall, 1),
               "s_per_epoch": round(rec.s_per_epoch, 2), "threads": torch.get_num_threads(),
               "load_before": load_before, "load_after": _load()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
