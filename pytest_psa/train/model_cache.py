"""The trained-model cache: train once, reuse across runs and across pytest-xdist workers.

An entry is two files under ``<root>/models/``:

- ``<key>.safetensors``: the state dict (safetensors: no pickle, nothing executes on load);
- ``<key>.json``: the training record, the SHA-256 of the weights file and the key material.

`key` is the `fingerprint` of the `TrainingPlan` (pytest_psa/train/plan.py), the SHA-256 of
everything that determines the weights: model (registry name and architecture version, or a
factory's qualified name, source and optional `cache_key`, plus the module structure),
training-data fingerprint, augmentation identity, preset fields, seed, optimizer, library
versions, device kind and autocast dtype. Change any of them and a new entry is trained;
nothing is ever invalidated in place. `get_or_train` resolves its arguments into that plan
once; `get_or_train_plan` takes a plan, and a miss executes it with `train_plan`.

Writes go to a temporary file in the same folder, then `os.replace` (atomic): weights
first, the JSON last, so a JSON file on disk always describes complete weights. One
`filelock.FileLock` per key makes concurrent workers train an entry once: the others wait
and then load it (while waiting they honour a psa time budget, see `pytest_psa._time_budget`).
Every training the cache runs appends one line to ``<root>/models/trainings.jsonl`` (key,
model, augmentation, seed, seconds, pid, xdist worker), so "trained once" can be counted:
`ModelCache.trainings()`. Loading checks the weights' SHA-256 against the JSON; a damaged or
unreadable entry is reported with a `PsaWarning` and rebuilt, never used.

`get_or_train_plans` takes many plans at once: with a remote executor (`pytest_psa.execution`,
``--psa-executor=ray``) it locks every missing entry, submits all of them together, and writes
each returned payload (safetensors bytes checked against their SHA-256, and the record) as above,
so workers need no shared file system and a result computed anywhere lands under its plan's key.
With the local executor it is `get_or_train_plan` for each plan in turn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from pytest_psa.data.image_data import ImageData
from pytest_psa._paths import default_cache_dir
from pytest_psa._storage import acquire, atomic_write_bytes, locked_all, sha256_hex
from pytest_psa.errors import CacheError, PsaError, PsaUsageError, PsaWarning
from pytest_psa.execution import Executor, Unit, current_executor, is_remote
from pytest_psa.train import models as _models
from pytest_psa.train import trainer as _trainer
from pytest_psa.train.plan import FORMAT, OptimizerName, TrainingPlan, default_data, model_identity
from pytest_psa.train.presets import Preset
from pytest_psa.train.record import TrainedModel, TrainingRecord

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
        optimizer: OptimizerName = "sgd",
        test_data: ImageData | None = None,
        cache_key: str | None = None,
        trainer: Any = None,
        **overrides: Any,
    ) -> TrainedModel:
        """The model `train(...)` would return for these arguments: loaded when stored, else trained and stored.

        Arguments as for `train`; `cache_key` names a user model factory for the key (required
        for lambdas and local functions, whose qualified name does not identify them). A hit
        does not train (``record.cache == "hit"``); `budget_s` applies only to training. `trainer`:
        the user's training recipe (`pytest_psa.train.user_trainer`; its identity joins the key).
        The same as ``get_or_train_plan(TrainingPlan.resolve(model, data, augmentation, ...), ...)``.
        """
        data, test_data = default_data(data, test_data)
        plan = TrainingPlan.resolve(model, data, augmentation, preset=preset, seed=seed, device=device,
                                    optimizer=optimizer, cache_key=cache_key, trainer=trainer, **overrides)
        return self.get_or_train_plan(plan, test_data=test_data, progress=progress, budget_s=budget_s)

    def get_or_train_plan(self, plan: TrainingPlan, *, test_data: ImageData | None = None, progress: bool = True,
                          budget_s: float | None = None) -> TrainedModel:
        """The model `train_plan(plan, ...)` would return: loaded when stored under ``plan.fingerprint``,
        else trained, stored and logged (see `get_or_train`)."""
        if not isinstance(plan, TrainingPlan):
            raise PsaUsageError("get_or_train_plan takes a TrainingPlan", observed=type(plan).__name__,
                                fix="build one with TrainingPlan.resolve(...), or call get_or_train(...)")
        plan.check_test_data(test_data)
        key = plan.fingerprint
        hit = self._load(key, plan, warn=False)  # lock-free fast path: files on disk are complete or absent
        if hit is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.dir / f"{key}.lock"))
            _acquire(lock, key)
            try:
                hit = self._load(key, plan, warn=True)  # another worker may have stored it meanwhile
                if hit is None:
                    trained = _trainer.train_plan(plan, test_data=test_data, budget_s=budget_s, progress=progress)
                    record = dataclasses.replace(trained.record, cache="miss", cache_key=key)
                    self._store(key, plan.key_material, trained.model, record)
                    self._log_training(key, record)
                    return TrainedModel(trained.model, record)
            finally:
                lock.release()
        return self._with_test_accuracy(hit, test_data, plan)

    def get_or_train_plans(self, plans: list[TrainingPlan], *, test_data: ImageData | None = None,
                           progress: bool = True, executor: Executor | None = None) -> list[TrainedModel]:
        """`get_or_train_plan` for each plan, the missing ones trained together by `executor`
        (default: `pytest_psa.execution.current_executor()`); the models in the order of `plans`.

        Remote executor: the missing entries are locked (in key order: no deadlock with another
        process asking for an overlapping set; a pytest-xdist worker asking for the same plan waits
        and loads), submitted at once, and each result is stored as it would be locally. Every
        successful result is stored before the first failure is raised (`RemoteUnitError`, naming
        the plan), so a rerun trains only what is still missing. A warm cache submits nothing.
        """
        executor = executor if executor is not None else current_executor()
        if not is_remote(executor):
            return [self.get_or_train_plan(p, test_data=test_data, progress=progress) for p in plans]
        for plan in plans:
            if not isinstance(plan, TrainingPlan):
                raise PsaUsageError("get_or_train_plans takes TrainingPlans", observed=type(plan).__name__,
                                    fix="build them with TrainingPlan.resolve(...)")
            plan.check_test_data(test_data)
        by_key = {p.fingerprint: p for p in plans}
        hits: dict[str, TrainedModel] = {}
        for key, plan in by_key.items():
            hit = self._load(key, plan, warn=False)
            if hit is not None:
                hits[key] = hit
        missing = [k for k in by_key if k not in hits]
        trained: set[str] = set()
        if missing:
            self.dir.mkdir(parents=True, exist_ok=True)
            with locked_all((self.dir / f"{k}.lock" for k in missing), on_wait=lambda: _check_budget(missing)):
                todo = []
                for key in missing:  # another process may have stored some meanwhile
                    hit = self._load(key, by_key[key], warn=True)
                    if hit is None:
                        todo.append(key)
                    else:
                        hits[key] = hit
                # a CPU unit computes with its plan's intra-op threads (the weights depend on the count,
                # which the key names) and asks for at least as many cores
                per_unit = int(getattr(executor, "cpus_per_unit", 1))
                units = [Unit(key=k, label=by_key[k].label, fn=train_payload,
                              plan=TrainingJob(by_key[k], test_data),
                              cpus=float(max(per_unit, by_key[k].threads or 1)),
                              gpus=1.0 if by_key[k].device.type == "cuda" else 0.0) for k in todo]
                errors: list[PsaError] = []
                for outcome in executor.run(units, desc="psa training", progress=progress):
                    if outcome.error is not None:
                        errors.append(outcome.error)
                        continue
                    self._store_payload(outcome.unit.key, by_key[outcome.unit.key], outcome.value, outcome.worker)
                    trained.add(outcome.unit.key)
                if errors:
                    raise errors[0]
            for key in trained:
                hit = self._load(key, by_key[key], warn=True)
                if hit is None:  # just written and verified: unreadable now means the disk lost it
                    raise CacheError(f"the model cache entry {key[:16]} written a moment ago cannot be read",
                                     fix=f"check {self.dir} (disk full? another process clearing it?)")
                hits[key] = TrainedModel(hit.model, dataclasses.replace(hit.record, cache="miss"))
        return [self._with_test_accuracy(hits[p.fingerprint], test_data, p) for p in plans]

    def key(self, model: _models.ModelSpec | None = None, data: ImageData | None = None, augmentation: Any = None,
            *, preset: str | Preset = "smoke", seed: int = 0, device: str | torch.device | None = None,
            optimizer: OptimizerName = "sgd", cache_key: str | None = None, trainer: Any = None,
            **overrides: Any) -> str:
        """The cache key `get_or_train` would use (a 64-hex SHA-256): the plan's `fingerprint`."""
        return TrainingPlan.resolve(model, data, augmentation, preset=preset, seed=seed, device=device,
                                    optimizer=optimizer, cache_key=cache_key, trainer=trainer, **overrides).fingerprint

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
    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.safetensors", self.dir / f"{key}.json"

    def _load(self, key: str, plan: TrainingPlan, *, warn: bool) -> TrainedModel | None:
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
                net = _models.build_model(plan.model, plan.num_classes, plan.in_channels,
                                          image_size=plan.image_size)
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
        fmt = torch.channels_last if plan.preset.channels_last else torch.preserve_format
        # torch's stub for Module.to lacks the (device, memory_format=) form the runtime accepts
        net = net.to(plan.device, memory_format=fmt).eval()  # type: ignore[call-overload]
        return TrainedModel(net, dataclasses.replace(record, cache="hit", cache_key=key))

    def _store(self, key: str, material: dict[str, Any], net: nn.Module, record: TrainingRecord) -> None:
        self._store_blob(key, material, weights_blob(net, key), record)

    def _store_payload(self, key: str, plan: TrainingPlan, payload: dict[str, Any], worker: dict[str, Any]) -> None:
        """Store what `train_payload` sent back, after checking the weights against their checksum."""
        blob = payload["weights"]
        if sha256_hex(blob) != payload["sha256"]:
            raise CacheError(f"the weights of {plan.label} (plan {key[:16]}) arrived damaged from their worker",
                             observed=f"sha256 {sha256_hex(blob)[:16]}... instead of {payload['sha256'][:16]}...",
                             fix="rerun: only this plan is trained again")
        record = dataclasses.replace(TrainingRecord.from_dict(payload["record"]), cache="miss", cache_key=key)
        self._store_blob(key, plan.key_material, blob, record)
        self._log_training(key, record, {**worker, "threads": payload.get("threads")})

    def _store_blob(self, key: str, material: dict[str, Any], blob: bytes, record: TrainingRecord) -> None:
        meta = {"format": FORMAT, "key": key,
                "weights": {"file": f"{key}.safetensors", "sha256": sha256_hex(blob),
                            "bytes": len(blob)},
                "record": record.to_dict(), "key_material": material}
        wpath, rpath = self._paths(key)
        try:
            atomic_write_bytes(wpath, blob)
            atomic_write_bytes(rpath, json.dumps(meta, indent=1, sort_keys=True, default=str).encode())
        except OSError as exc:
            raise CacheError(f"cannot write the model cache entry {key[:16]}", observed=f"{type(exc).__name__}: {exc}",
                             fix=f"make {self.dir} writable, or place the cache elsewhere (PSA_CACHE_DIR)") from exc

    def _log_training(self, key: str, record: TrainingRecord, remote: dict[str, Any] | None = None) -> None:
        entry = {"key": key, "model": record.model, "augmentation": record.augmentation,
                 "seed": record.seed, "preset": record.preset, "device": record.device,
                 "wall_s": round(record.wall_s, 3), "created": record.created, "pid": os.getpid(),
                 "worker": os.environ.get("PYTEST_XDIST_WORKER")}
        if remote:  # trained elsewhere: where (pid and host of the executor's worker)
            entry.update({"executor": remote.get("executor"), "remote_pid": remote.get("pid"),
                          "remote_host": remote.get("host"), "threads": remote.get("threads")})
        line = json.dumps(entry, sort_keys=True)
        # one O_APPEND write per line: lines from concurrent workers never interleave
        fd = os.open(self.dir / TRAININGS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def _with_test_accuracy(self, hit: TrainedModel, test_data: ImageData | None, plan: TrainingPlan) -> TrainedModel:
        """On a hit, evaluate `test_data` when the stored record was measured on another test set."""
        rec = hit.record
        if test_data is None or (rec.test_data or {}).get("fingerprint") == test_data.fingerprint():
            return hit
        acc, loss = _trainer.evaluate(hit.model, test_data, device=plan.device, autocast=plan.autocast_dtype,
                                      batch_size=plan.preset.eval_batch_size)
        rec = dataclasses.replace(rec, test_accuracy=acc, test_loss=loss,
                                  test_data=_trainer._describe_data(test_data))
        return TrainedModel(hit.model, rec)


@dataclass(frozen=True, eq=False)
class TrainingJob:
    """What a training unit ships to its worker: the plan and the test split its record is evaluated on."""

    plan: TrainingPlan
    test_data: ImageData | None


def weights_blob(net: nn.Module, key: str) -> bytes:
    """The safetensors bytes of `net`'s state dict (on CPU), as the cache stores them."""
    from safetensors.torch import save as save_safetensors

    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}
    return save_safetensors(state, metadata={"pytest_psa_key": key})


