"""CPU weights depend on torch's intra-op thread count (reductions are split by thread), so a plan
fixes the count, its key names it, and the training computes with exactly it: one cache key never
holds two sets of weights, whatever thread count the caller happens to run at.

The bug this guards: an ERM plan resolved under 1 thread and under 2 threads had the same key, and
the cache served whichever was trained first (a test's weights depended on which test ran before it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from torchvision.transforms import v2

from pytest_psa.train.model_cache import ModelCache
from pytest_psa.train.plan import TrainingPlan
from pytest_psa.train.trainer import train_plan

QUICK = dict(n_train=300, epochs=1, batch_size=100, train_eval_n=0)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _plan(data, augmentation=None, **kw) -> TrainingPlan:
    return TrainingPlan.resolve("small_cnn", data, augmentation, preset="smoke", **{**QUICK, **kw})


def _weights(model) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def test_the_key_names_the_cpu_thread_count(tiny_train):
    with torch_threads(1):
        one = _plan(tiny_train)
    with torch_threads(2):
        two = _plan(tiny_train)
    assert (one.threads, two.threads) == (1, 2)
    assert one.key_material["cpu_threads"] == 1 and two.key_material["cpu_threads"] == 2
    assert one.fingerprint != two.fingerprint
    rest = {k: v for k, v in one.key_material.items() if k != "cpu_threads"}
    assert rest == {k: v for k, v in two.key_material.items() if k != "cpu_threads"}  # only the count differs


def test_augmentation_workers_take_their_cores_from_the_count(tiny_train, monkeypatch):
    # an augmented CPU training leaves one core per augmentation worker (spin-waiting OpenMP threads
    # would make a step 5-8x slower); the plan says the count it will really use
    monkeypatch.setattr("pytest_psa.train.plan.cpu_count", lambda: 4)
    with torch_threads(4):
        erm = _plan(tiny_train)
        flip = _plan(tiny_train, v2.RandomHorizontalFlip())
        inline = _plan(tiny_train, v2.RandomHorizontalFlip(), workers=0)
    assert (erm.threads, flip.threads, inline.threads) == (4, 2, 4)


SEEN_THREADS: list[int] = []


def recording_recipe(job):
    """The preset's SGD in a recipe that notes torch's thread count at every step."""
    model = job.build_model()
    opt = job.optimizer(model)
    for x, y in job.batches():
        SEEN_THREADS.append(torch.get_num_threads())
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        job.log_loss(loss)
    return model


def test_training_computes_with_the_plans_count_not_the_callers(tiny_train):
    SEEN_THREADS.clear()
    with torch_threads(2):
        plan = _plan(tiny_train, trainer=recording_recipe)
    with torch_threads(1):
        trained = train_plan(plan, progress=False)
        assert torch.get_num_threads() == 1  # restored afterwards
    assert set(SEEN_THREADS) == {2} and trained.record.threads == 2


def test_one_key_one_set_of_weights(tiny_train, tmp_path):
    # the same plan trained from callers at different thread counts gives the same bits
    with torch_threads(2):
        plan = _plan(tiny_train, seed=3)
    with torch_threads(1):
        a = train_plan(plan, progress=False)
    with torch_threads(2):
        b = train_plan(plan, progress=False)
    assert a.record.threads == b.record.threads == 2
    assert all(torch.equal(x, y) for x, y in zip(_weights(a.model), _weights(b.model), strict=True))
    # and the cache keeps the counts apart: a 1-thread plan is a miss next to a cached 2-thread one
    cache = ModelCache(tmp_path / "cache")
    with torch_threads(2):
        first = cache.get_or_train("small_cnn", tiny_train, None, preset="smoke", seed=3, progress=False, **QUICK)
    with torch_threads(1):
        other = cache.get_or_train("small_cnn", tiny_train, None, preset="smoke", seed=3, progress=False, **QUICK)
    assert (first.record.cache, other.record.cache) == ("miss", "miss")
    assert first.record.cache_key == plan.fingerprint != other.record.cache_key
    assert all(torch.equal(x, y) for x, y in zip(_weights(first.model), _weights(a.model), strict=True))
    # why the key needs the count: here 1 and 2 threads train different weights (max |diff| 0.009 measured)
    assert not all(torch.equal(x, y) for x, y in zip(_weights(first.model), _weights(other.model), strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the key names no threads there)")
def test_gpu_plans_name_no_thread_count(tiny_train):
    plan = _plan(tiny_train, device="cuda")
    assert plan.threads is None and "cpu_threads" not in plan.key_material
