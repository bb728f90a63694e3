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
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pytest_psa._paths import default_cache_dir
from pytest_psa._storage import atomic_write_bytes, locked_all, sha256_hex
from pytest_psa.errors import CacheError, PsaUsageError, PsaWarning

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
        order; they are stored before returning. Returns the arrays and "hit"/"miss" per entry.
        """
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


def _arrays_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


__all__ = ["KINDS", "EvaluationStore", "code_version", "model_checksum"]
