"""On-disk cache of per-model evaluations: evaluate (or measure) a model once, reuse it everywhere.

Two kinds of entries live here, each in its own folder: robustness evaluations
(``<root>/robustness``) and flatness measurements (``<root>/flatness``, written by
`pytest_psa.audits.measurement_cache`). An entry is one ``<root>/<kind>/<key>.npz`` (numpy arrays, loaded with ``allow_pickle=False``:
nothing executes on load) holding the per-image outputs of one evaluation (predictions under each
corruption, attack outcomes, perturbation predictions) and a JSON ``meta`` string with the key
material. The key is the SHA-256 of everything that determines those outputs: the model's weight
checksum, the evaluated images' fingerprint, the corruption / attack / perturbation settings and
seed, the source of the code that produces them, library versions and the device kind.

Writes go to a temporary file in the same folder, then `os.replace` (atomic), so a reader sees a
complete entry or none. A `filelock.FileLock` per key makes concurrent pytest-xdist workers compute
an entry once; the others wait, then load it. Locks are always taken in key order, so workers that
need several entries cannot deadlock (both from `pytest_psa._storage`). Each entry records the
SHA-256 of its arrays. `load` raises `CacheError` naming an unreadable entry (a truncated file, a bad
checksum, another key's file); `get_or_compute` heals it instead, as the model cache does: a
`PsaWarning` names the file, the entry is deleted and computed again.

With a remote executor (``--psa-executor=ray``), `compute_remote` computes an audit's missing
entries of every model as executor units submitted at once (each unit one model's evaluation or
measurement, its model shipped as a `ModelRef`), checks the arrays each returns against the SHA-256
the worker computed, and stores them here on the driver; the audit's `get_or_compute` then reads
them, reporting those entries as misses (`fresh`), since they were computed by this run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_psa._paths import default_cache_dir
from pytest_psa._storage import atomic_write_bytes, locked_all, sha256_hex
from pytest_psa.errors import CacheError, PsaError, PsaUsageError, PsaWarning
from pytest_psa.execution import Executor, Unit

FORMAT = 1
_DIR = "robustness"
KINDS = ("robustness", "flatness")  # one folder each under the cache root


def model_checksum(model: Any) -> str:
    """SHA-256 over a module's class, parameter and buffer names, dtypes, shapes and values."""
    import torch

    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, t in model.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@functools.cache
