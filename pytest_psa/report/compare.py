"""Compare psa results with a baseline, metric by metric, judged with their intervals.

Stdlib only (no torch, no numpy): the pytest plugin, the ``psa compare`` command and any CI
script use the same rules.

The fail-spec grammar (``mce:2%``, ``adv_error:0.01``) is in `pytest_psa._fail_spec`.

The interval rule: a metric has regressed when its current interval lies entirely on the worse
side of the baseline estimate, further than the allowance. For a lower-is-better metric that
is ``current.low - baseline.estimate > allowance``; for a higher-is-better one it is
``baseline.estimate - current.high > allowance``. Without an interval the estimate stands in for
the bound. An identical rerun (current == baseline) can never fail, since its favourable bound
is on the good side of its own estimate, and noise that stays within the measurement's own
interval is never called a regression.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pytest_psa._fail_spec import FailSpec, parse_fail_spec, parse_fail_specs, specs_for
from pytest_psa._records import BaselineComparison, MetricDeltaRecord, RunEntry

__all__ = [
    "Comparison",
    "FailSpec",
    "MetricDelta",
    "RecordComparison",
    "compare_entries",
    "compare_runs",
    "parse_fail_spec",
    "parse_fail_specs",
]

# -- one metric ------------------------------------------------------------------------------
def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


@dataclass(frozen=True)
class MetricDelta:
    """One metric in the current run next to the same metric in the baseline, and the verdict."""

    name: str
    better: str  # "lower" | "higher"
    unit: str
    current: dict[str, float | None]  # estimate, low, high
    baseline: dict[str, float | None]
    specs: tuple[FailSpec, ...] = ()
    worse_by: float | None = None  # favourable end of the current interval beyond the baseline estimate
    violated: FailSpec | None = None
    note: str = ""

    @property
    def regressed(self) -> bool:
        return self.violated is not None

    @property
    def delta(self) -> float | None:
        """Current estimate minus baseline estimate (None when either is missing)."""
        c, b = self.current.get("estimate"), self.baseline.get("estimate")
        return None if c is None or b is None else c - b

    @property
    def threshold(self) -> float | None:
        """The allowance of the violated spec, else the tightest one applied."""
        spec = self.violated or (min(self.specs, key=lambda s: s.allowance(self.baseline["estimate"] or 0.0))
                                 if self.specs else None)
        b = self.baseline.get("estimate")
        return None if spec is None or b is None else spec.allowance(b)

    def describe(self) -> str:
        """``F(0.05): now 0.3100 [0.2500, 0.3700], baseline 0.9800 [0.9500, 1.0000]``."""
        return f"{self.name}: now {_interval_text(self.current)}, baseline {_interval_text(self.baseline)}"

    def explain(self) -> str:
        """Why this metric regressed (or not), in one line."""
        if self.note:
            return self.note
        b = self.baseline.get("estimate")
        if self.worse_by is None or b is None:
            return "not compared"
        side = "lower end" if self.better == "lower" else "upper end"
        direction = "above" if self.better == "lower" else "below"
        end = self.current.get("low" if self.better == "lower" else "high")
        end = self.current.get("estimate") if end is None else end
        head = (f"{self.better} is better; the current interval's {side} {end:.4g} is "
                f"{abs(self.worse_by):.4g} {direction if self.worse_by > 0 else 'on the good side of'} "
                f"the baseline {b:.4g}")
        if self.violated is not None:
            return f"{head}; allowed {self.violated.allowance(b):.4g} (--psa-compare-fail={self.violated})"
        if self.specs:
            return f"{head}; within the allowance {self.threshold:.4g}"
        return f"{head}; not gated (no --psa-compare-fail spec matches)"

    def to_dict(self) -> MetricDeltaRecord:
        return {"name": self.name, "better": self.better, "unit": self.unit, "current": self.current,
                "baseline": self.baseline, "delta": self.delta, "worse_by": self.worse_by,
                "specs": [str(s) for s in self.specs], "threshold": self.threshold,
                "violated": None if self.violated is None else str(self.violated),
                "regressed": self.regressed, "note": self.note}


def _interval_text(m: Mapping[str, float | None]) -> str:
    e, lo, hi = m.get("estimate"), m.get("low"), m.get("high")
    if e is None:
        return "n/a"
    if lo is None and hi is None:
        return f"{e:.4f}"
    lo_t = "-inf" if lo is None else f"{lo:.4f}"
    hi_t = "inf" if hi is None else f"{hi:.4f}"
    return f"{e:.4f} [{lo_t}, {hi_t}]"


def judge_metric(name: str, current: Mapping[str, Any], baseline: Mapping[str, Any],
                 specs: Sequence[FailSpec]) -> MetricDelta:
    """Apply the interval rule to one metric (see the module docstring)."""
    cur = {k: _num(current.get(k)) for k in ("estimate", "low", "high")}
    base = {k: _num(baseline.get(k)) for k in ("estimate", "low", "high")}
    better = str(current.get("better") or baseline.get("better") or "")
    unit = str(current.get("unit") or baseline.get("unit") or "")
    if better not in ("lower", "higher"):
        return MetricDelta(name, better, unit, cur, base, tuple(specs),
                           note=f"not compared: the metric declares no direction (better={better!r})")
    b, c = base["estimate"], cur["estimate"]
    if b is None or c is None:
        which = "baseline" if b is None else "current"
        return MetricDelta(name, better, unit, cur, base, tuple(specs),
                           note=f"not compared: the {which} value is not a finite number")
    if better == "lower":
        worse_by = (cur["low"] if cur["low"] is not None else c) - b
    else:
        worse_by = b - (cur["high"] if cur["high"] is not None else c)
    violated = [s for s in specs if worse_by > s.allowance(b)]
    tightest = min(violated, key=lambda s: s.allowance(b)) if violated else None
    return MetricDelta(name, better, unit, cur, base, tuple(specs), worse_by, tightest)


# -- one audit record ------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordComparison:
    """One audit of one test against its baseline entry.

    status: "pass" (compared, nothing regressed), "regressed", "missing" (no baseline entry),
    "skipped" (not comparable: `reason` says why), "updated" (the baseline was rewritten with the
    current values), "not compared" (only saving).
    """

    nodeid: str
    index: int
    kind: str
    status: str
    reason: str = ""
    deltas: tuple[MetricDelta, ...] = ()
    baseline_file: str | None = None
    baseline_run: dict[str, Any] = field(default_factory=dict)  # number, name, created, commit
    augmentation: tuple[str | None, str | None] = (None, None)  # (baseline, current)

    @property
    def regressions(self) -> tuple[MetricDelta, ...]:
        return tuple(d for d in self.deltas if d.regressed)

    def to_dict(self) -> BaselineComparison:
        return {"status": self.status, "reason": self.reason, "nodeid": self.nodeid, "index": self.index,
                "kind": self.kind, "baseline_file": self.baseline_file, "baseline_run": self.baseline_run,
                "augmentation": {"baseline": self.augmentation[0], "current": self.augmentation[1]},
                "metrics": {d.name: d.to_dict() for d in self.deltas}}


def entry_key(entry: Mapping[str, Any]) -> tuple[str, int]:
    return str(entry["nodeid"]), int(entry.get("index", 0))


def key_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``["torch 2.13.0 -> 2.14.1", ...]`` for every field of the comparability key that differs."""
    return [f"{k} {stored.get(k)!r} -> {current.get(k)!r}" for k in sorted(set(stored) | set(current))
            if stored.get(k) != current.get(k)]


