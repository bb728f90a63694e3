"""ERM vs AugMix and ERM vs TrivialAugmentWide on real CIFAR-10 at the smoke preset (issue 4's closing note).

For each augmentation: `pytest_psa.robustness` trains (or loads) the ERM and augmented smoke models
through the model cache, then measures clean error, the CIFAR-10-C errors (all 15 x 5, unnormalized
mCE), the relative mCE vs ERM, CIFAR-10-P flip rates (mFP, relative mFP) and the default attacks
(PGD-20 L∞ 8/255, PGD-10 L∞ 2/255, PGD-7 L2 0.25), each with its 95 % interval, plus wall times.

    PSA_DATA_ROOT=/path/to/datasets python benchmarks/robustness_cifar.py \\
        [--n-images 2000] [--seeds 1] [--cache-dir DIR] [--json results.json]

A second run with the same cache folder loads every model and evaluation (the wall time then shows
the cache). Times on a shared 2-core machine are noisy; read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=2000, help="test images per corruption set")
    parser.add_argument("--n-attack-images", type=int, default=500)
    parser.add_argument("--n-perturbation-images", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per model")
    parser.add_argument("--cache-dir", default=None, help="model and evaluation cache (default: $PSA_CACHE_DIR)")
    parser.add_argument("--only", choices=["augmix", "trivialaugment"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="write every result's to_dict() here")
    args = parser.parse_args()

    from torchvision.transforms import v2

    import pytest_psa

    root = os.environ.get("PSA_DATA_ROOT")
    if not root:
        raise SystemExit("set PSA_DATA_ROOT to the folder holding CIFAR-10 (a cifar10*.tar.gz, a cifar10*/ image folder or cifar-10-batches-py/)")
    augmentations = {"augmix": v2.AugMix(), "trivialaugment": v2.TrivialAugmentWide()}
    results, walls = {}, {}
    for key, aug in augmentations.items():
        if args.only and key != args.only:
            continue
        start = time.perf_counter()
        results[key] = pytest_psa.robustness(
            aug, data="cifar10", data_root=root, preset="smoke", seeds=args.seeds, corruptions="cifar10-c",
            attacks="default", perturbations="cifar10-p", n_images=args.n_images,
            n_attack_images=args.n_attack_images, n_perturbation_images=args.n_perturbation_images,
            cache_dir=args.cache_dir)
        walls[key] = time.perf_counter() - start
        print(results[key].table(), flush=True)
        print(f"  wall {walls[key]:.0f} s; timing {json.dumps({k: round(v, 1) for k, v in results[key].timing.items()})}")
        print(f"  cache {json.dumps(results[key].cache)}\n", flush=True)

    print(summary(results, walls))
    if args.json:
        args.json.write_text(json.dumps({k: r.to_dict() for k, r in results.items()}, indent=1, default=str))


def summary(results: dict, walls: dict) -> str:
    """One row per model: errors in % with 95 % intervals, ratios vs ERM, wall time of the audit."""
    def pct(e) -> str:  # noqa: ANN001
        return f"{100 * e.estimate:.1f} [{100 * e.low:.1f}, {100 * e.high:.1f}]"

    def ratio(e) -> str:  # noqa: ANN001
        return f"{e.estimate:.3f} [{e.low:.3f}, {e.high:.3f}]"

    any_result = next(iter(results.values()))
    attacks = [s.label for s in any_result.attacks]
    head = ["model", "clean err %", "mCE %", "rel. mCE", "mFP %", "rel. mFP", *[f"adv err % {a}" for a in attacks],
            "wall s"]
    rows = [head]
    erm = any_result.metrics()
    rows.append(["ERM", pct(erm["baseline_clean_error"]), pct(erm["baseline_mce"]), "1", pct(erm["baseline_mfp"]), "1",
                 *[pct(erm[f"baseline_adv_error({a})"]) for a in attacks], ""])
    for key, r in results.items():
        m = r.metrics()
        rows.append([r.subject.split("(")[0], pct(m["clean_error"]), pct(m["mce"]), ratio(m["mce_ratio"]), pct(m["mfp"]),
                     ratio(m["rel_mfp"]), *[pct(m[f"adv_error({a})"]) for a in attacks], f"{walls[key]:.0f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    n = any_result
    lines.append(f"\nCIFAR-10 smoke preset, training seeds {list(n.seeds)}; {n.n_images} test images x "
                 f"{len(n.corruptions)} corruptions x {len(n.severities)} severities; CIFAR-10-P on "
                 f"{n.n_perturbation_images} images; attacks on {n.n_attack_images} images; 95 % intervals "
                 "(Clopper-Pearson / betting over images; delta method for the ratios)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
