"""The user's own training recipe: ``fn(job) -> nn.Module`` in place of the built-in training loop.

An augmentation repository often trains with its own recipe (AugMix with its Jensen-Shannon
consistency loss, PixMix with its own schedule). Passing ``trainer=fn`` to `flatness`,
`robustness`, `ModelCache.get_or_train` or `TrainingPlan.resolve` (or implementing the
``pytest_psa_train`` hook) makes `train_plan` call ``fn(job)`` with a `TrainingJob`, instead of
its loop, and build the usual `TrainingRecord` around what it returns::

    @pytest_psa.training_recipe(version="1")
    def my_recipe(job):
        net = job.build_model()                       # the plan's model, seeded, on job.device
        opt, sched = job.optimizer(net), None
        sched = job.scheduler(opt)                    # the preset's SGD and learning-rate schedule
        for x, y in job.batches(model=net):           # the plan's seeded minibatches, augmented
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
            job.log_loss(loss)                        # optional: the record's final_loss
        return net                                    # or (net, {"my": "extra record"})

What stays the plugin's: the key (the recipe's identity joins the plan's `key_material`, see
`pytest_psa.train.recipe`), the seeding (the call runs under ``torch.random.fork_rng`` seeded with
the plan's seed, and `batches` draws the order and the augmentation seeds as the built-in trainer
does), the time budget and the progress bar (checked and drawn on every batch `batches` yields),
the stopping rule (with ``batches(model=net)``), the evaluation (clean train and test accuracy
and loss), the record, the cache and the sanity gate. What the recipe must keep: the returned
module has the plan's architecture (`build_model`), so the cache can load its weights back.
An exception in the recipe becomes a `TrainingRecipeError` naming the recipe and the plan (the
recipe's own traceback is chained above it); a `PsaError` (a time budget, a usage error) passes
through as it is.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pytest_psa._seeding import splitmix64_array
from pytest_psa.augment.adapters import Augmentation
from pytest_psa.data.image_data import ImageData
from pytest_psa.errors import PsaUsageError
from pytest_psa.train import batches as _batches
from pytest_psa.train import models as _models
from pytest_psa.train.plan import TrainingPlan
from pytest_psa.train.presets import Preset
from pytest_psa.train.recipe import TrainingRecipeError


@dataclass
class _Tools:
    """What the trainer lends the job (passed in, so this module never imports the trainer)."""

    build_model: Callable[[], nn.Module]
    optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    scheduler: Callable[[torch.optim.Optimizer], Any]
    check_budget: Callable[[int, int], None]             # (epoch index, steps done)
    stopping: Callable[[], Any]                          # a fresh stopping rule, or None without a target
    compute_threads: Callable[[torch.device, int], Any]  # a context manager


@dataclass
class TrainingJob:
    """One training handed to a user recipe: the resolved plan and the helpers that keep it the plugin's.

    The recipe sees the training data (the preset's class-balanced ``n_train`` subset, uint8),
    never the test split. Read-only attributes mirror the plan; `preset` holds every resolved
    field (``job.preset.epochs``, ``lr``, ``batch_size``, ``weight_decay``, ...).
    """

    plan: TrainingPlan
    progress: bool
    _tools: _Tools
    steps_done: int = 0
    epochs_done: int = 0
    data_wait_s: float = 0.0
    workers: int = 0
    stopping: Any = None
    _losses: list[float] = field(default_factory=list)
    _epoch_losses: list[float] = field(default_factory=list)
    _streams: list[Any] = field(default_factory=list)

    # -- the plan, read-only -------------------------------------------------------------------
    @property
    def data(self) -> ImageData:
        """The training images (uint8 NCHW) and labels: the preset's ``n_train`` subset."""
        return self.plan.data

    @property
    def augmentation(self) -> Augmentation:
        """The audited augmentation under the image contract: ``augmentation.apply(x, seeds)`` on float
        (N, C, H, W) batches in [0, 1], one seeded draw per image; kind "identity" for ERM."""
        return self.plan.augmentation

    @property
    def preset(self) -> Preset:
        return self.plan.preset

    @property
    def seed(self) -> int:
        return self.plan.seed

    @property
    def device(self) -> torch.device:
        return self.plan.device

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """None (fp32), torch.bfloat16 or torch.float16: what the built-in trainer would autocast to."""
        return self.plan.autocast_dtype

    @property
    def num_classes(self) -> int:
        return self.plan.num_classes

    @property
    def batch_plan(self) -> _batches.Plan:
        """Steps per epoch and in total (the ragged last batch of an epoch is dropped, as built-in)."""
        return _batches.Plan(len(self.plan.data), self.preset.batch_size, self.preset.epochs)

    # -- helpers -------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """A fresh model of the plan (input normalization from the training images' channel statistics),
        initialized from the plan's seed, on `device`. Return this module (trained) from the recipe."""
        return self._tools.build_model()

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The plan's optimizer over `model`'s parameters: the preset's SGD (momentum, Nesterov, weight
        decay), or SAM/ASAM around it for optimizer="sam"/"asam" (whose step takes a closure)."""
        return self._tools.optimizer(model)

    def scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        """The preset's learning-rate schedule over the plan's total steps; call ``step()`` once a batch."""
        return self._tools.scheduler(optimizer)

    def log_loss(self, loss: torch.Tensor | float) -> None:
        """Note a batch's training loss; the record's ``final_loss`` is the mean over the last epoch."""
        self._epoch_losses.append(float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss))

    def batches(self, *, views: int = 1, clean: bool = False,
                model: nn.Module | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The plan's minibatches: ``(x, y)`` on `device`, x float in [0, 1], for every step of every epoch.

        ``views=1, clean=False``: x is the augmented (N, C, H, W) batch, the very batches the built-in
        trainer trains on. Otherwise x is a (V, N, C, H, W) stack: the un-augmented images first when
        `clean`, then `views` independent augmentations of the same images (the first of them is the
        built-in trainer's draw; view k's per-image seeds are a SplitMix64 hash of the first's and k).
        Each step checks the time budget and moves the progress bar; with `model`, the preset's
        stopping rule (``target_train_loss``) is checked after each epoch and ends the iteration.
        """
        if not isinstance(views, int) or isinstance(views, bool) or views < 0 or views + int(clean) < 1:
            raise PsaUsageError("batches() needs at least one view of each image", observed=f"views={views!r}, "
                                f"clean={clean!r}", fix="views=1 (augmented), or views=2, clean=True (AugMix's JSD)")
        return self._iterate(views, clean, model)

    def _iterate(self, views: int, clean: bool, model: nn.Module | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from pytest_psa._progress import progress as progress_bar

        p, plan, dev = self.preset, self.batch_plan, self.device
        aug = self.augmentation
        workers = _batches.auto_workers(dev, aug) if p.workers == "auto" else int(p.workers)
        if views == 1 and not clean:
            stream, workers = _batches.stream(self.data.images, self.data.labels, aug, plan, self.seed, device=dev,
                                              workers=workers, microbatch=p.aug_microbatch)
        else:
            stream, workers = _view_stream(self.data, aug, plan, self.seed, dev, workers, views, clean)
        self.workers = max(self.workers, workers)
        self._streams.append(stream)
        stop = self._tools.stopping() if model is not None else None
        if stop is not None:
            self.stopping = stop
        bar = progress_bar(desc=f"psa train {self.plan.label}", total=plan.total_steps, unit="step",
                           enabled=self.progress)
        try:
            with self._tools.compute_threads(dev, workers):
                for step in range(plan.total_steps):
                    tw = time.perf_counter()
                    batch = next(stream)
                    self.data_wait_s += time.perf_counter() - tw
                    yield batch
                    self.steps_done += 1
                    bar.update(1)
                    epoch, k = divmod(step + 1, plan.steps_per_epoch)
                    if k == 0:
                        self._end_epoch(epoch)
                        bar.set_postfix(epoch=f"{epoch}/{plan.epochs}")
                        if stop is not None and stop.reached(model):
                            return
                    self._tools.check_budget(step // plan.steps_per_epoch, step + 1)
        finally:
            bar.close()
            _close(stream)

    def _end_epoch(self, epoch: int) -> None:
        self.epochs_done = epoch
        if self._epoch_losses:
            last = sum(self._epoch_losses) / len(self._epoch_losses)
            if not math.isfinite(last):
                raise PsaUsageError(f"training diverged: the mean loss the recipe logged in epoch {epoch} is {last}",
                                    observed=f"lr={self.preset.lr}, batch_size={self.preset.batch_size}",
                                    fix="lower the learning rate (lr=...) or check the recipe's loss")
            self._losses.append(last)
        self._epoch_losses = []

    @property
    def final_loss(self) -> float:
        """The mean logged loss of the last complete epoch (NaN when the recipe logged none)."""
        if self._epoch_losses and not self._losses:  # a recipe that stopped inside its first epoch
            return sum(self._epoch_losses) / len(self._epoch_losses)
        return self._losses[-1] if self._losses else float("nan")

    def close(self) -> None:
        """Shut down any batch stream the recipe left unfinished (DataLoader workers)."""
        for s in self._streams:
            _close(s)
        self._streams.clear()


# -- the multi-view stream -----------------------------------------------------------------------
class _ViewBatches(_batches._AugmentedBatches):
    """A batch key -> (V, N, C, H, W) views: clean first when asked, then `views` seeded augmentations."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, aug: Augmentation, views: int, clean: bool) -> None:
        super().__init__(images, labels, aug, microbatch=1)
        self.views, self.clean = views, clean

    def __getitem__(self, key: tuple[int, torch.Tensor, torch.Tensor]) -> Any:
        epoch, idx, seeds = key
        x = self.images[idx].float().div_(255.0)
        out = [x] if self.clean else []
        for k in range(self.views):
            view_seeds = seeds if k == 0 else _view_seeds(seeds, k)
            got = super().__getitem__((epoch, idx, view_seeds))
            if isinstance(got, _batches._WorkerFailure):
                return got
            out.append(got[0])
        return torch.stack(out), self.labels[idx]


def _view_seeds(seeds: torch.Tensor, k: int) -> torch.Tensor:
    """Independent per-image seeds for view k > 0 (63-bit, from the first view's)."""
    mixed = splitmix64_array(seeds.numpy().astype(np.uint64) ^ np.uint64(k))
    return torch.from_numpy((mixed >> np.uint64(1)).astype(np.int64))


def _view_stream(data: ImageData, aug: Augmentation, plan: _batches.Plan, seed: int, dev: torch.device,
                 workers: int, views: int, clean: bool) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor]], int]:
    dataset = _ViewBatches(data.images, data.labels, aug, views, clean)
    ctx = None
    if workers > 0:
        ctx, ok = _batches._worker_context(aug)
        workers = workers if ok else 0
    if workers == 0 or aug.kind == "identity":
        return _batches._inline_stream(dataset, plan, seed, dev), 0
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=_batches._KeySampler(plan, seed), num_workers=workers,
        multiprocessing_context=ctx, pin_memory=dev.type == "cuda", prefetch_factor=4)
    return _batches._to_device(iter(loader), dev), workers


