"""The evaluation cache: keys, atomic entries, one computation for concurrent callers, damaged entries."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from pytest_psa import CacheError
from pytest_psa.audits.evaluation_cache import EvaluationStore, model_checksum


def test_key_depends_on_every_field_and_not_on_order() -> None:
    a = EvaluationStore.key({"model": "m", "settings": {"seed": 0, "names": ["x"]}})
    assert a == EvaluationStore.key({"settings": {"names": ["x"], "seed": 0}, "model": "m"})
    assert a != EvaluationStore.key({"model": "m", "settings": {"seed": 1, "names": ["x"]}})


def test_missing_entries_are_computed_together_and_stored(tmp_path) -> None:
    store = EvaluationStore(tmp_path)
    calls = []

    def compute(todo):
        calls.append(list(todo))
        return [{"pred": np.full(3, i, np.int16)} for i in todo]

    entries = [(EvaluationStore.key({"m": i}), {"m": i}) for i in range(3)]
    out, status = store.get_or_compute(entries[:1], compute)
    assert status == ["miss"] and calls == [[0]]
    out, status = store.get_or_compute(entries, compute)
    assert status == ["hit", "miss", "miss"] and calls == [[0], [1, 2]]  # one call for both missing entries
    assert [int(o["pred"][0]) for o in out] == [0, 1, 2]
    assert out[0]["meta"]["material"] == {"m": 0}
    assert not list((tmp_path / "robustness").glob("*.tmp"))  # nothing half-written left behind


def test_concurrent_callers_compute_an_entry_once(tmp_path) -> None:
    """Two workers (threads here; pytest-xdist processes lock the same files) asking for the same entry:
    one computes, the other waits for the lock and loads it."""
    calls = []
    entries = [(EvaluationStore.key({"m": "shared"}), {"m": "shared"})]

    def compute(todo):
        calls.append(1)
        time.sleep(0.3)
        return [{"pred": np.arange(4)}]

    results = []

    def worker():
        results.append(EvaluationStore(tmp_path).get_or_compute(entries, compute))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(s for _, (s,) in results) == ["hit", "miss"]
    assert all(np.array_equal(o[0]["pred"], np.arange(4)) for o, _ in results)


def test_a_damaged_or_foreign_entry_raises_cache_error(tmp_path) -> None:
    store = EvaluationStore(tmp_path)
    key = EvaluationStore.key({"m": 1})
    store.get_or_compute([(key, {"m": 1})], lambda todo: [{"pred": np.arange(3)}])
    path = store.path(key)
    other = store.path(EvaluationStore.key({"m": 2}))
    other.write_bytes(path.read_bytes())  # a valid file under the wrong name
    with pytest.raises(CacheError, match="damaged") as info:
        store.load(EvaluationStore.key({"m": 2}))
    assert "delete" in str(info.value)
    path.write_bytes(b"not a zip file")
    with pytest.raises(CacheError, match=str(path.name)):
        store.load(key)
    assert store.clear() == 2 and store.load(key) is None


def test_model_checksum_sees_weights_and_buffers() -> None:
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    before = model_checksum(net)
    assert model_checksum(net) == before
    with torch.no_grad():
        net[1].running_mean += 1e-3
    assert model_checksum(net) != before
