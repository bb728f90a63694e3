"""`TrainingPlan`: everything that determines a training's weights, resolved once and frozen.

    plan = TrainingPlan.resolve("small_cnn", data, v2.RandomHorizontalFlip(), preset="smoke", seed=0)
    plan.preset.epochs, plan.device, plan.autocast      # the resolved recipe, device and precision
    plan.fingerprint                                    # the model cache's key (64-hex SHA-256)
    train_plan(plan, test_data=...)                     # pytest_psa.train.trainer: executes it

`resolve` applies the preset's overrides and its large-image recipe (`Preset.for_image_size`),
takes the class-balanced ``n_train`` subset, wraps the augmentation (`as_augmentation`), resolves
the device ("auto" = CUDA when present) and the autocast dtype, and notes the library versions;
it raises the usage errors (`PsaUsageError`) for a bad optimizer, preset, device or data. A
training is a pure function of its plan plus the run-time knobs that do not change the weights
(test set, time budget, progress bar; the preset's worker count and evaluation sizes).

`fingerprint` is the SHA-256 of `key_material` (model identity, training-data fingerprint,
augmentation identity, the preset's weight-determining fields, seed, optimizer, versions, device
kind, autocast, and on CPU the intra-op thread count). The augmentation identity is taken by behaviour (`Augmentation.identity(shape)`:
its outputs on a probe set of the training images' shape, which also checks that it is
reproducible), so format 2 keys differ from format 1 ones and old entries are never reused. A CPU
training's weights also depend on how many intra-op threads split its reductions, so the plan fixes
that count (`threads`, resolved from the caller's torch setting and the augmentation workers) and
the training runs with exactly it: format 3 keys name it, and one key never holds two sets of weights. The model's identity is
computed on first use, because plain `train` accepts factories (lambdas) that cannot be
identified, and only the cache needs to name them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import torch

from pytest_psa.augment.adapters import Augmentation, as_augmentation
from pytest_psa.data.image_data import ImageData
from pytest_psa.errors import PsaUsageError
from pytest_psa.train import models as _models
from pytest_psa.train.batches import auto_workers, cpu_count
from pytest_psa.train.presets import Preset, resolve_preset
from pytest_psa.train.recipe import recipe_identity
from pytest_psa.train.record import versions

# the key format, which the model cache's entry files carry: 2 = augmentation identity by behaviour;
# 3 = a CPU plan names its intra-op thread count (CPU weights depend on it: reductions split by thread)
FORMAT = 3

OptimizerName = Literal["sgd", "sam", "asam"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "sam", "asam")
AutocastName = Literal["off", "bf16", "fp16"]
_AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True, eq=False)
class TrainingPlan:
    """One training, fully resolved: what `train_plan` executes and what the model cache keys on.

    Build it with `TrainingPlan.resolve(...)`. Two plans train the same weights exactly when
    their `fingerprint`s are equal (plans themselves compare by identity: they hold tensors).
    """

    model: _models.ModelSpec           # a `MODELS` name or a factory (the preset's model when none was given)
    cache_key: str | None              # the user's name for a factory (None: its qualified name and source)
    data: ImageData                    # the images trained on: the preset's class-balanced n_train subset
    data_fingerprint: str              # data.fingerprint()
    augmentation: Augmentation         # the adapter (`as_augmentation`); kind "identity" for ERM
    augmentation_identity: str         # augmentation.identity(shape of one training image): by behaviour
    preset: Preset                     # after the overrides and `for_image_size`
    optimizer: str                     # one of OPTIMIZERS
    seed: int
    device: torch.device               # resolved ("auto" -> cuda:N or cpu)
    device_kind: str                   # "cpu" or "cuda:<GPU name>" (see `device_kind`)
    autocast: str                      # "off", "bf16" or "fp16" (see `autocast_dtype`)
    threads: int | None                # CPU: the intra-op threads the training runs with (None on GPU)
    num_classes: int
    in_channels: int
    image_size: int                    # the larger side of the images, in px
    versions: dict[str, str]           # torch, torchvision, python, pytest_psa (`record.versions`)
    # the user's training recipe (`pytest_psa.train.user_trainer`): None = the built-in trainer. Its
    # identity joins `key_material` only when set, so every plan without one keeps its key
    trainer: Any = None
    trainer_identity: dict[str, Any] | None = None

    @classmethod
    def resolve(
        cls,
        model: _models.ModelSpec | None = None,
        data: ImageData | None = None,
        augmentation: Any = None,
        *,
        preset: str | Preset = "smoke",
        seed: int = 0,
        device: str | torch.device | None = None,
        optimizer: OptimizerName | str = "sgd",
        cache_key: str | None = None,
        trainer: Any = None,
        **overrides: Any,
    ) -> TrainingPlan:
        """The plan for `train(model, data, augmentation, ...)` (arguments as for `train`).

        data None = the embedded synthetic training set (its test split is the caller's business:
        `default_data`). `cache_key` names a user factory for the fingerprint. `trainer`: the user's
        training recipe ``fn(job) -> nn.Module`` (`pytest_psa.train.user_trainer`); None = built-in.
        """
        data, _ = default_data(data, None)
        check_training_data(data)
        if optimizer not in OPTIMIZERS:
            raise PsaUsageError(f"unknown optimizer {optimizer!r}", observed=optimizer, fix=f"use one of {OPTIMIZERS}")
        size = max(data.image_size)
        p = resolve_preset(preset, **overrides).for_image_size(size)
        aug = as_augmentation(augmentation)
        dev = resolve_device(device, p)
        amp = resolve_autocast(dev, p, optimizer)
        train_set = data.subset(p.n_train, seed=p.subset_seed)
        # before any training: an unidentifiable recipe fails here
        recipe_id = None if trainer is None else recipe_identity(trainer)
        return cls(
            model=p.model if model is None else model, cache_key=cache_key,
            data=train_set, data_fingerprint=train_set.fingerprint(),
            augmentation=aug, augmentation_identity=aug.identity(tuple(train_set.images.shape[1:])),
            preset=p, optimizer=str(optimizer), seed=int(seed),
            device=dev, device_kind=device_kind(dev), autocast=autocast_name(amp),
            threads=training_threads(dev, p, aug),
            num_classes=data.num_classes, in_channels=int(data.images.shape[1]), image_size=size,
            versions=versions(), trainer=trainer, trainer_identity=recipe_id,
        )

    # -- derived -----------------------------------------------------------------------------
    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype: None (fp32), torch.bfloat16 or torch.float16."""
        return _AUTOCAST_DTYPES[self.autocast]

    @functools.cached_property
    def model_identity(self) -> dict[str, Any]:
        """What identifies the model in the key (see `model_identity`); computed once, on first use.

        Raises `PsaUsageError` for an anonymous factory without a `cache_key`.
        """
        return model_identity(self.model, self.num_classes, self.in_channels, self.image_size, self.cache_key)

    @property
    def key_material(self) -> dict[str, Any]:
        """Everything the fingerprint covers, as the JSON-ready dict the cache stores (a fresh copy)."""
        material = {
            "format": FORMAT,
            "model": self.model_identity,
            "data": self.data_fingerprint,
            "augmentation": self.augmentation_identity,
            "preset": self.preset.key_fields(),
            "seed": int(self.seed),
            "optimizer": self.optimizer,
            "versions": dict(self.versions),
            "device_kind": self.device_kind,
            "autocast": self.autocast,
        }
        if self.threads is not None:
            material["cpu_threads"] = int(self.threads)
        if self.trainer_identity is not None:  # only then: plans of the built-in trainer keep their keys
            material["trainer"] = dict(self.trainer_identity)
        return material

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 (64 hex) of `key_material`: the model cache's key for this plan."""
        return hashlib.sha256(json.dumps(self.key_material, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def label(self) -> str:
        """A short name for progress bars and messages: ``small_cnn + none [smoke]``."""
        p = self.preset
        regime = f", FGSM-AT eps {p.at_epsilon * 255:.3g}/255" if p.regime == "fgsm_at" else ""
        recipe = f", recipe {self.trainer_identity['name']}" if self.trainer_identity else ""
        return (f"{_models.spec_name(self.model).rsplit('.', 1)[-1]} + {self.augmentation.name} "
                f"[{p.name}{regime}{recipe}]")

    def check_test_data(self, test_data: Any) -> None:
        """Raise `PsaUsageError` unless `test_data` is None or an ImageData shaped like the training data."""
        if test_data is None:
            return
        if not isinstance(test_data, ImageData):
            raise PsaUsageError("test_data must be an ImageData", observed=type(test_data).__name__)
        if test_data.images.shape[1:] != self.data.images.shape[1:] or test_data.num_classes != self.num_classes:
            raise PsaUsageError(
                "test_data does not match the training data",
                observed=f"train {tuple(self.data.images.shape[1:])} x {self.num_classes} classes, "
                         f"test {tuple(test_data.images.shape[1:])} x {test_data.num_classes} classes",
                fix="pass the test split of the same data set",
            )

    def __repr__(self) -> str:
        return (f"TrainingPlan({self.label}, optimizer={self.optimizer}, seed={self.seed}, "
                f"device={self.device}, autocast={self.autocast}, n_train={len(self.data)})")


# -- resolution pieces -------------------------------------------------------------------------
def default_data(data: ImageData | None, test_data: ImageData | None) -> tuple[ImageData, ImageData | None]:
    """(data, test_data) with the embedded synthetic set when `data` is None (its test split as test data)."""
    if data is not None:
        return data, test_data
    from pytest_psa.data.synthetic import synthetic

    return synthetic("train"), synthetic("test") if test_data is None else test_data


def check_training_data(data: Any) -> None:
    if not isinstance(data, ImageData):
        raise PsaUsageError("data must be an ImageData", observed=type(data).__name__,
                            fix="load it with pytest_psa.load_data(...) or wrap arrays with "
                                "pytest_psa.data.image_data.from_arrays(images, labels)")


def resolve_device(device: str | torch.device | None, preset: Preset) -> torch.device:
    """The device to train on: the argument, else the preset's ("auto" = CUDA when present)."""
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise PsaUsageError("device 'cuda' was asked for but CUDA is not available", observed=str(device),
                                fix="pass device='cpu' or install a CUDA build of torch")
        return dev
    if preset.device == "cuda" or (preset.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise PsaUsageError(f"preset {preset.name!r} needs a CUDA GPU, and none is available",
                                fix="use preset='smoke' on CPU, or pass device='cpu' to run it slowly")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def training_threads(dev: torch.device, preset: Preset, aug: Augmentation) -> int | None:
    """The intra-op threads a training on `dev` computes with: None on GPU; on CPU torch's current
    count, less one core per augmentation worker (OpenMP threads spin-waiting for a core a worker
    holds make a step 5-8x slower, docs/training.md), at least one."""
    if dev.type != "cpu":
        return None
    workers = auto_workers(dev, aug) if preset.workers == "auto" else int(preset.workers)
    threads = int(torch.get_num_threads())
    return max(1, min(threads, cpu_count() - workers)) if workers > 0 else threads


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX); without it bf16 autocast is slower."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


def resolve_autocast(dev: torch.device, preset: Preset, optimizer: str = "sgd") -> torch.dtype | None:
    """The autocast dtype: None (fp32), bfloat16 or float16 (CUDA only; not combined with SAM)."""
    mode = preset.autocast
    if mode == "auto":
        if dev.type == "cuda":
            mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            mode = "bf16" if dev.type == "cpu" and cpu_has_native_bf16() else "off"
    if mode == "fp16" and (dev.type != "cuda" or optimizer != "sgd"):
        mode = "off"  # fp16 needs loss scaling, which we only do for plain SGD on CUDA
    return _AUTOCAST_DTYPES[mode]


def autocast_name(amp: torch.dtype | None) -> str:
    """'off', 'bf16' or 'fp16' for an autocast dtype (None = fp32)."""
    return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]


def device_kind(dev: torch.device) -> str:
    """'cpu' or 'cuda:<GPU name>': the part of the device that changes results (cache key)."""
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return dev.type


def model_identity(spec: _models.ModelSpec, num_classes: int, in_channels: int, image_size: int,
                   cache_key: str | None = None) -> dict[str, Any]:
    """What identifies a model spec in the key; raises `PsaUsageError` for an unidentifiable factory."""
    if isinstance(spec, str):
        if spec not in _models.MODELS:
            _models.build_model(spec, num_classes, in_channels)  # raises the unknown-model error
        ident: dict[str, Any] = {"builtin": spec, "architecture_version": _models.ARCHITECTURE_VERSION}
    else:
        user_key = cache_key if cache_key is not None else getattr(spec, "psa_cache_key", None)
        qual = getattr(spec, "__qualname__", None)
        anonymous = qual is None or "<lambda>" in qual or "<locals>" in qual
        if anonymous and user_key is None:
            raise PsaUsageError(
                "cannot cache a model built by an anonymous factory: its name does not identify it",
                observed=f"{_models.spec_name(spec)} ({type(spec).__name__})",
                fix="pass cache_key='my-model-v1' (change it whenever the model changes), or set "
                    "factory.psa_cache_key, or define the factory at module level",
            )
        src = None if anonymous else _models.factory_source(spec)
        ident = {"factory": _models.spec_name(spec), "cache_key": user_key,
                 "source_sha256": hashlib.sha256(src.encode()).hexdigest() if src else None}
    ident["structure"] = _structure(spec, num_classes, in_channels, image_size)
    return ident


def _structure(spec: _models.ModelSpec, num_classes: int, in_channels: int, image_size: int) -> str:
    """SHA-256 of the module tree and parameter shapes (built on the meta device: no memory, no RNG)."""
    try:
        with torch.device("meta"):
            net = _models.build_model(spec, num_classes, in_channels, image_size=image_size)
    except PsaUsageError:
        raise
    except Exception:  # a factory that cannot run on meta: build it for real, leaving the RNG as it was
        with torch.random.fork_rng(devices=[]):
            net = _models.build_model(spec, num_classes, in_channels, image_size=image_size)
    h = hashlib.sha256(repr(net).encode())
    for name, t in net.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
    return h.hexdigest()


__all__ = [
    "FORMAT", "OPTIMIZERS", "OptimizerName", "TrainingPlan", "autocast_name", "check_training_data",
    "cpu_has_native_bf16", "default_data", "device_kind", "model_identity", "resolve_autocast", "resolve_device",
    "training_threads",
]
