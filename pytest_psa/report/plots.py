"""Figures of a run (``--psa-plots DIR``, ``psa audit --plots DIR``, pytest-html extras).

- ``ecdf_<distance>.png``: the eCDF F_N(γ) of every audited augmentation on one axis (the seed
  paper's Figure 2), full range on the left, the proximal region with the audited γ values and
  their 95 % intervals on the right;
- ``flatness.png``: one panel per flatness metric, ERM and augmented means over seeds (range
  whiskers, seeds as dots), the relative improvement with its t-interval under each augmentation;
- ``corruptions.png``: clean error, error per corruption (mean over severities) and mCE for ERM
  and each augmentation with 95 % intervals, from robustness records.

matplotlib is imported on first use and only through its object API (`Figure` + the Agg canvas),
so no pyplot state or interactive backend is touched.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_psa._records import AuditRecord, ComparisonRecord, MetricEstimate, MetricRecord
from pytest_psa.report.terminal import short_name

PROXIMAL_GAMMA = 0.25  # right panel of the eCDF figure: where the PSA thresholds live


def require_matplotlib() -> Any:
    """The matplotlib module, or a clear error naming the extra to install."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError as exc:
        from pytest_psa.errors import PsaUsageError

        raise PsaUsageError(f"plots need matplotlib, which is not installed ({exc})",
                            fix="pip install pytest-psa[plots]  (or drop --psa-plots / --plots)") from None
    return matplotlib


def _figure(width: float, height: float) -> Any:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


