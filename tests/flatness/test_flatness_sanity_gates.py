"""The sanity gate before a flatness verdict: a baseline that learned nothing, an augmented model
that collapsed and a training set too small to measure are refused with the rule and its numbers.

The trainings are real and tiny (a small CNN, 200 images of 16 px, 3 epochs, ~1 s each). The data
is built here so that the outcome does not hang on the synthetic set's difficulty: class c is a
flat grey level 25c + 10 with a little noise, which a small CNN separates. The chance-level ERM is
one that did not train (lr 1e-7: its weights stay at their initialization). Shuffled training
labels would not do here: with 10 distinct inputs the model learns each level's majority label,
which matches the true one for a level with probability 1/10, so 2 of 10 levels right (accuracy
0.2, "significant" image by image) happens in about a quarter of the draws.
"""

from __future__ import annotations

import pytest
import torch

import pytest_psa
from pytest_psa.audits.trained_pair import MIN_TRAIN_PER_CLASS, SANITY_ALPHA, SANITY_MIN_MARGIN, SANITY_RULE
from pytest_psa.errors import PsaError, PsaSanityError, PsaUsageError, PsaWarning

TRAIN = {"epochs": 3, "batch_size": 25, "workers": 0, "train_eval_n": 0, "progress": False}
FLAT = {"seeds": [0], "metrics": ["lpf"], "n_measure": 32, "measure_options": {"n_samples": 2}, **TRAIN}


UNTRAINED = {"lr": 1e-7}  # the weights stay at their initialization: a chance-level ERM


@pytest.fixture(scope="module", autouse=True)
def sources(sanity_levels: str) -> None:
    """The tiny grey-level set (tests/conftest.py) as "sanity-levels"."""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("sanity-cache")


def noise(x: torch.Tensor) -> torch.Tensor:
    """Replaces the image by uniform noise: nothing of the class survives, so training on it collapses."""
    return torch.rand_like(x)


def test_chance_level_erm_refuses_the_flatness_verdict(cache_dir) -> None:
    with pytest.raises(PsaSanityError) as info:
        pytest_psa.flatness(None, data="sanity-levels", cache_dir=cache_dir, **FLAT, **UNTRAINED)
    err, text = info.value, str(info.value)
    assert isinstance(err, PsaError) and pytest_psa.PsaSanityError is PsaSanityError
    assert "baseline erm did not learn" in text
    assert SANITY_RULE in text and f"alpha = {SANITY_ALPHA:g}" in text and "binomial p =" in text
    assert "sanity='warn'" in err.fix
    record = err.record
    assert record["rule"] == SANITY_RULE and record["alpha"] == SANITY_ALPHA and record["chance"] == 0.1
    assert record["passed"] is False and record["models"]
    for m in record["models"]:
        assert m["passed"] is False and m["test_images"] == 200
        assert m["clean_test_accuracy"] < record["chance"] + SANITY_MIN_MARGIN or m["p_value"] >= SANITY_ALPHA
        assert f"{m['clean_test_accuracy']:.3f} ({m['correct']}/200)" in text


def test_warn_mode_measures_and_records_the_failed_gate(cache_dir) -> None:
    with pytest.warns(PsaWarning, match="sanity gate: the baseline erm did not learn"):
        result = pytest_psa.flatness(None, data="sanity-levels", cache_dir=cache_dir, sanity="warn", **FLAT,
                                     **UNTRAINED)
    sanity = result.to_dict()["settings"]["sanity"]
    assert sanity["mode"] == "warn" and sanity["passed"] is False
    assert [m["clean_test_accuracy"] for m in sanity["models"]] == [
        r["test_accuracy"] for r in result.training["erm"] + result.training["augmented"]]


def test_collapsed_augmented_model_is_refused(cache_dir) -> None:
    with pytest.raises(PsaSanityError, match="collapsed") as info:
        pytest_psa.flatness(pytest_psa.tensor_augmentation(noise, name="noise"), data="sanity-levels",
                            cache_dir=cache_dir, **FLAT)
    by_role = {m["role"]: m for m in info.value.record["models"]}
    assert by_role["baseline"]["passed"] is True and by_role["subject"]["passed"] is False
    assert by_role["baseline"]["clean_test_accuracy"] > by_role["subject"]["clean_test_accuracy"]
    assert "noise seed 0" in str(info.value) and "<- fails" in str(info.value)


def test_a_passing_gate_is_recorded_with_its_numbers(cache_dir) -> None:
    result = pytest_psa.flatness(None, data="sanity-levels", cache_dir=cache_dir, **FLAT)
    sanity = result.settings["sanity"]
    assert sanity["passed"] is True and sanity["mode"] == "error" and sanity["rule"] == SANITY_RULE
    assert sanity["training_set"] == {"n_train": 200, "num_classes": 10, "min_per_class": 20, "smallest_class": "0",
                                      "min_train_per_class": MIN_TRAIN_PER_CLASS, "passed": True}
    for m in sanity["models"]:
        assert m["clean_test_accuracy"] >= sanity["chance"] + SANITY_MIN_MARGIN and m["p_value"] < SANITY_ALPHA
        assert m["correct"] == round(m["clean_test_accuracy"] * m["test_images"])


def test_a_tiny_training_set_is_refused_before_training(tmp_path) -> None:
    with pytest.raises(PsaSanityError, match=f"at least {MIN_TRAIN_PER_CLASS} images of every class") as info:
        pytest_psa.flatness(None, data="sanity-levels", cache_dir=tmp_path, n_train=50, **FLAT)
    assert "50 training images" in str(info.value) and "5 of class '0'" in str(info.value)
    assert "n_train=100" in info.value.fix
    assert info.value.record["training_set"]["min_per_class"] == 5
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.npz"))  # nothing was trained


def test_sanity_mode_is_validated(tmp_path) -> None:
    with pytest.raises(PsaUsageError, match="sanity must be"):
        pytest_psa.flatness(None, data="sanity-levels", cache_dir=tmp_path, sanity="off", **FLAT)
