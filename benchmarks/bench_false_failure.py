"""The density assertion's false-failure rate on null cases, measured against its declared α.

    python benchmarks/bench_false_failure.py [--n-images 500] [--draws 8] [--min-density 0.05]
        [--icc 0.3] [--alphas 0.05:2000,0.01:2000,0.001:3000] [--method assert|verdicts] [--json out.json]

A null case has the true density F(γ) exactly at min_density (the boundary, where errors are
likeliest). Image i has its own chance p_i that a draw lands within γ: p_i ~ Beta with mean
min_density and intra-image correlation `icc` (0: independent draws; 1: all draws of an image
agree, p_i in {0, 1}). Distances are simulated so that d ≤ γ exactly when a uniform draw is
below p_i, and every run is judged by the project's own `DensityResult.assert_psa`:

- lenient (default mode): raising `PSAViolation` is a false failure (declared rate ≤ α);
- strict: passing is a false pass, the condition not being met (declared rate ≤ α).

For each rate the one-sided 95 % Clopper–Pearson upper bound is printed; the check keeps its
contract where that bound is ≤ α. With 0 events in n runs the bound is 1 − 0.05^(1/n), so
showing α = 1e-3 takes n ≥ 2,995 runs even with no event at all; the script prints how many
runs the observed rate would need. `--method verdicts` decides from `DensityResult.verdicts`
(what assert_psa decides from; 3x faster, no power-guard or message work).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings

import numpy as np
from scipy import stats

from pytest_psa.errors import PSAViolation, PsaWarning
from pytest_psa.results.density import DensityResult

GAMMA = 0.05
CONFIDENCE = 0.95


def simulate(rng: np.random.Generator, f_true: float, icc: float, n_images: int, draws: int) -> np.ndarray:
    """(n_images, draws) distances with F(γ) = f_true and intra-image correlation `icc`."""
    if icc <= 0:
        p = np.full((n_images, 1), f_true)
    elif icc >= 1:
        p = (rng.random((n_images, 1)) < f_true).astype(np.float64)
    else:
        total = (1 - icc) / icc  # Beta(a, b) with a + b = total has ICC 1 / (total + 1)
        p = rng.beta(f_true * total, (1 - f_true) * total, size=(n_images, 1))
    return np.maximum(0.0, GAMMA + rng.random((n_images, draws)) - p)


def upper_bound(k: int, n: int) -> float:
    return 1.0 if k >= n else float(stats.beta.ppf(CONFIDENCE, k + 1, n - k))


def runs_needed(rate: float, alpha: float) -> int | None:
    """Runs after which a true rate `rate` typically (k = rate * n) gets a 95 % bound below alpha."""
    if rate >= alpha:
        return None
    n = max(10, math.ceil(math.log(1 - CONFIDENCE) / math.log(1 - alpha)))
    while upper_bound(round(rate * n), n) > alpha:
        n = math.ceil(n * 1.1)
    return n


def measure(alpha: float, runs: int, args: argparse.Namespace, seed: int) -> dict[str, float | int | None]:
    rng = np.random.default_rng(seed)
    identity = np.zeros((args.n_images, args.draws), dtype=bool)
    false_fail = false_pass = 0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PsaWarning)
        for r in range(runs):
            result = DensityResult("null", "simulated", simulate(rng, args.min_density, args.icc, args.n_images,
                                                                 args.draws), identity, seed=r,
                                   data={"describe": "simulated"})
            if args.method == "verdicts":
                (v,) = result.verdicts(GAMMA, args.min_density, alpha)
                false_fail += v.outcome == "fail"
                false_pass += v.outcome == "pass"
                continue
            try:
                result.assert_psa(GAMMA, args.min_density, alpha)
            except PSAViolation:
                false_fail += 1
            try:
                result.assert_psa(GAMMA, args.min_density, alpha, strict=True)
                false_pass += 1
            except PSAViolation:
                pass
    ff, fp = upper_bound(false_fail, runs), upper_bound(false_pass, runs)
    return {"alpha": alpha, "runs": runs, "false_failures": false_fail, "false_failure_rate": false_fail / runs,
            "false_failure_upper95": ff, "false_passes_strict": false_pass, "false_pass_rate": false_pass / runs,
            "false_pass_upper95": fp, "within_alpha": ff <= alpha and fp <= alpha,
            "runs_needed_at_observed_rate": runs_needed(max(false_fail, false_pass) / runs, alpha),
            "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-images", type=int, default=500)
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--min-density", type=float, default=0.05)
    ap.add_argument("--icc", type=float, default=0.3, help="intra-image correlation of draws (0..1)")
    ap.add_argument("--alphas", default="0.05:2000,0.01:2000,0.001:3000", help="alpha:runs,...")
    ap.add_argument("--method", choices=("assert", "verdicts"), default="assert")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    plan = [(float(a), int(n)) for a, n in (part.split(":") for part in args.alphas.split(","))]
    print(f"null case: F(γ) = min_density = {args.min_density}, {args.n_images} images x {args.draws} draws, "
          f"intra-image correlation {args.icc}, method {args.method}")
    print(f"{'alpha':>7} {'runs':>6} {'lenient false fail':>19} {'95% upper':>10} {'strict false pass':>18} "
          f"{'95% upper':>10}  within α  seconds")
    rows = []
    for i, (alpha, runs) in enumerate(plan):
        row = measure(alpha, runs, args, args.seed + i)
        rows.append(row)
        need = row["runs_needed_at_observed_rate"]
        print(f"{alpha:>7g} {runs:>6} {row['false_failures']:>8} ({row['false_failure_rate']:.4%}) "
              f"{row['false_failure_upper95']:>10.5f} {row['false_passes_strict']:>7} ({row['false_pass_rate']:.4%}) "
              f"{row['false_pass_upper95']:>10.5f}  {'yes' if row['within_alpha'] else 'not shown':>8}  "
              f"{row['seconds']:.0f}" + ("" if row["within_alpha"] else
                                          f"  (at this rate ~{need} runs would show it)" if need else ""))
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "gamma": GAMMA, "confidence": CONFIDENCE, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
