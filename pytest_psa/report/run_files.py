"""Stored psa runs: a versioned JSON file per run, one folder per comparability key.

Layout (like pytest-benchmark's ``.benchmarks/<machine>/NNNN_NAME.json``)::

    .psa/                                   --psa-storage / psa_storage (default: <rootdir>/.psa)
      .gitignore                            ignores the lock and temp files only
      Linux-x86_64-torch2.14.1-tv0.29.1-cpu-nondet/
        0001_main.json                      --psa-save=main
        0002_1a2b3c4d.json                  --psa-autosave (commit; -dirty with local changes)

Writes are atomic (a temp file in the same folder, then ``os.replace``) and serialized by a file
lock, so a reader never sees half a file and two sessions never take the same number (both from
`pytest_psa._storage`). Stdlib and filelock only: no torch at import.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pytest_psa._storage import atomic_write_json as atomic_write_json  # re-exported: report code imports them here
from pytest_psa._storage import json_safe as json_safe
from pytest_psa._storage import locked
from pytest_psa.errors import CacheError, PsaUsageError
from pytest_psa.report.environment import (  # re-exported: the storage's public names
    autosave_name as autosave_name,
    commit_info as commit_info,
    comparability_key as comparability_key,
    key_id as key_id,
    machine_info as machine_info,
)

SCHEMA_VERSION = 1
FORMAT = "pytest-psa run"
DEFAULT_STORAGE = ".psa"
RUN_FILE = re.compile(r"^(?P<number>\d{4,})_(?P<name>[A-Za-z0-9._+-]+)\.json$")
NAME = re.compile(r"^[A-Za-z0-9._+-]+$")
_FIX_CORRUPT = ("delete the file (or restore it from version control) and record the baseline again with "
                "--psa-baseline-update")


def check_name(name: str) -> str:
    """A run name usable in a file name (letters, digits, ``. _ + -``)."""
    if not NAME.match(name or ""):
        raise PsaUsageError(f"run name {name!r} cannot be used in a file name",
                            fix="use letters, digits and . _ + - only, e.g. --psa-save=main")
    return name


def load_run(path: Path | str) -> dict[str, Any]:
    """Read and validate one run file; a damaged or foreign file is a CacheError naming it and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PsaUsageError(f"psa run file {path} does not exist",
                            fix="pass an existing file, or an id listed under the storage folder") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CacheError(f"cannot read psa run file {path}: {exc}", fix=_FIX_CORRUPT) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CacheError(f"psa run file {path} is not valid JSON ({exc.msg} at line {exc.lineno}, "
                         f"column {exc.colno}); it may have been cut off or edited by hand",
                         fix=_FIX_CORRUPT) from None
    if not isinstance(doc, dict) or "schema" not in doc or doc.get("format") != FORMAT:
        raise CacheError(f"{path} is not a pytest-psa run file (no schema/format header)",
                         observed=sorted(doc)[:8] if isinstance(doc, dict) else type(doc).__name__,
                         fix="move files that psa did not write out of the storage folder")
    if doc["schema"] != SCHEMA_VERSION:
        newer = isinstance(doc["schema"], int) and doc["schema"] > SCHEMA_VERSION
        raise CacheError(f"psa run file {path} has schema {doc['schema']!r}; this pytest-psa reads schema "
                         f"{SCHEMA_VERSION}", fix="upgrade pytest-psa" if newer else _FIX_CORRUPT)
    results = doc.get("results")
    bad = not isinstance(results, list) or not isinstance(doc.get("key"), dict) or any(
        not isinstance(e, dict) or not isinstance(e.get("nodeid"), str) or not isinstance(e.get("metrics"), dict)
        for e in results)
    if bad:
        raise CacheError(f"psa run file {path} is damaged: 'key' must be an object and every entry of 'results' "
                         f"needs a 'nodeid' and a 'metrics' object", fix=_FIX_CORRUPT)
    return doc


# -- the storage folder --------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredRun:
    """One run file and its content."""

    path: Path
    number: int
    name: str
    doc: dict[str, Any] = field(repr=False)
    _entries: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def id(self) -> str:
        """``0003_main``: what ``--psa-compare=`` accepts."""
        return self.path.stem

    @property
    def key(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self.doc.get("key", {}))  # load_run checks that 'key' is an object

    def entry(self, nodeid: str, index: int) -> dict[str, Any] | None:
        if not self._entries and self.doc.get("results"):
            for e in self.doc["results"]:
                self._entries[(e["nodeid"], int(e.get("index", 0)))] = e
        return self._entries.get((nodeid, index))

    def summary(self) -> dict[str, Any]:
        """Number, name, creation time and commit, for messages and the AuditRecord."""
        commit = self.doc.get("commit_info") or {}
        return {"id": self.id, "number": self.number, "name": self.name, "created": self.doc.get("created"),
                "commit": commit.get("id"), "branch": commit.get("branch"), "dirty": commit.get("dirty")}


