"""`pytest_psa._storage`: the atomic writes, locks, checksum and JSON sanitiser under the model cache,
the robustness evaluation store and the psa run storage."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import filelock
import numpy as np
import pytest

from pytest_psa import _storage
from pytest_psa._storage import acquire, atomic_write_bytes, atomic_write_json, json_safe, locked, locked_all, sha256_hex


# -- atomic writes -----------------------------------------------------------------------------
def test_atomic_write_bytes_replaces_the_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "entry.bin"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["entry.bin"]


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_removes_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     failure: BaseException) -> None:
    path = tmp_path / "entry.bin"
    atomic_write_bytes(path, b"old")
    temps: list[str] = []

    def fail(src: str, dst: object) -> None:
        temps.append(src)
        raise failure

    monkeypatch.setattr(_storage.os, "replace", fail)
    with pytest.raises(type(failure)):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["entry.bin"]
    # the temporary file lay beside the target, named so that the caches' clear() finds it
    assert Path(temps[0]).parent == tmp_path and Path(temps[0]).name.startswith(".entry.bin.")
    assert temps[0].endswith(".tmp")


def test_a_write_that_cannot_serialize_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "x.bin", "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_json_is_strict_shared_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sub" / "0001_main.json"  # the folder is created
    temps: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: object) -> None:
        temps.append(Path(src).name)
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(_storage.os, "replace", spy)
    atomic_write_json(path, {"b": (1, float("nan")), "a": np.float32(0.5)})
    assert path.read_bytes() == b'{\n  "b": [\n    1,\n    null\n  ],\n  "a": 0.5\n}\n'  # key order kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert temps[0].startswith(".tmp-") and temps[0].endswith(".json")  # what the run storage's .gitignore ignores


# -- JSON and checksum -------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [
    (float("inf"), None),
    (float("-inf"), None),
    (float("nan"), None),
    (1.5, 1.5),
    (True, True),
    (None, None),
    ("text", "text"),
    ((1, (2, 3)), [1, [2, 3]]),
    ({1: {"x": float("nan")}}, {"1": {"x": None}}),
    (frozenset({4}), [4]),
    (np.float32(0.25), 0.25),
    (np.int64(7), 7),
    (np.float64("nan"), None),
    (np.arange(3).reshape(1, 3), [[0, 1, 2]]),
    (np.array([np.inf, 1.0]), [None, 1.0]),
    (Path("/a/b"), "/a/b"),
])
def test_json_safe(value: object, expected: object) -> None:
    out = json_safe(value)
    assert out == expected and type(out) is type(expected)
    json.dumps(out, allow_nan=False)


def test_json_safe_keeps_key_order_and_bools() -> None:
    out = json_safe({"z": np.bool_(True), "a": False})
    assert list(out) == ["z", "a"] and out["a"] is False and out["z"] is True


def test_sha256_hex() -> None:
    assert sha256_hex(b"psa") == hashlib.sha256(b"psa").hexdigest()
    assert len(sha256_hex(b"")) == 64


# -- locks -------------------------------------------------------------------------------------
def test_on_wait_is_called_while_another_holder_has_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    holder = filelock.FileLock(str(path))
    holder.acquire()
    calls: list[int] = []

    def on_wait() -> None:
        calls.append(1)
        if len(calls) == 2:
            holder.release()  # the other process finishes

    with locked(path, on_wait=on_wait, poll_s=0.05) as lock:
        assert lock.is_locked
    assert len(calls) == 2
    assert not lock.is_locked  # released after the block


def test_on_wait_is_not_called_for_a_free_lock(tmp_path: Path) -> None:
    with locked(tmp_path / "k.lock", on_wait=lambda: pytest.fail("waited for a free lock")):
        pass


def test_on_wait_may_give_up_and_then_holds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    holder = filelock.FileLock(str(path))
    holder.acquire()
    mine = filelock.FileLock(str(path))

    def budget_spent() -> None:
        raise TimeoutError("psa time budget spent")

    with pytest.raises(TimeoutError):
        acquire(mine, on_wait=budget_spent, poll_s=0.05)
    assert not mine.is_locked
    holder.release()


def test_a_timeout_gives_up_with_filelock_timeout(tmp_path: Path) -> None:
    path = tmp_path / "k.lock"
    holder = filelock.FileLock(str(path))
    holder.acquire()
    try:
        for on_wait in (None, lambda: None):
            with pytest.raises(filelock.Timeout), locked(path, timeout=0.1, on_wait=on_wait, poll_s=0.05):
                pass
    finally:
        holder.release()


def test_locked_all_takes_each_lock_once_in_sorted_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[str] = []
    real = _storage.locked

    @contextlib.contextmanager
    def spy(path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        taken.append(Path(path).name)
        with real(path, **kwargs) as lock:  # type: ignore[arg-type]
            yield lock

    monkeypatch.setattr(_storage, "locked", spy)
    with locked_all([tmp_path / "c.lock", tmp_path / "a.lock", tmp_path / "b.lock", tmp_path / "a.lock"]):
        with pytest.raises(filelock.Timeout):  # held: another holder cannot take it
            filelock.FileLock(str(tmp_path / "b.lock")).acquire(timeout=0)
    assert taken == ["a.lock", "b.lock", "c.lock"]
    other = filelock.FileLock(str(tmp_path / "b.lock"))
    other.acquire(timeout=0)  # released after the block
    other.release()


def test_the_storage_module_does_not_import_torch() -> None:
    code = "import sys, pytest_psa._storage; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
