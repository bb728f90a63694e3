"""Minibatch streams for training: plain tensor batching, or augmentation in DataLoader workers.

The order of images and every augmentation draw are fixed by the training seed alone:
each epoch's permutation and one 62-bit seed per image come from an explicit
`torch.Generator`, and a worker applies ``Augmentation.apply(batch, seeds)`` (one seeded
draw per image). So the result does not depend on the number of workers or on how the
batches are scheduled across them, and an ERM and an augmented run with the same seed see
the same minibatches in the same order.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from pytest_psa._threads import single_thread
from pytest_psa.augment.adapters import Augmentation
from pytest_psa.augment.contract import check_batch
from pytest_psa.errors import PsaError, PsaWarning

_SEED_BOUND = 1 << 62


@dataclass(frozen=True)
class Plan:
    """Which images go into which step: `steps_per_epoch` batches of `batch_size` per epoch."""

    n: int
    batch_size: int
    epochs: int

    @property
    def effective_batch(self) -> int:
        return min(self.batch_size, self.n)

    @property
    def steps_per_epoch(self) -> int:
        # drop the ragged last batch: a batch of 1 breaks BatchNorm, and the permutation
        # changes every epoch, so no image is left out systematically
        return self.n // self.effective_batch

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


def batch_keys(plan: Plan, seed: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(epoch, indices, per-image augmentation seeds) for every step, from one seeded generator."""
    gen = torch.Generator().manual_seed(int(seed))
    b = plan.effective_batch
    for epoch in range(plan.epochs):
        perm = torch.randperm(plan.n, generator=gen)
        seeds = torch.randint(0, _SEED_BOUND, (plan.n,), generator=gen, dtype=torch.int64)
        for s in range(plan.steps_per_epoch):
            idx = perm[s * b:(s + 1) * b]
            yield epoch, idx, seeds[idx]