def compare_entries(baseline: RunEntry | Mapping[str, Any] | None, current: RunEntry | Mapping[str, Any],
                    specs: Sequence[FailSpec] = (), *, baseline_key: Mapping[str, Any] | None = None,
                    current_key: Mapping[str, Any] | None = None, baseline_file: str | None = None,
                    baseline_run: Mapping[str, Any] | None = None, ignore_key: bool = False) -> RecordComparison:
    """Compare one stored result entry (see docs/baselines.md) with the current one.

    `specs` are the global fail specs; the current entry's own ``compare_fail`` (from the test's
    marker) replaces them for the metrics it matches. A different comparability key or per-test
    identity gives status "skipped" with the reason; no baseline entry gives "missing".
    """
    cur = cast(RunEntry, current)  # entries read from files are JSON: read them as the stored form
    base = cast("RunEntry | None", baseline)
    nodeid, index = entry_key(cur)
    aug = (None if base is None else base.get("augmentation"), cur.get("augmentation"))

    def result(status: str, reason: str = "", deltas: tuple[MetricDelta, ...] = ()) -> RecordComparison:
        return RecordComparison(nodeid=nodeid, index=index, kind=str(cur.get("kind", "?")), status=status,
                                reason=reason, deltas=deltas, baseline_file=baseline_file,
                                baseline_run=dict(baseline_run or {}), augmentation=aug)

    if base is None:
        return result("missing", "no baseline entry for this test")
    if not ignore_key and baseline_key is not None and current_key is not None:
        diff = key_differences(baseline_key, current_key)
        if diff:
            return result("skipped", "comparability key differs: " + ", ".join(diff))
    diff = key_differences(base.get("identity", {}), cur.get("identity", {}))
    if diff:
        return result("skipped", "the test measured something else: " + ", ".join(diff))
    own = parse_fail_specs(cur.get("compare_fail") or ())
    cur_metrics, base_metrics = cur.get("metrics") or {}, base.get("metrics") or {}
    deltas = []
    for name, metric in cur_metrics.items():
        if name not in base_metrics:
            deltas.append(MetricDelta(name, str(metric.get("better", "")), str(metric.get("unit", "")),
                                      {k: _num(metric.get(k)) for k in ("estimate", "low", "high")},
                                      {"estimate": None, "low": None, "high": None},
                                      note="new metric: not in the baseline"))
            continue
        deltas.append(judge_metric(name, metric, base_metrics[name], specs_for(name, specs, own)))
    return result("regressed" if any(d.regressed for d in deltas) else "pass", deltas=tuple(deltas))


