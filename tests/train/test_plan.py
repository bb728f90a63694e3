"""`TrainingPlan`: resolution, the fingerprint (= the model cache's key), execution.

The key-equality evidence comes two ways: hex keys written down from ``ModelCache().key(...)``
(with the versions, the CPU's bf16 flag and the thread count pinned, so they do not depend on the
machine; the format 2 keys, written before the plan, match once format 3's thread count is taken
out), and a copy of the old ``ModelCache._key`` computed against the plan on the installed versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch
import torchvision
from torchvision.transforms import v2

import pytest_psa.train.plan as plan_module
import pytest_psa.train.trainer as trainer_module
from pytest_psa.augment.adapters import as_augmentation
from pytest_psa.data.synthetic import synthetic
from pytest_psa.errors import PsaUsageError
from pytest_psa.train import ModelCache, TrainingPlan, train, train_plan
from pytest_psa.train.plan import (
    FORMAT,
    autocast_name,
    device_kind,
    model_identity,
    resolve_autocast,
    resolve_device,
    training_threads,
)
from pytest_psa.train.presets import resolve_preset
from pytest_psa.train.record import versions

# -- keys written down at key format 3 (format 2 + a CPU plan's intra-op thread count; format 2 keys
# below, format 1 keys were recorded from the code before the plan, commit 8738bae) ------------------
PINNED_VERSIONS = {"torch": "2.x-pinned", "torchvision": "0.x-pinned", "python": "3.x-pinned",
                   "pytest_psa": "0.0-pinned"}
RECORDED_WITH = ("2.14.1", "0.29.1")  # torch, torchvision: module reprs enter the structure hash
# ModelCache(...).key("small_cnn", synthetic("train", n=1000), aug, preset="smoke", seed=seed,
# optimizer=opt, device="cpu"), aug None or v2.RandomHorizontalFlip(p=0.5), at one intra-op thread
PINNED_KEYS = {
    (None, "sgd", 0): "34ac06b3b61e0199d697d6a3d2ee9ff0dd8e4e487c081a6e706b9b847488fb75",
    (None, "sgd", 1): "c107270c37363009b6ca9b4465d2af7e19aa8a513d783492fd798b6b0ce53367",
    (None, "sam", 0): "8bcecc4ab9a602d897faa751888fa90683cab7c29f355402dc879fc66f4747d3",
    (None, "sam", 1): "9d431b501ee12ab7972858e93fa1257217657efc475293a6abee10148eafb078",
    ("flip", "sgd", 0): "8a1b2c93110f46555f8a250e078c2878772af4307a843943214a48b35614d966",
    ("flip", "sgd", 1): "00654c46da533df548b318298c7f05c897a02ab23edeb2532c6c63548d7d60af",
    ("flip", "sam", 0): "d9925a3479359cc1844dd6ca307ecc864a4f5d2c8bf464574267a4f4187a44fd",
    ("flip", "sam", 1): "0594fae94714df9b487dbef4a3ce7278098a390f68eb4b1071009c805a031423",
}
PINNED_DEFAULT = "3eba6e0a9375325615f9dd121bbf95624e1a9172d5287cb5032c98b882ed96ee"  # ModelCache().key()
# key("small_cnn", data, None, preset="smoke", seed=0, epochs=2, n_train=300, batch_size=100)
PINNED_OVERRIDES = "aa75abc98b8c9fac08de836f5cc093042584683dd86f4d5bc9dcbc25d0260f84"
# the same keys at format 2 (written before format 3): format 3 changed nothing but the added field
PINNED_KEYS_FORMAT2 = {
    (None, "sgd", 0): "f0adfdbb6f1da4db1442f61096d371a134136cb642aaa092380b34edda3c1e8b",
    (None, "sgd", 1): "bacd3cf22b135b23e48710a569c8073dd77ffaa24e4dcf0a537a3ece1ce3eb79",
    (None, "sam", 0): "3fcdaf7852d05ea677ff38ecca8cb7512a06b2bf4c1bfba64de69d3f8c22cc78",
    (None, "sam", 1): "9e5830818d6f492a1091255df9b2394c124e54bbf82462409345771b5df387e3",
    ("flip", "sgd", 0): "60cc6d649f52d088ed5bbdc9334aef4506daf306817506404976f217c7df92b9",
    ("flip", "sgd", 1): "977306d7d69ac886eb0d5a95e7648d00e3b81da2140cec9dcbb2830cbca26aa3",
    ("flip", "sam", 0): "f72befc821659d498f6e2b7b62fa301cec00c082f98758e72771279554293e19",
    ("flip", "sam", 1): "15e7eb7491c1b338ce45456e405f9e02f93617031c36a83c2bdbf35a174d831a",
}
PINNED_DEFAULT_FORMAT2 = "a4eb350e68b7bd4e818b2c7218be517bcd8c60d886264f531efdeb5981a5b9b2"
PINNED_OVERRIDES_FORMAT2 = "84fd77991d1b0984343672556cd0356b1219ac4f0a923ee90c64fc8bfad5f9b2"


def _release(v: str) -> str:
    return v.split("+", 1)[0]


def _format2_key(plan: TrainingPlan) -> str:
    """The plan's key as format 2 computed it: no thread count."""
    material = {k: v for k, v in plan.key_material.items() if k != "cpu_threads"}
    return hashlib.sha256(json.dumps({**material, "format": 2}, sort_keys=True, default=str).encode()).hexdigest()