def code_version(*modules: str) -> str:
    """SHA-256 of the source files of the named packages/modules: a changed kernel is a new key."""
    import importlib

    h = hashlib.sha256()
    for name in sorted(modules):
        mod = importlib.import_module(name)
        path = Path(mod.__file__ or "")
        files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
        for f in files:
            h.update(str(f.relative_to(path.parent)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


class EvaluationStore:
    """A folder of evaluation entries; see the module docstring."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, kind: str = _DIR) -> None:
        if kind not in KINDS:
            raise PsaUsageError(f"unknown evaluation-store kind {kind!r}", fix=f"use one of {KINDS}")
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.kind = kind
        self.dir = self.root / kind
        self.hits = 0  # entries served from disk by get_or_compute
        self.computed = 0  # entries computed (and stored) by get_or_compute
        self.healed = 0  # damaged entries deleted and computed again
        # keys `compute_remote` stored in this run: the next `get_or_compute` reads them but reports a miss
        self.fresh: set[str] = set()

    def __repr__(self) -> str:
        return f"EvaluationStore({str(self.dir)!r})"

    @staticmethod
    def key(material: dict[str, Any]) -> str:
        return sha256_hex(json.dumps({"format": FORMAT, **material}, sort_keys=True, default=str).encode())

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The stored arrays for `key` (plus ``meta`` as a dict), None when absent; CacheError when damaged."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(str(arrays.pop("meta")))
            if meta.get("key") != key:
                raise ValueError(f"the entry says it is {str(meta.get('key'))[:16]}..., not {key[:16]}...")
            # entries written before the checksum was recorded have none (the zip's CRC still guards them)
            if "sha256" in meta and meta["sha256"] != _arrays_checksum(arrays):
                raise ValueError("the arrays do not match the checksum recorded with them")
        except Exception as exc:
            raise CacheError(f"the {self.kind} cache entry {path} is damaged and cannot be read",
                             observed=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                             fix=f"delete {path} (it is recomputed on the next run), or clear {self.dir}") from None
        return {**arrays, "meta": meta}  # type: ignore[dict-item]

    def get_or_compute(self, entries: Sequence[tuple[str, dict[str, Any]]],
                       compute: Callable[[list[int]], list[dict[str, np.ndarray]]]) -> tuple[list[dict[str, Any]], list[str]]:
        """Load each (key, material) entry, computing the missing ones together with ``compute(positions)``.

        `compute` gets the positions (in `entries`) still missing and returns their arrays in that
        order; they are stored before returning. Returns the arrays and "hit"/"miss" per entry (an
        entry `compute_remote` computed for this run is a "miss", once).
        """
        out, status = self._get_or_compute(entries, compute)
        for i, (key, _) in enumerate(entries):
            if status[i] == "hit" and key in self.fresh:
                self.fresh.discard(key)
                status[i] = "miss"
                self.hits -= 1
        return out, status

    def compute_remote(self, groups: Sequence[tuple[Sequence[tuple[str, dict[str, Any]]], Callable[[list[int]], Unit]]],
                       executor: Executor, *, desc: str, progress: bool = False) -> int:
        """Compute the missing entries of every group at once with `executor`; returns how many were stored.

        A group is one model's ``(entries, unit_for)``: ``unit_for(positions)`` is the unit computing
        the entries at those positions, whose value is `packed` arrays in that order. The missing
        entries are locked (key order: no deadlock with a pytest-xdist worker asking for an
        overlapping set; one that asks for the same entry waits, then loads it), every unit is
        submitted together, and each result is checked against its checksums and stored atomically.
        Every good result is stored before the first failure is raised (`RemoteUnitError`).
        """
        missing = [[i for i, (k, _) in enumerate(entries) if self._load_or_heal(k) is None] for entries, _ in groups]
        keys = {groups[g][0][i][0] for g, todo in enumerate(missing) for i in todo}
        if not keys:
            return 0
        self.dir.mkdir(parents=True, exist_ok=True)
        stored = 0
        with locked_all(self.dir / f"{k}.lock" for k in keys):
            units: list[Unit] = []
            targets: list[list[tuple[str, dict[str, Any]]]] = []
            claimed: set[str] = set()
            for g, todo in enumerate(missing):
                entries, unit_for = groups[g]
                # stored meanwhile by another process, or claimed by another group (the same model twice)
                todo = [i for i in todo if entries[i][0] not in claimed and self._load_or_heal(entries[i][0]) is None]
                if todo:
                    claimed.update(entries[i][0] for i in todo)
                    units.append(unit_for(todo))
                    targets.append([entries[i] for i in todo])
            errors: list[PsaError] = []
            for outcome, target in zip(executor.run(units, desc=desc, progress=progress), targets):
                if outcome.error is not None:
                    errors.append(outcome.error)
                    continue
                value = outcome.value
                arrays_list = value["arrays"]
                if len(arrays_list) != len(target) or [_arrays_checksum(a) for a in arrays_list] != value["sha256"]:
                    errors.append(CacheError(f"the arrays {outcome.unit.describe()} sent back do not match the "
                                             f"checksums its worker computed; nothing of it was stored",
                                             observed=f"worker {outcome.worker}",
                                             fix="rerun (only the missing entries are computed); if it recurs, "
                                                 "check the cluster's object store"))
                    continue
                for (key, material), arrays in zip(target, arrays_list):
                    self._store(key, {**material, "executor": outcome.worker}, arrays)
                    self.fresh.add(key)
                    stored += 1
            self.computed += stored
        if errors:
            raise errors[0]
        return stored

    def _get_or_compute(self, entries: Sequence[tuple[str, dict[str, Any]]],
                        compute: Callable[[list[int]], list[dict[str, np.ndarray]]]) -> tuple[list[dict[str, Any]], list[str]]:
        out: list[dict[str, Any] | None] = [self._load_or_heal(k) for k, _ in entries]
        status = ["hit" if o is not None else "miss" for o in out]
        missing = [i for i, o in enumerate(out) if o is None]
        if not missing:
            self.hits += len(entries)
            return out, status  # type: ignore[return-value]
        self.dir.mkdir(parents=True, exist_ok=True)
        # taken in sorted (= key) order: no deadlock between workers
        with locked_all(self.dir / f"{entries[i][0]}.lock" for i in missing):
            for i in missing:  # another worker may have stored some meanwhile
                out[i] = self._load_or_heal(entries[i][0])
                status[i] = "hit" if out[i] is not None else "miss"
            todo = [i for i in missing if out[i] is None]
            if todo:
                for i, arrays in zip(todo, compute(todo)):
                    key, material = entries[i]
                    self._store(key, material, arrays)
                    out[i] = {**arrays, "meta": {"key": key, "material": material}}
            self.computed += len(todo)
        self.hits += len(entries) - sum(s == "miss" for s in status)
        return out, status  # type: ignore[return-value]

    def clear(self) -> int:
        """Delete every entry; returns how many were removed."""
        if not self.dir.is_dir():
            return 0
        n = 0
        for f in self.dir.iterdir():
            if f.is_file() and f.suffix in (".npz", ".lock", ".tmp"):
                n += f.suffix == ".npz"
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
        return n

    def _load_or_heal(self, key: str) -> dict[str, Any] | None:
        """`load`, but a damaged entry is reported (PsaWarning), deleted and treated as absent."""
        try:
            return self.load(key)
        except CacheError as exc:
            warnings.warn(PsaWarning(f"pytest-psa {self.kind} cache: {exc.problem}; it is deleted and computed "
                                     f"again ({exc.observed})"), stacklevel=4)
            with contextlib.suppress(FileNotFoundError):
                self.path(key).unlink()
            self.healed += 1
            return None

    def _store(self, key: str, material: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        meta = json.dumps({"key": key, "format": FORMAT, "material": material,
                           "sha256": _arrays_checksum(arrays)}, sort_keys=True, default=str)
        # allow_pickle named (as `load` reads it): so no entry of **arrays can land on the flag
        np.savez(buf, allow_pickle=False, meta=np.array(meta), **arrays)
        path = self.path(key)
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            raise CacheError(f"cannot write the {self.kind} cache entry {path}", observed=f"{type(exc).__name__}: {exc}",
                             fix=f"make {self.dir} writable, or place the cache elsewhere (PSA_CACHE_DIR)") from exc


def packed(arrays_list: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """A unit's value: its entries' arrays in order, each with its checksum (checked by `compute_remote`)."""
    return {"arrays": arrays_list, "sha256": [_arrays_checksum(a) for a in arrays_list]}


@dataclass(frozen=True)
class ModelRef:
    """A model as an executor unit ships it: the module on the CPU (pickled with its weights: no shared
    file system), the device kind its store keys name, and its `model_checksum`, which `build` checks
    on the worker, so a value stored under a key is one of those very weights."""

    module: Any
    checksum: str
    device: str
    threads: int = 1  # torch's intra-op threads on a CPU worker (float results can depend on it)

    @classmethod
    def of(cls, model: Any, checksum: str | None = None, *, device: str | None = None, threads: int = 1) -> ModelRef:
        """`model` to ship; `device`: the kind the store keys name (default: where the model is)."""
        import copy

        first = next((t for t in (*model.parameters(), *model.buffers())), None)
        here = first.device.type if first is not None else "cpu"
        module = model if here == "cpu" else copy.deepcopy(model).to("cpu")  # never move the caller's model
        return cls(module, checksum or model_checksum(model), device or here, threads)

    def build(self) -> Any:
        """The module on this worker's device of the planned kind (a GPU: cuda:0 of those it was given)."""
        import torch

        if self.device not in ("cpu", "cuda"):
            raise PsaUsageError(f"a {self.device} model cannot be evaluated on an executor's worker",
                                fix="use the local executor for it, or evaluate it on cpu or cuda")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise PsaUsageError("this worker has no GPU, but the model's evaluation was planned on one",
                                fix="ask the cluster for GPU workers, or evaluate on cpu")
        model = self.module.to(torch.device("cuda", 0)) if self.device == "cuda" else self.module
        here = model_checksum(model)
        if here != self.checksum:
            raise CacheError("the model rebuilt on the worker is not the one the driver keyed",
                             observed=f"checksum {here[:16]}... instead of {self.checksum[:16]}...",
                             fix="make the model pickle faithfully (its state_dict must round-trip)")
        return model

    @contextlib.contextmanager
    def threads_set(self) -> Iterator[None]:
        """Within: torch's intra-op threads as planned (CPU), restored afterwards (a worker runs many units)."""
        import torch

        old = torch.get_num_threads()
        if self.device == "cpu":
            torch.set_num_threads(max(1, int(self.threads)))
        try:
            yield
        finally:
            torch.set_num_threads(old)


def _arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


__all__ = ["KINDS", "EvaluationStore", "ModelRef", "code_version", "model_checksum", "packed"]
