"""The flatness verdict's false-pass rate on null cases, old test against new, measured against α.

    python benchmarks/bench_flatness_alpha.py [--runs 200000] [--alpha 0.05] [--seed 0] [--json out.json]

A null case has no true improvement of the augmented model over ERM. For each null shape and for
k = 3 and k = 5 paired seeds, `--runs` comparisons are simulated and judged by

- old: the verdict before issue 12, a one-sided t bound (k − 1 d.o.f.) on the per-seed
  improvements 1 − aug/ERM, passing when the bound exceeds min_rel_improvement = 0;
- new: `assert_flatter`'s verdict now, `log_ratio_bounds` (the function `compare_metric` calls)
  on d_i = log(ERM_i/aug_i): the exact sign-flip test where k seeds can reach α (k ≥ 5 at
  α = 0.05), else the log-ratio t, which assumes lognormal spread across seeds;
- log-t: the log-ratio t at every k, for reference (what k = 5 would give without the exact test).

A pass is a false pass; the declared rate is ≤ α. Each rate comes with its 99 % Clopper–Pearson
interval. The null shapes:

- lognormal CV c: ERM and augmented values i.i.d. lognormal with coefficient of variation c across
  seeds (identical distributions), the common case for these metrics;
- paired lognormal ρ = 0.5: CV 0.5, with a seed effect shared by the two models of a seed
  (correlation 0.5 of the log values);
- left-skewed improvement, mean 0: the issue's shape, 1 − aug/ERM = 0.3·(1 − X), X ~ Exp(1)
  (skewness −2, mean 0; aug/ERM > 0 always). Not a null of the new verdict's estimand: its
  geometric-mean improvement is +3.6 % and 63 % of seeds improve;
- left-skewed log ratio, mean 0: log(ERM/aug) = 0.3·(1 − X): geometric-mean improvement 0, but not
  lognormal and not symmetric. No test with k seeds holds a mean-zero null whose tail is unbounded
  (Bahadur & Savage 1956); the exact test's guarantee is for exchangeable (symmetric) nulls.

The power rows simulate a true 30 % improvement (aug/ERM = 0.7 in geometric mean, lognormal) at
CV 0.1 and 0.3: the pass rate there is the power. To check the vectorized path, `--check` runs
that many comparisons of each shape through `compare_metric` itself and requires the same verdicts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable

import numpy as np
from scipy import stats

from pytest_psa.results.flatness import LOG_T, compare_metric, improvement_of, log_ratio_bounds

Pair = tuple[np.ndarray, np.ndarray]
SKEW = 0.3


def sigma_of(cv: float) -> float:
    """The log-scale sd of a lognormal with coefficient of variation `cv`."""
    return math.sqrt(math.log1p(cv * cv))


def lognormal(cv: float, rho: float = 0.0, shift: float = 0.0) -> Callable[[np.random.Generator, int, int], Pair]:
    """ERM and augmented values, lognormal with CV `cv`, log-correlation `rho`, log(ERM/aug) shifted by `shift`."""
    def draw(rng: np.random.Generator, n: int, k: int) -> Pair:
        s = sigma_of(cv)
        shared = math.sqrt(rho) * rng.standard_normal((n, k))
        erm = np.exp(s * (shared + math.sqrt(1 - rho) * rng.standard_normal((n, k))))
        aug = np.exp(s * (shared + math.sqrt(1 - rho) * rng.standard_normal((n, k))) - shift)
        return erm, aug
    return draw


def skewed_improvement(rng: np.random.Generator, n: int, k: int) -> Pair:
    erm = np.exp(sigma_of(0.3) * rng.standard_normal((n, k)))
    improvement = SKEW * (1 - rng.exponential(1.0, (n, k)))  # mean 0, long left tail, < SKEW
    return erm, erm * (1 - improvement)


def skewed_log_ratio(rng: np.random.Generator, n: int, k: int) -> Pair:
    erm = np.exp(sigma_of(0.3) * rng.standard_normal((n, k)))
    d = SKEW * (1 - rng.exponential(1.0, (n, k)))
    return erm, erm * np.exp(-d)


NULLS: dict[str, Callable[[np.random.Generator, int, int], Pair]] = {
    "lognormal CV 0.1": lognormal(0.1),
    "lognormal CV 0.3": lognormal(0.3),
    "lognormal CV 0.5": lognormal(0.5),
    "lognormal CV 0.8": lognormal(0.8),
    "paired lognormal CV 0.5, ρ 0.5": lognormal(0.5, rho=0.5),
    "left-skewed improvement, mean 0": skewed_improvement,
    "left-skewed log ratio, mean 0": skewed_log_ratio,
}
POWER: dict[str, Callable[[np.random.Generator, int, int], Pair]] = {
    "true 30 % improvement, CV 0.1": lognormal(0.1, shift=-math.log(0.7)),
    "true 30 % improvement, CV 0.3": lognormal(0.3, shift=-math.log(0.7)),
}


def old_passes(erm: np.ndarray, aug: np.ndarray, alpha: float) -> np.ndarray:
    """The verdict before issue 12: t lower bound of the mean of 1 − aug/ERM > 0."""
    imp = 1.0 - aug / erm
    k = imp.shape[1]
    low = imp.mean(axis=1) - float(stats.t.ppf(1 - alpha, k - 1)) * imp.std(axis=1, ddof=1) / math.sqrt(k)
    return np.asarray(low > 0.0)


def new_passes(erm: np.ndarray, aug: np.ndarray, alpha: float, test: str | None = None) -> tuple[str, np.ndarray]:
    """`assert_flatter`'s verdict (min_rel_improvement = 0): improvement lower bound > 0."""
    b = log_ratio_bounds(np.log(erm / aug), alpha, test)
    return b.test, improvement_of(b.low) > 0.0


