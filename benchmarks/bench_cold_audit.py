"""A cold `psa audit trivialaugment --seeds 1` against the same work written by hand (issue 15, row 1).

    nice -n 15 python benchmarks/bench_cold_audit.py [--data cifar10|synthetic] [--audit-first] [--json out.json]

Two fresh Python processes, one after the other, on this machine in one run, each with its own
empty cache folder (nothing cached: the data archive is decoded in both):

- (ref) the work of the audit through the tool's lower-level public functions, as a user would
  write it with no cache, store or audit machinery: `load_data` (both splits); the density draws
  (the same `n_images` test images, the same `draws` seeded draws per image from the audit's seed
  table, torchvision's transform applied image by image, the `l2` distance); `train` for ERM and
  TrivialAugmentWide (same preset, seed, data and thread count: the plan's cache key is printed
  beside the audit's as the proof); `measure_flatness` of both models on the audit's measured
  subset with its metrics and seed; `corrupt` for every corruption x severity of the audit on its
  evaluation images, each variant generated once and predicted by both models; `run_attack` for
  each of the audit's attack specs on its attack images.
- (audit) ``python -m pytest_psa.cli audit trivialaugment --data DATA --seeds 1 --cache-dir <empty>
  --json <file>``, its stage seconds taken from the JSON's ``timings``.

The sizes and settings come from the audit's own parser (`pytest_psa.cli.build_parser`: n_images,
draws, seed, seeds, preset) and module defaults (`audits.flatness`/`results.flatness`:
metrics, n_measure; `audits.robustness`: n_images, n_attack_images, batch sizes; `specs`:
corruptions, severities, attacks), not re-typed. Where the reference cannot do literally the same:

- threads: the reference runs its parts at their best as the audit does: density draws, clean and
  corrupted predictions and attacks at one intra-op thread (`torch.set_num_threads(1)`, the
  audit's measured choice on busy cores; predictions in batches of the audit's size, channels_last
  input as the audit feeds it), `corrupt` at the default count (it splits the batch over
  one-thread workers itself), training at the plan's count (`TrainingPlan.threads`);
- the audit also runs its checks (determinism probe, sample pairs, sanity gate, weight checksums,
  cache writes, the JSON): that is the overhead this benchmark exposes, not work the user asked for;
- the audit's "data" stage decodes the test split only; the training split is decoded in
  `PairSpec.resolve`, outside any stage: it shows up in "unstaged" (wall minus the stages, which
  also holds interpreter start and imports), as the reference's imports do in its own "unstaged".

Numbers both sides compute (test accuracy after training, flatness values, clean error, mCE,
adversarial errors) are printed side by side: equal values show that the same work was done.

Wall seconds are taken under whatever load the machine has: `uptime` is printed before, between and
after, and only the ratio audit / ref within one run means anything. `OMP_WAIT_POLICY=PASSIVE` is set
for both processes, as the ``psa`` command sets it. The machine's CPU is printed with whether it has
avx512_bf16 (then both trainings run under bf16 autocast, as the plan's ``autocast`` says).
Cost on the 2-core machine at load 2-4: cifar10 about 7 minutes (until the archive was decoded without
unpacking, 2026-12-04, plus 2-3 minutes to remove the unpacked files), synthetic about 3.5 minutes.

Measured 2026-12-04 (2-core AMD EPYC with avx512_bf16, torch 2.14.1, shared with a `psa reproduce`
run; load average 2.2-4.1): cifar10 ref first, audit / ref 0.80 in total (226.8 s ref, 180.5 s audit);
audit first 0.92 (206.6 s, 189.2 s); per stage 0.62-1.05 (training 0.96 / 1.03, flatness 0.86 / 0.90,
corruptions 1.02 / 1.00, attacks 1.05 / 0.97); 23/23 numbers equal. The audit is not slower than its
parts in any stage; the reference's data loading (both splits decoded, 40-53 s) took longer than
the audit's (probe + unstaged, 22-29 s) in both orders, which is why the totals fall below 1.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what cli.py sets before torch loads; both children inherit

import argparse
import contextlib
import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

AUG = "trivialaugment"
ROWS = ("data+unstaged", "density", "training", "flatness", "clean", "corruptions", "attacks", "outputs")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "cpus": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags}


def audit_argv(data: str, cache: str, out: str) -> list[str]:
    return ["audit", AUG, "--data", data, "--seeds", "1", "--cache-dir", cache, "--json", out]


# -- the reference (child process) -----------------------------------------------------------------
@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def reference(data_name: str, cache: str, out: str) -> None:
    """The audit's work by hand; writes stage seconds and the numbers to compare to `out` (JSON)."""
    t_start = time.perf_counter()
    import numpy as np
    import torch
    from torchvision.transforms import v2

    from pytest_psa.data.sources import load_data
    from pytest_psa.measure.flatness.measure import measure_flatness
    from pytest_psa.measure.robustness.corruptions import corrupt
    from pytest_psa.audits import robustness as R
    from pytest_psa.audits.density import draw_seeds
    from pytest_psa.audits.robustness_evaluation import ATTACK_BATCH
    from pytest_psa.cli import build_parser
    from pytest_psa.measure.density.distances import l2
    from pytest_psa.measure.robustness.attacks import run_attack
    from pytest_psa.measure.robustness.specs import resolve_attacks, resolve_corruptions
    from pytest_psa.results.density import DEFAULT_GAMMA as DENSITY_GAMMA
    from pytest_psa.results.flatness import DEFAULT_MEASURE_IMAGES, DEFAULT_METRICS
    from pytest_psa.train import TrainingPlan, resolve_preset, train

    # the audit's own settings: its parser's defaults for this command line, and the modules' defaults
    a = build_parser().parse_args(audit_argv(data_name, cache, out))
    corruptions = resolve_corruptions("cifar10-c")  # robustness()'s defaults
    severities = (1, 2, 3, 4, 5)
    attacks = resolve_attacks("default")
    n_eval, n_attack, eval_batch = R.DEFAULT_N_IMAGES, R.DEFAULT_N_ATTACK_IMAGES, R.EVAL_BATCH
    root = os.environ.get("PSA_DATA_ROOT")
    stages: dict[str, float] = {}
    numbers: dict[str, Any] = {}
    imported = time.perf_counter()

    t0 = time.perf_counter()
    train_data = load_data(data_name, split="train", root=root, cache_dir=cache)
    test = load_data(data_name, split="test", root=root, cache_dir=cache)
    stages["data"] = time.perf_counter() - t0

    # density: the same images and seeded draws as the audit, torchvision's transform per image, l2
    t0 = time.perf_counter()
    images = load_data(data_name, split="test", root=root, cache_dir=cache, n=a.n_images, seed=a.seed)
    x = images.float_images()
    positions = images.indices.numpy() if images.indices is not None else np.arange(len(images))
    seeds = draw_seeds(a.seed, positions, a.draws)
    tf = v2.TrivialAugmentWide()
    distances = np.empty((len(images), a.draws))
    with threads(1), torch.inference_mode():
        for j in range(a.draws):
            ys = []
            for img, s in zip(x, seeds[:, j].tolist()):
                torch.manual_seed(s & ((1 << 63) - 1))
                ys.append(tf(img))
            distances[:, j] = l2(x, torch.stack(ys)).double().numpy()
    stages["density"] = time.perf_counter() - t0
    numbers[f"density_F({DENSITY_GAMMA:g})"] = float((distances <= DENSITY_GAMMA).mean())

    # two trainings, ERM then TrivialAugmentWide (the flatness audit's order), as the audit resolves them
    preset = resolve_preset(a.preset)
    models = {}
    t0 = time.perf_counter()
    for role, aug in (("erm", None), ("augmented", v2.TrivialAugmentWide())):
        plan = TrainingPlan.resolve(None, train_data, aug, preset=preset, seed=a.seed)
        trained = train(None, train_data, aug, preset=preset, seed=a.seed, test_data=test, progress=False)
        models[role] = trained.model
        numbers[f"{role}_cache_key"] = plan.fingerprint
        numbers[f"{role}_threads"] = plan.threads
        numbers[f"{role}_autocast"] = plan.autocast
        numbers[f"{role}_test_accuracy"] = trained.record.test_accuracy
    stages["training"] = time.perf_counter() - t0

    # flatness: the audit's measured subset (the preset's training subset, then n_measure of it), metrics, seed
    t0 = time.perf_counter()
    measured = train_data.subset(preset.n_train, preset.subset_seed).subset(DEFAULT_MEASURE_IMAGES, seed=0)
    for role, m in models.items():
        report = measure_flatness(m, measured, metrics=list(DEFAULT_METRICS), seed=a.seed)
        for metric in DEFAULT_METRICS:
            numbers[f"{role}_{metric}"] = report.results[metric].value
    stages["flatness"] = time.perf_counter() - t0

    def predict(m: torch.nn.Module, imgs: torch.Tensor) -> np.ndarray:
        with threads(1), torch.inference_mode():
            # channels_last input, as the model was trained and as the audit's `predict` feeds it
            return torch.cat([m(imgs[i:i + eval_batch].contiguous(memory_format=torch.channels_last)).argmax(1)
                              for i in range(0, len(imgs), eval_batch)]).numpy()

    for m in models.values():
        m.eval()
    ev = test.subset(n_eval, seed=0)
    xe, ye = ev.float_images(), ev.labels.numpy()
    ids = ev.indices if ev.indices is not None else torch.arange(len(ev))
    t0 = time.perf_counter()
    for role, m in models.items():
        numbers[f"{role}_clean_error"] = float((predict(m, xe) != ye).mean())
    stages["clean"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    wrong = {role: 0 for role in models}
    for name in corruptions:
        for sev in severities:
            xc = corrupt(xe, name, sev, seed=a.seed, indices=ids)  # once, for both models
            for role, m in models.items():
                wrong[role] += int((predict(m, xc) != ye).sum())
    for role in models:
        numbers[f"{role}_mce"] = wrong[role] / (len(corruptions) * len(severities) * len(ev))
    stages["corruptions"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    at = test.subset(n_attack, seed=0)
    xa, ya = at.float_images(), at.labels
    for spec in attacks:
        for role, m in models.items():
            with threads(1):
                res = run_attack(m, xa, ya, batch_size=ATTACK_BATCH, label=spec.label, **{**spec.settings, "seed": a.seed})
            numbers[f"{role}_adv_error({spec.label})"] = 1.0 - float(np.mean(res.robust_correct))
    stages["attacks"] = time.perf_counter() - t0

    doc = {"stages": stages, "numbers": numbers, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
           "import_s": imported - t_start, "settings": {"n_images": a.n_images, "draws": a.draws, "seed": a.seed,
           "preset": a.preset, "n_measure": DEFAULT_MEASURE_IMAGES, "metrics": list(DEFAULT_METRICS),
           "corruptions": len(corruptions) * len(severities), "n_eval": n_eval, "n_attack": n_attack,
           "attacks": [s.label for s in attacks], "n_train": len(train_data.subset(preset.n_train, preset.subset_seed))}}
    Path(out).write_text(json.dumps(doc, indent=1, default=str))


# -- the audit's side: its JSON ---------------------------------------------------------------------
def audit_numbers(doc: dict[str, Any]) -> dict[str, Any]:
    """The numbers of the audit's run document (``results[i]["summary"]``) that the reference also computes."""
    from pytest_psa.results.density import DEFAULT_GAMMA as DENSITY_GAMMA  # the γ of the audit's verdict

    out: dict[str, Any] = {}
    for entry in doc.get("results", []):
        summary, kind = entry.get("summary", {}), entry.get("kind")
        if kind == "density":
            f = summary.get("metrics", {}).get(f"F({DENSITY_GAMMA:g})", {})
            out[f"density_F({DENSITY_GAMMA:g})"] = f.get("estimate")
        elif kind == "flatness":
            for role, reps in (("erm", summary["erm_reports"]), ("augmented", summary["augmented_reports"])):
                for metric, r in reps[0]["results"].items():
                    out[f"{role}_{metric}"] = r.get("value")
            for role, recs in summary["training"].items():
                out[f"{role}_cache_key"] = recs[0].get("cache_key")
                out[f"{role}_threads"] = recs[0].get("threads")
                out[f"{role}_autocast"] = recs[0].get("autocast")
                out[f"{role}_test_accuracy"] = recs[0].get("test_accuracy")
        elif kind == "robustness":
            for role, rows in summary.get("per_seed", {}).items():
                name = "augmented" if role == "subject" else "erm"
                for k, v in rows[0].items():
                    if k in ("clean_error", "mce") or k.startswith("adv_error("):
                        out[f"{name}_{k}"] = v
    return out


def run_child(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(argv[:4])} ... exited with {proc.returncode}")
    return wall, proc


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--data", choices=("cifar10", "synthetic"), default="cifar10",
                    help="cifar10 (needs $PSA_DATA_ROOT) or synthetic (a quick check)")
    ap.add_argument("--audit-first", action="store_true", help="run the audit before the reference")
    ap.add_argument("--json", type=Path, default=None, help="write the table and both sides' numbers here")
    ap.add_argument("--child-ref", nargs=2, metavar=("CACHE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_ref:
        reference(args.data, *args.child_ref)
        return {}
    if args.data == "cifar10" and not os.environ.get("PSA_DATA_ROOT"):
        raise SystemExit("--data cifar10 needs PSA_DATA_ROOT (a folder holding CIFAR-10, e.g. ../shared/datasets)")
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    doc: dict[str, Any] = {"data": args.data, "cpu": cpu_info(), "uptime": [], "python": platform.python_version(),
                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    cpu = doc["cpu"]
    print(f"{AUG} --data {args.data} --seeds 1, cold; CPU {cpu['model']}, {cpu['cpus']} CPUs, "
          f"avx512_bf16 {'yes (training uses bf16 autocast)' if cpu['avx512_bf16'] or cpu['amx_bf16'] else 'no (fp32)'}; "
          f"OMP_WAIT_POLICY={doc['omp_wait_policy']}, nice {os.nice(0)}")

    def say_uptime(when: str) -> None:
        u = uptime()
        doc["uptime"].append(f"{when}: {u}")
        print(f"uptime {when}: {u}", flush=True)

    tmp = tempfile.mkdtemp(prefix="psa-cold-")  # removed after the table
    ref_cache, audit_cache = Path(tmp, "ref-cache"), Path(tmp, "audit-cache")
    ref_out, audit_out = Path(tmp, "ref.json"), Path(tmp, "audit.json")
    ref_cmd = [sys.executable, str(Path(__file__).resolve()), "--data", args.data, "--child-ref",
               str(ref_cache), str(ref_out)]
    audit_cmd = [sys.executable, "-m", "pytest_psa.cli", *audit_argv(args.data, str(audit_cache), str(audit_out))]
    walls: dict[str, float] = {}
    order = [("audit", audit_cmd), ("ref", ref_cmd)] if args.audit_first else [("ref", ref_cmd), ("audit", audit_cmd)]
    say_uptime("before")
    for i, (side, cmd) in enumerate(order):
        walls[side], proc = run_child(cmd, env)
        print(f"{side}: {walls[side]:.1f} s wall", flush=True)
        if side == "audit":
            doc["audit_stderr_tail"] = proc.stderr[-3000:]
        say_uptime("after " + side if i == len(order) - 1 else "between")
    ref = json.loads(ref_out.read_text())
    run = json.loads(audit_out.read_text())
    if args.json:  # the audit's own run file beside ours, for a closer look
        args.json.with_suffix(".audit-run.json").write_text(audit_out.read_text())

    timings = run.get("timings", {})
    audit_s = {k: float(v["seconds"]) for k, v in timings.items()}
    ref_s = dict(ref["stages"])
    audit_rows = {r: audit_s.get(r, 0.0) for r in ROWS[1:]}
    audit_rows["data+unstaged"] = walls["audit"] - sum(audit_rows.values())  # probe, PairSpec loads, imports
    ref_rows = {r: ref_s.get(r, 0.0) for r in ROWS[1:]}
    ref_rows["data+unstaged"] = walls["ref"] - sum(ref_rows.values())
    print(f"\nthreads: torch {ref['torch_threads']} intra-op (reference process), training plan "
          f"{ref['numbers'].get('erm_threads')} (audit {audit_numbers(run).get('erm_threads')}); torch {ref['torch']}")
    print(f"settings (from the audit's parser and defaults): {json.dumps(ref['settings'])}")
    print(f"\n{'stage':16s} {'ref s':>8s} {'audit s':>8s} {'audit/ref':>9s}")
    table = []
    for r in ROWS:
        a, b = audit_rows[r], ref_rows[r]
        ratio = a / b if b > 0.05 else float("nan")
        table.append({"stage": r, "ref_s": b, "audit_s": a, "ratio": ratio})
        print(f"{r:16s} {b:8.1f} {a:8.1f} {ratio:9.2f}")
    total = walls["audit"] / walls["ref"]
    print(f"{'total (wall)':16s} {walls['ref']:8.1f} {walls['audit']:8.1f} {total:9.2f}")
    print(f"(data+unstaged: wall minus the timed stages; the audit's holds its data probe stage "
          f"{audit_s.get('data', 0.0):.1f} s, the reference's its data loading {ref_s.get('data', 0.0):.1f} s "
          f"and imports {ref['import_s']:.1f} s)")
    mine, theirs = ref["numbers"], audit_numbers(run)
    print(f"\n{'number':34s} {'ref':>22s} {'audit':>22s}")
    same = []
    for k in mine:
        if k.endswith("_threads"):
            continue
        v, w = mine[k], theirs.get(k)
        # 1 - mean(robust) here, mean(1 - robust) there: equal up to the last bits of a float
        same.append(v == w or (isinstance(v, float) and isinstance(w, float) and math.isclose(v, w, rel_tol=1e-12)))
        show = (lambda z: z[:16] if isinstance(z, str) else f"{z:.6g}" if isinstance(z, float) else str(z))
        print(f"{k:34s} {show(v):>22s} {show(w):>22s}{'' if same[-1] else '  <- differs'}")
    print(f"{sum(same)}/{len(same)} numbers equal")
    doc.update(walls=walls, table=table, total_ratio=total, ref=ref, audit_timings=timings, audit_numbers=theirs,
               equal_numbers=f"{sum(same)}/{len(same)}")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1, default=str))
    shutil.rmtree(tmp, ignore_errors=True)
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
