"""The trained-model cache: train once, reuse across runs and across pytest-xdist workers.

An entry is two files under ``<root>/models/``:

- ``<key>.safetensors``: the state dict (safetensors: no pickle, nothing executes on load);
- ``<key>.json``: the training record, the SHA-256 of the weights file and the key material.

`key` is the SHA-256 of everything that determines the weights: model (registry name and
architecture version, or a factory's qualified name, source and optional `cache_key`, plus
the module structure), training-data fingerprint, augmentation identity, preset fields,
seed, optimizer, library versions, device kind and autocast dtype. Change any of them and
a new entry is trained; nothing is ever invalidated in place.

Writes go to a temporary file in the same folder, then `os.replace` (atomic): weights
first, the JSON last, so a JSON file on disk always describes complete weights. One
`filelock.FileLock` per key makes concurrent workers train an entry once: the others wait
and then load it (while waiting they honour a psa time budget, see `pytest_psa._time_budget`).
Every training the cache runs appends one line to ``<root>/models/trainings.jsonl`` (key,
model, augmentation, seed, seconds, pid, xdist worker), so "trained once" can be counted:
`ModelCache.trainings()`. Loading checks the weights' SHA-256 against the JSON; a damaged or
unreadable entry is reported with a `PsaWarning` and rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from torch import nn

from pytest_psa.augment.adapters import as_augmentation
from pytest_psa.data.image_data import ImageData
from pytest_psa._paths import default_cache_dir
from pytest_psa.errors import CacheError, PsaUsageError, PsaWarning
from pytest_psa.train import models as _models
from pytest_psa.train import trainer as _trainer
from pytest_psa.train.presets import Preset, resolve_preset
from pytest_psa.train.record import TrainedModel, TrainingRecord, versions

FORMAT = 1
_MODELS_DIR = "models"
TRAININGS_LOG = "trainings.jsonl"


@dataclass(frozen=True)
class CacheEntry:
    """One stored model: its key, files, size and the record it was stored with (as a dict)."""

    key: str
    weights_path: Path
    record_path: Path
    size_bytes: int
    record: dict[str, Any]


class ModelCache:
    """A folder of trained models; see the module docstring for layout and guarantees."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.dir = self.root / _MODELS_DIR

    def __repr__(self) -> str:
        return f"ModelCache({str(self.root)!r})"

    # -- the main entry point ----------------------------------------------------------------
    def get_or_train(
        self,
        model: _models.ModelSpec | None = None,
        data: ImageData | None = None,
        augmentation: Any = None,
        *,
        preset: str | Preset = "smoke",
        seed: int = 0,
        device: str | torch.device | None = None,
        budget_s: float | None = None,
        progress: bool = True,
        optimizer: _trainer.OptimizerName = "sgd",
        test_data: ImageData | None = None,
        cache_key: str | None = None,
        **overrides: Any,
    ) -> TrainedModel:
        """The model `train(...)` would return for these arguments: loaded when stored, else trained and stored.

        Arguments as for `train`; `cache_key` names a user model factory for the key (required
        for lambdas and local functions, whose qualified name does not identify them). A hit
        does not train (``record.cache == "hit"``); `budget_s` applies only to training.
        """
        if data is None:
            from pytest_psa.data.synthetic import synthetic

            data = synthetic("train")
            test_data = synthetic("test") if test_data is None else test_data
        key, material, ctx = self._key(model, data, augmentation, preset, seed, device, optimizer,
                                       cache_key, overrides)
        hit = self._load(key, ctx, warn=False)  # lock-free fast path: files on disk are complete or absent
        if hit is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.dir / f"{key}.lock"))
            _acquire(lock, key)
            try:
                hit = self._load(key, ctx, warn=True)  # another worker may have stored it meanwhile
                if hit is None:
                    trained = _trainer.train(
                        ctx["spec"], data, augmentation, preset=ctx["preset"], seed=seed, device=ctx["device"],
                        budget_s=budget_s, progress=progress, optimizer=optimizer, test_data=test_data,
                    )
                    record = dataclasses.replace(trained.record, cache="miss", cache_key=key)
                    self._store(key, material, trained.model, record)
                    self._log_training(key, record)
                    return TrainedModel(trained.model, record)
            finally:
                lock.release()
        return self._with_test_accuracy(hit, test_data, ctx)

    def key(self, model: _models.ModelSpec | None = None, data: ImageData | None = None, augmentation: Any = None,
            *, preset: str | Preset = "smoke", seed: int = 0, device: str | torch.device | None = None,
            optimizer: _trainer.OptimizerName = "sgd", cache_key: str | None = None, **overrides: Any) -> str:
        """The cache key `get_or_train` would use (a 64-hex SHA-256)."""
        if data is None:
            from pytest_psa.data.synthetic import synthetic

            data = synthetic("train")
        return self._key(model, data, augmentation, preset, seed, device, optimizer, cache_key, overrides)[0]

    # -- housekeeping ------------------------------------------------------------------------
    def trainings(self) -> list[dict[str, Any]]:
        """Every training this cache ran since it was last cleared, oldest first (its append-only log)."""
        try:
            lines = (self.dir / TRAININGS_LOG).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def entries(self) -> list[CacheEntry]:
        """The complete entries (those with a readable JSON record), oldest first; nothing is verified."""
        out = []
        for rec_path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                meta = json.loads(rec_path.read_text())
            except (OSError, ValueError):
                continue
            w = rec_path.with_suffix(".safetensors")
            size = w.stat().st_size if w.exists() else 0
            out.append(CacheEntry(rec_path.stem, w, rec_path, size, meta.get("record", {})))
        return sorted(out, key=lambda e: str(e.record.get("created", "")))

    def clear(self) -> int:
        """Delete every stored model (and stray temporary files); returns the number of entries removed.

        Do not run it while another process is training into the same cache.
        """
        if not self.dir.is_dir():
            return 0
        n = len(list(self.dir.glob("*.json")))
        for f in self.dir.iterdir():
            if f.is_file() and (f.suffix in (".json", ".safetensors", ".lock", ".tmp") or f.name == TRAININGS_LOG):
                with contextlib.suppress(FileNotFoundError):
                    f.unlink()
        return n

    # -- internals ---------------------------------------------------------------------------
    def _key(self, model: Any, data: ImageData, augmentation: Any, preset: Any, seed: int, device: Any,
             optimizer: str, cache_key: str | None, overrides: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        if optimizer not in _trainer.OPTIMIZERS:
            raise PsaUsageError(f"unknown optimizer {optimizer!r}", fix=f"use one of {_trainer.OPTIMIZERS}")
        size = max(data.image_size)
        p = resolve_preset(preset, **overrides).for_image_size(size)
        spec = p.model if model is None else model
        dev = _trainer.resolve_device(device, p)
        amp = _trainer.resolve_autocast(dev, p, optimizer)
        train_set = data.subset(p.n_train, seed=p.subset_seed)
        material = {
            "format": FORMAT,
            "model": model_identity(spec, data.num_classes, data.images.shape[1], size, cache_key),
            "data": train_set.fingerprint(),
            "augmentation": as_augmentation(augmentation).identity(),
            "preset": p.key_fields(),
            "seed": int(seed),
            "optimizer": optimizer,
            "versions": versions(),
            "device_kind": _trainer.device_kind(dev),
            "autocast": _trainer._amp_name(amp),
        }
        key = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
        ctx = {"spec": spec, "preset": p, "device": dev, "num_classes": data.num_classes,
               "in_channels": data.images.shape[1], "image_size": size, "amp": amp}
        return key, material, ctx

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.safetensors", self.dir / f"{key}.json"

    def _load(self, key: str, ctx: dict[str, Any], *, warn: bool) -> TrainedModel | None:
        from safetensors.torch import load as load_safetensors

        wpath, rpath = self._paths(key)
        if not rpath.exists():
            return None  # absent, or a writer died before committing the JSON: train (again)
        try:
            meta = json.loads(rpath.read_text())
            expected = meta["weights"]["sha256"]
            record = TrainingRecord.from_dict(meta["record"])
            blob = wpath.read_bytes()
            actual = hashlib.sha256(blob).hexdigest()
            if actual != expected:
                raise CacheError("the weights file does not match its checksum",
                                 observed=f"sha256 {actual[:16]}... instead of {expected[:16]}...")
            state = load_safetensors(blob)
            with torch.random.fork_rng(devices=[]):  # the initialization is overwritten: leave the RNG alone
                net = _models.build_model(ctx["spec"], ctx["num_classes"], ctx["in_channels"],
                                          image_size=ctx["image_size"])
            net.load_state_dict(state, strict=True)
        except Exception as exc:  # anything wrong with the entry: report it and rebuild
            if warn:
                warnings.warn(PsaWarning(
                    f"pytest-psa model cache: entry {key[:16]} in {self.dir} is damaged and will be rebuilt "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0]})"), stacklevel=3)
                for f in (rpath, wpath):
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
            return None
        fmt = torch.channels_last if ctx["preset"].channels_last else torch.preserve_format
        net = net.to(ctx["device"], memory_format=fmt).eval()
        return TrainedModel(net, dataclasses.replace(record, cache="hit", cache_key=key))

    def _store(self, key: str, material: dict[str, Any], net: nn.Module, record: TrainingRecord) -> None:
        from safetensors.torch import save as save_safetensors

        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}
        blob = save_safetensors(state, metadata={"pytest_psa_key": key})
        meta = {"format": FORMAT, "key": key,
                "weights": {"file": f"{key}.safetensors", "sha256": hashlib.sha256(blob).hexdigest(),
                            "bytes": len(blob)},
                "record": record.to_dict(), "key_material": material}
        wpath, rpath = self._paths(key)
        try:
            _atomic_write(wpath, blob)
            _atomic_write(rpath, json.dumps(meta, indent=1, sort_keys=True, default=str).encode())
        except OSError as exc:
            raise CacheError(f"cannot write the model cache entry {key[:16]}", observed=f"{type(exc).__name__}: {exc}",
                             fix=f"make {self.dir} writable, or place the cache elsewhere (PSA_CACHE_DIR)") from exc

    def _log_training(self, key: str, record: TrainingRecord) -> None:
        line = json.dumps({"key": key, "model": record.model, "augmentation": record.augmentation,
                           "seed": record.seed, "preset": record.preset, "device": record.device,
                           "wall_s": round(record.wall_s, 3), "created": record.created, "pid": os.getpid(),
                           "worker": os.environ.get("PYTEST_XDIST_WORKER")}, sort_keys=True)
        # one O_APPEND write per line: lines from concurrent workers never interleave
        fd = os.open(self.dir / TRAININGS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def _with_test_accuracy(self, hit: TrainedModel, test_data: ImageData | None, ctx: dict[str, Any]) -> TrainedModel:
        """On a hit, evaluate `test_data` when the stored record was measured on another test set."""
        rec = hit.record
        if test_data is None or (rec.test_data or {}).get("fingerprint") == test_data.fingerprint():
            return hit
        acc, loss = _trainer.evaluate(hit.model, test_data, device=ctx["device"], autocast=ctx["amp"],
                                      batch_size=ctx["preset"].eval_batch_size)
        rec = dataclasses.replace(rec, test_accuracy=acc, test_loss=loss,
                                  test_data=_trainer._describe_data(test_data))
        return TrainedModel(hit.model, rec)


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


def _acquire(lock: FileLock, key: str) -> None:
    """Take the entry's lock; while another process trains it, keep honouring a psa time budget."""
    from pytest_psa._time_budget import check_budget

    while True:
        try:
            lock.acquire(timeout=1.0)
            return
        except Timeout:
            check_budget(f"waiting for another process to finish training model cache entry {key[:16]}")


def _atomic_write(path: Path, blob: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


__all__ = ["CacheEntry", "ModelCache", "default_cache_dir", "model_identity"]