def train_payload(job: TrainingJob) -> dict[str, Any]:
    """The training unit, run where the executor puts it: `train_plan` and the result as plain bytes
    and a record dict (no pickle of modules or tensors crosses back). A GPU unit trains on the GPU the
    executor gave it (Ray: cuda:0 of its CUDA_VISIBLE_DEVICES), which must be the kind the key names."""
    plan = job.plan
    if plan.device.type == "cuda":
        from pytest_psa.train.plan import device_kind

        here = torch.device("cuda", 0)
        if device_kind(here) != plan.device_kind:
            raise PsaUsageError(f"this worker's GPU is not the kind {plan.label} was planned for",
                                observed=f"{device_kind(here)} here, {plan.device_kind} in the plan",
                                fix="run GPU units on workers with the driver's GPU model (a Ray custom "
                                    "resource or node label), or plan on the workers' kind")
        plan = dataclasses.replace(plan, device=here)
    trained = _trainer.train_plan(plan, test_data=job.test_data, progress=False)  # at the plan's threads
    blob = weights_blob(trained.model, job.plan.fingerprint)
    return {"weights": blob, "sha256": sha256_hex(blob), "record": trained.record.to_dict(),
            "threads": plan.threads}


def _check_budget(keys: list[str]) -> None:
    from pytest_psa._time_budget import check_budget

    check_budget(f"waiting for another process to finish training model cache entries {', '.join(k[:8] for k in keys)}")


def _acquire(lock: FileLock, key: str) -> None:
    """Take the entry's lock; while another process trains it, keep honouring a psa time budget."""
    from pytest_psa._time_budget import check_budget

    acquire(lock, on_wait=lambda: check_budget(
        f"waiting for another process to finish training model cache entry {key[:16]}"))


__all__ = ["CacheEntry", "ModelCache", "TrainingJob", "default_cache_dir", "model_identity", "train_payload",
           "weights_blob"]
