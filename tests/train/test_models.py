"""Built-in models, the registry and build_model; presets."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import pytest_psa.train as train_pkg
from pytest_psa.errors import PsaUsageError
from pytest_psa.train import MODELS, PRESETS, Preset, build_model, resolve_preset


def _n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name, params, feat", [
    ("small_cnn", 98_970, 128),       # cnn_w16-32-64-128-ep
    ("resnet9", 6_573_120, 512),
    ("resnet18", 11_173_962, 512),    # the CIFAR ResNet-18
    ("wrn40_2", 2_243_546, 128),      # WRN-40-2 as in the AugMix code
])
def test_builtin_models(name, params, feat):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = build_model(name, 10, 3).eval()
    assert _n_params(m) == params
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert m(x).shape == (2, 10)
        assert m.features(x).shape == (2, feat)


def test_model_normalizes_inside_with_the_given_statistics():
    m = build_model("small_cnn", 10, 3, mean=[0.1, 0.2, 0.3], std=[0.5, 0.5, 0.5])
    assert m.norm(torch.full((1, 3, 1, 1), 0.6)).flatten().tolist() == pytest.approx([1.0, 0.8, 0.6])
    sd = m.state_dict()
    assert "norm.mean" in sd and "norm.std" in sd  # the statistics travel with the weights


def test_grayscale_and_other_class_counts():
    m = build_model("small_cnn", 7, 1)
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 7)


def test_resnet18_uses_an_imagenet_stem_for_large_images():
    small = build_model("resnet18", 10, 3, image_size=32)
    large = build_model("resnet18", 10, 3, image_size=224)
    assert small.trunk[0].kernel_size == (3, 3) and large.trunk[0].kernel_size == (7, 7)


def test_registry_errors():
    with pytest.raises(PsaUsageError, match="unknown model 'vgg'") as err:
        build_model("vgg", 10)
    assert "small_cnn" in str(err.value)
    with pytest.raises(PsaUsageError, match="name or a callable"):
        build_model(3, 10)
    assert set(MODELS) == {"small_cnn", "resnet9", "resnet18", "wrn40_2"}


def test_presets_and_overrides():
    assert set(PRESETS) == {"smoke", "fast", "paper", "converged"}
    smoke = PRESETS["smoke"]
    assert smoke.model == "small_cnn" and smoke.device == "cpu" and smoke.batch_size == 256
    paper = PRESETS["paper"]
    assert (paper.model, paper.epochs, paper.lr, paper.momentum, paper.weight_decay, paper.schedule) == \
        ("wrn40_2", 200, 0.1, 0.9, 5e-4, "cosine")
    large = paper.for_image_size(64)
    assert (large.model, large.epochs, large.lr) == ("resnet18", 50, 0.01)
    assert paper.for_image_size(32) is paper
    p = resolve_preset("smoke", epochs=2, n_train=500)
    assert (p.epochs, p.n_train, p.lr) == (2, 500, smoke.lr)
    assert p == dataclasses.replace(smoke, epochs=2, n_train=500)
    assert resolve_preset(p) is p
    with pytest.raises(dataclasses.FrozenInstanceError):
        smoke.epochs = 3  # type: ignore[misc]


def test_preset_errors():
    with pytest.raises(PsaUsageError, match="unknown training preset 'tiny'"):
        resolve_preset("tiny")
    with pytest.raises(PsaUsageError, match=r"unknown preset field\(s\) \['epoch'\]"):
        resolve_preset("smoke", epoch=3)
    with pytest.raises(PsaUsageError, match="epochs=0"):
        resolve_preset("smoke", epochs=0)
    with pytest.raises(PsaUsageError, match="batch_size=1"):
        Preset(name="x", batch_size=1)
    with pytest.raises(PsaUsageError, match="schedule"):
        resolve_preset("smoke", schedule="step")


def test_key_fields_leave_out_speed_knobs():
    fields = PRESETS["smoke"].key_fields()
    assert "workers" not in fields and "eval_batch_size" not in fields and "epochs" in fields


def test_public_names():
    assert set(train_pkg.__all__) >= {"train", "TrainedModel", "TrainingRecord", "PRESETS", "ModelCache",
                                      "build_model", "MODELS", "SAM"}


def test_import_pytest_psa_stays_torch_free():
    import subprocess
    import sys

    code = "import sys, pytest_psa; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
