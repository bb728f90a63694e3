"""On-disk cache of per-model robustness evaluations: evaluate a model once, reuse it everywhere.

An entry is one ``<root>/robustness/<key>.npz`` (numpy arrays, loaded with ``allow_pickle=False``:
nothing executes on load) holding the per-image outputs of one evaluation (predictions under each
corruption, attack outcomes, perturbation predictions) and a JSON ``meta`` string with the key
material. The key is the SHA-256 of everything that determines those outputs: the model's weight
checksum, the evaluated images' fingerprint, the corruption / attack / perturbation settings and
seed, the source of the code that produces them, library versions and the device kind.

Writes go to a temporary file in the same folder, then `os.replace` (atomic), so a reader sees a
complete entry or none. A `filelock.FileLock` per key makes concurrent pytest-xdist workers compute
an entry once; the others wait, then load it. Locks are always taken in key order, so workers that
need several entries cannot deadlock (both from `pytest_psa._storage`). An unreadable entry raises
`CacheError` naming the file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pytest_psa._paths import default_cache_dir
from pytest_psa._storage import atomic_write_bytes, locked_all, sha256_hex
from pytest_psa.errors import CacheError

FORMAT = 1
_DIR = "robustness"


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

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.dir = self.root / _DIR

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
        except Exception as exc:
            raise CacheError(f"the robustness cache entry {path} is damaged and cannot be read",
                             observed=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                             fix=f"delete {path} (it is recomputed on the next run), or clear {self.dir}") from None
        return {**arrays, "meta": meta}  # type: ignore[dict-item]

    def get_or_compute(self, entries: Sequence[tuple[str, dict[str, Any]]],
                       compute: Callable[[list[int]], list[dict[str, np.ndarray]]]) -> tuple[list[dict[str, Any]], list[str]]:
        """Load each (key, material) entry, computing the missing ones together with ``compute(positions)``.

        `compute` gets the positions (in `entries`) still missing and returns their arrays in that
        order; they are stored before returning. Returns the arrays and "hit"/"miss" per entry.
        """
        out: list[dict[str, Any] | None] = [self.load(k) for k, _ in entries]
        status = ["hit" if o is not None else "miss" for o in out]
        missing = [i for i, o in enumerate(out) if o is None]
        if not missing:
            return out, status  # type: ignore[return-value]
        self.dir.mkdir(parents=True, exist_ok=True)
        # taken in sorted (= key) order: no deadlock between workers
        with locked_all(self.dir / f"{entries[i][0]}.lock" for i in missing):
            for i in missing:  # another worker may have stored some meanwhile
                out[i] = self.load(entries[i][0])
                status[i] = "hit" if out[i] is not None else "miss"
            todo = [i for i in missing if out[i] is None]
            if todo:
                for i, arrays in zip(todo, compute(todo)):
                    key, material = entries[i]
                    self._store(key, material, arrays)
                    out[i] = {**arrays, "meta": {"key": key, "material": material}}
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

    def _store(self, key: str, material: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        meta = json.dumps({"key": key, "format": FORMAT, "material": material}, sort_keys=True, default=str)
        # allow_pickle named (as `load` reads it): so no entry of **arrays can land on the flag
        np.savez(buf, allow_pickle=False, meta=np.array(meta), **arrays)
        path = self.path(key)
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            raise CacheError(f"cannot write the robustness cache entry {path}", observed=f"{type(exc).__name__}: {exc}",
                             fix=f"make {self.dir} writable, or place the cache elsewhere (PSA_CACHE_DIR)") from exc


__all__ = ["EvaluationStore", "code_version", "model_checksum"]
