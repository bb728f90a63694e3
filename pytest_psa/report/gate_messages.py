"""The gate's words: the failure message on a test item, the missing-baseline message and the
"psa: baselines" terminal section (docs/baselines.md shows each)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from pytest_psa._records import AuditRecord, BaselineComparison
from pytest_psa.report.compare import FailSpec, RecordComparison


def regression_message(rc: RecordComparison, summary: Mapping[str, Any], key: Mapping[str, Any],
                       specs: Sequence[FailSpec], repro: Callable[[list[str]], str]) -> str:
    """What regressed, by how much against which allowance, the baseline file and commit, the seed
    and device, and the commands that reproduce it and that accept the new values."""
    record = AuditRecord(rc.nodeid, dict(summary), kind=rc.kind)  # the typed view of the audit's summary
    regs = rc.regressions
    first = record.metrics().get(regs[0].name)
    conf = None if first is None else first.confidence
    level = f" ({100 * conf:.4g}% intervals)" if conf is not None else ""
    lines = [f"psa baseline regression: {rc.nodeid} ({rc.kind} audit"
             f"{f' {rc.index + 1}' if rc.index else ''}: {rc.augmentation[1]})"]
    for d in regs:
        lines += [f"  {d.describe()}{level}", f"    {d.explain()}"]
    others = [d for d in rc.deltas if not d.regressed and d.specs]
    if others:
        lines.append("  within their allowance: " + ", ".join(
            f"{d.name} {d.current['estimate']:.4g} (baseline {d.baseline['estimate']:.4g})" for d in others
            if d.current.get("estimate") is not None and d.baseline.get("estimate") is not None))
    if rc.augmentation[0] != rc.augmentation[1]:
        lines.append(f"  augmentation: {rc.augmentation[0]} -> {rc.augmentation[1]}")
    run = rc.baseline_run
    commit = run.get("commit")
    commit_text = (f"commit {commit[:10]}" + (f" on {run['branch']}" if run.get("branch") else "")
                   + (" (dirty)" if run.get("dirty") else "")) if commit else "no commit recorded"
    lines.append(f"  baseline: {rc.baseline_file} (run {run.get('id')}, {commit_text}, {run.get('created')})")
    lines.append(f"  measured with: seed={','.join(map(str, record.seeds()))}, device={key['device']}, "
                 f"torch {key['torch']}, deterministic={key['deterministic']}")
    lines.append("  rule: a metric regressed when its whole current interval is worse than the baseline "
                 "estimate by more than the allowance (docs/baselines.md)")
    violated = sorted({str(d.violated) for d in regs})
    compare = [f"--psa-compare={run.get('id')}", *(f"--psa-compare-fail={s}" for s in violated
                                                     if s in {str(x) for x in specs})]
    lines.append(f"  reproduce: {repro(compare)}")
    lines.append(f"  accept the new values: {repro([compare[0], '--psa-baseline-update'])}")
    return "\n".join(lines)


def missing_message(rc: RecordComparison, summary: Mapping[str, Any], where: str, write_to: Path | None) -> str:
    record = AuditRecord(rc.nodeid, dict(summary), kind=rc.kind)
    values = ", ".join(f"{name} = {m.estimate:.4g}" for name, m in record.metrics().items() if m.estimate is not None)
    return "\n".join([
        f"psa: no baseline for {rc.nodeid} ({rc.kind} audit{f' {rc.index + 1}' if rc.index else ''}) in {where}",
        f"  baseline written to {rel(write_to)} (when this session ends): rerun to compare against it, "
        f"or pass --psa-baseline-update to record baselines without failing",
        f"  recorded: {values or '(no metrics)'}",
    ])


def summary_lines(infos: Sequence[tuple[str, Mapping[str, Any]]], *, compared_with: str | None,
                  specs: Sequence[FailSpec], written: Iterable[tuple[Path, str]]) -> list[tuple[str, dict[str, bool]]]:
    """The "psa: baselines" section as (line, terminal markup) pairs; `infos` = (nodeid, record.baseline),
    each a `BaselineComparison`."""
    comparisons = [(nodeid, cast(BaselineComparison, info)) for nodeid, info in infos]
    out: list[tuple[str, dict[str, bool]]] = []
    if compared_with is not None:
        out.append((f"compared with {compared_with}: "
                    f"{count_words(i['status'] for _, i in comparisons) or 'no psa audits'}", {}))
    for nodeid, info in comparisons:
        label = nodeid + (f" [audit {info['index'] + 1}]" if info.get("index") else "")
        status = info["status"]
        if status == "regressed":
            regs = [m for m in (info.get("metrics") or {}).values() if m.get("regressed")]
            out.append((f"  REGRESSED {label}: " + "; ".join(
                f"{m['name']} {_fmt(m['current']['estimate'])} vs baseline {_fmt(m['baseline']['estimate'])} "
                f"(allowed {_fmt(m['threshold'])})" for m in regs), {"red": True}))
        elif status == "skipped":
            out.append((f"  SKIPPED comparison {label}: {info['reason']} (rerun with --psa-baseline-update "
                        f"to record a baseline that matches)", {"yellow": True}))
        elif status == "missing":
            out.append((f"  NO BASELINE {label}: written to {info.get('written_to')}", {"red": True}))
    names = {n for _, i in comparisons for n in (i.get("metrics") or {})}
    for spec in specs:
        if names and not any(spec.matches(n) for n in names):
            out.append((f"  warning: --psa-compare-fail={spec} matched no metric (measured: "
                        f"{', '.join(sorted(names)[:12])})", {"yellow": True}))
    for path, what in written:
        out.append((f"psa: wrote {rel(path)} ({what})", {"bold": True}))
    return out


def rel(path: Path | str | None) -> str:
    if path is None:
        return "?"
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def count_words(statuses: Any) -> str:
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    words = {"missing": "new baseline", "updated": "updated", "pass": "passed", "regressed": "regressed",
             "skipped": "skipped", "not compared": "saved only"}
    return ", ".join(f"{n} {words.get(s, s)}" for s, n in counts.items())


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else "n/a"
