"""Terminal summary: one section per augmentation (like pytest-benchmark's groups); inside it each
audit has a one-line header (check, test, settings) and a small table. Plain text, no torch;
lines stay within about 110 columns.

    ------------------------------------ psa: AugMix ------------------------------------
    AugMix(interpolation=bilinear, severity=3, mixture_width=3, chain_depth=-1, a...
    density     test_augmix_is_proximal | l2, N×K=500×8, identity 0.0% | synthetic/test[500]
                γ     F_N(γ)  bounds            verdict
                0.05  0.1234  [0.1000, 0.1500]  pass (≥0.05)
    flatness    test_augmix_flatter | seeds 0, 1, 2 | preset smoke | synthetic/train[1000]
                metric     ERM    augmented  improvement  lower bound  verdict
                pac_bayes  166.7  116.7      +30.0%       +12.0%       pass (>+0.0%)
    robustness  test_augmix_budget | vs erm | 1000 images | seeds 0 | preset smoke
                metric       ERM     augmented [95%]       Δ vs ERM [95%]           verdict
                mce          30.54%  15.24% [14.1, 16.4]   -15.30pp [-16.2, -14.4]  pass (max_mce ≤0.2)

With a baseline comparison on a record (``record.baseline``, a `RecordComparison.to_dict()` from
report/compare.py) a "vs baseline" column shows each metric's change and any regression.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_psa._records import AlignmentSummary, AuditRecord, BaselineComparison, FlatnessSettings, MetricEstimate
from pytest_psa._specs.budgets import verdict_line

_WIDTH = 110
_DENSITY_GAMMAS = (0.02, 0.05, 0.1)  # shown when no assertion picked γ values
_ROBUSTNESS_SKIP = ("baseline_", "delta_", "delta(", "rel_")  # shown as columns of their base metric
Rows = list[tuple[str, ...]]


def short_name(augmentation: str) -> str:
    """``AugMix(severity=3, ...)`` -> ``AugMix``; names without arguments stay as they are."""
    head = augmentation.split("(", 1)[0].strip()
    return head or augmentation


def summary_sections(records: Iterable[AuditRecord]) -> list[tuple[str, list[str]]]:
    """(title, lines) per audited augmentation, in the order they were first audited."""
    groups: dict[str, list[AuditRecord]] = {}
    for rec in records:
        groups.setdefault(rec.subject, []).append(rec)
    titles = _unique_titles(list(groups))
    sections = []
    for name, recs in groups.items():
        lines = [] if titles[name] == name else [_clip(name, _WIDTH)]  # the full name under a short title
        for rec in recs:
            header, rows = RENDERERS.get(rec.kind, _other)(rec)
            lines.append(_clip(f"{rec.kind:<11} {_test(rec)} | {header}", _WIDTH))
            lines += align(rows, indent=" " * 12)
        sections.append((f"psa: {titles[name]}", lines))
    return sections


def summary_notes(records: Iterable[AuditRecord]) -> list[str]:
    """Lines that belong under the summary once, whatever the grouping."""
    notes = []
    if any(r.kind == "flatness" for r in records):
        notes.append("psa: flatness over ERM is a measurement, not proof of robustness (arXiv 2511.03548)")
    return notes


def stage_lines(totals: Mapping[str, Mapping[str, float | int]]) -> list[str]:
    """Where the time went: one line per stage (``_timings.summarize`` output), wall seconds, how
    many times it ran and how many of those a cache served; empty when nothing was timed."""
    if not totals:
        return []
    rows: Rows = [("stage", "wall s", "runs", "from cache")]
    for name, t in totals.items():
        rows.append((name, f"{float(t['seconds']):.1f}", str(int(t["count"])), str(int(t["cached"]))))
    # no grand total: a stage may run inside another (training inside flatness), so sums would double count
    return ["psa: time by stage (a stage served from a cache computed nothing)", *align(rows, indent="  ")]


# -- per check: (header, rows) ------------------------------------------------------------------
def density_audit(rec: AuditRecord) -> tuple[str, Rows]:
    """One row per γ: F_N(γ) with its bounds and the verdict (bounds are the assertion's one-sided
    ones at α/m when asserted, else 95 % two-sided)."""
    s = rec.density()
    align: AlignmentSummary = s.get("alignment") or {}  # l2_aligned: how often the best alignment was a flip / a shift
    distance = str(s.get("distance", "?")) + (f" (flip {_pct(align['flip'], 0)}, shift {_pct(align['shift'], 0)})"
                                              if align.get("draws") else "")
    header = (f"{distance}, N×K={s.get('n_images', '?')}×{s.get('draws', '?')}, identity "
              f"{_pct(s.get('identity_fraction'), 1)} | {rec.data_description()}")
    base = _comparison(rec)
    rows: Rows = [("γ", "F_N(γ)", "bounds", *(("vs baseline",) if base else ()), "verdict")]
    points: list[tuple[float, float, float, float, str]]
    if rec.verdicts:
        points = [(v["gamma"], v["F_estimate"], v["F_low"], v["F_high"],
                   f"{v['outcome']} (≥{v['min_density']:g})") for v in rec.density_verdicts()]
    else:
        ecdf = s.get("ecdf", [])
        shown = [e for e in ecdf if e["gamma"] in _DENSITY_GAMMAS] or ecdf[:3]
        points = [(e["gamma"], e["estimate"], e["low"], e["high"], "measured") for e in shown]
    for gamma, est, low, high, verdict in points:
        cell = (_baseline_cell(base, f"F({gamma:g})"),) if base else ()
        rows.append((f"{gamma:g}", _fix(est, 4), _bounds(low, high, 4), *cell, verdict))
    return header, rows


def flatness_audit(rec: AuditRecord) -> tuple[str, Rows]:
    """One row per metric: ERM and augmented means over seeds, the mean relative improvement
    1 − aug/ERM and its one-sided lower bound, the verdict."""
    s = rec.flatness()
    settings: FlatnessSettings = s.get("settings") or {}
    seeds = ", ".join(str(x) for x in rec.seeds())
    header = f"seeds {seeds} | preset {settings.get('preset', '?')} | {rec.data_description()}"
    base = _comparison(rec)
    verdicts = {v.get("metric"): v for v in rec.flatness_verdicts()}
    rows: Rows = [("metric", "ERM", "augmented", "improvement", "lower bound", *(("vs baseline",) if base else ()),
                   "verdict")]
    for metric, c in rec.flatness_comparisons().items():
        v = verdicts.get(metric)
        verdict = f"{v['outcome']} (>{_signed_pct(v['min_rel_improvement'])})" if v else "measured"
        cell = (_baseline_cell(base, f"improvement({metric})"),) if base else ()
        rows.append((metric, _sig(_mean(c["erm"])), _sig(_mean(c["augmented"])), _signed_pct(c.get("mean")),
                     _signed_pct(c.get("low")), *cell, verdict))
    return header, rows


def robustness_audit(rec: AuditRecord) -> tuple[str, Rows]:
    """One row per headline metric: the baseline's (ERM) value, the audited value with its interval,
    the paired difference with its interval, and the budgets checked on it."""
    s = rec.robustness()
    metrics = rec.metrics()
    seeds = ", ".join(str(x) for x in rec.seeds()) or "-"
    baseline = s.get("baseline")
    header = (f"vs {baseline or 'nothing'} | {s.get('n_images', '?')} images | seeds {seeds} | "
              f"preset {s.get('preset') or '-'} | {rec.data_description()}")
    conf = _confidence(metrics)
    base = _comparison(rec)
    by_metric: dict[str, list[str]] = {}
    for v in rec.budget_verdicts():
        if isinstance(v, Mapping) and v.get("metric"):
            target = str(v["metric"])
            for prefix in ("delta_", "rel_"):
                target = target[len(prefix):] if target.startswith(prefix) else target
            if target.startswith("delta(") and target.endswith(")"):
                target = target[6:-1]
            by_metric.setdefault(target, []).append(verdict_line(v))  # as failures and JSON print it
    erm_label = str(baseline or "baseline").upper() if baseline == "erm" else "baseline"
    rows: Rows = [("metric", erm_label, f"value [{conf}]", f"Δ [{conf}]", *(("vs baseline",) if base else ()),
                   "verdict")]
    for name, m in metrics.items():
        if name.startswith(_ROBUSTNESS_SKIP):
            continue
        ref, delta = rec.baseline_metric(name), rec.paired_delta(name)
        cell = (_baseline_cell(base, name),) if base else ()
        rows.append((name, _value(ref.estimate, m.unit) if ref else "",
                     _with_interval(m, m.unit), _with_interval(delta, m.unit, signed=True) if delta else "",
                     *cell, "; ".join(by_metric.get(name, [])) or "measured"))
    for name, m in metrics.items():  # ratios to the baseline (relative mCE, mFP) as their own rows
        if name.startswith("rel_"):
            cell = (_baseline_cell(base, name),) if base else ()
            rows.append((name, "", _with_interval(m, "ratio"), "", *cell,
                         "; ".join(by_metric.get(name[4:], [])) if name[4:] not in metrics else "measured"))
    return header, rows


def _other(rec: AuditRecord) -> tuple[str, Rows]:
    rows: Rows = [("metric", "value", "interval")]
    for name, m in rec.metrics().items():
        rows.append((name, _value(m.estimate, m.unit), _interval(m, m.unit)))
    return rec.data_description(), rows


def domain_audit(rec: AuditRecord) -> tuple[str, Rows]:
    """One row per held-out domain and the average: held-out accuracy of each side, the paired
    difference, in-domain accuracy, and the floors' verdicts (results/domain.py)."""
    s = rec.summary
    header = (f"leave one domain out | seeds {', '.join(str(x) for x in rec.seeds())} | "
              f"preset {(s.get('settings') or {}).get('preset', '?')} | {rec.data_description()}")
    m = rec.metrics()
    rows: Rows = [("held out", "augmented", str(s.get("baseline") or "erm"), "delta", "in-domain")]
    for key, label in [(f"[{d}]", str(d)) for d in s.get("domains") or []] + [("_avg", "average")]:
        acc, erm = m.get(f"accuracy_heldout{key}"), m.get(f"erm_accuracy_heldout{key}")
        delta, ind = m.get(f"delta_accuracy_heldout{key}"), m.get(f"accuracy_indomain{key}")
        rows.append((label, _with_interval(acc, "fraction") if acc else "",
                     _with_interval(erm, "fraction") if erm else "",
                     _with_interval(delta, "fraction", signed=True) if delta else "",
                     _with_interval(ind, "fraction") if ind else ""))
    for v in rec.verdicts:
        rows.append((str(v.get("check", "?")), f"floor {v.get('limit_text', '?')}", "", "", str(v.get("outcome", "?"))))
    return header, rows