@pytest.fixture
def pinned(monkeypatch):
    if (_release(torch.__version__), _release(torchvision.__version__)) != RECORDED_WITH:
        pytest.skip(f"keys recorded with torch/torchvision {RECORDED_WITH}: module reprs may differ")
    monkeypatch.setattr(plan_module, "versions", lambda: dict(PINNED_VERSIONS))
    monkeypatch.setattr(plan_module, "cpu_has_native_bf16", lambda: False)
    assert torch.get_num_threads() == 1  # tests/train/conftest.py's one_thread: the pinned keys' count


@pytest.mark.parametrize(("aug", "optimizer", "seed"), sorted(PINNED_KEYS, key=str))
def test_fingerprint_equals_the_keys_written_before_the_plan(pinned, tiny_train, tmp_path, aug, optimizer, seed):
    augmentation = v2.RandomHorizontalFlip(p=0.5) if aug == "flip" else None
    want = PINNED_KEYS[(aug, optimizer, seed)]
    plan = TrainingPlan.resolve("small_cnn", tiny_train, augmentation, preset="smoke", seed=seed,
                                optimizer=optimizer, device="cpu")
    assert plan.fingerprint == want
    assert ModelCache(tmp_path).key("small_cnn", tiny_train, augmentation, preset="smoke", seed=seed,
                                    optimizer=optimizer, device="cpu") == want
    assert plan.key_material["cpu_threads"] == 1
    assert _format2_key(plan) == PINNED_KEYS_FORMAT2[(aug, optimizer, seed)]


def test_default_and_override_keys_are_unchanged(pinned, tiny_train, tmp_path):
    assert ModelCache(tmp_path).key() == PINNED_DEFAULT
    assert TrainingPlan.resolve().fingerprint == PINNED_DEFAULT
    assert _format2_key(TrainingPlan.resolve()) == PINNED_DEFAULT_FORMAT2
    assert ModelCache(tmp_path).key("small_cnn", tiny_train, None, preset="smoke", seed=0, epochs=2, n_train=300,
                                    batch_size=100) == PINNED_OVERRIDES
    overrides = TrainingPlan.resolve("small_cnn", tiny_train, None, preset="smoke", seed=0, epochs=2, n_train=300,
                                     batch_size=100)
    assert _format2_key(overrides) == PINNED_OVERRIDES_FORMAT2


