"""A Markdown summary of a run, for pull-request comments and GitHub step summaries.

`render_markdown(entries, title=...)` reads the entries a run file holds (``--psa-json``; a whole
run document, its ``"results"`` list, or `AuditRecord`s) and writes one compact table per kind:

- density: augmentation, test, distance, γ, F(γ) with its interval, verdict;
- flatness: augmentation, test, metric, ERM and augmented means, improvement 1 − aug/ERM with its
  interval, verdict;
- robustness: augmentation, test, clean error, mCE, adversarial errors (each with Δ vs the
  baseline in pp), the budgets in their units (``vs_erm[mce] = +0.60pp ≤ +0.50pp: fail``), verdict;

each table under a line naming the data, presets and seeds; then the commands that reproduce the
failed audits (all audits when none failed). Plain text, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pytest_psa._records import AuditRecord, MetricEstimate
from pytest_psa._specs.budgets import format_value, verdict_line

_MARK = {"pass": "✅ pass", "fail": "❌ fail", "inconclusive": "⚠️ inconclusive", "measured": "measured"}
_GAMMAS = (0.05, 0.1, 0.02)  # the γ shown for a density audit without an assertion, first found


def render_markdown(entries: Any, *, title: str = "psa audit summary",
                    repro: Callable[[str], str] | None = None) -> str:
    """The Markdown summary of `entries` (a run document, its ``"results"``, or `AuditRecord`s).
    `repro(nodeid)` gives a test's reproduce command; without it the entry's own (robustness records
    keep one) or ``pytest <nodeid> --psa-seed=<seed>`` from the run's settings is used."""
    settings: Mapping[str, Any] = {}
    if isinstance(entries, Mapping):
        settings = entries.get("settings") or {}
        entries = entries.get("results") or []
    rows = [_as_row(e) for e in entries]
    lines = [f"## {title}", ""]
    if not rows:
        return "\n".join([*lines, "No psa audits ran.", ""])
    outcomes = [_overall(rec, gate) for rec, gate in rows]
    counts = {o: outcomes.count(o) for o in ("fail", "inconclusive", "pass", "measured") if o in outcomes}
    lines += [f"{len(rows)} audit{'s' if len(rows) != 1 else ''}: "
              + ", ".join(f"{n} {_MARK[o]}" for o, n in counts.items()), ""]
    for kind, render in (("density", _density), ("flatness", _flatness), ("robustness", _robustness)):
        recs = [(r, g) for r, g in rows if r.kind == kind]
        if recs:
            lines += [f"### {kind}", "", f"_{_context(recs)}_", "", *render(recs), ""]
    failed = [(r, g) for (r, g), o in zip(rows, outcomes) if o in ("fail", "inconclusive")]
    commands = list(dict.fromkeys(_repro(r, settings, repro) for r, _ in (failed or rows)))
    lines += ["### reproduce " + ("the failed audits" if failed else "these audits"), "", "```sh", *commands, "```", ""]
    return "\n".join(lines)


def _as_row(entry: Any) -> tuple[AuditRecord, str | None]:
    if isinstance(entry, AuditRecord):
        return entry, (entry.baseline_info or {}).get("status")
    if not isinstance(entry, Mapping):
        from pytest_psa.errors import PsaUsageError

        raise PsaUsageError(f"render_markdown takes run-file entries (dicts) or AuditRecords, not {type(entry).__name__}",
                            fix="pass json.load(open('run.json')) or its 'results' list")
    gate = entry.get("gate")
    return AuditRecord.from_record(entry), str(gate) if gate else None


def _overall(rec: AuditRecord, gate: str | None) -> str:
    outcomes = {str(v.get("outcome")) for v in rec.verdicts if isinstance(v, Mapping)}
    if gate == "regressed" or "fail" in outcomes:
        return "fail"
    if "inconclusive" in outcomes:
        return "inconclusive"
    return "pass" if outcomes else "measured"


def _verdict_cell(rec: AuditRecord, gate: str | None, own: str | None = None) -> str:
    cell = _MARK.get(own or _overall(rec, None), own or "measured")
    return cell + ("; ❌ regressed vs baseline" if gate == "regressed" else "")


def _context(recs: Sequence[tuple[AuditRecord, str | None]]) -> str:
    data = ", ".join(dict.fromkeys(r.data_description() for r, _ in recs))
    presets = ", ".join(dict.fromkeys(str(p) for r, _ in recs if (p := _preset(r))))
    seeds = ", ".join(dict.fromkeys(",".join(map(str, r.seeds())) or "-" for r, _ in recs))
    return f"data {data}" + (f"; preset {presets}" if presets else "") + f"; seeds {seeds}"


def _preset(rec: AuditRecord) -> Any:
    return rec.summary.get("preset") or (rec.summary.get("settings") or {}).get("preset")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return [line(header), "| " + " | ".join("---" for _ in header) + " |", *(line(r) for r in rows)]


