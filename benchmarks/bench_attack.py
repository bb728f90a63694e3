"""PGD-20 L∞: pytest-psa's self-checking attack vs torchattacks' PGD at equal settings, side by side.

    pip install torchattacks            # for this benchmark only; not a pytest-psa dependency
    PSA_DATA_ROOT=../shared/datasets python benchmarks/bench_attack.py [--n 1000] [--repeats 5] [--json out.json]

Model: the small CNN trained with the smoke preset (ERM) through the model cache, on CIFAR-10 when
$PSA_DATA_ROOT holds it, else on the synthetic shapes. Images: a class-balanced seeded subset of the
test split. Both attacks get the same model (eval mode, channels_last), images, ε, step, steps and
batch size; torchattacks with its uniform random start and last iterate, ours with its defaults
(random start, best iterate, early stop per sample, every self-check on). Runs are interleaved
(ours, torchattacks, ours without self-checks; the order rotates each repeat) and timed end to end;
the ratios are taken per repeat and their median reported. Robust accuracy
is the model's accuracy on each tool's returned images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import torch

# (label, ε, step): the setting, the small budget that separates CPU models, and a tiny one
# where almost nothing is fooled, so early stopping cannot help (the worst case for our overhead)
CONFIGS = [("8/255", 8 / 255, 2 / 255), ("2/255", 2 / 255, 0.5 / 255), ("0.25/255", 0.25 / 255, 0.0625 / 255)]


def load(n: int, n_train: int | None) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str, dict[str, Any]]:
    import pytest_psa
    from pytest_psa.data.sources import available
    from pytest_psa.train import ModelCache

    t = time.perf_counter()
    root = os.environ.get("PSA_DATA_ROOT")
    if root and available("cifar10", root=root):
        train = pytest_psa.load_data("cifar10", split="train", root=root)
        test = pytest_psa.load_data("cifar10", split="test", root=root)
        name = "CIFAR-10"
    else:
        train, test, name = pytest_psa.synthetic("train"), pytest_psa.synthetic("test"), "synthetic shapes"
    print(f"data: {name} ({time.perf_counter() - t:.1f} s); training or loading the smoke model ...",
          file=sys.stderr, flush=True)
    extra = {} if n_train is None else {"n_train": n_train}
    trained = ModelCache().get_or_train("small_cnn", train, None, preset="smoke", seed=0, test_data=test,
                                        progress=False, **extra)
    print(f"model ready ({trained.record.cache}, {time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
    sub = test.subset(n, seed=0)
    model = trained.model.eval()
    return model, sub.images.float() / 255, sub.labels, name, trained.record.to_dict()


def run_ours(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step: float, steps: int,
             bs: int, check: bool) -> tuple[float, float, Any]:
    from pytest_psa.measure.robustness.attacks import run_attack

    t = time.perf_counter()
    res = run_attack(model, x, y, eps=eps, step_size=step, steps=steps, batch_size=bs, check=check,
                     keep_images=True)
    seconds = time.perf_counter() - t
    return seconds, accuracy(model, res.adversarial, y, bs), res


def run_torchattacks(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step: float,
                     steps: int, bs: int) -> tuple[float, float]:
    import torchattacks

    torch.manual_seed(0)
    t = time.perf_counter()
    atk = torchattacks.PGD(model, eps=eps, alpha=step, steps=steps, random_start=True)
    adv = torch.cat([atk(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)])
    seconds = time.perf_counter() - t
    return seconds, accuracy(model, adv, y, bs)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int) -> float:
    with torch.no_grad():
        right = sum(int((model(x[i:i + bs].contiguous(memory_format=torch.channels_last)).argmax(1)
                         == y[i:i + bs]).sum()) for i in range(0, len(x), bs))
    return right / len(x)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--n-train", type=int, default=None, help="smoke preset on a subset (default: all)")
    ap.add_argument("--eps", nargs="*", default=[c[0] for c in CONFIGS], choices=[c[0] for c in CONFIGS],
                    help="which configurations to run")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    try:
        import torchattacks
    except ImportError:
        print("torchattacks is not installed: pip install torchattacks (for this benchmark only)", file=sys.stderr)
        return 2

    model, x, y, data_name, record = load(args.n, args.n_train)
    print(f"model: small_cnn smoke ERM on {data_name}, test accuracy {record.get('test_accuracy')}; "
          f"{len(x)} test images; batch {args.batch_size}; {torch.get_num_threads()} threads; "
          f"torch {torch.__version__}, torchattacks {torchattacks.__version__}")
    rows = []
    for label, eps, step in (c for c in CONFIGS if c[0] in args.eps):
        times: dict[str, list[float]] = {"ours": [], "ours_no_checks": [], "theirs": []}
        ratios: dict[str, list[float]] = {"ours": [], "ours_no_checks": []}
        ours_acc = theirs_acc = float("nan")
        res = None
        for rep in range(args.repeats):
            order = ["ours", "theirs", "ours_no_checks"]
            order = order[rep % 3:] + order[:rep % 3]  # rotate, so no tool always runs first
            now: dict[str, float] = {}
            for who in order:
                if who == "theirs":
                    now[who], theirs_acc = run_torchattacks(model, x, y, eps, step, args.steps, args.batch_size)
                else:
                    now[who], acc, r = run_ours(model, x, y, eps, step, args.steps, args.batch_size,
                                                who == "ours")
                    if who == "ours":
                        ours_acc, res = acc, r
                times[who].append(now[who])
            for who in ratios:
                ratios[who].append(now[who] / now["theirs"])
        assert res is not None
        row = {
            "eps": label, "step": f"{step * 255:g}/255", "steps": args.steps, "n": len(x),
            "clean_accuracy": res.clean_accuracy,
            "ours_robust_accuracy": res.robust_accuracy, "ours_robust_accuracy_reevaluated": ours_acc,
            "torchattacks_robust_accuracy": theirs_acc,
            "ours_s_median": statistics.median(times["ours"]),
            "ours_no_checks_s_median": statistics.median(times["ours_no_checks"]),
            "torchattacks_s_median": statistics.median(times["theirs"]),
            "time_ratio_median_of_pairs": statistics.median(ratios["ours"]),
            "time_ratio_no_checks_median_of_pairs": statistics.median(ratios["ours_no_checks"]),
            "time_ratio_of_medians": statistics.median(times["ours"]) / statistics.median(times["theirs"]),
            "ours_backward_passes": res.backwards, "torchattacks_backward_passes": args.steps * len(x),
            "ours_forward_passes": res.forwards, "torchattacks_forward_passes": args.steps * len(x),
            "ours_images_per_s": res.images_per_s, "repeats": args.repeats,
        }
        rows.append(row)
        print(f"\nPGD-{args.steps} L∞ ε={label} step {row['step']}: clean {res.clean_accuracy:.3f}")
        print(f"  robust accuracy  ours {res.robust_accuracy:.3f}   torchattacks {theirs_acc:.3f}")
        print(f"  time (median of {args.repeats})  ours {row['ours_s_median']:.2f} s (no checks "
              f"{row['ours_no_checks_s_median']:.2f} s)   torchattacks {row['torchattacks_s_median']:.2f} s   "
              f"ratio {row['time_ratio_median_of_pairs']:.3f} (no checks "
              f"{row['time_ratio_no_checks_median_of_pairs']:.3f}; medians of per-repeat ratios)")
        print(f"  backward passes  ours {res.backwards}   torchattacks {args.steps * len(x)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data": data_name, "model_record": record, "rows": rows}, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
