"""Issue 17, defect 1: the cache notices any change to an augmentation that changes what it does.

`Augmentation.identity(shape)` hashes the augmentation's outputs on a fixed probe set of that
shape (`pytest_psa.augment.probe`), so an edited function body, a module constant, a parameter a
class keeps without a repr and a partial's argument each give a new key, and a TrainingPlan with
the changed augmentation gets a new fingerprint (the model cache trains again).
"""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torchvision.transforms import v2

from pytest_psa.augment.adapters import as_augmentation, tensor_augmentation
from pytest_psa.augment.probe import PROBE_NAMES, probe_images, probe_seeds
from pytest_psa.data.synthetic import synthetic
from pytest_psa.train import ModelCache, TrainingPlan

SHAPE = (3, 32, 32)

NOISE_SOURCE = """
import torch

STRENGTH = {strength}


def noise(x):
    return (x + STRENGTH / 255 * torch.randn_like(x)).clamp(0, 1)
"""


def _module(tmp_path: Path, name: str, source: str) -> ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect.getsource finds the file through the module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def noise_modules(tmp_path: Path) -> tuple[ModuleType, ModuleType]:
    """The same function in two modules, its body's constant changed from 8 to 30 (a user's edit)."""
    first = _module(tmp_path, "psa_noise_v1", NOISE_SOURCE.format(strength=8))
    second = _module(tmp_path, "psa_noise_v2", NOISE_SOURCE.format(strength=30))
    yield first, second
    sys.modules.pop("psa_noise_v1", None)
    sys.modules.pop("psa_noise_v2", None)


def _key(aug: object) -> str:
    return as_augmentation(aug).identity(SHAPE)


def test_edited_function_body_changes_the_key(noise_modules: tuple[ModuleType, ModuleType]) -> None:
    v1, v2_ = noise_modules
    a, b = as_augmentation(v1.noise), as_augmentation(v2_.noise)
    assert a.identity(SHAPE) != b.identity(SHAPE)
    assert a.behaviour_key(SHAPE) != b.behaviour_key(SHAPE)  # the outputs differ, not only the source text


def test_module_constant_changes_the_key(noise_modules: tuple[ModuleType, ModuleType],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    v1, _ = noise_modules
    before = _key(v1.noise)
    monkeypatch.setattr(v1, "STRENGTH", 30)  # same function object, same source: only the probe sees it
    after = _key(v1.noise)
    assert before != after
    monkeypatch.setattr(v1, "STRENGTH", 8)
    assert _key(v1.noise) == before


class HiddenNoise:
    """A class without __repr__ whose parameter sits where no repr or attribute scan reads it."""

    def __init__(self, strength: float) -> None:
        self._config = {"strength": strength}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self._config["strength"] / 255 * torch.randn_like(x)).clamp(0, 1)


class PlainNoise:
    def __init__(self, strength: float) -> None:
        self.strength = strength

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.strength / 255 * torch.randn_like(x)).clamp(0, 1)


@pytest.mark.parametrize("cls", [HiddenNoise, PlainNoise])
def test_class_parameter_without_repr_changes_the_key(cls: type) -> None:
    assert " at 0x" in repr(cls(8))  # the old identity fell back to the bare class name here
    assert _key(cls(8)) != _key(cls(30))
    assert _key(cls(8)) == _key(cls(8))  # a new, equal object: the same key


def _scaled_noise(x: torch.Tensor, strength: float) -> torch.Tensor:
    return (x + strength / 255 * torch.randn_like(x)).clamp(0, 1)


def test_partial_argument_changes_the_key() -> None:
    assert _key(functools.partial(_scaled_noise, strength=8)) != _key(functools.partial(_scaled_noise, strength=30))
    assert _key(functools.partial(_scaled_noise, strength=8)) == _key(functools.partial(_scaled_noise, strength=8))


def test_torchvision_parameters_change_the_key() -> None:
    assert _key(v2.RandomRotation(10)) != _key(v2.RandomRotation(12))
    assert _key(v2.RandomHorizontalFlip()) == _key(v2.RandomHorizontalFlip())


def test_the_key_needs_the_shape_and_follows_it() -> None:
    aug = as_augmentation(v2.RandomHorizontalFlip())
    assert aug.identity((3, 32, 32)) != aug.identity((3, 16, 16)) != aug.identity()
    with pytest.raises(Exception, match=r"\(C, H, W\)"):
        aug.identity((32, 32))


