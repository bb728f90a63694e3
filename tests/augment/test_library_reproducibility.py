"""Issue 17, defects 2 and 3: third-party augmentations are audited reproducibly, or stopped.

- albumentations 2.x (own generators), kornia (torch's generator, batched) and timm's training
  transform (a torchvision v1 Compose of PIL operations drawing from Python's `random`) give the
  same density numbers call after call, in another process and under ``-n 2``;
- timm's RandAugment and AugMix are recognized as PIL transforms; a plain callable that fails
  inside PIL falls back to the PIL adapter and says so;
- an augmentation with a private unseeded generator is stopped by the determinism self-check,
  which names the cause and the library's fix.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torchvision import transforms as v1
from torchvision.transforms import v2

import pytest_psa
from pytest_psa.augment.adapters import as_augmentation, tensor_augmentation
from pytest_psa.augment.known import resolve_augmentation
from pytest_psa.data.synthetic import synthetic
from pytest_psa.errors import AugmentationContractError, PsaUsageError, PsaWarning
from pytest_psa.train import TrainingPlan

A = pytest.importorskip("albumentations", reason="albumentations 2.x is in the test extra")
K = pytest.importorskip("kornia.augmentation", reason="kornia is in the test extra")
timm_data = pytest.importorskip("timm.data", reason="timm is in the test extra")
from timm.data.auto_augment import augment_and_mix_transform, rand_augment_transform  # noqa: E402

N, DRAWS = 24, 3

# the library pipelines, built the same way here, in a subprocess and in xdist workers
PIPELINES = textwrap.dedent("""
    import albumentations as A
    import kornia.augmentation as K
    import timm.data
    import torch


    def make(name):
        if name == "albumentations":
            return A.Compose([A.HorizontalFlip(), A.RandomBrightnessContrast(p=1), A.GaussNoise(p=0.5)])
        if name == "albumentations_single":
            return A.RandomBrightnessContrast(p=1)
        if name == "kornia":
            return torch.nn.Sequential(K.RandomHorizontalFlip(), K.ColorJitter(0.2, 0.2, 0.2, 0.05, p=1.0))
        if name == "kornia_sequential":
            return K.AugmentationSequential(K.RandomAffine(10, p=1.0), K.RandomHorizontalFlip())
        if name == "timm_train":  # the training transform, without Normalize (audits run before it)
            return timm.data.create_transform(32, is_training=True, auto_augment="rand-m9-mstd0.5",
                                              mean=(0, 0, 0), std=(1, 1, 1))
        raise KeyError(name)
""")
NAMES = ("albumentations", "albumentations_single", "kornia", "kornia_sequential", "timm_train")


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("pipelines")
    (folder / "psa_pipelines.py").write_text(PIPELINES)
    sys.path.insert(0, str(folder))
    try:
        import psa_pipelines

        yield folder, psa_pipelines
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("psa_pipelines", None)


def _audit(aug: Any) -> list[float]:
    result = pytest_psa.density(aug, n_images=N, draws=DRAWS, seed=3)
    return [float(v) for v in result.distances.ravel()]


@pytest.mark.parametrize("name", NAMES)
def test_library_pipeline_is_reproducible_within_a_process(pipelines: Any, name: str) -> None:
    _, module = pipelines
    first = _audit(module.make(name))
    assert _audit(module.make(name)) == first  # a fresh object
    aug = module.make(name)
    assert _audit(aug) == _audit(aug) == first  # the same object, twice
    assert len(set(first)) > 1  # really random: draws differ


def test_library_pipelines_leave_their_generators_and_the_globals_alone(pipelines: Any) -> None:
    _, module = pipelines
    compose = module.make("albumentations")
    compose.set_random_seed(123)
    before = compose.random_generator.bit_generator.state
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    states = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    _audit(compose)
    assert compose.random_generator.bit_generator.state == before
    assert random.getstate() == states[0] and np.array_equal(np.random.get_state()[1], states[1])
    assert torch.equal(torch.get_rng_state(), states[2])


AUDIT_SCRIPT = """
import json, sys
sys.path.insert(0, {folder!r})
import pytest_psa
from psa_pipelines import make
out = {{}}
for name in {names!r}:
    result = pytest_psa.density(make(name), n_images={n}, draws={draws}, seed=3)
    out[name] = [float(v) for v in result.distances.ravel()]