def _test(rec: AuditRecord) -> str:
    return f"`{rec.nodeid.rsplit('::', 1)[-1]}`"


def _subject(rec: AuditRecord) -> str:
    return rec.subject if len(rec.subject) <= 40 else rec.subject.split("(", 1)[0] + "(…)"


def _num(x: Any, fmt: str) -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"


def _density(recs: Sequence[tuple[AuditRecord, str | None]]) -> list[str]:
    rows = []
    for rec, gate in recs:
        s = rec.density()
        distance = str(s.get("distance", "?"))
        if rec.verdicts:
            for v in rec.density_verdicts():
                rows.append((_subject(rec), _test(rec), distance, f"{v['gamma']:g}",
                             f"{_num(v['F_estimate'], '.4f')} [{_num(v['F_low'], '.3f')}, {_num(v['F_high'], '.3f')}]",
                             f"{_verdict_cell(rec, gate, v['outcome'])} (≥ {v['min_density']:g})"))
            continue
        ecdf = s.get("ecdf", [])
        row = next((e for g in _GAMMAS for e in ecdf if e["gamma"] == g), ecdf[0] if ecdf else None)
        if row is None:
            rows.append((_subject(rec), _test(rec), distance, "", "n/a", _verdict_cell(rec, gate)))
        else:
            rows.append((_subject(rec), _test(rec), distance, f"{row['gamma']:g}",
                         f"{_num(row['estimate'], '.4f')} [{_num(row['low'], '.3f')}, {_num(row['high'], '.3f')}]",
                         _verdict_cell(rec, gate)))
    return _table(("augmentation", "test", "distance", "γ", "F(γ) [interval]", "verdict"), rows)


def _flatness(recs: Sequence[tuple[AuditRecord, str | None]]) -> list[str]:
    rows = []
    for rec, gate in recs:
        verdicts = {v.get("metric"): v for v in rec.flatness_verdicts()}
        for metric, c in rec.flatness_comparisons().items():
            v = verdicts.get(metric)
            improvement = (f"{_signed_pct(c.get('mean'))} [{_signed_pct(c.get('low'))}, "
                           f"{_signed_pct(c.get('high'))}]")
            verdict = (f"{_verdict_cell(rec, gate, v['outcome'])} (> {_signed_pct(v['min_rel_improvement'])})"
                       if v else _verdict_cell(rec, gate, "measured"))
            rows.append((_subject(rec), _test(rec), metric, _num(_mean(c.get("erm")), ".4g"),
                         _num(_mean(c.get("augmented")), ".4g"), improvement, verdict))
    return _table(("augmentation", "test", "metric (lower = flatter)", "ERM", "augmented",
                   "improvement [interval]", "verdict"), rows)


def _robustness(recs: Sequence[tuple[AuditRecord, str | None]]) -> list[str]:
    rows = []
    for rec, gate in recs:
        metrics = rec.metrics()
        adv = [f"{n[len('adv_error('):-1]}: {_error(rec, n, m)}" for n, m in metrics.items()
               if n.startswith("adv_error(")]
        budgets = "; ".join(verdict_line(v) for v in rec.budget_verdicts() if isinstance(v, Mapping))
        rows.append((_subject(rec), _test(rec), _error(rec, "clean_error", metrics.get("clean_error")),
                     _error(rec, "mce", metrics.get("mce")), "; ".join(adv) or "-", budgets or "-",
                     _verdict_cell(rec, gate)))
    base = next((str(b) for r, _ in recs if (b := r.robustness().get("baseline"))), "baseline")
    return _table(("augmentation", "test", "clean error", "mCE", "adv error",
                   f"budgets (pp: audited − {base}; x: audited / {base})", "verdict"), rows)


def _error(rec: AuditRecord, name: str, m: MetricEstimate | None) -> str:
    if m is None or m.estimate is None:
        return "-"
    delta = rec.paired_delta(name)
    shown = format_value(m.estimate, "fraction")
    return shown + (f" (Δ {format_value(delta.estimate, 'pp')})" if delta is not None and delta.estimate is not None else "")


def _signed_pct(x: Any) -> str:
    return f"{100 * x:+.1f}%" if isinstance(x, (int, float)) and math.isfinite(x) else "n/a"


def _mean(values: Any) -> float:
    vals = [v for v in (values or []) if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def _repro(rec: AuditRecord, settings: Mapping[str, Any], repro: Callable[[str], str] | None) -> str:
    if repro is not None:
        return repro(rec.nodeid)
    own = rec.summary.get("repro")
    if isinstance(own, str) and own:
        return own
    import shlex

    args = ["pytest", rec.nodeid]
    if settings.get("seed") is not None:
        args.append(f"--psa-seed={settings['seed']}")
    if settings.get("data") not in (None, "synthetic"):
        args.append(f"--psa-data={settings['data']}")
    return shlex.join(args)


__all__ = ["render_markdown"]