class Storage:
    """A storage folder: ``<root>/<key id>/NNNN_NAME.json``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._runs: dict[str, list[StoredRun]] | None = None

    def folder(self, kid: str) -> Path:
        return self.root / kid

    def scan(self) -> dict[str, list[StoredRun]]:
        """Read and validate every run file (oldest first per folder); a bad file raises CacheError."""
        if self._runs is None:
            runs: dict[str, list[StoredRun]] = {}
            if self.root.is_dir():
                for sub in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                    found = []
                    for f in sub.iterdir():
                        m = RUN_FILE.match(f.name)
                        if m and f.is_file():
                            found.append(StoredRun(f, int(m["number"]), m["name"], load_run(f)))
                    if found:
                        runs[sub.name] = sorted(found, key=lambda r: r.number)
            self._runs = runs
        return self._runs

    def runs(self, kid: str) -> list[StoredRun]:
        return self.scan().get(kid, [])

    def find(self, run_id: str) -> list[StoredRun]:
        """Every stored run that `run_id` names, newest first: ``3``/``0003``, ``0003_main``, ``main``
        (the newest run of that name), ``KEYDIR/0003``, or a path to a .json file."""
        run_id = run_id.strip()
        as_path = Path(run_id)
        if run_id.endswith(".json") and as_path.is_file():
            return [StoredRun(as_path, _number_of(as_path), _name_of(as_path), load_run(as_path))]
        folder, _, ident = run_id.rpartition("/")
        matches = []
        for kid, runs in self.scan().items():
            if folder and kid != folder:
                continue
            if ident.isdigit():
                hits = [r for r in runs if r.number == int(ident)]
            else:
                hits = [r for r in runs if r.id == ident] or [r for r in runs if r.name == ident][-1:]
            matches += hits
        return sorted(matches, key=lambda r: r.number, reverse=True)

    def next_number(self, kid: str) -> int:
        numbers = [r.number for r in self.runs(kid)]
        folder = self.folder(kid)
        if folder.is_dir():  # files written after the scan (another session) count too
            numbers += [int(m["number"]) for f in folder.iterdir() if (m := RUN_FILE.match(f.name))]
        return max(numbers, default=0) + 1

    def planned_path(self, kid: str, name: str) -> Path:
        return self.folder(kid) / f"{self.next_number(kid):04d}_{check_name(name)}.json"

    def _lock(self) -> Any:
        self.root.mkdir(parents=True, exist_ok=True)
        ignore = self.root / ".gitignore"
        if not ignore.exists():  # baselines may be committed; the lock and temp files must not be
            ignore.write_text("# written by pytest-psa: run files are meant to be kept\n.lock\n*/.tmp-*\n")
        return locked(self.root / ".lock", timeout=60)

    def write_new(self, kid: str, name: str, doc: dict[str, Any], *, planned: Path | None = None) -> Path:
        """Write `doc` as a new run file in folder `kid`; `planned` is used unless taken meanwhile."""
        with self._lock():
            path = planned if planned is not None and not planned.exists() else self.planned_path(kid, name)
            doc = {**doc, "number": _number_of(path), "name": _name_of(path)}
            atomic_write_json(path, doc)
        self._runs = None
        return path

    def merge(self, path: Path, entries: Iterable[Mapping[str, Any]]) -> Path:
        """Replace (or add) the given entries in an existing run file, keeping every other entry."""
        with self._lock():
            doc = load_run(path)
            new = {(e["nodeid"], int(e.get("index", 0))): dict(e) for e in entries}
            kept = [e for e in doc["results"] if (e["nodeid"], int(e.get("index", 0))) not in new]
            doc["results"] = kept + list(new.values())
            doc["updated"] = now_iso()
            atomic_write_json(path, doc)
        self._runs = None
        return path


def _number_of(path: Path) -> int:
    m = RUN_FILE.match(path.name)
    return int(m["number"]) if m else 0


def _name_of(path: Path) -> str:
    m = RUN_FILE.match(path.name)
    return m["name"] if m else path.stem


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_document(*, key: Mapping[str, Any], machine: Mapping[str, Any], commit: Mapping[str, Any],
                 settings: Mapping[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """A run file's content (``number`` and ``name`` are filled in when it is written)."""
    return {"schema": SCHEMA_VERSION, "format": FORMAT, "number": None, "name": None, "created": now_iso(),
            "key": dict(key), "key_id": key_id(key), "machine_info": dict(machine), "commit_info": dict(commit),
            "settings": json_safe(settings), "argv": sys.argv[1:], "results": results}
