"""The sanity gate before a robustness verdict, n_images above the data, and a damaged evaluation
entry that heals (warn, delete, recompute) instead of failing the run.

Real tiny trainings (a small CNN on 200 images of 16 px, ~1 s each) on a data set built here:
class c is a flat grey level 25c + 10 with a little noise, which a small CNN separates.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import pytest_psa
from pytest_psa.audits.evaluation_cache import EvaluationStore
from pytest_psa.audits.trained_pair import SANITY_ALPHA, SANITY_RULE
from pytest_psa.errors import PsaSanityError, PsaUsageError, PsaWarning

TRAIN = {"epochs": 3, "batch_size": 25, "workers": 0, "train_eval_n": 0}
EVAL = {"corruptions": ["gaussian_noise"], "severities": (1,), "attacks": None, "n_images": 100,
        "resolution": 32}  # 16 px images: the CIFAR severity table, named
UNTRAINED = {"lr": 1e-7}  # the weights stay at their initialization: a chance-level ERM


@pytest.fixture(scope="module", autouse=True)
def sources(sanity_levels: str) -> None:
    """The tiny grey-level set (tests/conftest.py) as "sanity-levels"."""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("robustness-sanity")


def noise(x: torch.Tensor) -> torch.Tensor:
    return torch.rand_like(x)


def test_chance_level_erm_refuses_the_robustness_verdict(cache_dir) -> None:
    with pytest.raises(PsaSanityError, match="did not learn") as info:
        pytest_psa.robustness(None, data="sanity-levels", cache_dir=cache_dir, **EVAL, **TRAIN, **UNTRAINED)
    text = str(info.value)
    assert SANITY_RULE in text and "binomial p =" in text and "erm seed 0" in text
    assert info.value.record["passed"] is False and info.value.record["alpha"] == SANITY_ALPHA


def test_collapsed_augmented_model_refuses_the_robustness_verdict(cache_dir) -> None:
    with pytest.raises(PsaSanityError, match="collapsed") as info:
        pytest_psa.robustness(pytest_psa.tensor_augmentation(noise, name="noise"), data="sanity-levels",
                              cache_dir=cache_dir, **EVAL, **TRAIN)
    by_role = {m["role"]: m["passed"] for m in info.value.record["models"]}
    assert by_role == {"subject": False, "baseline": True}


def test_warn_mode_records_the_gate_in_the_summary(cache_dir) -> None:
    with pytest.warns(PsaWarning, match="sanity gate"):
        result = pytest_psa.robustness(pytest_psa.tensor_augmentation(noise, name="noise"), data="sanity-levels",
                                       cache_dir=cache_dir, sanity="warn", **EVAL, **TRAIN)
    sanity = result.to_dict()["settings"]["sanity"]
    assert sanity["mode"] == "warn" and sanity["passed"] is False
    # the gate's accuracy on the whole test split and the audit's own clean error on its images agree in kind
    subject = next(m for m in sanity["models"] if m["role"] == "subject")
    assert subject["clean_test_accuracy"] == result.training["subject"][0]["test_accuracy"]


def test_n_images_above_the_test_split_is_an_error_naming_both_counts(cache_dir) -> None:
    with pytest.raises(PsaUsageError, match=r"n_images=500 asks for more images than levels/test holds \(200\)") as info:
        pytest_psa.robustness(None, data="sanity-levels", cache_dir=cache_dir, **{**EVAL, "n_images": 500}, **TRAIN)
    assert "n_images=200" in info.value.fix
    with pytest.raises(PsaUsageError, match="n_attack_images=300"):
        pytest_psa.robustness(None, data="sanity-levels", cache_dir=cache_dir, **{**EVAL, "attacks": ["linf:2/255:2"]},
                              n_attack_images=300, **TRAIN)


@pytest.mark.parametrize("damage", ["truncated file", "truncated meta JSON", "wrong checksum"])
def test_a_damaged_evaluation_entry_heals(cache_dir, tmp_path, damage) -> None:
    import shutil

    own = tmp_path / "cache"  # the trained models of the module's cache, none of its evaluations
    shutil.copytree(cache_dir, own)
    store = EvaluationStore(own)
    for entry in store.dir.glob("*.npz"):
        entry.unlink()
    kwargs = {"data": "sanity-levels", **EVAL, **TRAIN}
    first = pytest_psa.robustness(None, cache_dir=own, **kwargs)
    entries = sorted(store.dir.glob("*.npz"))
    assert entries  # this audit's own entries only
    target = entries[0]
    raw = target.read_bytes()
    if damage == "truncated file":
        target.write_bytes(raw[: len(raw) // 2])
    else:
        with np.load(target, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = str(arrays.pop("meta"))
        if damage == "truncated meta JSON":
            meta = meta[: len(meta) // 2]
        else:
            name = next(k for k in arrays if arrays[k].size and arrays[k].dtype != object)
            arrays[name] = arrays[name].copy()
            arrays[name].flat[0] = arrays[name].flat[0] + 1  # one value changed under the recorded checksum
            assert json.loads(meta)["sha256"]
        np.savez(target, allow_pickle=False, meta=np.array(meta), **arrays)
    with pytest.warns(PsaWarning, match="damaged.*deleted and computed again"):
        again = pytest_psa.robustness(None, cache_dir=own, **kwargs)
    assert again.metrics()["mce"].estimate == first.metrics()["mce"].estimate
    assert again.metrics()["clean_error"].estimate == first.metrics()["clean_error"].estimate
    assert store.load(target.stem) is not None  # stored again, whole