# -- two runs (the `psa compare` command) ------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """A whole run (B, the candidate) against a baseline run (A).

    exit_code: 1 when anything regressed, 2 when nothing could be compared (every test skipped or
    without a baseline: a gate that compared nothing must not look green), else 0.
    """

    baseline: str
    current: str
    records: tuple[RecordComparison, ...]
    specs: tuple[FailSpec, ...]
    unmatched_specs: tuple[FailSpec, ...] = ()
    gone: tuple[tuple[str, int], ...] = ()  # in the baseline, not in the current run

    @property
    def regressions(self) -> tuple[RecordComparison, ...]:
        return tuple(r for r in self.records if r.status == "regressed")

    @property
    def compared(self) -> tuple[RecordComparison, ...]:
        return tuple(r for r in self.records if r.status in ("pass", "regressed"))

    @property
    def exit_code(self) -> int:
        if self.regressions:
            return 1
        return 0 if self.compared else 2

    def render(self) -> str:
        """A plain-text report: one line per metric, then the verdict."""
        lines = [f"psa compare: baseline {self.baseline}", f"             current  {self.current}",
                 f"  fail specs: {' '.join(map(str, self.specs)) or '(none: deltas are shown, nothing fails)'}", ""]
        for r in self.records:
            head = f"{r.nodeid}" + (f" [audit {r.index + 1}]" if r.index else "") + f" ({r.kind})"
            if r.status in ("missing", "skipped"):
                lines.append(f"{head}: {r.status.upper()}: {r.reason}")
                continue
            if r.augmentation[0] != r.augmentation[1]:
                head += f": augmentation {r.augmentation[0]} -> {r.augmentation[1]}"
            lines.append(f"{head}: {r.status.upper()}")
            for d in r.deltas:
                mark = "REGRESSED" if d.regressed else "ok"
                delta = "" if d.delta is None else f" (Δ {d.delta:+.4g})"
                lines.append(f"  {mark:9} {d.describe()}{delta}")
                if d.regressed or d.note:
                    lines.append(f"            {d.explain()}")
        for nodeid, index in self.gone:
            lines.append(f"{nodeid}" + (f" [audit {index + 1}]" if index else "") + ": only in the baseline")
        for s in self.unmatched_specs:
            lines.append(f"warning: --psa-compare-fail={s} matched no metric (known names are in summary['metrics'])")
        n_reg = len(self.regressions)
        lines += ["", f"{len(self.compared)} compared, {n_reg} regressed, "
                      f"{sum(r.status == 'skipped' for r in self.records)} skipped, "
                      f"{sum(r.status == 'missing' for r in self.records)} without a baseline -> exit {self.exit_code}"]
        if self.exit_code == 2:
            lines.append("nothing was compared: a gate that compares nothing does not pass")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "current": self.current, "exit_code": self.exit_code,
                "specs": [str(s) for s in self.specs], "unmatched_specs": [str(s) for s in self.unmatched_specs],
                "records": [r.to_dict() for r in self.records],
                "gone": [{"nodeid": n, "index": i} for n, i in self.gone]}


def _load(run: str | Path | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(run, Mapping):
        return str(run.get("name") or "<run dict>"), dict(run)
    from pytest_psa.report.run_files import load_run

    return str(run), load_run(Path(run))


def compare_runs(a: str | Path | Mapping[str, Any], b: str | Path | Mapping[str, Any],
                 fail: Iterable[str | FailSpec] | str | None = None, *, ignore_key: bool = False) -> Comparison:
    """Compare run B (the candidate) with run A (the baseline), both psa run files or their dicts.

    `fail` holds compare-fail specs (``["mce:2%", "F(0.05):0.02"]``); each test's own marker
    specs, stored in B, replace them for the metrics they match. Run files with different
    comparability keys are not compared (every test is "skipped" with the reason) unless
    `ignore_key`. ``Comparison.exit_code`` is what a CI step should exit with.
    """
    specs = parse_fail_specs(fail)
    a_label, a_doc = _load(a)
    b_label, b_doc = _load(b)
    base_entries = {entry_key(e): e for e in a_doc.get("results", [])}
    a_run = {k: a_doc.get(k) for k in ("number", "name", "created")}
    a_run["commit"] = a_doc.get("commit_info", {})
    records = []
    for entry in b_doc.get("results", []):
        records.append(compare_entries(base_entries.get(entry_key(entry)), entry, specs,
                                       baseline_key=a_doc.get("key"), current_key=b_doc.get("key"),
                                       baseline_file=a_label, baseline_run=a_run, ignore_key=ignore_key))
    current_keys = {entry_key(e) for e in b_doc.get("results", [])}
    gone = tuple(k for k in base_entries if k not in current_keys)
    names = {d.name for r in records for d in r.deltas}
    unmatched = tuple(s for s in specs if not any(s.matches(n) for n in names))
    return Comparison(a_label, b_label, tuple(records), specs, unmatched, gone)