RENDERERS = {"density": density_audit, "flatness": flatness_audit, "robustness": robustness_audit,
             "domain": domain_audit}


# -- formatting ---------------------------------------------------------------------------------
def align(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Rows as left-aligned columns separated by two spaces."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths))).rstrip() for r in rows]


def _unique_titles(names: list[str]) -> dict[str, str]:
    short = {n: short_name(n) for n in names}
    values = list(short.values())
    return {n: (_clip(n, 64) if values.count(short[n]) > 1 else short[n]) for n in names}


def _test(rec: AuditRecord) -> str:
    return _clip(rec.nodeid.split("::", 1)[-1], 48)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fix(x: Any, digits: int) -> str:
    return f"{x:.{digits}f}" if _finite(x) else "n/a"


def _sig(x: Any) -> str:
    return f"{x:.4g}" if _finite(x) else "n/a"


def _pct(x: Any, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}%" if _finite(x) else "n/a"


def _signed_pct(x: Any) -> str:
    if isinstance(x, float) and math.isinf(x) or x is None:
        return "-∞" if x is None or x < 0 else "+∞"  # one seed, or null in JSON: no bound
    return f"{100 * x:+.1f}%" if _finite(x) else "n/a"


def _mean(values: Any) -> float | None:
    vals = [v for v in (values or []) if _finite(v)]
    return sum(vals) / len(vals) if vals else None


def _bounds(low: Any, high: Any, digits: int) -> str:
    return f"[{_fix(low, digits)}, {_fix(high, digits)}]" if _finite(low) and _finite(high) else "n/a"


def _percent_unit(unit: str) -> bool:
    return unit in ("fraction", "error", "rate", "difference")


def _value(x: Any, unit: str, signed: bool = False) -> str:
    if not _finite(x):
        return "n/a"
    if _percent_unit(unit):  # shown as percent, differences in percentage points
        return f"{100 * x:+.2f}pp" if signed else f"{100 * x:.2f}%"
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def _interval(m: MetricEstimate, unit: str) -> str:
    low, high = m.low, m.high
    if low is None or high is None:  # MetricEstimate keeps finite bounds only
        return "n/a"
    if _percent_unit(unit):
        return f"[{100 * low:.1f}, {100 * high:.1f}]"
    return f"[{low:.3g}, {high:.3g}]"


def _with_interval(m: MetricEstimate, unit: str, signed: bool = False) -> str:
    text = _value(m.estimate, unit, signed)
    iv = _interval(m, unit)
    if signed and iv != "n/a" and _percent_unit(unit) and m.low is not None and m.high is not None:
        iv = f"[{100 * m.low:+.1f}, {100 * m.high:+.1f}]"
    return text if iv == "n/a" else f"{text} {iv}"


def _confidence(metrics: Mapping[str, MetricEstimate]) -> str:
    levels = {m.confidence for m in metrics.values() if m.confidence is not None}
    return f"{100 * levels.pop():g}%" if len(levels) == 1 else "CI"


def _comparison(rec: AuditRecord) -> BaselineComparison | None:
    """The record's comparison with a stored baseline (None when there is none)."""
    comp = rec.baseline_info
    return comp if comp is not None and comp.get("status") else None


def _baseline_cell(comp: BaselineComparison, metric: str) -> str:
    status = comp.get("status")
    if status in ("missing", "skipped", "updated", "not compared"):
        return str(status)
    d = (comp.get("metrics") or {}).get(metric)
    if not d:
        return ""
    delta = d.get("delta")
    text = f"{delta:+.4g}" if _finite(delta) else "n/a"
    return f"{text} REGRESSED" if d.get("regressed") else text
