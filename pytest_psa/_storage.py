"""The persistence helpers under every store of the package: atomic writes, locks, checksums, JSON.

Three stores are built on them: the trained-model cache (`pytest_psa.train.model_cache`), the
robustness evaluation store (`pytest_psa.audits.evaluation_cache`) and the stored psa runs
(`pytest_psa.report.run_files`).

- `atomic_write_bytes` writes a temporary file in the target's folder, fsyncs it and moves it in
  place with `os.replace`, so a reader sees the old file or the whole new one, never a part; the
  temporary file is removed when anything fails (including KeyboardInterrupt).
- `atomic_write_json` does the same for strict JSON (`json_safe` first: no NaN, no numpy types).
- `locked` / `locked_all` / `acquire` take `filelock.FileLock` s; while waiting they can call
  ``on_wait()`` once per poll (the model cache checks the psa time budget there). `locked_all`
  takes several locks in sorted order, so processes that need overlapping sets cannot deadlock.
- `sha256_hex` is the checksum the stores record.

Stdlib and filelock only (filelock imported when a lock is taken): no torch at import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from filelock import FileLock


def sha256_hex(blob: bytes) -> str:
    """The SHA-256 of `blob` as 64 hex digits."""
    return hashlib.sha256(blob).hexdigest()


# -- JSON ------------------------------------------------------------------------------------
def json_safe(obj: Any) -> Any:
    """Plain JSON: non-finite floats become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:  # numpy scalar
        return json_safe(obj.item())
    if hasattr(obj, "tolist"):
        return json_safe(obj.tolist())
    return str(obj)


# -- atomic writes -----------------------------------------------------------------------------
def atomic_write_bytes(path: str | os.PathLike[str], blob: bytes, *, temp_prefix: str | None = None,
                       temp_suffix: str = ".tmp", mode: int | None = None) -> None:
    """Write `blob` to `path` so that readers see the old file or the whole new one, never a part.

    The temporary file lies in the same folder (``.<name>.<random>.tmp`` unless `temp_prefix` /
    `temp_suffix` say otherwise) and is removed on any failure. `mode`: the file's permissions
    (default: mkstemp's 0600).
    """
    path = Path(path)
    prefix = f".{path.name}." if temp_prefix is None else temp_prefix
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=temp_suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, doc: Any) -> None:
    """Write `doc` as strict JSON (`json_safe`, indent 2, a final newline), atomically, readable by all.

    The folder is created when missing; the temporary file is ``.tmp-<random>.json`` (the psa run
    storage's ``.gitignore`` ignores ``*/.tmp-*``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(doc), indent=2, sort_keys=False, allow_nan=False) + "\n"
    # 0644: mkstemp creates 0600; run files are meant to be shared and committed
    atomic_write_bytes(path, text.encode("utf-8"), temp_prefix=".tmp-", temp_suffix=".json", mode=0o644)


# -- locks -----------------------------------------------------------------------------------
def acquire(lock: FileLock, *, on_wait: Callable[[], object] | None = None, timeout: float | None = None,
            poll_s: float = 1.0) -> None:
    """Acquire `lock`, calling ``on_wait()`` every `poll_s` seconds while another process holds it.

    `on_wait` may raise to give up waiting (the lock is then not held). `timeout`: give up with
    `filelock.Timeout` after that many seconds (None: wait as long as it takes).
    """
    from filelock import Timeout

    if on_wait is None:
        lock.acquire(timeout=-1 if timeout is None else timeout)
        return
    waited = 0.0
    while True:
        step = poll_s if timeout is None else max(0.0, min(poll_s, timeout - waited))
        try:
            lock.acquire(timeout=step)
            return
        except Timeout:
            waited += step
            if timeout is not None and waited >= timeout:
                raise
            on_wait()


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], *, on_wait: Callable[[], object] | None = None,
           timeout: float | None = None, poll_s: float = 1.0) -> Iterator[FileLock]:
    """Hold the `filelock.FileLock` at `path` for the ``with`` block (see `acquire` for the rest)."""
    from filelock import FileLock

    lock = FileLock(str(path))
    acquire(lock, on_wait=on_wait, timeout=timeout, poll_s=poll_s)
    try:
        yield lock
    finally:
        lock.release()


@contextlib.contextmanager
def locked_all(paths: Iterable[str | os.PathLike[str]], *, on_wait: Callable[[], object] | None = None,
               timeout: float | None = None) -> Iterator[None]:
    """Hold the locks at all `paths` (each once), taken in sorted order: no deadlock between processes
    that need overlapping sets; released in reverse order."""
    with contextlib.ExitStack() as stack:
        for path in sorted({str(p) for p in paths}):
            stack.enter_context(locked(path, on_wait=on_wait, timeout=timeout))
        yield


__all__ = ["acquire", "atomic_write_bytes", "atomic_write_json", "json_safe", "locked", "locked_all",
           "sha256_hex"]