def test_cache_key_is_combined_with_the_probe() -> None:
    plain = as_augmentation(_scaled_noise)
    v3 = as_augmentation(_scaled_noise, cache_key="myaug-v3")
    v4 = tensor_augmentation(_scaled_noise, cache_key="myaug-v4")
    assert len({plain.identity(SHAPE), v3.identity(SHAPE), v4.identity(SHAPE)}) == 3
    assert plain.behaviour_key(SHAPE) == v3.behaviour_key(SHAPE) == v4.behaviour_key(SHAPE)
    relabelled = as_augmentation(plain, cache_key="myaug-v3")
    assert relabelled is not plain and plain.cache_key is None
    assert relabelled.identity(SHAPE) == v3.identity(SHAPE)
    # the probe still sees a behaviour change under an unchanged label
    other = as_augmentation(functools.partial(_scaled_noise, strength=30), cache_key="myaug-v3")
    assert other.identity(SHAPE) != v3.identity(SHAPE)


def test_the_probe_does_not_count_as_audited_outputs() -> None:
    aug = as_augmentation(lambda x: x + 0.3 * torch.randn_like(x) * (torch.rand(()) < 0.1))
    aug.identity(SHAPE)
    assert aug.observed_range is None and aug.checked_images == 0


def test_probe_set_is_fixed_and_on_the_uint8_grid() -> None:
    images, names = probe_images((3, 20, 24))
    again, _ = probe_images((3, 20, 24))
    assert torch.equal(images, again) and images.shape == (len(names), 3, 20, 24)
    assert set(names) == set(PROBE_NAMES)
    assert torch.equal(images, (images * 255).round() / 255)  # k/255, as real images are
    assert {"black", "white", "grey"} <= set(names)
    assert probe_seeds(len(names)) == probe_seeds(len(names)) and len(set(probe_seeds(len(names)))) == len(names)


KEY_SCRIPT = """
import functools, sys
sys.path.insert(0, {here!r})
from torchvision.transforms import v2
from pytest_psa.augment.adapters import as_augmentation
from test_identity_by_behaviour import HiddenNoise, _scaled_noise
for aug in (v2.RandAugment(), HiddenNoise(8), functools.partial(_scaled_noise, strength=8)):
    print(as_augmentation(aug).identity((3, 32, 32)))
"""


# slow: a fresh interpreter imports torch, torchvision and the package (10 CPU-seconds measured,
# 12 s wall at load 5), which is the point of the check
@pytest.mark.slow
def test_keys_are_the_same_in_another_process() -> None:
    here = str(Path(__file__).parent)
    out = subprocess.run([sys.executable, "-c", KEY_SCRIPT.format(here=here)], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out == [_key(v2.RandAugment()), _key(HiddenNoise(8)), _key(functools.partial(_scaled_noise, strength=8))]


def test_plan_fingerprint_follows_the_behaviour(noise_modules: tuple[ModuleType, ModuleType],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    v1, v2_ = noise_modules
    data = synthetic("train", n=200)

    def fingerprint(aug: object) -> str:
        return TrainingPlan.resolve("small_cnn", data, aug, preset="smoke", device="cpu", n_train=100).fingerprint

    base = fingerprint(v1.noise)
    assert fingerprint(v2_.noise) != base
    assert fingerprint(HiddenNoise(8)) != fingerprint(HiddenNoise(30))
    assert fingerprint(functools.partial(_scaled_noise, strength=8)) != fingerprint(
        functools.partial(_scaled_noise, strength=30))
    monkeypatch.setattr(v1, "STRENGTH", 30)
    assert fingerprint(v1.noise) != base


@pytest.mark.slow
def test_model_cache_trains_again_after_a_change(tmp_path: Path) -> None:
    data, test = synthetic("train", n=200), synthetic("test", n=50)
    cache = ModelCache(tmp_path)
    settings = dict(preset="smoke", device="cpu", n_train=100, epochs=1, workers=0, progress=False, test_data=test)
    first = cache.get_or_train("small_cnn", data, HiddenNoise(8), **settings)
    again = cache.get_or_train("small_cnn", data, HiddenNoise(8), **settings)
    changed = cache.get_or_train("small_cnn", data, HiddenNoise(30), **settings)
    assert (first.record.cache, again.record.cache, changed.record.cache) == ("miss", "hit", "miss")
