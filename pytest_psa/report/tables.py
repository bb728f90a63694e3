"""Tables of the seed paper's quantities, built from audit records (so a saved run prints the same tables).

- proximal density: F_N(γ) per augmentation (columns) at each γ (rows), with 95 % intervals, and the
  PSA verdict row when the audit asserted one. The distance's scale is in the title: under the
  default ``l2`` (RMS on [0, 1]) the γ grid and the verdict are this tool's own, not the paper's;
- Table 1 as the paper prints it (`paper_density_table`): F_N(γ) at γ = 1, 5, 10, 50 (rows) per
  augmentation (columns), for the paper's scale (``l2_255``: L2 on 0-255 pixel values, all pixels);
- Table 2, flatness: each metric (rows) for ERM and every augmentation (columns), the
  augmentation's difference to ERM in brackets and ``*`` when the improvement is shown (its
  one-sided lower bound is above 0);
- Table 3, robustness: clean error, mCE, mFP and adversarial errors (rows) for ERM and every
  augmentation, differences to ERM in brackets with ``*`` when the paired interval excludes 0, then
  one row per budget checked, in its unit (``vs_erm[mce] = +0.60pp ≤ +0.50pp: fail``).

Plain text, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_psa._records import AuditRecord, FlatnessSettings, TrainingFields
from pytest_psa._specs.budgets import verdict_line
from pytest_psa.report.terminal import align

_BEST_EFFORT_ORDER = ("clean_error", "mce", "mce_alexnet", "mfp")


def _label(rec: AuditRecord, labels: Mapping[str, str] | None) -> str:
    name = rec.subject
    return (labels or {}).get(name, name if len(name) <= 24 else name.split("(", 1)[0])


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def density_table(records: Sequence[AuditRecord], labels: Mapping[str, str] | None = None) -> list[str]:
    """Proximal density: rows γ, columns augmentations; cells ``F [low, high]`` (95 %). The title names
    the distance and its scale (the paper's Table 1 layout and scale: `paper_density_table`)."""
    recs = [r for r in records if r.kind == "density"]
    if not recs:
        return []
    gammas: list[float] = []
    for r in recs:
        gammas += [e["gamma"] for e in r.density().get("ecdf", []) if e["gamma"] not in gammas]
    rows: list[tuple[str, ...]] = [("γ", *(_label(r, labels) for r in recs))]
    for g in sorted(gammas):
        cells = []
        for r in recs:
            e = next((e for e in r.density().get("ecdf", []) if e["gamma"] == g), None)
            cells.append("" if e is None else _f_cell(e["estimate"], e.get("low"), e.get("high")))
        rows.append((f"{g:g}", *cells))
    rows.append(("identity", *(f"{100 * r.density().get('identity_fraction', float('nan')):.1f}%" for r in recs)))
    rows.append(("N×K", *(f"{r.density().get('n_images')}×{r.density().get('draws')}" for r in recs)))
    if any(r.verdicts for r in recs):
        v0 = next(r.density_verdicts()[0] for r in recs if r.verdicts)
        rows.append((f"PSA F({v0['gamma']:g})≥{v0['min_density']:g}",
                     *(", ".join(v["outcome"] for v in r.density_verdicts()) or "-" for r in recs)))
    data = ", ".join(dict.fromkeys(r.data_description() for r in recs))
    return [f"Proximal density F_N(γ) [95% interval], distance {_distance_scales(recs)}; data {data}",
            *align(rows, "  ")]


def _distance_scales(recs: Sequence[AuditRecord]) -> str:
    """``l2: RMS over ...``: each distance with the scale its record declares (records of older runs
    and users' own distances may declare none)."""
    named: dict[str, str] = {}
    for r in recs:
        d = r.density()
        params = (d.get("distance_info") or {}).get("params") or {}
        scale = params.get("scale") if isinstance(params, Mapping) else None
        named.setdefault(str(d.get("distance")), f": {scale}" if scale else "")
    return ", ".join(f"{name}{scale}" for name, scale in named.items())


def paper_density_table(records: Sequence[AuditRecord], labels: Mapping[str, str] | None = None) -> list[str]:
    """Table 1 of arXiv 2505.24592 as the paper lays it out: one row per γ (its "Distance" column; 1, 5,
    10, 50 for ``l2_255``, the paper's scale), one column per augmentation, cells ``F [low, high]``
    (95 %). The rows below the γ rows (identity share, audit size, a verdict when one was asserted)
    are this tool's additions. (The paper's text keeps each row as γ, then AugMix, RandAug, PixMix,
    DeepAug and StyleAug, for CIFAR-100 and again for ImageNet.) `density_table` has the same layout and
    names its distance's scale in its title."""
    table = density_table(records, labels)
    if not table:
        return []
    recs = [r for r in records if r.kind == "density"]
    data = ", ".join(dict.fromkeys(r.data_description() for r in recs))
    return [f"Table 1 layout (γ as rows, as in arXiv 2505.24592). Proximal density F_N(γ) [95% interval], "
            f"distance {_distance_scales(recs)}; data {data}", *table[1:]]


def _f_cell(est: Any, low: Any, high: Any) -> str:
    if not _finite(est):
        return "n/a"
    if _finite(low) and _finite(high):
        return f"{est:.4f} [{low:.3f},{high:.3f}]"
    return f"{est:.4f}"


def flatness_table(records: Sequence[AuditRecord], labels: Mapping[str, str] | None = None) -> list[str]:
    """Table 2: rows metrics, columns ERM then augmentations; ``aug (Δ vs ERM)``, ``*`` = improvement shown."""
    recs = [r for r in records if r.kind == "flatness"]
    if not recs:
        return []
    metrics: list[str] = []
    for r in recs:
        metrics += [m for m in r.flatness_comparisons() if m not in metrics]
    rows: list[tuple[str, ...]] = [("metric (lower = flatter)", "ERM", *(_label(r, labels) for r in recs))]
    for m in metrics:
        erm_cell, cells = "", []
        for r in recs:
            c = r.flatness_comparisons().get(m)
            if c is None:
                cells.append("")
                continue
            erm, aug = _mean(c["erm"]), _mean(c["augmented"])
            erm_cell = erm_cell or _g(erm)
            low = c.get("low")
            shown = "*" if _finite(low) and low is not None and low > 0 else ""
            cells.append(f"{_g(aug)} ({aug - erm:+.3g}){shown}" if _finite(aug) and _finite(erm) else "n/a")
        rows.append((m, erm_cell, *cells))
    accuracy = []
    erm_acc = ""
    for r in recs:
        t = r.flatness().get("training")
        erm_acc = erm_acc or _acc(t.get("erm") if t else None)
        accuracy.append(_acc(t.get("augmented") if t else None))
    rows.append(("test accuracy", erm_acc, *accuracy))
    seeds = ", ".join(dict.fromkeys(str(len(r.seeds())) for r in recs))
    preset = ", ".join(dict.fromkeys(str(_settings(r).get("preset")) for r in recs))
    return [f"Table 2. Flatness, mean over {seeds} seeds, preset {preset} (Δ vs ERM; * improvement shown at "
            f"one-sided α={_alpha(recs)})", *align(rows, "  ")]


_RATIOS = ("mce_ratio", "hd_relative_mce")  # ratios to the baseline, not error rates in %


def robustness_table(records: Sequence[AuditRecord], labels: Mapping[str, str] | None = None) -> list[str]:
    """Table 3: rows clean error, mCE, mFP, adversarial errors (%); columns the baseline (ERM) then
    augmentations; ``aug (Δ)``, ``*`` when the paired 95 % interval of Δ excludes 0."""
    recs = [r for r in records if r.kind == "robustness"]
    if not recs:
        return []
    names: list[str] = []
    for r in recs:
        names += [n for n in r.metrics()
                  if not n.startswith(("baseline_", "delta_", "delta(", "rel_")) and n not in _RATIOS and n not in names]
    names.sort(key=lambda n: (_BEST_EFFORT_ORDER.index(n) if n in _BEST_EFFORT_ORDER else len(_BEST_EFFORT_ORDER), n))
    base_name = next((str(b) for r in recs if (b := r.robustness().get("baseline"))), "baseline")
    rows: list[tuple[str, ...]] = [("error %", base_name.upper() if base_name == "erm" else base_name,
                                    *(_label(r, labels) for r in recs))]
    for n in names:
        ref_cell, cells = "", []
        for r in recs:
            m = r.metrics()
            if n not in m:
                cells.append("")
                continue
            ref, delta = r.baseline_metric(n), r.paired_delta(n)
            if ref is not None and not ref_cell:
                ref_cell = _pct(ref.estimate)
            cell = _pct(m[n].estimate)
            if delta is not None and delta.estimate is not None:
                shown = "*" if (delta.low is not None and delta.low > 0) or \
                    (delta.high is not None and delta.high < 0) else ""
                cell += f" ({100 * delta.estimate:+.2f}){shown}"
            cells.append(cell)
        rows.append((n, ref_cell, *cells))
    checks: list[str] = []
    for r in recs:
        checks += [str(v.get("check")) for v in r.budget_verdicts() if str(v.get("check")) not in checks]
    for check in checks:  # each budget as failures, the terminal summary and JSON's limit_text print it
        rows.append(("budget", "", *(next((verdict_line(v) for v in r.budget_verdicts() if str(v.get("check")) == check),
                                          "") for r in recs)))
    images = ", ".join(dict.fromkeys(str(r.robustness().get("n_images")) for r in recs))
    shown = base_name.upper() if base_name == "erm" else base_name
    return [f"Table 3. Robustness, error in % ({images} images; Δ vs {shown} in points, * = paired 95% "
            f"interval excludes 0)", *align(rows, "  ")]


def paper_tables(records: Iterable[AuditRecord], labels: Mapping[str, str] | None = None) -> list[str]:
    """The density table and Tables 2–3 (those with records), separated by blank lines."""
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


def _acc(training: list[TrainingFields] | None) -> str:
    vals = [acc for t in (training or []) if _finite(acc := t.get("test_accuracy")) and acc is not None]
    return f"{100 * sum(vals) / len(vals):.1f}%" if vals else "n/a"


def _settings(rec: AuditRecord) -> FlatnessSettings:
    return rec.flatness().get("settings") or {}


def _alpha(recs: Sequence[AuditRecord]) -> str:
    alphas = {_settings(r).get("alpha") for r in recs}
    return ", ".join(f"{a:g}" for a in alphas if _finite(a)) or "?"