def interval(x: int, n: int, level: float = 0.99) -> tuple[float, float]:
    """Clopper–Pearson interval of a binomial rate."""
    a = (1 - level) / 2
    low = 0.0 if x == 0 else float(stats.beta.ppf(a, x, n - x + 1))
    high = 1.0 if x == n else float(stats.beta.ppf(1 - a, x + 1, n - x))
    return low, high


def rate(passed: np.ndarray) -> dict[str, float]:
    x, n = int(passed.sum()), passed.size
    low, high = interval(x, n)
    return {"rate": x / n, "low": low, "high": high}


def cell(r: dict[str, float]) -> str:
    return f"{100 * r['rate']:.2f} [{100 * r['low']:.2f}, {100 * r['high']:.2f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200_000, help="simulated comparisons per shape and k")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--seeds", default="3,5", help="paired seeds k, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", type=int, default=2000, help="comparisons per shape also run through compare_metric")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    ks = [int(k) for k in args.seeds.split(",")]
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    rows: list[dict[str, object]] = []
    print(f"false-pass rate in %, 99 % Clopper–Pearson interval; {args.runs:,} runs per row; α = {args.alpha:g}")
    print("| shape | k | old: t on 1 − aug/ERM | new verdict | new test | log-ratio t (reference) |")
    print("|---|---|---|---|---|---|")
    for section, shapes in (("null", NULLS), ("power", POWER)):
        for name, draw in shapes.items():
            for k in ks:
                erm, aug = draw(rng, args.runs, k)
                test, new = new_passes(erm, aug, args.alpha)
                old, new_rate = rate(old_passes(erm, aug, args.alpha)), rate(new)
                log_t = rate(new_passes(erm, aug, args.alpha, LOG_T)[1])
                row = {"section": section, "shape": name, "k": k, "runs": args.runs, "test": test,
                       "old": old, "new": new_rate, "log_t": log_t}
                m = min(args.check, args.runs)
                via = np.array([compare_metric("x", tuple(e), tuple(a), args.alpha).low > 0.0
                                for e, a in zip(erm[:m], aug[:m])])
                if not np.array_equal(via, new[:m]):
                    print(f"compare_metric disagrees with the vectorized verdict on {name}, k={k}", file=sys.stderr)
                    return 1
                rows.append(row)
                label = name if section == "null" else f"{name} (power)"
                print(f"| {label} | {k} | {cell(old)} | {cell(new_rate)} | {test} | {cell(log_t)} |", flush=True)
    elapsed = time.perf_counter() - start
    load = os.getloadavg()
    print(f"\n{elapsed:.1f} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{args.check:,} runs per row also through compare_metric: same verdicts")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"alpha": args.alpha, "runs": args.runs, "seed": args.seed, "seconds": elapsed,
                       "load": load, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