def _close(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


# -- what the recipe returned ----------------------------------------------------------------------
def accept_returned(returned: Any, plan: TrainingPlan) -> tuple[nn.Module, dict[str, Any]]:
    """(module, extra record) from a recipe's return value; `TrainingRecipeError` when it is not one.

    Checked: a `nn.Module` or a ``(module, mapping)`` pair; the module's parameters and buffers
    have the names and shapes of the plan's model (the cache rebuilds that model to load the
    weights); every floating-point weight is finite; the extra record is JSON-serializable.
    """
    name = plan.trainer_identity["name"] if plan.trainer_identity else "?"
    extra: Any = {}
    net = returned
    if isinstance(returned, tuple) and len(returned) == 2:
        net, extra = returned
    if not isinstance(net, nn.Module) or not isinstance(extra, Mapping):
        got = (f"({type(net).__name__}, {type(extra).__name__})" if isinstance(returned, tuple) and len(returned) == 2
               else type(returned).__name__)
        raise TrainingRecipeError(
            f"the training recipe {name} returned {got}, not a trained model",
            observed=f"{got}: {returned!r}"[:300],
            fix="return the trained torch.nn.Module (build it with job.build_model()), or a pair (module, dict of "
                "extra record fields)")
    try:
        extra = json.loads(json.dumps(dict(extra), sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise TrainingRecipeError(f"the extra record the training recipe {name} returned is not JSON",
                                  observed=str(exc), fix="return plain numbers, strings, lists and dicts") from None
    _check_structure(net, plan, name)
    bad = [k for k, t in net.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise TrainingRecipeError(f"the training recipe {name} returned a model with non-finite weights",
                                  observed=f"NaN or inf in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}",
                                  fix="lower the learning rate, or check the recipe's loss (log it with job.log_loss)")
    return net, extra


def _check_structure(net: nn.Module, plan: TrainingPlan, name: str) -> None:
    with torch.device("meta"):
        try:
            ref = _models.build_model(plan.model, plan.num_classes, plan.in_channels, image_size=plan.image_size)
        except Exception:  # a factory that cannot run on meta: build it for real, leaving the RNG as it was
            ref = None
    if ref is None:
        with torch.random.fork_rng(devices=[]):
            ref = _models.build_model(plan.model, plan.num_classes, plan.in_channels, image_size=plan.image_size)
    want = {k: tuple(t.shape) for k, t in ref.state_dict().items()}
    got = {k: tuple(t.shape) for k, t in net.state_dict().items()}
    if want == got:
        return
    missing, unexpected = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
    shapes = [f"{k}: {got[k]} instead of {want[k]}" for k in sorted(want.keys() & got.keys()) if want[k] != got[k]]
    observed = "; ".join(part for part in (
        f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}" if missing else "",
        f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}" if unexpected else "",
        ", ".join(shapes[:3])) if part)
    raise TrainingRecipeError(
        f"the training recipe {name} returned a {type(net).__name__} that is not the plan's model "
        f"({_models.spec_name(plan.model)}), so the model cache could not load its weights back",
        observed=observed,
        fix="train the module job.build_model() returns; for another architecture pass model= (a factory) "
            "to the audit, so the plan builds it")


@contextlib.contextmanager
def recipe_errors(plan: TrainingPlan) -> Iterator[None]:
    """Turn an exception the recipe raised into a `TrainingRecipeError` that names it and the plan."""
    from pytest_psa.errors import PsaError

    try:
        yield
    except PsaError:
        raise  # ours on purpose (a time budget, a usage error): already says what to do
    except Exception as exc:
        name = plan.trainer_identity["name"] if plan.trainer_identity else "?"
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise TrainingRecipeError(
            f"the training recipe {name} raised {type(exc).__name__} while training {plan.label} "
            f"(seed {plan.seed})",
            observed=f"{type(exc).__name__}: {first}"[:300],
            fix="fix the recipe (its traceback is shown above this error); run it alone with "
                "pytest_psa.train.train_plan(plan) to debug it") from exc


__all__ = ["TrainingJob", "TrainingRecipeError", "accept_returned", "recipe_errors"]
