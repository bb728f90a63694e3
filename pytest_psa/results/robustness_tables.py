"""Text tables, RobustBench-style records and CSV, `to_dict` and failure messages of a `RobustnessResult`."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from pytest_psa._specs.budgets import format_value


def _pct(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"


def _ratio(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _pct_ci(e: Any) -> str:
    """``12.3 [10.1, 14.6]``: an error-like Estimate in %, with its interval."""
    return f"{_pct(e.estimate)} [{_pct(e.low)}, {_pct(e.high)}]"


def _ratio_ci(e: Any) -> str:
    return f"{_ratio(e.estimate)} [{_ratio(e.low)}, {_ratio(e.high)}]"


def _align(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def header(r: Any) -> str:
    base = f" vs {r.baseline}" if r.baseline else ""
    seeds = f"training seeds {list(r.seeds)}" if r.seeds else "given model"
    return (f"robustness of {r.subject}{base} on {r.data.get('describe', '?')} | {r.n_images} images, "
            f"corruption seed {r.seed} | {seeds} | preset {r.preset or '-'} | {r.device} | cache: "
            f"{'hit' if r.cache_hit else 'miss'}")


def corruption_table(r: Any) -> list[str]:
    """Errors in % per corruption: severities 1..5, CE with its interval, and with a baseline its CE,
    the CE ratio (Σ_s E / Σ_s E_b; mean: mce_ratio) and Hendrycks & Dietterich's relative CE
    (Σ_s (E − E_clean) / Σ_s (E_b − E_b,clean); mean: hd_relative_mce)."""
    if not r.corruptions:
        return ["  (no corruptions measured)"]
    conf = f"{100 * (1 - r.alpha):g}%"
    errs = r.errors()
    ce = r.corruption_errors()
    base = r.baseline_samples is not None
    ce_b = r.corruption_errors(baseline=True) if base else {}
    rce = r.relative_corruption_errors() if base else {}
    hd = r.hd_relative_corruption_errors() if base else {}
    head = ("corruption", *[f"s{s}" for s in r.severities], f"CE % [{conf}]")
    if base:
        head += (f"{r.baseline} CE %", f"CE ratio [{conf}]", f"H&D rel. CE [{conf}]")
    rows = [head]
    for ci, c in enumerate(r.corruptions):
        e = ce[c]
        row: tuple[str, ...] = (c, *[_pct(x.estimate) for x in errs[ci]], _pct_ci(e))
        if base:
            row += (_pct(ce_b[c].estimate), _ratio_ci(rce[c]), _ratio_ci(hd[c]))
        rows.append(row)
    m, mb = r.metrics(), r.baseline_metrics()
    blank = ("",) * len(r.severities)
    mce = m["mce"]
    row = ("mCE (unnormalized)", *blank, _pct_ci(mce))
    if base:
        row += (_pct(mb["mce"].estimate), _ratio_ci(m["mce_ratio"]), _ratio_ci(m["hd_relative_mce"]))
    rows.append(row)
    ce_clean = m["clean_error"]
    row = ("clean error", *blank, _pct_ci(ce_clean))
    if base:
        row += (_pct(mb["clean_error"].estimate), "", "")
    rows.append(row)
    if "mce_alexnet" in m:
        q = m["mce_alexnet"]
        rows.append(("mCE (reference-normalized)", *blank, _ratio_ci(q),
                     *(("", "", "") if base else ())))
    lines = _align(rows)
    if base:
        lines.append("  mCE row: CE ratio = mce_ratio (mean_c Σ_s E / Σ_s E_baseline); H&D rel. CE = hd_relative_mce "
                     "(Hendrycks & Dietterich's relative mCE: each model's clean error subtracted)")
        undefined = [c for c, q in hd.items() if not math.isfinite(q.estimate)]
        if undefined:
            lines.append(f"  H&D relative CE undefined for {undefined} (the {r.baseline} model's corrupted error does "
                         "not exceed its clean error); left out of hd_relative_mce")
    return lines


def flip_table(r: Any) -> list[str]:
    if not r.perturbations:
        return []
    fp = r.flip_probabilities()
    base = r.baseline_samples is not None
    fp_b = r.flip_probabilities(baseline=True) if base else {}
    rows = [("perturbation", "FP %", "interval", *((f"{r.baseline} FP %",) if base else ()))]
    for p in r.perturbations:
        e = fp[p]
        rows.append((p, _pct(e.estimate), f"[{_pct(e.low)}, {_pct(e.high)}]", *((_pct(fp_b[p].estimate),) if base else ())))
    m, mb = r.metrics(), r.baseline_metrics()
    e = m["mfp"]
    rows.append(("mFP", _pct(e.estimate), f"[{_pct(e.low)}, {_pct(e.high)}]",
                 *((_pct(mb["mfp"].estimate),) if base else ())))
    lines = _align(rows)
    if base:
        q = m["rel_mfp"]
        lines.append(f"  relative mFP (mean_p FP/FP_{r.baseline}): {_ratio_ci(q)}")
    return lines


def attack_table(r: Any) -> list[str]:
    if not r.attacks:
        return []
    m, mb = r.metrics(), r.baseline_metrics()
    base = r.baseline_samples is not None
    rows = [("attack", "adversarial error %", "interval", *((f"{r.baseline} %",) if base else ()), "fwd+bwd / image",
             "images/s", "settings")]
    for spec in r.attacks:
        e = m[f"adv_error({spec.label})"]
        runs = r.attack_runs.get("subject", {}).get(spec.label, [])
        passes = np.mean([(x.get("forwards", 0) + x.get("backwards", 0)) / max(1, x.get("n", 1)) for x in runs]) if runs else float("nan")
        speed = np.mean([x.get("images_per_s", float("nan")) for x in runs]) if runs else float("nan")
        rows.append((spec.label, _pct(e.estimate), f"[{_pct(e.low)}, {_pct(e.high)}]",
                     *((_pct(mb[f"adv_error({spec.label})"].estimate),) if base else ()),
                     f"{passes:.1f}", f"{speed:.0f}", spec.describe()))
    return _align(rows)


def result_table(r: Any) -> str:
    lines = [header(r), *corruption_table(r)]
    for part in (flip_table(r), attack_table(r)):
        if part:
            lines += ["", *part]
    lines += [f"  note: {n}" for n in r.notes]
    return "\n".join(lines)


def frame_records(r: Any) -> list[dict[str, Any]]:
    out = []
    roles = [(r.subject, False)] + ([(r.baseline, True)] if r.baseline_samples is not None else [])
    for name, is_base in roles:
        errs = r.errors(baseline=is_base)
        for ci, c in enumerate(r.corruptions):
            for si, s in enumerate(r.severities):
                e = errs[ci][si]
                out.append({"model": name, "corruption": c, "severity": s, "accuracy": 1 - e.estimate,
                            "error": e.estimate, "low": e.low, "high": e.high, "n": e.n})
    return out


def write_csv(r: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    cols = [(c, s) for c in r.corruptions for s in r.severities]
    by = {(x["model"], x["corruption"], x["severity"]): x["accuracy"] for x in frame_records(r)}
    models = [r.subject] + ([r.baseline] if r.baseline_samples is not None else [])
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", *[c for c, _ in cols]])
        w.writerow(["", *[s for _, s in cols]])
        for m in models:
            w.writerow([m, *[f"{by[(m, c, s)]:.6g}" for c, s in cols]])
    return path


def result_dict(r: Any) -> dict[str, Any]:
    m = r.metrics()
    errs = {c: {str(s): e.to_dict() for s, e in zip(r.severities, row)} for c, row in zip(r.corruptions, r.errors())}
    out: dict[str, Any] = {
        "kind": "robustness", "subject": r.subject, "augmentation": r.subject, "subject_kind": r.kind,
        "baseline": r.baseline,
        "metrics": {k: v.to_dict() for k, v in m.items()},
        "data": r.data, "n_images": r.n_images, "n_attack_images": r.n_attack_images,
        "n_perturbation_images": r.n_perturbation_images, "seed": r.seed, "seeds": list(r.seeds),
        "preset": r.preset, "device": r.device, "alpha": r.alpha,
        "corruptions": list(r.corruptions), "severities": list(r.severities), "perturbations": list(r.perturbations),
        "attacks": [{"label": s.label, "describe": s.describe(), **s.settings} for s in r.attacks],
        "settings": r.settings,
        "errors": errs,
        "corruption_errors": {c: e.to_dict() for c, e in r.corruption_errors().items()},
        "relative_corruption_errors": {c: e.to_dict() for c, e in r.relative_corruption_errors().items()},
        "normalized_corruption_errors": {c: e.to_dict() for c, e in r.normalized_corruption_errors().items()},
        "flip_probabilities": {p: e.to_dict() for p, e in r.flip_probabilities().items()},
        "attack_runs": r.attack_runs, "per_seed": r.per_seed, "training": r.training,
        "cache": dict(r.cache), "cache_hit": r.cache_hit, "timing": r.timing, "notes": list(r.notes), "repro": r.repro,
    }
    if r.baseline_samples is not None:
        out["baseline_errors"] = {c: {str(s): e.to_dict() for s, e in zip(r.severities, row)}
                                  for c, row in zip(r.corruptions, r.errors(baseline=True))}
        out["baseline_flip_probabilities"] = {p: e.to_dict() for p, e in r.flip_probabilities(baseline=True).items()}
        # the baseline's CE per corruption (ERM unless baseline= named another; report/plots.py reads this key)
        out["erm_corruption_errors"] = {c: e.to_dict() for c, e in r.corruption_errors(baseline=True).items()}
    return out


def failure_message(r: Any, verdicts: list[Any]) -> str:
    failed = [v for v in verdicts if v.outcome == "fail"]
    lines = [f"robustness budget exceeded: {r.subject}" + (f" (vs {r.baseline})" if r.baseline else "")
             + f" on {r.data.get('describe', '?')}"]
    for v in verdicts:  # v.line() is how tables and JSON print the same budget
        lines.append(f"  {v.outcome.upper():>12}  {v.line()} ({v.metric}, one-sided lower bound "
                     f"{format_value(v.low, v.unit)} at alpha {v.alpha:.2g})")
    lines.append(f"  {len(failed)} of {len(verdicts)} budgets shown exceeded; a budget fails only when its lower "
                 "confidence bound is above it")
    lines += ["", r.table(), ""]
    if r.attacks:
        lines.append("  attacks: " + "; ".join(f"{s.label} = {s.describe()}" for s in r.attacks)
                     + f" on {r.n_attack_images} images, seed {r.seed}")
    lines.append(f"  seeds: corruption/attack seed {r.seed}; training seeds {list(r.seeds) or '-'}")
    from pytest_psa.results.flatness import training_loss_lines

    lines += training_loss_lines(r.settings.get("training_loss"))  # a more robust model that trained less far
    if r.repro:
        lines.append(f"  reproduce: {r.repro}")
    return "\n".join(lines)


__all__ = ["failure_message", "frame_records", "result_dict", "result_table", "write_csv"]
