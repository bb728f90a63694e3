"""The pytest_psa_train hook through the psa fixture: used by default, called once per plan, cached,
and its errors reported with the recipe's name (inline pytester sessions, real small trainings)."""

from __future__ import annotations

import json

import pytest
import torch  # noqa: F401  # loaded before the inline sessions snapshot sys.modules (torch loads once)
import torchvision.transforms.v2  # noqa: F401

import pytest_psa.audits.flatness  # noqa: F401

pytest_plugins = ["pytester"]

RECIPE = """
import json
from pathlib import Path

import torch.nn.functional as F

CALLS = Path(__file__).parent / "calls.jsonl"


def pytest_psa_train(plan):
    with CALLS.open("a") as f:
        f.write(json.dumps({"augmentation": plan.augmentation.kind, "seed": plan.seed}) + "\\n")
    net = plan.build_model().train()
    opt = plan.optimizer(net)
    sched = plan.scheduler(opt)
    for x, y in plan.batches(model=net):
        loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        plan.log_loss(loss)
    return net, {"label_smoothing": 0.1}
"""

AUDIT = """
import pytest
from torchvision.transforms import v2

SMALL = dict(seeds=1, metrics=["lpf"], epochs=1, n_train=200, batch_size=25, n_measure=50,
             data="synthetic-clean", sanity="warn")


@pytest.mark.filterwarnings("ignore::pytest_psa.PsaWarning")
def test_flatness_with_the_hook(psa):
    result = psa.flatness(v2.RandomHorizontalFlip(), **SMALL)
    for rec in result.training["erm"] + result.training["augmented"]:
        assert rec["recipe"]["hook"][0]["name"] == "conftest.pytest_psa_train"
        assert rec["extra"] == {"label_smoothing": 0.1}


@pytest.mark.filterwarnings("ignore::pytest_psa.PsaWarning")
def test_builtin_on_request(psa):
    result = psa.flatness(v2.RandomHorizontalFlip(), trainer=None, **SMALL)
    assert result.training["erm"][0]["recipe"] is None
"""


def _calls(pytester: pytest.Pytester) -> list[dict]:
    path = pytester.path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow  # an inline pytest session that trains
def test_the_fixture_trains_through_the_hook_once_per_plan(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(RECIPE)
    pytester.makepyfile(test_audit=AUDIT)
    cache = pytester.path / "cache"
    result = pytester.runpytest(f"--psa-cache-dir={cache}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    # ERM and the flip for seed 0; the built-in test's trainings do not call the hook
    assert sorted(c["augmentation"] for c in _calls(pytester)) == ["identity", "tensor"]
    assert {c["seed"] for c in _calls(pytester)} == {0}
    again = pytester.runpytest(f"--psa-cache-dir={cache}", "-p", "no:cacheprovider")
    again.assert_outcomes(passed=2)
    assert len(_calls(pytester)) == 2  # the second session loads both models from the cache


@pytest.mark.slow  # an inline pytest session that trains
def test_an_error_in_the_hook_reaches_the_report(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
def pytest_psa_train(plan):
    raise ValueError("my recipe broke: no GPU for 1000 epochs")
""")
    pytester.makepyfile(test_audit=AUDIT)
    result = pytester.runpytest(f"--psa-cache-dir={pytester.path / 'cache'}", "-p", "no:cacheprovider",
                                "-k", "with_the_hook")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*ValueError: my recipe broke: no GPU for 1000 epochs*",
        "*TrainingRecipeError: the training recipe pytest_psa_train hook (conftest.pytest_psa_train) raised "
        "ValueError while training small_cnn + none*",
        "*fix: fix the recipe*",
    ])


@pytest.mark.slow  # an inline pytest session that trains
def test_a_wrong_return_from_the_hook_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
def pytest_psa_train(plan):
    return plan.build_model().state_dict()
""")
    pytester.makepyfile(test_audit=AUDIT)
    result = pytester.runpytest(f"--psa-cache-dir={pytester.path / 'cache'}", "-p", "no:cacheprovider",
                                "-k", "with_the_hook")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*TrainingRecipeError: the training recipe pytest_psa_train hook (conftest.pytest_psa_train) returned "
        "OrderedDict, not a trained model*",
        "*fix: return the trained torch.nn.Module*",
    ])


@pytest.mark.slow  # an inline pytest session that trains
def test_the_psa_trainer_fixture_overrides_the_hook(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
import pytest


def pytest_psa_train(plan):
    raise AssertionError("the hook must not be called: the psa_trainer fixture is overridden")


def my_recipe(job):
    raise RuntimeError("my_recipe was called")


@pytest.fixture
def psa_trainer():
    return my_recipe
""")
    pytester.makepyfile(test_audit=AUDIT)
    result = pytester.runpytest(f"--psa-cache-dir={pytester.path / 'cache'}", "-p", "no:cacheprovider",
                                "-k", "with_the_hook")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TrainingRecipeError: the training recipe conftest.my_recipe raised RuntimeError*"])
    assert "the hook must not be called" not in result.stdout.str()
