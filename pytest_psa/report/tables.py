"""The seed paper's Tables 1–3, built from audit records (so a saved run prints the same tables).

- Table 1, proximal density: F_N(γ) per augmentation (columns) at each γ (rows), with 95 %
  intervals, and the PSA verdict row when the audit asserted one;
- Table 2, flatness: each metric (rows) for ERM and every augmentation (columns), the
  augmentation's difference to ERM in brackets and ``*`` when the improvement is shown (its
  one-sided lower bound is above 0);
- Table 3, robustness: clean error, mCE, mFP and adversarial errors (rows) for ERM and every
  augmentation, differences to ERM in brackets with ``*`` when the paired interval excludes 0.

Plain text, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_psa.report.terminal import (
    align, baseline_value, flatness_comparisons, headline_metrics, paired_delta, subject_of,
)

_BEST_EFFORT_ORDER = ("clean_error", "mce", "mce_alexnet", "mfp")


def _label(rec: Any, labels: Mapping[str, str] | None) -> str:
    name = subject_of(rec.summary)
    return (labels or {}).get(name, name if len(name) <= 24 else name.split("(", 1)[0])


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def density_table(records: Sequence[Any], labels: Mapping[str, str] | None = None) -> list[str]:
    """Table 1: rows γ, columns augmentations; cells ``F [low, high]`` (95 %)."""
    recs = [r for r in records if r.kind == "density"]
    if not recs:
        return []
    gammas: list[float] = []
    for r in recs:
        gammas += [e["gamma"] for e in r.summary.get("ecdf", []) if e["gamma"] not in gammas]
    rows: list[tuple[str, ...]] = [("γ", *(_label(r, labels) for r in recs))]
    for g in sorted(gammas):
        cells = []
        for r in recs:
            e = next((e for e in r.summary.get("ecdf", []) if e["gamma"] == g), None)
            cells.append("" if e is None else _f_cell(e["estimate"], e.get("low"), e.get("high")))
        rows.append((f"{g:g}", *cells))
    rows.append(("identity", *(f"{100 * r.summary.get('identity_fraction', float('nan')):.1f}%" for r in recs)))
    rows.append(("N×K", *(f"{r.summary.get('n_images')}×{r.summary.get('draws')}" for r in recs)))
    if any(r.verdicts for r in recs):
        v0 = next(r.verdicts[0] for r in recs if r.verdicts)
        rows.append((f"PSA F({v0['gamma']:g})≥{v0['min_density']:g}",
                     *(", ".join(v["outcome"] for v in r.verdicts) or "-" for r in recs)))
    distance = ", ".join(dict.fromkeys(str(r.summary.get("distance")) for r in recs))
    data = ", ".join(dict.fromkeys(str((r.summary.get("data") or {}).get("describe", "?")) for r in recs))
    return [f"Table 1. Proximal density F_N(γ) [95% interval], distance {distance}, data {data}", *align(rows, "  ")]


def _f_cell(est: Any, low: Any, high: Any) -> str:
    if not _finite(est):
        return "n/a"
    if _finite(low) and _finite(high):
        return f"{est:.4f} [{low:.3f},{high:.3f}]"
    return f"{est:.4f}"


def flatness_table(records: Sequence[Any], labels: Mapping[str, str] | None = None) -> list[str]:
    """Table 2: rows metrics, columns ERM then augmentations; ``aug (Δ vs ERM)``, ``*`` = improvement shown."""
    recs = [r for r in records if r.kind == "flatness"]
    if not recs:
        return []
    metrics: list[str] = []
    for r in recs:
        metrics += [m for m in flatness_comparisons(r.summary) if m not in metrics]
    rows: list[tuple[str, ...]] = [("metric (lower = flatter)", "ERM", *(_label(r, labels) for r in recs))]
    for m in metrics:
        erm_cell, cells = "", []
        for r in recs:
            c = flatness_comparisons(r.summary).get(m)
            if c is None:
                cells.append("")
                continue
            erm, aug = _mean(c["erm"]), _mean(c["augmented"])
            erm_cell = erm_cell or _g(erm)
            shown = "*" if _finite(c.get("low")) and c["low"] > 0 else ""
            cells.append(f"{_g(aug)} ({aug - erm:+.3g}){shown}" if _finite(aug) and _finite(erm) else "n/a")
        rows.append((m, erm_cell, *cells))
    accuracy = []
    erm_acc = ""
    for r in recs:
        t = r.summary.get("training") or {}
        erm_acc = erm_acc or _acc(t.get("erm"))
        accuracy.append(_acc(t.get("augmented")))
    rows.append(("test accuracy", erm_acc, *accuracy))
    seeds = ", ".join(dict.fromkeys(str(len(r.summary.get("seeds", []))) for r in recs))
    preset = ", ".join(dict.fromkeys(str((r.summary.get("settings") or {}).get("preset")) for r in recs))
    return [f"Table 2. Flatness, mean over {seeds} seeds, preset {preset} (Δ vs ERM; * improvement shown at "
            f"one-sided α={_alpha(recs)})", *align(rows, "  ")]


def robustness_table(records: Sequence[Any], labels: Mapping[str, str] | None = None) -> list[str]:
    """Table 3: rows clean error, mCE, mFP, adversarial errors (%); columns the baseline (ERM) then
    augmentations; ``aug (Δ)``, ``*`` when the paired 95 % interval of Δ excludes 0."""
    recs = [r for r in records if r.kind == "robustness"]
    if not recs:
        return []
    names: list[str] = []
    for r in recs:
        names += [n for n in headline_metrics(r.summary)
                  if not n.startswith(("baseline_", "delta_", "delta(", "rel_")) and n not in names]
    names.sort(key=lambda n: (_BEST_EFFORT_ORDER.index(n) if n in _BEST_EFFORT_ORDER else len(_BEST_EFFORT_ORDER), n))
    base_name = next((str(r.summary.get("baseline")) for r in recs if r.summary.get("baseline")), "baseline")
    rows: list[tuple[str, ...]] = [("error %", base_name.upper() if base_name == "erm" else base_name,
                                    *(_label(r, labels) for r in recs))]
    for n in names:
        ref_cell, cells = "", []
        for r in recs:
            m = headline_metrics(r.summary)
            if n not in m:
                cells.append("")
                continue
            ref, delta = baseline_value(r.summary, n), paired_delta(r.summary, n)
            if ref is not None and not ref_cell:
                ref_cell = _pct(ref.get("estimate"))
            cell = _pct(m[n].get("estimate"))
            if delta is not None and _finite(delta.get("estimate")):
                shown = "*" if (_finite(delta.get("low")) and delta["low"] > 0) or \
                    (_finite(delta.get("high")) and delta["high"] < 0) else ""
                cell += f" ({100 * delta['estimate']:+.2f}){shown}"
            cells.append(cell)
        rows.append((n, ref_cell, *cells))
    images = ", ".join(dict.fromkeys(str(r.summary.get("n_images")) for r in recs))
    shown = base_name.upper() if base_name == "erm" else base_name
    return [f"Table 3. Robustness, error in % ({images} images; Δ vs {shown} in points, * = paired 95% "
            f"interval excludes 0)", *align(rows, "  ")]


def paper_tables(records: Iterable[Any], labels: Mapping[str, str] | None = None) -> list[str]:
    """Tables 1–3 (those with records), separated by blank lines."""
    recs = list(records)
    out: list[str] = []
    for table in (density_table(recs, labels), flatness_table(recs, labels), robustness_table(recs, labels)):
        if table:
            out += ([""] if out else []) + table
    return out


def _mean(values: Any) -> float:
    vals = [v for v in (values or []) if _finite(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def _g(x: Any) -> str:
    return f"{x:.4g}" if _finite(x) else "n/a"


def _pct(x: Any) -> str:
    return f"{100 * x:.2f}" if _finite(x) else "n/a"


def _acc(training: Any) -> str:
    vals = [t.get("test_accuracy") for t in (training or []) if _finite(t.get("test_accuracy"))]
    return f"{100 * sum(vals) / len(vals):.1f}%" if vals else "n/a"


def _alpha(recs: Sequence[Any]) -> str:
    alphas = {(r.summary.get("settings") or {}).get("alpha") for r in recs}
    return ", ".join(f"{a:g}" for a in alphas if _finite(a)) or "?"