_CONTAINERS = ("Compose", "Sequential", "RandomChoice", "RandomOrder", "RandomApply", "OneOf", "SomeOf")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(")


def display_name(augmentation: str) -> str:
    """A short label from an augmentation's name: ``AugMix(severity=3, ...)`` -> ``AugMix``; a
    container by its members, ``Compose( RandomCrop(...) RandomHorizontalFlip(p=0.5) )`` ->
    ``RandomCrop+RandomHorizontalFlip`` (``RandomChoice`` -> ``RandomChoice[A|B]``); a name a user
    gave stays as it is. Names are clipped at 80 characters, so members lost to the clip show as ``…``."""
    head = short_name(augmentation)
    if head.rsplit(".", 1)[-1] not in _CONTAINERS:
        return head
    depth, members, closed = 0, [], False
    i = augmentation.index("(")
    member_depth: int | None = None
    while i < len(augmentation):
        ch = augmentation[i]
        m = _CALL.match(augmentation, i) if depth >= 1 and (ch.isalpha() or ch == "_") else None
        if m and (i == 0 or not (augmentation[i - 1].isalnum() or augmentation[i - 1] in "_.")):
            if member_depth is None:
                member_depth = depth
            if depth == member_depth:
                members.append(m.group(1).rsplit(".", 1)[-1])
            i = m.end()
            depth += 1
            continue
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth == 0:
                closed = True
                break
        i += 1
    if not members:
        return head
    names = [*members, *(() if closed else ("…",))]
    if head.rsplit(".", 1)[-1] in ("Compose", "Sequential"):
        return "+".join(names)
    return f"{head}[{'|'.join(names)}]"


class ColorMap:
    """One colour per augmentation, the same in every figure: colours are handed out in the order
    names are first seen (`figures` registers a run's records in order before drawing). Grey is kept
    for the baseline (ERM)."""

    PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
               "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
    BASELINE = "#9e9e9e"

    def __init__(self) -> None:
        self._colors: dict[str, str] = {}

    def color(self, name: str) -> str:
        if name not in self._colors:
            self._colors[name] = self.PALETTE[len(self._colors) % len(self.PALETTE)]
        return self._colors[name]

    def register(self, names: Iterable[str]) -> None:
        for name in names:
            self.color(name)


RUN_COLORS = ColorMap()  # this process's mapping: the run's figures and its pytest-html rows agree


def _labels(records: Sequence[AuditRecord]) -> list[str]:
    names = [r.subject for r in records]
    short = [display_name(n) for n in names]
    out = []
    for n, s in zip(names, short):
        out.append(s if short.count(s) == 1 or names.count(n) == len(names) else (n if len(n) <= 40 else n[:37] + "..."))
    return out


def context_text(records: Sequence[AuditRecord]) -> str:
    """``data cifar10/test[500 of 10000] | preset smoke | seeds 0, 1, 2``: what every figure's title names."""
    data = ", ".join(dict.fromkeys(r.data_description() for r in records)) or "?"
    presets = ", ".join(dict.fromkeys(str(p) for r in records
                                      if (p := r.summary.get("preset") or (r.summary.get("settings") or {}).get("preset"))))
    seeds = "; ".join(dict.fromkeys(", ".join(map(str, r.seeds())) or "-" for r in records))
    word = "seed" if all(len(r.seeds()) == 1 for r in records) and ";" not in seeds and "," not in seeds else "seeds"
    return f"data {data}" + (f" | preset {presets}" if presets else "") + f" | {word} {seeds}"


# -- eCDF -----------------------------------------------------------------------------------------
_OUTCOME_COLORS = {"pass": "#2ca02c", "fail": "#d62728", "inconclusive": "#ff7f0e"}


def ecdf_figure(records: Sequence[AuditRecord], colors: ColorMap | None = None) -> Any:
    """F_N(γ) of the density records (one distance) on one axis; needs their ``ecdf_curve``. Each PSA
    verdict is drawn where it was decided: a dotted line at its γ, a bar at its minimum density and
    the outcome (pass / fail / inconclusive) beside it, in the outcome's colour."""
    fig = _figure(10.0, 4.4)
    full, near = fig.subplots(1, 2)
    distance = records[0].density().get("distance", "?") if records else "?"
    palette = colors or RUN_COLORS
    palette.register(r.subject for r in records)
    for rec, label in zip(records, _labels(records)):
        color = palette.color(rec.subject)
        s = rec.density()
        curve = s.get("ecdf_curve")
        gammas, F = (list(curve["gamma"]), list(curve["F"])) if curve else ([], [])
        if gammas:
            xs, ys = [0.0, *gammas], [0.0, *F]  # the eCDF is 0 below the smallest distance
            for ax in (full, near):
                ax.plot(xs, ys, drawstyle="steps-post", color=color, lw=1.6,
                        label=f"{label} (N×K={s.get('n_images')}×{s.get('draws')})" if ax is full else None)
        points = [e for e in s.get("ecdf", []) if e.get("gamma", math.inf) <= PROXIMAL_GAMMA]
        if points:
            g = [e["gamma"] for e in points]
            est = [e["estimate"] for e in points]
            err = [[max(0.0, e["estimate"] - (e["low"] if e["low"] is not None else e["estimate"])) for e in points],
                   [max(0.0, (e["high"] if e["high"] is not None else e["estimate"]) - e["estimate"]) for e in points]]
            near.errorbar(g, est, yerr=err, fmt="o", ms=3.5, color=color, capsize=3, lw=1)
        for v in rec.density_verdicts():
            mark = _OUTCOME_COLORS.get(str(v["outcome"]), "black")
            near.axvline(v["gamma"], color="gray", ls=":", lw=1)
            near.plot([v["gamma"]], [v["min_density"]], marker="_", ms=16, mew=2.5, color=mark)
            near.annotate(f"{label}: {v['outcome']}\nF({v['gamma']:g}) ≥ {v['min_density']:g}",
                          (v["gamma"], v["min_density"]), xytext=(6, 4), textcoords="offset points",
                          fontsize=7, color=mark)
    fig.suptitle(f"proximal density, distance {distance} | {context_text(records)}", fontsize=9)
    full.set(xlabel=f"distance γ ({distance})", ylabel="F_N(γ) = share of draws with d(x, A(x)) ≤ γ",
             title="eCDF of augmentation distances", ylim=(-0.02, 1.02), xlim=(0, None))
    near.set(xlabel=f"distance γ ({distance})", title=f"proximal region γ ≤ {PROXIMAL_GAMMA:g}", xlim=(0, PROXIMAL_GAMMA))
    near.plot([], [], "o", color="gray", ms=3.5, label="audited γ, 95% CI")
    if any(rec.verdicts for rec in records):
        near.plot([], [], "_", color="black", ms=14, mew=2, label="PSA threshold (γ, min density): "
                  "green pass, red fail, orange inconclusive")
    near.legend(fontsize=8, loc="upper left")
    near.set_ylim(bottom=-0.01)
    for ax in (full, near):
        ax.grid(alpha=0.3)
    if records:
        full.legend(fontsize=8, loc="lower right")
    return fig


# -- flatness -------------------------------------------------------------------------------------
def flatness_figure(records: Sequence[AuditRecord], colors: ColorMap | None = None) -> Any:
    """ERM vs augmented flatness per metric (lower is flatter): bars are means over seeds, whiskers
    the range over seeds, dots the seeds; under each augmentation the relative improvement
    1 − aug/ERM with its (1 − 2α) t-interval over seeds (the statistic that is judged). When the
    augmentations share their ERM models (same seeds, preset, data) ERM is drawn once; otherwise
    each augmentation has its own ERM bar, and lines join the two models of each seed."""
    metrics: list[str] = []
    for rec in records:
        metrics += [m for m in rec.flatness_comparisons() if m not in metrics]
    labels = _labels(records)
    palette = colors or RUN_COLORS
    palette.register(r.subject for r in records)
    color_of = {label: palette.color(rec.subject) for rec, label in zip(records, labels)}
    panels: list[tuple[str, list[tuple[str, ComparisonRecord]], bool]] = []
    for metric in metrics:
        found = [(label, rec.flatness_comparisons().get(metric)) for rec, label in zip(records, labels)]
        comps = [(label, c) for label, c in found if c is not None]
        shared = len({tuple(c["erm"]) for _, c in comps}) == 1
        panels.append((metric, comps, shared))
    width = max(1.2 + (1.5 if shared else 2.6) * len(comps) for _, comps, shared in panels) if panels else 4.0
    fig = _figure(max(4.2, width) * max(1, len(metrics)) ** 0.85, 4.0)
    axes = fig.subplots(1, max(1, len(metrics)), squeeze=False)[0]
    for ax, (metric, comps, shared) in zip(axes, panels):
        ticks: list[float] = []
        names: list[str] = []

        def bar(x: float, vals: list[float], color: str) -> None:
            mean = sum(vals) / len(vals)
            ax.bar(x, mean, width=0.8, color=color, alpha=0.85, yerr=[[mean - min(vals)], [max(vals) - mean]],
                   capsize=4)
            ax.plot([x] * len(vals), vals, "o", color="black", ms=3)

        if shared:
            bar(0, [v for v in comps[0][1]["erm"] if v is not None], ColorMap.BASELINE)
            ticks.append(0)
            names.append("ERM")
        for i, (label, c) in enumerate(comps):
            pairs = [(e, a) for e, a in zip(c["erm"], c["augmented"]) if e is not None and a is not None]
            x = i + 1 if shared else 3 * i + 1
            if not shared:
                bar(x - 1, [e for e, _ in pairs], ColorMap.BASELINE)
                for e, a in pairs:
                    ax.plot([x - 1, x], [e, a], "-", color="black", lw=0.6)
                ticks.append(x - 1)
                names.append("ERM")
            bar(x, [a for _, a in pairs], color_of[label])
            ticks.append(x)
            names.append(f"{label}\n{_improvement_text(c)}")
        ax.set_xticks(ticks, names, fontsize=7.5)
        ax.set_title(f"{metric} (lower = flatter)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(bottom=0)
    alphas = {c.get("alpha") for _, comps, _ in panels for _, c in comps if isinstance(c.get("alpha"), float)}
    level = f"{100 * (1 - 2 * alphas.pop()):.0f}% " if len(alphas) == 1 else ""
    fig.suptitle(f"flatness over ERM | {context_text(records)}\nmean over seeds (whiskers: range, dots: seeds); "
                 f"under each augmentation the improvement 1 − aug/ERM and its {level}t-interval", fontsize=9)
    return fig


def _improvement_text(c: ComparisonRecord) -> str:
    imp: float | None = c.get("mean")  # older files may lack a key: read with .get
    low, high, alpha = c.get("low"), c.get("high"), c.get("alpha")
    if not isinstance(imp, (int, float)):
        return ""
    text = f"{100 * imp:+.1f}%"
    if low is not None and high is not None and alpha is not None and all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in (low, high, alpha)):
        text += f"\n[{100 * low:+.0f}, {100 * high:+.0f}]%"
    return text


# -- corruptions ----------------------------------------------------------------------------------
def corruption_figure(records: Sequence[AuditRecord], colors: ColorMap | None = None) -> Any:
    """Error per corruption (mean over severities) for ERM and each augmentation, with intervals."""
    palette = colors or RUN_COLORS
    palette.register(r.subject for r in records)
    series: list[tuple[str, dict[str, MetricEstimate], str]] = []
    erm_done = False
    for rec, label in zip(records, _labels(records)):
        per = corruption_errors(rec)
        if per.get("erm") and not erm_done:
            series.append(("ERM", per["erm"], ColorMap.BASELINE))
            erm_done = True
        if per.get("model"):
            series.append((label, per["model"], palette.color(rec.subject)))
    names: list[str] = []
    for _, table, _ in series:
        names += [n for n in table if n not in names]
    fig = _figure(max(7.0, 0.55 * len(names) * max(1, len(series)) ** 0.5 + 2), 4.0)
    ax = fig.subplots()
    _grouped_bars(ax, [(label, [table.get(n) for n in names], color) for label, table, color in series])
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], rotation=40, ha="right", fontsize=8)
    ax.set(ylabel="error (%)", title="error: clean, per corruption (mean over severities), mCE; 95% CI\n"
           + context_text(records))
    ax.grid(axis="y", alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    return fig


def corruption_errors(rec: AuditRecord) -> dict[str, dict[str, MetricEstimate]]:
    """{"model": {name: estimate}, "erm": {...}} from a robustness record: "clean", each corruption's
    CE (mean over severities) and "mCE"; the baseline's from ``erm_corruption_errors``, else (older
    files) the mean of its per-severity errors, without an interval."""
    s = rec.robustness()
    table = s.get("corruption_errors")
    if not isinstance(table, Mapping) or not table:
        return {}
    metrics = rec.metrics()
    out: dict[str, dict[str, MetricEstimate]] = {}
    erm: Mapping[str, MetricRecord] | None = s.get("erm_corruption_errors")
    older = s.get("baseline_errors")
    if not isinstance(erm, Mapping) and isinstance(older, Mapping):
        erm = {c: _mean_error(sev) for c, sev in older.items() if sev}
    for target, per, prefix in (("model", table, ""), ("erm", erm, "baseline")):
        if not isinstance(per, Mapping) or not per:
            continue
        rows: dict[str, MetricEstimate] = {}
        value = metrics.get if not prefix else rec.baseline_metric
        clean, mce = value("clean_error"), value("mce")
        if clean is not None:
            rows["clean"] = clean
        rows.update({str(k): MetricEstimate.from_record(v) for k, v in per.items() if isinstance(v, Mapping)})
        if mce is not None:
            rows["mCE"] = mce
        out[target] = rows
    return out


def _mean_error(per_severity: Mapping[str, MetricRecord]) -> MetricRecord:
    values = [e["estimate"] for e in per_severity.values()]
    mean = math.nan if None in values else sum(v for v in values if v is not None) / len(values)  # nan: not drawn
    return {"estimate": mean, "low": None, "high": None, "better": "lower", "unit": "error", "confidence": None,
            "n": None}


def _grouped_bars(ax: Any, series: Sequence[tuple[str, Sequence[MetricEstimate | None], str]]) -> None:
    """One bar group per x position, one bar per series (label, estimates in x order, colour), in percent,
    with each estimate's interval as error bars; a missing estimate leaves its slot empty."""
    width = 0.8 / max(1, len(series))
    for k, (label, estimates, color) in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for i, e in enumerate(estimates):
            if e is None or e.estimate is None:
                continue
            xs.append(i + (k - (len(series) - 1) / 2) * width)
            ys.append(100 * e.estimate)
            lo.append(100 * max(0.0, e.estimate - (e.low if e.low is not None else e.estimate)))
            hi.append(100 * max(0.0, (e.high if e.high is not None else e.estimate) - e.estimate))
        ax.bar(xs, ys, width=width, color=color, label=label, yerr=[lo, hi], capsize=2, alpha=0.9)


def domain_figure(records: Sequence[AuditRecord], colors: ColorMap | None = None) -> Any:
    """Held-out accuracy per held-out domain and averaged, ERM and each augmentation, with intervals
    (the leave-one-domain-out audit, results/domain.py)."""
    palette = colors or RUN_COLORS
    palette.register(r.subject for r in records)
    series: list[tuple[str, str, AuditRecord, str]] = []  # (label, metric prefix, record, colour)
    for i, (rec, label) in enumerate(zip(records, _labels(records))):
        if i == 0:
            series.append((str(rec.summary.get("baseline") or "erm").upper(), "erm_accuracy_heldout", rec,
                           ColorMap.BASELINE))
        series.append((label, "accuracy_heldout", rec, palette.color(rec.subject)))
    names: list[str] = []
    for rec in records:
        names += [str(d) for d in rec.summary.get("domains") or [] if str(d) not in names]
    names.append("average")
    fig = _figure(max(6.0, 1.1 * len(names) * max(1, len(series)) ** 0.5 + 2), 4.0)
    ax = fig.subplots()
    bars = []
    for label, prefix, rec, color in series:
        metrics = rec.metrics()
        bars.append((label, [metrics.get(f"{prefix}_avg" if n == "average" else f"{prefix}[{n}]") for n in names],
                     color))
    _grouped_bars(ax, bars)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set(ylabel="held-out accuracy (%)", title="leave one domain out: accuracy on the held-out domain; 95% CI\n"
           + context_text(records))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# -- writing ----------------------------------------------------------------------------------------
def figures(records: Iterable[AuditRecord], colors: ColorMap | None = None) -> dict[str, Any]:
    """{stable file name: Figure} for the records: one eCDF per distance, flatness, corruptions."""
    recs = list(records)
    palette = colors or RUN_COLORS
    palette.register(r.subject for r in recs)  # first seen in the run, so each figure agrees
    out: dict[str, Any] = {}
    density = [r for r in recs if r.kind == "density" and _has_curve(r)]
    for distance in dict.fromkeys(_distance(r) for r in density):
        out[f"ecdf_{_slug(distance)}.png"] = ecdf_figure([r for r in density if _distance(r) == distance], palette)
    flat = [r for r in recs if r.kind == "flatness" and r.flatness_comparisons()]
    if flat:
        out["flatness.png"] = flatness_figure(flat, palette)
    robust = [r for r in recs if r.kind == "robustness" and corruption_errors(r)]
    if robust:
        out["corruptions.png"] = corruption_figure(robust, palette)
    domain = [r for r in recs if r.kind == "domain" and r.metrics()]
    if domain:
        out["domains.png"] = domain_figure(domain, palette)
    return out


def write_plots(records: Iterable[AuditRecord], directory: str | Path) -> list[Path]:
    """Write the run's figures as PNG files into `directory` (created); returns their paths."""
    require_matplotlib()
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures(records).items():
        path = folder / name
        fig.savefig(path)
        written.append(path)
    return written


def png_base64(fig: Any) -> str:
    """A figure as base64 PNG (for pytest-html extras)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _has_curve(rec: AuditRecord) -> bool:
    curve = rec.density().get("ecdf_curve")
    return bool(curve and curve.get("gamma"))


def _distance(rec: AuditRecord) -> str:
    return str(rec.density().get("distance", "unknown"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "unknown"
