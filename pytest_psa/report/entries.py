"""The stored form of an audit record (one entry of a run file's "results") and the parts of a
summary that say what was measured, on what device (docs/baselines.md, "The JSON format")."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from pytest_psa._records import AuditRecord, RunEntry
from pytest_psa.report.run_files import comparability_key, json_safe

# fields of a summary that say *what* was measured (beside data and settings): a baseline
# that differs in any of them measured something else, and is not compared
_IDENTITY_FIELDS = ("seed", "seeds", "n_images", "draws", "distance", "exclude_identity", "preset")
_DATA_FIELDS = ("name", "split", "n", "fingerprint")


def identity_of(kind: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    """What must agree between a baseline and the current audit of a test, beside the key.

    A result may declare it as ``summary["identity"]``; otherwise: the seeds, sample sizes,
    distance, preset, the data set's name, split, size and content fingerprint, and the
    measurement settings (alpha excluded: it changes interval widths, not estimates). The
    augmentation is *not* part of it: a changed augmentation is what the gate is for.
    """
    if isinstance(summary.get("identity"), Mapping):
        return _safe({"kind": kind, **summary["identity"]})
    ident: dict[str, Any] = {"kind": kind}
    for k in _IDENTITY_FIELDS:
        if k in summary:
            ident[k] = summary[k]
    data = summary.get("data") or {}
    for k in _DATA_FIELDS:
        if isinstance(data, Mapping) and k in data:
            ident[f"data.{k}"] = data[k]
    for k, v in (summary.get("settings") or {}).items():
        if k != "alpha":
            ident[f"settings.{k}"] = v
    return _safe(ident)


def _device_kind(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    return "cuda" if name.startswith("cuda") else name.split(":")[0]


def record_device(summary: Mapping[str, Any]) -> str | None:
    """The device the audit's numbers came from, as a kind ("cpu", "cuda"), when the summary says."""
    env = summary.get("environment") or {}
    training = summary.get("training") or {}
    candidates = [env.get("device") if isinstance(env, Mapping) else None, summary.get("device"),
                  (summary.get("settings") or {}).get("device")]
    if isinstance(training, Mapping):
        candidates += [r.get("device") for rs in training.values() if isinstance(rs, list) for r in rs
                       if isinstance(r, Mapping)]
    return next((k for k in map(_device_kind, candidates) if k), None)


def key_for(summary: Mapping[str, Any], device: str | None = "auto") -> dict[str, Any]:
    """The comparability key of an audit: the device its summary names, else `device` (the marker's or
    --psa-device; "auto" means CUDA when available). Torch is asked only if already loaded."""
    torch = sys.modules.get("torch")
    kind = record_device(summary)
    if kind is None:
        kind = _device_kind(device) if device not in (None, "auto") else (
            "cuda" if torch is not None and torch.cuda.is_available() else "cpu")
    return comparability_key(str(kind), bool(torch is not None and torch.are_deterministic_algorithms_enabled()))


def make_entry(record: AuditRecord, index: int, compare_fail: list[str]) -> dict[str, Any]:
    """The stored form of one AuditRecord: a `RunEntry` (docs/baselines.md, "results")."""
    info = record.baseline_info or {}
    entry: RunEntry = {
        "nodeid": record.nodeid, "index": index, "kind": record.kind,
        "augmentation": record.summary.get("augmentation"),  # as stored: None in entries of older files
        "identity": identity_of(record.kind, record.summary), "seeds": record.seeds(),
        "metrics": record.metric_records(), "verdicts": record.verdicts, "compare_fail": list(compare_fail),
        "gate": info.get("status"), "summary": record.summary,
    }
    return _safe(entry)


def _safe(d: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json_safe(d)  # strict JSON: non-finite floats as null
    return out
