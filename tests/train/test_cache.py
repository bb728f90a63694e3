"""The model cache: warm hits, damaged and half-written entries, concurrent workers, keys, clear()."""

from __future__ import annotations

import json
import multiprocessing
import warnings
from pathlib import Path

import pytest
import torch

import pytest_psa.train.trainer as trainer_module
from pytest_psa.errors import PsaUsageError, PsaWarning
from pytest_psa.train import ModelCache, default_cache_dir
from pytest_psa.train.model_cache import model_identity


@pytest.fixture
def count_training(monkeypatch):
    """Count real trainings (the cache calls trainer.train_plan through the module)."""
    calls = []
    real = trainer_module.train_plan

    def counting(plan, *args, **kwargs):
        calls.append(plan.seed)
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_plan", counting)
    return calls


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _files(cache):
    return sorted(p.name for p in Path(cache.dir).iterdir())


def test_warm_hit_does_not_train_and_returns_the_same_weights(cache, tiny_train, quick, count_training):
    first = cache.get_or_train("small_cnn", tiny_train, None, seed=3, **quick)
    assert first.record.cache == "miss" and len(count_training) == 1
    second = cache.get_or_train("small_cnn", tiny_train, None, seed=3, **quick)
    assert len(count_training) == 1, "a warm hit must not train again"
    assert second.record.cache == "hit"
    assert second.record.cache_key == first.record.cache_key
    a, b = _weights(first.model), _weights(second.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not second.model.training
    # a fresh cache object on the same folder (a later run) hits too
    third = ModelCache(cache.root).get_or_train("small_cnn", tiny_train, None, seed=3, **quick)
    assert third.record.cache == "hit" and len(count_training) == 1


def test_cache_leaves_the_global_rng_alone(cache, tiny_train, quick):
    torch.manual_seed(99)
    before = torch.get_rng_state()
    cache.key("small_cnn", tiny_train)
    assert cache.get_or_train("small_cnn", tiny_train, None, **quick).record.cache == "miss"
    assert cache.get_or_train("small_cnn", tiny_train, None, **quick).record.cache == "hit"
    assert torch.equal(torch.get_rng_state(), before)


def test_hit_evaluates_a_new_test_set_without_training(cache, tiny_train, tiny_test, quick, count_training):
    cache.get_or_train("small_cnn", tiny_train, None, **quick)
    hit = cache.get_or_train("small_cnn", tiny_train, None, test_data=tiny_test, **quick)
    assert len(count_training) == 1 and hit.record.cache == "hit"
    assert hit.record.test_accuracy is not None
    assert hit.record.test_data["fingerprint"] == tiny_test.fingerprint()


def test_entry_files_and_record(cache, tiny_train, quick):
    trained = cache.get_or_train("small_cnn", tiny_train, None, **quick)
    key = trained.record.cache_key
    # no temp files left; the lock file stays (deleting it on release would race with a waiter);
    # the training log records the one training
    assert _files(cache) == [f"{key}.json", f"{key}.lock", f"{key}.safetensors", "trainings.jsonl"]
    meta = json.loads((cache.dir / f"{key}.json").read_text())
    assert meta["record"]["cache"] == "miss" and meta["key"] == key
    assert len(meta["weights"]["sha256"]) == 64
    assert meta["key_material"]["model"]["builtin"] == "small_cnn"
    [entry] = cache.entries()
    assert entry.key == key and entry.size_bytes > 100_000 and entry.record["model"] == "small_cnn"


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "bad_json", "missing_weights"])
def test_damaged_entry_is_reported_and_rebuilt(cache, tiny_train, quick, count_training, damage):
    first = cache.get_or_train("small_cnn", tiny_train, None, **quick)
    key = first.record.cache_key
    wpath, rpath = cache.dir / f"{key}.safetensors", cache.dir / f"{key}.json"
    blob = bytearray(wpath.read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0xFF  # one flipped byte inside the tensor data
        wpath.write_bytes(bytes(blob))
    elif damage == "truncate":
        wpath.write_bytes(bytes(blob[: len(blob) // 3]))
    elif damage == "empty":
        wpath.write_bytes(b"")
    elif damage == "bad_json":
        rpath.write_text('{"format": 1, "weights": ')
    else:
        wpath.unlink()
    with pytest.warns(PsaWarning, match=r"damaged and will be rebuilt"):
        again = cache.get_or_train("small_cnn", tiny_train, None, **quick)
    assert again.record.cache == "miss" and len(count_training) == 2
    # the rebuilt entry is sound: the next call is a silent hit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get_or_train("small_cnn", tiny_train, None, **quick).record.cache == "hit"
    assert len(count_training) == 2


def test_damaged_weights_are_never_loaded(cache, tiny_train, quick, monkeypatch):
    first = cache.get_or_train("small_cnn", tiny_train, None, **quick)
    wpath = cache.dir / f"{first.record.cache_key}.safetensors"
    blob = bytearray(wpath.read_bytes())
    blob[-8] ^= 0x01  # a one-bit change in the last tensor: still a valid safetensors file
    wpath.write_bytes(bytes(blob))
    loaded = []
    import safetensors.torch

    real_load = safetensors.torch.load
    monkeypatch.setattr(safetensors.torch, "load", lambda b: loaded.append(1) or real_load(b))
    with pytest.warns(PsaWarning, match="checksum"):
        cache.get_or_train("small_cnn", tiny_train, None, **quick)
    assert not loaded, "weights that fail the checksum must not even be parsed"


def test_half_written_entry_is_ignored(cache, tiny_train, quick, count_training):
    key = cache.key("small_cnn", tiny_train, None, **{k: v for k, v in quick.items() if k != "progress"})
    cache.dir.mkdir(parents=True)
    # a writer that died mid-way leaves a temp file, possibly complete weights, but no JSON
    (cache.dir / f".{key}.safetensors.abc123.tmp").write_bytes(b"\x00" * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: there is no entry yet
        trained = cache.get_or_train("small_cnn", tiny_train, None, **quick)
    assert trained.record.cache == "miss" and trained.record.cache_key == key
    assert len(count_training) == 1
    (cache.dir / f"{key}.json").unlink()  # weights without their record: not an entry
    assert cache.entries() == []
    assert cache.get_or_train("small_cnn", tiny_train, None, **quick).record.cache == "miss"


def _worker(root, barrier, results):
    from pytest_psa.data.synthetic import synthetic

    torch.set_num_threads(1)
    data = synthetic("train", n=1000)
    barrier.wait()
    rec = ModelCache(root).get_or_train("small_cnn", data, None, n_train=300, epochs=2, batch_size=100,
                                        train_eval_n=0, progress=False).record
    results.put((rec.cache, rec.cache_key, rec.created))


def test_concurrent_workers_train_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(tmp_path / "cache", barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(g[0] for g in got) == ["hit", "miss"], got
    assert got[0][1] == got[1][1] and got[0][2] == got[1][2]  # the same entry, trained once
    assert len(ModelCache(tmp_path / "cache").entries()) == 1


def test_clear_removes_everything(cache, tiny_train, quick):
    cache.get_or_train("small_cnn", tiny_train, None, seed=0, **quick)
    cache.get_or_train("small_cnn", tiny_train, None, seed=1, **quick)
    (cache.dir / ".stale.safetensors.x.tmp").write_bytes(b"x")
    assert len(cache.entries()) == 2
    assert cache.clear() == 2
    assert cache.entries() == [] and _files(cache) == []
    assert ModelCache(cache.root / "never-created").clear() == 0


def test_key_covers_what_determines_the_weights(cache, tiny_train):
    from torchvision.transforms import v2

    base = cache.key("small_cnn", tiny_train)
    assert base == cache.key("small_cnn", tiny_train)  # stable
    assert base == cache.key("small_cnn", tiny_train, workers=2, train_eval_n=5)  # speed/report knobs only
    different = [
        cache.key("small_cnn", tiny_train, seed=1),
        cache.key("small_cnn", tiny_train, epochs=5),
        cache.key("small_cnn", tiny_train, lr=0.05),
        cache.key("small_cnn", tiny_train, optimizer="sam"),
        cache.key("small_cnn", tiny_train, v2.RandomHorizontalFlip()),
        cache.key("small_cnn", tiny_train, v2.RandomHorizontalFlip(p=0.3)),
        cache.key("resnet9", tiny_train),
        cache.key("small_cnn", tiny_train.subset(999)),
        cache.key("small_cnn", tiny_train, preset="paper", device="cpu"),
    ]
    assert len({base, *different}) == len(different) + 1


def test_key_follows_versions(cache, tiny_train, monkeypatch):
    import pytest_psa.train.plan as plan_module  # the key is the training plan's fingerprint

    base = cache.key("small_cnn", tiny_train)
    monkeypatch.setattr(plan_module, "versions", lambda: {"torch": "9.9"})
    assert cache.key("small_cnn", tiny_train) != base


class Net(torch.nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def test_user_factory_keys(cache, tiny_train, quick, count_training):
    ident = model_identity(Net, 10, 3, 32)
    assert ident["factory"].endswith("test_cache.Net") and ident["source_sha256"]
    trained = cache.get_or_train(Net, tiny_train, None, **quick)
    assert isinstance(trained.model, Net) and trained.record.model.endswith("Net")
    assert cache.get_or_train(Net, tiny_train, None, **quick).record.cache == "hit"
    assert len(count_training) == 1


def test_anonymous_factory_needs_a_cache_key(cache, tiny_train, quick):
    with pytest.raises(PsaUsageError, match="anonymous factory") as err:
        cache.get_or_train(lambda n: Net(n), tiny_train, None, **quick)
    assert "cache_key=" in str(err.value)

    def local_factory(n):
        return Net(n)

    with pytest.raises(PsaUsageError, match="cache_key"):
        cache.key(local_factory, tiny_train)
    k1 = cache.key(lambda n: Net(n), tiny_train, cache_key="net-v1")
    k2 = cache.key(lambda n: Net(n), tiny_train, cache_key="net-v2")
    assert k1 != k2
    local_factory.psa_cache_key = "net-v1"  # the attribute works like the argument
    assert cache.key(local_factory, tiny_train) == cache.key(local_factory, tiny_train, cache_key="net-v1")
    trained = cache.get_or_train(lambda n: Net(n), tiny_train, None, cache_key="net-v1", **quick)
    assert trained.record.cache == "miss"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PSA_CACHE_DIR", str(tmp_path / "psa"))
    assert default_cache_dir() == tmp_path / "psa"
    assert ModelCache().root == tmp_path / "psa"
    monkeypatch.delenv("PSA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "pytest-psa"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "pytest-psa"
