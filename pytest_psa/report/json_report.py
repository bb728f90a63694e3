"""``--psa-json PATH`` and ``psa audit --json PATH``: a session's audit records as one psa run file.

The file is the same versioned format as the stored baselines (report/run_files.py, docs/baselines.md):
``{"schema": 1, "format": "pytest-psa run", "key": {...}, "machine_info", "commit_info", "settings",
"results": [entry, ...]}`` with one entry per audit record, built by the baseline code's
`make_entry` (nodeid, index, kind, augmentation, identity, seeds, metrics, verdicts, summary). So
``psa compare`` reads it, and ``psa report`` prints its tables and draws its figures. Two fields
are added: ``source`` ("pytest", "psa audit") and, when a key differs between records, ``keys``.
No torch import unless a record was measured (torch is loaded then anyway).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pytest_psa._records import AuditRecord
from pytest_psa.report.run_files import atomic_write_json, json_safe


def entries(records: Iterable[AuditRecord]) -> list[dict[str, Any]]:
    """One stored entry per record; ``index`` counts the audits of the same test (0, 1, ...)."""
    from pytest_psa.report.entries import make_entry

    seen: dict[str, int] = {}
    out = []
    for rec in records:
        info = rec.baseline_info or {}
        index = info.get("index", seen.get(rec.nodeid, 0))
        seen[rec.nodeid] = seen.get(rec.nodeid, 0) + 1
        out.append(make_entry(rec, int(index), list(info.get("compare_fail", []))))
    return out


def record_key(record: AuditRecord, device: str = "auto") -> dict[str, Any]:
    """The comparability key of a record: the one the baseline gate computed, else from the summary."""
    from pytest_psa.report.entries import key_for

    key = (record.baseline_info or {}).get("key")
    if isinstance(key, Mapping):
        return dict(key)
    return key_for(record.summary, device)


def run_document(records: Iterable[AuditRecord], *, settings: Any = None, source: str = "pytest",
                 root: str | os.PathLike[str] = ".", extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run file content for `records` (see the module docstring)."""
    import dataclasses

    from pytest_psa.report import run_files as storage

    recs = list(records)
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        settings = dataclasses.asdict(settings)
    settings = dict(settings or {})
    keys = [record_key(r, str(settings.get("device") or "auto")) for r in recs]
    key = keys[0] if keys else record_key_empty()
    doc = storage.run_document(key=key, machine=storage.machine_info(key), commit=storage.commit_info(Path(root)),
                               settings=settings, results=entries(recs))
    doc["source"] = source
    distinct = {storage.key_id(k): k for k in keys}
    if len(distinct) > 1:  # compare uses doc["key"]; say plainly that some records were measured elsewhere
        doc["keys"] = list(distinct.values())
    if extra:
        doc.update(json_safe(dict(extra)))
    return doc


def record_key_empty() -> dict[str, Any]:
    from pytest_psa.report.run_files import comparability_key

    return comparability_key("cpu", False)


def write_json(path: str | os.PathLike[str], document: Mapping[str, Any]) -> Path:
    """Write `document` atomically as strict JSON (parent folders created); returns the path."""
    out = Path(path)
    atomic_write_json(out, dict(document))
    return out


def load_records(path: str | os.PathLike[str]) -> list[AuditRecord]:
    """The audit records of a run file (for tables and figures of a saved run)."""
    from pytest_psa.report.run_files import load_run

    return [AuditRecord.from_record(e) for e in load_run(Path(path))["results"]]
