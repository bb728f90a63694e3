"""Forward passes of pytest_psa's PAC-Bayes sigma search against the bisection reference.

Reference (after nitarshan's `_pacbayes_sigma`): bisection on log sigma in
[1e-6, 1], 15 steps, each step a fresh 10-draw Monte Carlo mean of L(w + sigma z) - L(w) compared
with the target 0.1, so 150 forward passes (+1 for L(w)). Ours: common random numbers (antithetic
pairs reused for every sigma), a log-log secant bracket and Brent's method, with the same 10 draws.

Precision is compared where it is decided, by repeating both with different seeds on the same model
and data: the spread (standard deviation) of the returned sigma across seeds. The goal is half the
forward passes or fewer at equal or better spread.

Conventions (issue 12): each seed also measures 1/sigma'^2 under Jiang et al. 2020's target (0-1
error increase 0.1, ``target_type="accuracy"``) beside the default loss target (the LPF-SGD
repository's), and the LPF increase (sigma = 0.01) with raw weights, Li et al.'s filter scale and
Bisla et al.'s normalization (``lpf_normalization="bisla"``): the numbers docs/flatness.md quotes.

    python benchmarks/bench_pac_bayes.py [--seeds 5] [--n-images 1000] [--threads 2] [--json out.json]

Model and data come from bench_hessian.setup (the same small CNN and fixed batch).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_hessian import setup  # noqa: E402


class _Counter:
    """Full-data forward passes of the reference, with the model's parameters as a flat vector."""

    def __init__(self, model: nn.Module, chunks: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.model, self.chunks = model, chunks
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.base = [p.detach() for n, p in model.named_parameters() if p.requires_grad]
        self.w = torch.cat([p.reshape(-1) for p in self.base])
        self.n = sum(len(x) for x, _ in chunks)
        self.passes = 0

    @torch.no_grad()
    def loss(self, flat: torch.Tensor) -> float:
        params = {n: t.view_as(b) for n, t, b in zip(self.names, flat.split([b.numel() for b in self.base]), self.base)}
        total = 0.0
        for x, y in self.chunks:
            total += float(F.cross_entropy(functional_call(self.model, params, (x,)), y)) * len(x) / self.n
        self.passes += 1
        return total


def bisection_sigma(c: _Counter, *, seed: int, target: float = 0.1, steps: int = 15, draws: int = 10,
                    lo: float = 1e-6, hi: float = 1.0) -> float:
    g = torch.Generator().manual_seed(seed)
    loss0 = c.loss(c.w)
    a, b = math.log(lo), math.log(hi)
    for _ in range(steps):
        mid = (a + b) / 2
        sigma = math.exp(mid)
        inc = statistics.fmean(c.loss(c.w + sigma * torch.randn(c.w.shape, generator=g)) for _ in range(draws)) - loss0
        if inc > target:
            b = mid
        else:
            a = mid
    return math.exp((a + b) / 2)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n-images", type=int, default=1000)
    ap.add_argument("--n-samples", type=int, default=10, help="draws per sigma for both methods")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "pytest-psa-bench")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from pytest_psa.measure.flatness import measure_flatness

    model, xu, yu, info = setup(epochs=args.epochs, cache_dir=args.cache_dir)
    model.eval()
    x, y = xu[: args.n_images].float() / 255, yu[: args.n_images]
    chunks = list(zip(x.split(250), y.split(250)))
    rows = []
    for seed in range(args.seeds):
        c = _Counter(model, chunks)
        t = time.perf_counter(); s_ref = bisection_sigma(c, seed=seed, draws=args.n_samples); t_ref = time.perf_counter() - t
        t = time.perf_counter()
        r = measure_flatness(model, (x, y), metrics="pac_bayes", seed=seed, n_samples=args.n_samples, max_images=None)["pac_bayes"]
        t_ours = time.perf_counter() - t
        acc = measure_flatness(model, (x, y), metrics="pac_bayes", seed=seed, n_samples=args.n_samples,
                               max_images=None, target_type="accuracy")["pac_bayes"]
        lpf = measure_flatness(model, (x, y), metrics="lpf", seed=seed, max_images=None, scale_invariant=True)
        bisla = measure_flatness(model, (x, y), metrics="lpf", seed=seed, max_images=None, lpf_normalization="bisla")
        rows.append({"seed": seed, "ref_sigma": s_ref, "ref_passes": c.passes, "ref_s": t_ref,
                     "ours_sigma": r.sigma, "ours_se": r.sigma_se, "ours_passes": r.forward_passes + 1,
                     "ours_evaluations": r.evaluations, "ours_s": t_ours, "ours_value": r.value,
                     "accuracy_target_sigma": acc.sigma, "accuracy_target_value": acc.value,
                     "accuracy_target_bracketed": acc.bracketed,
                     "lpf_increase_none": lpf["lpf"].increase,  # type: ignore[attr-defined]
                     "lpf_increase_filter": lpf.invariant["lpf"].increase,  # type: ignore[attr-defined]
                     "lpf_increase_bisla": bisla["lpf"].increase})  # type: ignore[attr-defined]
        print(f"seed {seed}: ref sigma {s_ref:.5g} ({c.passes} passes, {t_ref:.1f} s) | ours {r.sigma:.5g} "
              f"+- {r.sigma_se:.2g} ({r.forward_passes + 1} passes, {r.evaluations} sigmas, {t_ours:.1f} s) | "
              f"1/sigma'^2 loss {r.value:.4g}, error {acc.value:.4g}", flush=True)

    def spread(key: str) -> float:
        vals = [row[key] for row in rows]
        return statistics.stdev(vals) if len(vals) > 1 else math.nan

    summary = {
        "ref_passes": statistics.fmean(r["ref_passes"] for r in rows),
        "ours_passes": statistics.fmean(r["ours_passes"] for r in rows),
        "ref_sigma_mean": statistics.fmean(r["ref_sigma"] for r in rows),
        "ours_sigma_mean": statistics.fmean(r["ours_sigma"] for r in rows),
        "ref_sigma_sd": spread("ref_sigma"),
        "ours_sigma_sd": spread("ours_sigma"),
        "ours_reported_se_mean": statistics.fmean(r["ours_se"] for r in rows),
        "ref_s": statistics.fmean(r["ref_s"] for r in rows),
        "ours_s": statistics.fmean(r["ours_s"] for r in rows),
    }
    for key in ("ours_value", "accuracy_target_value", "lpf_increase_none", "lpf_increase_filter",
                "lpf_increase_bisla"):
        summary[key] = statistics.fmean(r[key] for r in rows)
    summary["pass_ratio"] = summary["ours_passes"] / summary["ref_passes"]
    summary["sd_ratio"] = summary["ours_sigma_sd"] / summary["ref_sigma_sd"]
    print()
    print(f"model {info['params']} params ({info['data']}), {len(x)} images, {args.seeds} seeds, "
          f"{args.n_samples} draws per sigma, threads {torch.get_num_threads()}")
    print(f"{'':24}{'passes':>8}{'sigma mean':>12}{'sd over seeds':>15}{'seconds':>9}")
    print(f"{'bisection 15 x 10 (ref)':24}{summary['ref_passes']:>8.1f}{summary['ref_sigma_mean']:>12.5g}"
          f"{summary['ref_sigma_sd']:>15.3g}{summary['ref_s']:>9.1f}")
    print(f"{'pytest_psa (CRN + Brent)':24}{summary['ours_passes']:>8.1f}{summary['ours_sigma_mean']:>12.5g}"
          f"{summary['ours_sigma_sd']:>15.3g}{summary['ours_s']:>9.1f}")
    print(f"pass ratio {summary['pass_ratio']:.2f} (goal <= 0.5); sd ratio {summary['sd_ratio']:.2f} (<= 1: at least "
          f"as precise); mean reported se {summary['ours_reported_se_mean']:.3g}")
    print(f"1/sigma'^2, mean over seeds: loss increase 0.1 (LPF-SGD) {summary['ours_value']:.4g}; "
          f"0-1 error increase 0.1 (Jiang et al.) {summary['accuracy_target_value']:.4g}")
    print(f"LPF increase (sigma 0.01), mean over seeds: raw {summary['lpf_increase_none']:.4g}; "
          f"filter (Li et al.) {summary['lpf_increase_filter']:.4g}; bisla {summary['lpf_increase_bisla']:.4g}")
    out = {"benchmark": "pac_bayes_sigma", "setup": info, "n_images": len(x), "rows": rows, "summary": summary,
           "threads": torch.get_num_threads(), "torch": torch.__version__}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
