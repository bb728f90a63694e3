"""The user's own training recipe (`trainer=fn(job)`): seeding, caching, the key, and its errors.

Every training here is real (small: 200-400 synthetic images, one or two epochs); the recipes
are module-level functions, as a user's conftest would define them.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

import pytest_psa
from pytest_psa.errors import PsaUsageError, TimeBudgetExceeded
from pytest_psa.train import TrainingPlan, train_plan
from pytest_psa.train.recipe import HookRecipe, TrainingRecipeError, recipe_identity, training_recipe

SMALL = {"preset": "smoke", "epochs": 1, "n_train": 200, "batch_size": 25}
FLIP = v2.RandomHorizontalFlip()
CALLS: list[int] = []  # the seeds the counting recipe was called with


def _builtin_loop(job):  # the built-in trainer's loop, written as a recipe
    net = job.build_model().train()
    opt = job.optimizer(net)
    sched = job.scheduler(opt)
    amp = job.autocast_dtype  # bf16 on a CPU that computes it natively (AVX512-BF16, AMX), else None
    for x, y in job.batches(model=net):
        with torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = net(x.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        job.log_loss(loss)
    return net


def counting_recipe(job):
    CALLS.append(job.seed)
    return _builtin_loop(job), {"calls": len(CALLS)}


def other_recipe(job):
    return _builtin_loop(job)


@training_recipe(version="1")
def versioned_recipe(job):
    return _builtin_loop(job)


def returns_a_string(job):
    return "model.pt"


def returns_none(job):
    _builtin_loop(job)


def returns_another_architecture(job):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, job.num_classes))


def raises_inside(job):
    raise ValueError("bad learning rate in my recipe")


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _plan(data, trainer=None, **kw):
    return TrainingPlan.resolve(None, data, kw.pop("aug", None), trainer=trainer, **{**SMALL, **kw})


@pytest.fixture(autouse=True)
def _calls_reset():
    CALLS.clear()


def test_a_recipe_runs_under_the_plans_seeding_and_gets_the_same_record(tiny_train, tiny_test) -> None:
    builtin = train_plan(_plan(tiny_train, aug=FLIP), test_data=tiny_test, progress=False)
    recipe = train_plan(_plan(tiny_train, aug=FLIP, trainer=other_recipe), test_data=tiny_test, progress=False)
    # the same seeded initialization, batches and augmentation draws: bitwise the same weights on CPU
    a, b = _weights(builtin.model), _weights(recipe.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    r, ref = recipe.record, builtin.record
    assert r.test_accuracy == ref.test_accuracy and r.train_loss == ref.train_loss
    assert r.epochs == ref.epochs == 1 and r.steps == ref.steps == 8
    assert r.final_loss == pytest.approx(ref.final_loss, rel=1e-6)
    assert r.wall_s > 0 and r.augmentation == ref.augmentation
    assert ref.recipe is None
    assert r.recipe is not None and r.recipe["name"] == f"{__name__}.other_recipe" and not r.recipe["declined"]


def test_the_recipe_is_called_once_per_plan_and_cached(tiny_train, tiny_test, cache) -> None:
    kw = dict(test_data=tiny_test, progress=False, trainer=counting_recipe, **SMALL)
    first = cache.get_or_train(None, tiny_train, FLIP, seed=0, **kw)
    second = cache.get_or_train(None, tiny_train, FLIP, seed=1, **kw)
    assert CALLS == [0, 1] and first.record.cache == second.record.cache == "miss"
    assert first.record.extra == {"calls": 1}  # the recipe's extra record is kept
    again = cache.get_or_train(None, tiny_train, FLIP, seed=0, **kw)
    assert CALLS == [0, 1] and again.record.cache == "hit"  # a hit calls nothing
    assert again.record.recipe == first.record.recipe and again.record.extra == {"calls": 1}
    w0, w1 = _weights(first.model), _weights(again.model)
    assert all(torch.equal(w0[k], w1[k].to(w0[k].device)) for k in w0)
    # the built-in trainer's entry is another one: the recipe is in the key
    builtin = cache.get_or_train(None, tiny_train, FLIP, seed=0, test_data=tiny_test, progress=False, **SMALL)
    assert builtin.record.cache == "miss" and builtin.record.cache_key != first.record.cache_key
    assert len(cache.trainings()) == 3


def test_the_recipe_identity_is_in_the_key_and_only_when_set(tiny_train) -> None:
    plain = _plan(tiny_train)
    assert "trainer" not in plain.key_material  # every plan cached before this feature keeps its key
    assert set(plain.key_material) == {"format", "model", "data", "augmentation", "preset", "seed", "optimizer",
                                       "versions", "device_kind", "autocast", "cpu_threads"}
    keys = {name: _plan(tiny_train, trainer=fn).fingerprint
            for name, fn in [("counting", counting_recipe), ("other", other_recipe), ("versioned", versioned_recipe)]}
    assert len({plain.fingerprint, *keys.values()}) == 4
    assert _plan(tiny_train, trainer=other_recipe).fingerprint == keys["other"]  # stable
    ident = _plan(tiny_train, trainer=versioned_recipe).key_material["trainer"]
    assert ident["version"] == "1" and len(ident["source_sha256"]) == 64


def test_a_version_bump_changes_the_key(tiny_train) -> None:
    def v(version):
        @training_recipe(version=version)
        def recipe(job):
            return _builtin_loop(job)
        return recipe

    k1, k1b, k2 = (_plan(tiny_train, trainer=v(x)).fingerprint for x in ("1", "1", "2"))
    assert k1 == k1b != k2


def test_editing_the_recipe_changes_the_key(tiny_train, tmp_path: Path) -> None:
    path = tmp_path / "my_recipes.py"

    def load(body: str):
        path.write_text(textwrap.dedent(f"""
            import torch.nn.functional as F

            def recipe(job):
                net = job.build_model()
                {body}
                return net
        """))
        spec = importlib.util.spec_from_file_location("my_recipes", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["my_recipes"] = module
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules["my_recipes"]
        return module.recipe

    before = _plan(tiny_train, trainer=load("loss_scale = 1.0")).fingerprint
    same = _plan(tiny_train, trainer=load("loss_scale = 1.0")).fingerprint
    after = _plan(tiny_train, trainer=load("loss_scale = 12.0  # the JSD weight")).fingerprint
    assert before == same != after


def test_an_anonymous_recipe_needs_a_version(tiny_train) -> None:
    with pytest.raises(PsaUsageError, match="cannot cache models trained by the recipe") as err:
        _plan(tiny_train, trainer=lambda job: _builtin_loop(job))
    assert "training_recipe(version=" in str(err.value)
    named = training_recipe(version="7")(lambda job: _builtin_loop(job))
    assert _plan(tiny_train, trainer=named).key_material["trainer"]["version"] == "7"
    with pytest.raises(PsaUsageError, match="trainer= takes a training recipe"):
        _plan(tiny_train, trainer="sgd")


@pytest.mark.parametrize(("recipe", "problem", "fix"), [
    (returns_a_string, "returned str, not a trained model", "return the trained torch.nn.Module"),
    (returns_none, "returned NoneType, not a trained model", "return the trained torch.nn.Module"),
    (returns_another_architecture, "that is not the plan's model (small_cnn)", "job.build_model()"),
])
def test_a_wrong_return_is_a_clear_error(tiny_train, cache, recipe, problem, fix) -> None:
    with pytest.raises(TrainingRecipeError) as err:
        cache.get_or_train(None, tiny_train, None, progress=False, trainer=recipe, **SMALL)
    assert isinstance(err.value, pytest_psa.PsaError)
    assert problem in err.value.problem and recipe.__name__ in err.value.problem
    assert fix in str(err.value.fix)
    assert cache.entries() == [] and cache.trainings() == []  # nothing half written


def test_an_exception_in_the_recipe_names_the_recipe_and_the_plan(tiny_train) -> None:
    with pytest.raises(TrainingRecipeError) as err:
        train_plan(_plan(tiny_train, trainer=raises_inside), progress=False)
    msg = str(err.value)
    assert "the training recipe" in msg and "raises_inside raised ValueError while training small_cnn" in msg
    assert "bad learning rate in my recipe" in msg and "fix:" in msg
    assert isinstance(err.value.__cause__, ValueError)  # the recipe's own traceback stays attached


def test_the_time_budget_stops_a_recipe(tiny_train) -> None:
    with pytest.raises(TimeBudgetExceeded, match="ran past its time budget"):
        train_plan(_plan(tiny_train, trainer=other_recipe, epochs=3), budget_s=1e-3, progress=False)


@training_recipe(version="views")
def _peek_views(job):
    """Keeps the first batch of each stream it reads, and returns an untrained model."""
    PEEKED["multi"], PEEKED["labels"] = next(iter(job.batches(views=2, clean=True)))
    PEEKED["single"], _ = next(iter(job.batches()))
    return job.build_model()


PEEKED: dict[str, torch.Tensor] = {}


def test_consistency_views_share_images_and_the_first_draw(tiny_train) -> None:
    plan = _plan(tiny_train, aug=v2.RandomResizedCrop(32, scale=(0.3, 1.0)), trainer=_peek_views)
    train_plan(plan, progress=False)
    multi, single = PEEKED["multi"], PEEKED["single"]
    assert multi.shape == (3, 25, 3, 32, 32) and PEEKED["labels"].shape == (25,)
    # view 0 is the un-augmented batch: the same images as some training images, scaled to [0, 1]
    train_images = {bytes(img.numpy()) for img in plan.data.images}
    assert all(bytes((x * 255).round().to(torch.uint8).numpy()) in train_images for x in multi[0])
    assert torch.equal(multi[1], single)  # the first augmented view is the built-in trainer's draw
    assert not torch.equal(multi[1], multi[2]) and not torch.equal(multi[0], multi[1])


@training_recipe(version="bad views")
def _no_views(job):
    next(iter(job.batches(views=0)))


def test_asking_for_no_view_is_a_usage_error(tiny_train) -> None:
    with pytest.raises(PsaUsageError, match="at least one view"):  # ours: passes through unchanged
        train_plan(_plan(tiny_train, trainer=_no_views), progress=False)


def test_a_declining_hook_falls_back_to_the_builtin_trainer(tiny_train) -> None:
    hook = HookRecipe(lambda plan: None, [counting_recipe])  # every implementation returned None
    assert recipe_identity(hook)["hook"][0]["name"] == f"{__name__}.counting_recipe"
    plan = _plan(tiny_train, trainer=hook)
    got = train_plan(plan, progress=False)
    builtin = train_plan(_plan(tiny_train), progress=False)
    assert got.record.recipe is not None and got.record.recipe["declined"] is True
    a, b = _weights(got.model), _weights(builtin.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert plan.fingerprint != _plan(tiny_train).fingerprint  # the hook is still in the key