class _AugmentedBatches(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Map-style dataset whose "index" is a whole batch key: a worker augments one batch per call."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, aug: Augmentation, microbatch: int) -> None:
        self.images, self.labels, self.aug, self.microbatch = images, labels, aug, microbatch

    def __len__(self) -> int:  # pragma: no cover - not used with a custom sampler
        return 0

    def __getitem__(self, key: tuple[int, torch.Tensor, torch.Tensor]) -> Any:
        _, idx, seeds = key
        x = self.images[idx].float().div_(255.0)
        try:
            if self.microbatch > 1:
                return _apply_microbatched(self.aug, x, seeds, self.microbatch), self.labels[idx]
            return self.aug.apply(x, seeds), self.labels[idx]
        except PsaError as err:
            if torch.utils.data.get_worker_info() is None:
                raise  # inline: the error is already in the training process
            # torch would re-raise it as a RuntimeError holding the worker's traceback as text;
            # sent back as a value, the training process raises the error itself
            return _WorkerFailure(_picklable(err))


class _WorkerFailure:
    """A `PsaError` raised in a DataLoader worker, carried to the training process as a batch."""

    def __init__(self, error: PsaError) -> None:
        self.error = error


def _picklable(err: PsaError) -> PsaError:
    """`err`, or a copy whose `observed` is its repr when the observed value does not pickle."""
    try:
        pickle.dumps(err)
        return err
    except Exception:
        state = {**err.__dict__, "observed": repr(err.observed)}
        copy = type(err).__new__(type(err))
        Exception.__init__(copy, *err.args)
        copy.__dict__.update(state)
        return copy


def _apply_microbatched(aug: Augmentation, x: torch.Tensor, seeds: torch.Tensor, k: int) -> torch.Tensor:
    """One draw shared by each group of `k` consecutive images (a batched call), seeded per group.

    Only for tensor-kind augmentations that accept (N, C, H, W) input (torchvision v2 does);
    the draws within a group are then not independent, which the record says.
    """
    state = torch.get_rng_state()
    try:
        out = torch.empty_like(x)
        for start in range(0, len(x), k):
            torch.default_generator.manual_seed(int(seeds[start]))
            out[start:start + k] = aug._call_user(x[start:start + k].clone())
    finally:
        torch.set_rng_state(state)
    return check_batch(out, aug.name)


class _KeySampler(torch.utils.data.Sampler[tuple[int, torch.Tensor, torch.Tensor]]):
    def __init__(self, plan: Plan, seed: int) -> None:
        self.plan, self.seed = plan, seed

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        return batch_keys(self.plan, self.seed)

    def __len__(self) -> int:
        return self.plan.total_steps


def auto_workers(device: torch.device, aug: Augmentation) -> int:
    """Workers when none are asked for: none for the identity; on CPU 2 (measured fastest on 2 cores,
    also for cheap augmentations; docs/training.md), none on a single core; on GPU up to 8."""
    if aug.kind == "identity":
        return 0
    cpus = cpu_count()
    if device.type == "cpu":
        return min(2, cpus) if cpus >= 2 else 0
    return max(1, min(8, cpus - 1))


def cpu_count() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _worker_context(aug: Augmentation) -> tuple[Any, bool]:
    """fork where it is safe (Linux): the augmentation need not be picklable; else spawn if it pickles."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork"), True
    else:  # an else block: mypy checks one platform and would call code after the return unreachable
        try:
            pickle.dumps(aug)
        except Exception:  # a lambda or a local function cannot reach a spawned worker
            return None, False
        return multiprocessing.get_context("spawn"), True


def stream(images: torch.Tensor, labels: torch.Tensor, aug: Augmentation, plan: Plan, seed: int, *,
           device: torch.device, workers: int, microbatch: int = 1,
           ) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor]], int]:
    """Batches (float images in [0, 1] on `device`, labels) for the whole plan; and the workers used.

    The identity batches straight from the uint8 tensor (on the device when it is a GPU);
    an augmentation is applied inline (``workers == 0``) or in DataLoader worker processes
    whose augmenting overlaps with the training step.
    """
    if aug.kind == "identity":
        return _tensor_stream(images, labels, plan, seed, device), 0
    dataset = _AugmentedBatches(images, labels, aug, microbatch)
    if workers > 0:
        ctx, ok = _worker_context(aug)
        if not ok:
            warnings.warn(PsaWarning(
                f"augmentation {aug.name} cannot be sent to DataLoader worker processes (not picklable); "
                "augmenting in the training process instead (slower, same result)"), stacklevel=3)
            workers = 0
    if workers == 0:
        return _inline_stream(dataset, plan, seed, device), 0
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=_KeySampler(plan, seed), num_workers=workers,
        multiprocessing_context=ctx, pin_memory=device.type == "cuda", prefetch_factor=4,
    )
    with warnings.catch_warnings():
        # Python >= 3.12 warns on any fork of a process with threads (torch's pool counts); the
        # DataLoader's workers only run the augmentation, with torch's at-fork handlers in place
        warnings.filterwarnings("ignore", message=r".*multi-threaded.*fork", category=DeprecationWarning)
        it = iter(loader)
    return _to_device(it, device), workers


def _tensor_stream(images: torch.Tensor, labels: torch.Tensor, plan: Plan, seed: int,
                   device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    images, labels = images.to(device), labels.to(device)
    for _, idx, _ in batch_keys(plan, seed):
        idx = idx.to(device)
        yield images[idx].float().div_(255.0), labels[idx]


def _inline_stream(dataset: _AugmentedBatches, plan: Plan, seed: int,
                   device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for key in batch_keys(plan, seed):
        with single_thread():  # per-image ops gain nothing from threads, and lose a lot when a core is busy
            x, y = dataset[key]
        yield x.to(device), y.to(device)


def _to_device(it: Iterator[Any], device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for batch in it:
        if isinstance(batch, _WorkerFailure):
            break
        x, y = batch
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    else:
        return
    error = batch.error
    # Drop the last reference to the DataLoader iterator before raising: it shuts its workers down
    # now. Left to the garbage collector (the error's traceback holds this frame), its queues were
    # finalized first and each worker waited out torch's 5 s timeout before being killed.
    del batch, it
    try:
        raise error from None  # the worker's frames are torch's and ours: the message says it all
    finally:
        del error  # no frame -> error -> traceback -> frame cycle