print(json.dumps(out))
"""


@pytest.mark.slow  # a fresh interpreter imports torch, albumentations, kornia and timm
def test_library_pipelines_give_the_same_numbers_in_another_process(pipelines: Any) -> None:
    folder, module = pipelines
    script = AUDIT_SCRIPT.format(folder=str(folder), names=NAMES, n=N, draws=DRAWS)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert theirs == {name: _audit(module.make(name)) for name in NAMES}


INNER_TEST = """
import json, os
import pytest
import pytest_psa
from psa_pipelines import make

@pytest.mark.parametrize("name", {names!r})
def test_audit(name, tmp_path_factory):
    result = pytest_psa.density(make(name), n_images={n}, draws={draws}, seed=3)
    out = os.path.join({out!r}, name + "-" + os.environ.get("PYTEST_XDIST_WORKER", "main") + ".json")
    with open(out, "w") as f:
        json.dump([float(v) for v in result.distances.ravel()], f)
"""


@pytest.mark.slow  # 20 s on 2 busy cores: two worker processes import torch
def test_library_pipelines_give_the_same_numbers_under_xdist(pipelines: Any, pytester: pytest.Pytester,
                                                             tmp_path: Path) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist runs the workers")
    folder, module = pipelines
    out = tmp_path / "out"
    out.mkdir()
    pytester.makepyfile(test_inner=INNER_TEST.format(names=NAMES, n=N, draws=DRAWS, out=str(out)),
                        psa_pipelines=PIPELINES)  # next to the test: importable in the workers too
    result = pytester.runpytest_subprocess("-p", "xdist", "-n", "2", "-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(NAMES))
    files = sorted(out.glob("*.json"))
    assert len({f.name.rsplit("-", 1)[1] for f in files}) == 2  # both workers audited something
    for f in files:
        name = f.name.rsplit("-", 1)[0]
        assert json.loads(f.read_text()) == _audit(module.make(name)), name


# -- defect 3: PIL transforms recognized ------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: rand_augment_transform("rand-m9-mstd0.5", {}),
                                  lambda: augment_and_mix_transform("augmix-m5-w3", {})],
                         ids=["timm-randaugment", "timm-augmix"])
def test_timm_pil_transforms_are_audited_without_a_chosen_adapter(make: Any) -> None:
    aug = as_augmentation(make())
    assert aug.kind == "pil"
    first = _audit(make())
    assert first == _audit(make()) and len(set(first)) > 1


def _pil_only(image: Any) -> Any:
    from PIL import ImageOps

    return ImageOps.autocontrast(ImageOps.mirror(image))


def test_a_callable_failing_inside_pil_falls_back_to_the_pil_adapter() -> None:
    aug = as_augmentation(_pil_only)
    assert aug.kind == "tensor"
    with pytest.warns(PsaWarning, match=r"failed inside PIL .* PIL adapter instead .*pil_augmentation"):
        result = pytest_psa.density(aug, n_images=8, draws=2)
    assert aug.kind == "pil" and np.all(result.distances > 0)
    # an explicit adapter stays as it was chosen
    explicit = tensor_augmentation(_pil_only)
    with pytest.raises(AugmentationContractError, match="pil_augmentation"):
        explicit.apply(synthetic("test", n=2).float_images(), [1, 2])


def test_kornia_container_is_batched_and_a_tensor_adapter_says_so() -> None:
    seq = torch.nn.Sequential(K.RandomHorizontalFlip(), K.ColorJitter(0.2, 0.2, 0.2, 0.05, p=1.0))
    assert as_augmentation(seq).kind == "batched"
    assert as_augmentation(K.AugmentationSequential(K.RandomHorizontalFlip())).kind == "batched"
    with pytest.raises(AugmentationContractError, match="batched_augmentation"):
        tensor_augmentation(seq).apply(synthetic("test", n=2).float_images(), [1, 2])


def test_timm_training_compose_is_not_trusted_as_torchvision_only(pipelines: Any) -> None:
    _, module = pipelines
    assert not as_augmentation(module.make("timm_train"))._trusted
    assert as_augmentation(v1.Compose([v1.RandomCrop(32, padding=4), v1.RandomHorizontalFlip()]))._trusted
    # torchvision v1 RandomChoice draws from Python's random: seeded, so reproducible
    choice = v1.RandomChoice([v1.RandomRotation(20), v1.ColorJitter(0.5, 0.5)])
    assert not as_augmentation(choice)._trusted
    assert _audit(choice) == _audit(choice)


# -- the determinism self-check ---------------------------------------------------------------------
class PrivateNumpyNoise:
    def __init__(self) -> None:
        self.rng = np.random.default_rng()  # unseeded, and out of the adapter's reach

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x + torch.from_numpy(self.rng.normal(0, 0.02, x.shape)).float()).clamp(0, 1)


class PrivatePythonFlip:
    def __init__(self) -> None:
        self.chooser = random.Random()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1) if self.chooser.random() < 0.5 else x


@pytest.mark.parametrize(("make", "where"), [(PrivateNumpyNoise, "PrivateNumpyNoise.rng: numpy.random"),
                                            (PrivatePythonFlip, "PrivatePythonFlip.chooser: random.Random")])
def test_a_private_generator_stops_the_density_audit(make: Any, where: str) -> None:
    with pytest.raises(AugmentationContractError) as info:
        pytest_psa.density(make(), n_images=8, draws=2)
    err = info.value
    assert err.property == "determinism"
    assert where in str(err) and "global generators" in str(err)


def test_a_private_generator_stops_plan_resolution() -> None:
    with pytest.raises(AugmentationContractError, match="determinism"):
        TrainingPlan.resolve("small_cnn", synthetic("train", n=200), PrivateNumpyNoise(), n_train=100)


_JITTER_RNG = np.random.default_rng()  # unseeded: the member below draws outside albumentations' generators


def _jitter(img: np.ndarray, **kwargs: Any) -> np.ndarray:
    return np.clip(img.astype(int) + _JITTER_RNG.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)


def test_an_unseeded_albumentations_member_names_the_library_fix() -> None:
    lam = A.Lambda(image=_jitter)
    with pytest.raises(AugmentationContractError, match=r"set_random_seed.*self\.random_generator"):
        pytest_psa.density(A.Compose([A.HorizontalFlip(), lam]), n_images=8, draws=2)


def test_state_kept_between_calls_is_stopped() -> None:
    calls = {"n": 0}

    def drifting(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return (x * (1 - 0.001 * calls["n"])).clamp(0, 1)

    with pytest.raises(AugmentationContractError, match="keeps state between calls"):
        as_augmentation(drifting).check_determinism((3, 32, 32))


# -- names -----------------------------------------------------------------------------------------
def test_known_names_resolve_for_the_density_audit() -> None:
    result = pytest_psa.density("cropflip", n_images=8, draws=2)
    assert result.augmentation == "cropflip"
    assert resolve_augmentation("AugMix").kind == "tensor"
    with pytest.raises(PsaUsageError, match=r"did you mean 'augmix'"):
        resolve_augmentation("augmx")
    with pytest.raises(PsaUsageError, match="module:attr path or pass a callable"):
        resolve_augmentation("sharpen-everything")
    with pytest.raises(AugmentationContractError, match="resolve_augmentation"):
        as_augmentation("augmix")