def _old_key(model, data, augmentation, preset="smoke", seed=0, device=None, optimizer="sgd", cache_key=None,
             **overrides):
    """`ModelCache._key` as it was before the plan (commit 8738bae), verbatim but for the names and
    format 3's thread count."""
    size = max(data.image_size)
    p = resolve_preset(preset, **overrides).for_image_size(size)
    spec = p.model if model is None else model
    dev = resolve_device(device, p)
    amp = resolve_autocast(dev, p, optimizer)
    train_set = data.subset(p.n_train, seed=p.subset_seed)
    material = {
        "format": FORMAT,
        "model": model_identity(spec, data.num_classes, data.images.shape[1], size, cache_key),
        "data": train_set.fingerprint(),
        "augmentation": as_augmentation(augmentation).identity(tuple(train_set.images.shape[1:])),
        "preset": p.key_fields(),
        "seed": int(seed),
        "optimizer": optimizer,
        "versions": versions(),
        "device_kind": device_kind(dev),
        "autocast": autocast_name(amp),
    }
    if dev.type == "cpu":
        material["cpu_threads"] = training_threads(dev, p, as_augmentation(augmentation))
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest(), material


class Net(torch.nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(8, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("case", [
    dict(model="small_cnn"),
    dict(model=None, seed=3, optimizer="asam"),
    dict(model="small_cnn", augmentation=v2.TrivialAugmentWide(), epochs=2, lr=0.05, n_train=500),
    dict(model=Net),
    dict(model=lambda n: Net(n), cache_key="net-v1"),
    dict(model="resnet9", preset="fast", device="cpu", autocast="off"),
])
def test_fingerprint_is_the_old_key_computation(tiny_train, tmp_path, case):
    case = dict(case)
    model, augmentation = case.pop("model"), case.pop("augmentation", None)
    want, material = _old_key(model, tiny_train, augmentation, **case)
    plan = TrainingPlan.resolve(model, tiny_train, augmentation, **case)
    assert plan.key_material == material
    assert plan.fingerprint == want == ModelCache(tmp_path).key(model, tiny_train, augmentation, **case)
    assert FORMAT == 3


# -- resolution --------------------------------------------------------------------------------
def test_resolve_holds_everything_resolved(tiny_train):
    flip = v2.RandomHorizontalFlip()
    plan = TrainingPlan.resolve(None, tiny_train, flip, preset="smoke", seed=2, optimizer="sam", n_train=300,
                                epochs=2)
    assert plan.model == "small_cnn" and plan.cache_key is None
    assert plan.preset == resolve_preset("smoke", n_train=300, epochs=2)
    assert len(plan.data) == 300 and plan.data_fingerprint == tiny_train.subset(300).fingerprint()
    assert plan.augmentation.fn is flip and plan.augmentation_identity == as_augmentation(flip).identity((3, 32, 32))
    assert (plan.optimizer, plan.seed) == ("sam", 2)
    assert plan.device == torch.device("cpu") and plan.device_kind == "cpu"
    assert plan.autocast in ("off", "bf16") and plan.autocast_dtype == {"off": None, "bf16": torch.bfloat16}[plan.autocast]
    assert (plan.num_classes, plan.in_channels, plan.image_size) == (tiny_train.num_classes, 3, 32)
    assert plan.versions == versions()
    assert plan.label == f"small_cnn + {plan.augmentation.name} [smoke]"
    assert "seed=2" in repr(plan)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.seed = 3  # type: ignore[misc]


def test_resolve_applies_the_large_image_recipe():
    big = synthetic("train", n=40, size=64)
    plan = TrainingPlan.resolve(None, big, None, preset="paper", device="cpu")
    assert plan.model == "resnet18" and plan.image_size == 64
    assert (plan.preset.epochs, plan.preset.lr, plan.preset.large_image_model) == (50, 0.01, None)


def test_resolve_keeps_the_usage_errors(tiny_train):
    with pytest.raises(PsaUsageError, match="unknown optimizer 'adam'"):
        TrainingPlan.resolve("small_cnn", tiny_train, optimizer="adam")
    with pytest.raises(PsaUsageError, match="data must be an ImageData"):
        TrainingPlan.resolve("small_cnn", [1, 2, 3])
    with pytest.raises(PsaUsageError, match="unknown preset field"):
        TrainingPlan.resolve("small_cnn", tiny_train, epoch=3)
    with pytest.raises(PsaUsageError, match="unknown training preset"):
        TrainingPlan.resolve("small_cnn", tiny_train, preset="huge")
    # an anonymous factory can be planned (plain train accepts it); only naming it for the cache fails
    plan = TrainingPlan.resolve(lambda n: Net(n), tiny_train)
    with pytest.raises(PsaUsageError, match="anonymous factory"):
        plan.fingerprint
    plan.check_test_data(None)
    with pytest.raises(PsaUsageError, match="test_data does not match"):
        plan.check_test_data(synthetic("test", n=20, size=16))


def test_key_follows_the_versions_in_the_plan(tiny_train, monkeypatch):
    base = TrainingPlan.resolve("small_cnn", tiny_train).fingerprint
    monkeypatch.setattr(plan_module, "versions", lambda: {"torch": "9.9"})
    assert TrainingPlan.resolve("small_cnn", tiny_train).fingerprint != base


# -- execution ---------------------------------------------------------------------------------
def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_train_is_train_plan_of_the_resolved_plan(tiny_train, tiny_test, quick):
    settings = {k: v for k, v in quick.items() if k != "progress"}
    plan = TrainingPlan.resolve("small_cnn", tiny_train, None, seed=1, **settings)
    a = train_plan(plan, test_data=tiny_test, progress=False)
    b = train_plan(plan, test_data=tiny_test, progress=False)  # a pure function of the plan
    c = train("small_cnn", tiny_train, None, seed=1, test_data=tiny_test, **quick)
    wa, wb, wc = _weights(a.model), _weights(b.model), _weights(c.model)
    assert all(torch.equal(wa[k], wb[k]) and torch.equal(wa[k], wc[k]) for k in wa)
    assert a.record.n_train == len(plan.data) == 300 and a.record.seed == 1 and a.record.cache == "off"
    assert a.record.augmentation_identity == plan.augmentation_identity
    assert a.record.test_accuracy == c.record.test_accuracy
    with pytest.raises(PsaUsageError, match="takes a TrainingPlan"):
        train_plan("small_cnn")  # type: ignore[arg-type]
    with pytest.raises(PsaUsageError, match="test_data does not match"):
        train_plan(plan, test_data=synthetic("test", n=20, size=16))


def test_get_or_train_plan_shares_entries_with_get_or_train(cache, tiny_train, tiny_test, quick, monkeypatch):
    calls = []
    real = trainer_module.train_plan
    monkeypatch.setattr(trainer_module, "train_plan", lambda plan, **kw: calls.append(plan) or real(plan, **kw))
    settings = {k: v for k, v in quick.items() if k != "progress"}
    plan = TrainingPlan.resolve("small_cnn", tiny_train, None, seed=4, **settings)
    first = cache.get_or_train_plan(plan, progress=False)
    assert first.record.cache == "miss" and first.record.cache_key == plan.fingerprint and calls == [plan]
    meta = json.loads((cache.dir / f"{plan.fingerprint}.json").read_text())
    assert meta["key_material"] == json.loads(json.dumps(plan.key_material, default=str))
    assert [t["key"] for t in cache.trainings()] == [plan.fingerprint]
    hit = cache.get_or_train("small_cnn", tiny_train, None, seed=4, test_data=tiny_test, **quick)
    assert hit.record.cache == "hit" and hit.record.cache_key == plan.fingerprint and len(calls) == 1
    assert hit.record.test_accuracy is not None  # measured on the hit, without training
    with pytest.raises(PsaUsageError, match="takes a TrainingPlan"):
        cache.get_or_train_plan("small_cnn")  # type: ignore[arg-type]
