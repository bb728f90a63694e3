"""`train`: one seeded, budgeted training run of (model, data, augmentation, preset, optimizer).

`train(...)` resolves its arguments into a `TrainingPlan` (pytest_psa/train/plan.py) and
`train_plan(plan, ...)` executes it: the weights are a function of the plan alone.

Deterministic: the global torch RNG is forked (saved, seeded from `seed`, restored) for
initialization and anything a user model draws; the data order and augmentation draws come
from an explicit generator (see `batches`). On CPU the same seed gives bitwise-identical
weights; on CUDA cuDNN autotuning is on for speed and the record says ``deterministic: false``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_psa._time_budget import check_budget
from pytest_psa.data.image_data import ImageData
from pytest_psa.errors import PsaUsageError, TimeBudgetExceeded
from pytest_psa.train import batches
from pytest_psa.train.adversarial import FgsmTrainer, robust_accuracy
from pytest_psa.train.models import ModelSpec, build_model, spec_name
from pytest_psa.train.plan import (  # re-exported: resolution lives with the plan
    OPTIMIZERS,
    OptimizerName,
    TrainingPlan,
    cpu_has_native_bf16,
    default_data,
    device_kind,
    resolve_autocast,
    resolve_device,
)
from pytest_psa.train.presets import Preset
from pytest_psa.train.record import TrainedModel, TrainingRecord
from pytest_psa.train.sam import SAM, frozen_bn_stats
from pytest_psa.train.user_trainer import TrainingJob, _Tools, accept_returned, recipe_errors

def train(
    model: ModelSpec | None = None,
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
    **overrides: Any,
) -> TrainedModel:
    """Train `model` on `data` with `augmentation` (None = ERM) and return it with its record.

    model: a name from `MODELS` or a factory ``(num_classes) -> nn.Module``; None = the preset's.
    data: the training `ImageData` (None = the embedded synthetic set, with its test split as
      `test_data`); the preset's ``n_train`` takes a class-balanced subset of it.
    preset: "smoke", "fast", "paper" or a `Preset`; keyword `overrides` replace its fields
      (``epochs=2, n_train=1000, lr=0.05, ...``).
    device: None = the preset's (CUDA when present for "auto").
    budget_s: wall-clock limit for the whole call; exceeding it raises `TimeBudgetExceeded`.
    optimizer: "sgd" (the preset's SGD), "sam" or "asam" (SGD wrapped in `SAM`).
    test_data: evaluated at the end for ``record.test_accuracy``.

    The same as ``train_plan(TrainingPlan.resolve(model, data, augmentation, ...), ...)``.
    """
    data, test_data = default_data(data, test_data)
    plan = TrainingPlan.resolve(model, data, augmentation, preset=preset, seed=seed, device=device,
                                optimizer=optimizer, **overrides)
    return train_plan(plan, test_data=test_data, budget_s=budget_s, progress=progress)


def train_plan(plan: TrainingPlan, test_data: ImageData | None = None, budget_s: float | None = None,
               progress: bool = True) -> TrainedModel:
    """Execute `plan` (see `TrainingPlan`): the trained model and its record.

    The weights are a function of the plan alone; `test_data` (evaluated at the end for
    ``record.test_accuracy``), `budget_s` (wall-clock limit, `TimeBudgetExceeded` past it) and
    `progress` (a bar on a terminal) change only the record and when the call gives up.
    """
    start = time.perf_counter()
    if not isinstance(plan, TrainingPlan):
        raise PsaUsageError("train_plan takes a TrainingPlan", observed=type(plan).__name__,
                            fix="build one with TrainingPlan.resolve(model, data, augmentation, ...), or call train(...)")
    plan.check_test_data(test_data)
    if plan.trainer is not None:
        return _train_with_recipe(plan, test_data, budget_s, progress, start)
    return _train_builtin(plan, test_data, budget_s, progress, start)


def _train_builtin(plan: TrainingPlan, test_data: ImageData | None, budget_s: float | None, progress: bool,
                   start: float) -> TrainedModel:
    p, aug, dev, optimizer, seed = plan.preset, plan.augmentation, plan.device, plan.optimizer, plan.seed
    amp = plan.autocast_dtype
    train_set = plan.data
    steps = batches.Plan(len(train_set), p.batch_size, p.epochs)
    label = plan.label
    clock = _Budget(budget_s, start, label, steps)

    with _seeded(seed, dev), _cudnn_benchmark(dev.type == "cuda"):
        mean, std = channel_stats(train_set.images)
        net = build_model(plan.model, plan.num_classes, plan.in_channels, mean=mean, std=std,
                          image_size=plan.image_size)
        fmt = torch.channels_last if p.channels_last else torch.preserve_format
        # torch's stub for Module.to lacks the (device, memory_format=) form the runtime accepts
        net = net.to(dev, memory_format=fmt)  # type: ignore[call-overload]
        opt = _optimizer(net, p, optimizer)
        sched = _scheduler(opt, p, steps.total_steps)
        scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
        workers = (batches.auto_workers(dev, aug) if p.workers == "auto" else int(p.workers))
        stream, workers = batches.stream(train_set.images, train_set.labels, aug, steps, seed, device=dev,
                                         workers=workers, microbatch=p.aug_microbatch)
        loop = _Loop(net, opt, sched, scaler, amp, p, optimizer, dev, seed)
        stop = _StoppingRule(p, train_set, dev, amp) if p.target_train_loss is not None else None
        try:
            with _compute_threads(plan):
                final_loss, wait_s, loop_s, epochs_done = loop.run(stream, steps, clock, progress, label, stop)
        finally:
            _close(stream)
        net.eval()
        t_eval = time.perf_counter()
        train_acc, train_loss, test_acc, test_loss = _final_evaluation(net, plan, test_data)
        adversarial = _adversarial_record(net, p, test_data, dev, seed)
        eval_s = time.perf_counter() - t_eval
        clock.check(steps.epochs - 1, steps.total_steps, stage="evaluation")

    steps_done = epochs_done * steps.steps_per_epoch
    samples = steps_done * steps.effective_batch
    record = TrainingRecord(
        model=spec_name(plan.model), num_params=sum(t.numel() for t in net.parameters()), preset=p.name,
        preset_fields=p.to_dict(), optimizer=optimizer, seed=seed, device=str(dev),
        device_kind=plan.device_kind, dtype="float32", autocast=plan.autocast,
        channels_last=p.channels_last, deterministic=dev.type == "cpu", epochs=epochs_done,
        n_train=len(train_set), batch_size=steps.effective_batch, steps=steps_done,
        final_loss=final_loss, train_accuracy=train_acc, train_loss=train_loss,
        test_accuracy=test_acc, test_loss=test_loss, wall_s=time.perf_counter() - start,
        train_s=loop_s - wait_s, data_wait_s=wait_s, eval_s=eval_s,
        images_per_s=samples / loop_s if loop_s > 0 else float("nan"), s_per_epoch=loop_s / epochs_done,
        workers=workers, augmentation=aug.name, augmentation_identity=plan.augmentation_identity,
        data=_describe_data(train_set), test_data=_describe_data(test_data) if test_data is not None else None,
        versions=dict(plan.versions), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra={"aug_microbatch": p.aug_microbatch} if p.aug_microbatch > 1 else {},
        stopping=stop.record(epochs_done, steps.epochs) if stop is not None else None,
        adversarial=adversarial, threads=plan.threads,
    )
    return TrainedModel(net, record)


def _train_with_recipe(plan: TrainingPlan, test_data: ImageData | None, budget_s: float | None, progress: bool,
                       start: float) -> TrainedModel:
    """Run the user's recipe (`user_trainer`) under the plan's seeding and budget; the same record around it."""
    p, dev, amp, seed = plan.preset, plan.device, plan.autocast_dtype, plan.seed
    train_set = plan.data
    steps = batches.Plan(len(train_set), p.batch_size, p.epochs)
    clock = _Budget(budget_s, start, plan.label, steps)
    identity = dict(plan.trainer_identity or {})

    def build() -> nn.Module:
        mean, std = channel_stats(train_set.images)
        net = build_model(plan.model, plan.num_classes, plan.in_channels, mean=mean, std=std,
                          image_size=plan.image_size)
        fmt = torch.channels_last if p.channels_last else torch.preserve_format
        moved: nn.Module = net.to(dev, memory_format=fmt)  # type: ignore[call-overload]  # torch's stub lacks it
        return moved

    tools = _Tools(build_model=build, optimizer=lambda net: _optimizer(net, p, plan.optimizer),
                   scheduler=lambda opt: _scheduler(opt, p, steps.total_steps),
                   check_budget=lambda epoch, done: clock.check(epoch, done),
                   stopping=lambda: _StoppingRule(p, train_set, dev, amp) if p.target_train_loss is not None else None,
                   compute_threads=lambda dev, workers: _compute_threads(plan))
    job = TrainingJob(plan, progress, tools)
    # the whole recipe at the plan's thread count: its own forward passes change the weights as well
    with _seeded(seed, dev), _cudnn_benchmark(dev.type == "cuda"), _compute_threads(plan):
        t_loop = time.perf_counter()
        try:
            with recipe_errors(plan):
                returned = plan.trainer(job)
        finally:
            job.close()
        loop_s = time.perf_counter() - t_loop
        if returned is None and getattr(plan.trainer, "declines", False):  # every hook implementation declined
            builtin = _train_builtin(plan, test_data, budget_s, progress, start)
            return TrainedModel(builtin.model, dataclasses.replace(
                builtin.record, recipe={**identity, "declined": True,
                                        "note": "every pytest_psa_train implementation returned None: "
                                                "the built-in trainer trained this plan"}))
        net, extra = accept_returned(returned, plan)
        net = net.to(dev).eval()
        t_eval = time.perf_counter()
        train_acc, train_loss, test_acc, test_loss = _final_evaluation(net, plan, test_data)
        eval_s = time.perf_counter() - t_eval
        clock.check(steps.epochs - 1, steps.total_steps, stage="evaluation")

    samples = job.steps_done * steps.effective_batch
    stop = job.stopping
    record = TrainingRecord(
        model=spec_name(plan.model), num_params=sum(t.numel() for t in net.parameters()), preset=p.name,
        preset_fields=p.to_dict(), optimizer=plan.optimizer, seed=seed, device=str(dev),
        device_kind=plan.device_kind, dtype="float32", autocast=plan.autocast,
        channels_last=p.channels_last, deterministic=dev.type == "cpu", epochs=job.epochs_done,
        n_train=len(train_set), batch_size=steps.effective_batch, steps=job.steps_done,
        final_loss=job.final_loss, train_accuracy=train_acc, train_loss=train_loss,
        test_accuracy=test_acc, test_loss=test_loss, wall_s=time.perf_counter() - start,
        train_s=loop_s - job.data_wait_s, data_wait_s=job.data_wait_s, eval_s=eval_s,
        images_per_s=samples / loop_s if loop_s > 0 and samples else float("nan"),
        s_per_epoch=loop_s / job.epochs_done if job.epochs_done else float("nan"),
        workers=job.workers, augmentation=plan.augmentation.name, augmentation_identity=plan.augmentation_identity,
        data=_describe_data(train_set), test_data=_describe_data(test_data) if test_data is not None else None,
        versions=dict(plan.versions), created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra=extra, stopping=stop.record(job.epochs_done, steps.epochs) if stop is not None and stop.history else None,
        recipe={**identity, "declined": False,
                "convention": "the recipe trained the model; epochs, steps and final_loss count what it drew from "
                              "job.batches() and logged with job.log_loss() (final_loss NaN: none logged); "
                              "train and test accuracy and loss are the plugin's clean evaluation in eval mode"},
        threads=plan.threads,
    )
    return TrainedModel(net, record)


class _StoppingRule:
    """Stop after the first epoch whose clean training loss reaches `target_train_loss` (Jiang et al. 2020).

    The loss is the mean cross-entropy (nats) in eval mode on the preset's fixed class-balanced
    subset of `target_eval_n` un-augmented training images: the same images for every model of a pair.
    """

    def __init__(self, p: Preset, train_set: ImageData, dev: torch.device, amp: torch.dtype | None) -> None:
        assert p.target_train_loss is not None
        self.target, self.p, self.dev, self.amp = float(p.target_train_loss), p, dev, amp
        self.images = train_set.subset(p.target_eval_n, seed=p.subset_seed)
        self.history: list[float] = []
        self.eval_s = 0.0

    def reached(self, net: nn.Module) -> bool:
        t0 = time.perf_counter()
        _, loss = evaluate(net, self.images, device=self.dev, autocast=self.amp, batch_size=self.p.eval_batch_size)
        self.eval_s += time.perf_counter() - t0
        self.history.append(loss)
        return loss <= self.target

    def record(self, epochs_done: int, cap: int) -> dict[str, Any]:
        reached = bool(self.history) and self.history[-1] <= self.target
        return {
            "target_train_loss": self.target, "reached": reached, "epochs_used": epochs_done, "epoch_cap": cap,
            "final_clean_train_loss": self.history[-1] if self.history else None,
            "history": [round(v, 5) for v in self.history], "eval_n": len(self.images), "eval_s": self.eval_s,
            "why": (f"reached the target after {epochs_done} of at most {cap} epochs" if reached else
                    f"hit the cap of {cap} epochs at clean training loss {self.history[-1]:.4f} > target "
                    f"{self.target:g}: raise epochs (the cap) or the target"),
            "convention": "mean cross-entropy in nats, eval mode (BatchNorm running statistics), no label smoothing, "
                          f"on {len(self.images)} un-augmented training images (the preset's fixed class-balanced "
                          "subset), measured at the end of each epoch; the LR schedule spans the cap",
        }


def _final_evaluation(net: nn.Module, plan: TrainingPlan, test_data: ImageData | None
                      ) -> tuple[float | None, float | None, float | None, float | None]:
    """(train accuracy, train loss, test accuracy, test loss) of a trained model, the record's clean numbers:
    the train side on the preset's `train_eval_n` subset, the test side on all of `test_data` (None: skipped)."""
    p, dev, amp = plan.preset, plan.device, plan.autocast_dtype
    train_acc = train_loss = test_acc = test_loss = None
    if p.train_eval_n is None or p.train_eval_n > 0:
        train_acc, train_loss = evaluate(net, plan.data.subset(p.train_eval_n, seed=p.subset_seed),
                                         device=dev, autocast=amp, batch_size=p.eval_batch_size)
    if test_data is not None:
        test_acc, test_loss = evaluate(net, test_data, device=dev, autocast=amp, batch_size=p.eval_batch_size)
    return train_acc, train_loss, test_acc, test_loss


def _adversarial_record(net: nn.Module, p: Preset, test_data: ImageData | None, dev: torch.device,
                        seed: int) -> dict[str, Any] | None:
    """FGSM-AT's settings, plus its catastrophic-overfitting check on the test data when there is some."""
    if p.regime != "fgsm_at":
        return None
    out: dict[str, Any] = {"regime": "fgsm_at", "epsilon": p.at_epsilon, "step": p.at_step,
                           "random_start": "uniform in the eps-ball, clamped to [0, 1]",
                           "order": "augmentation first, then FGSM on the augmented batch",
                           "convention": "L-inf on the [0, 1] pixel scale (Wong et al. 2020)"}
    if test_data is not None:
        out["check"] = robust_accuracy(net, test_data, epsilon=p.at_epsilon, device=dev, seed=seed)
    return out


# -- the optimization loop ---------------------------------------------------------------------
class _Loop:
    def __init__(self, net: nn.Module, opt: torch.optim.Optimizer, sched: Any, scaler: Any,
                 amp: torch.dtype | None, p: Preset, optimizer: str, dev: torch.device, seed: int = 0) -> None:
        self.net, self.opt, self.sched, self.scaler, self.amp = net, opt, sched, scaler, amp
        self.p, self.sam, self.dev = p, optimizer != "sgd", dev
        self.fmt = torch.channels_last if p.channels_last else torch.contiguous_format
        self.fgsm = (FgsmTrainer(net, self.loss, epsilon=p.at_epsilon, step=p.at_step, seed=seed, device=dev)
                     if p.regime == "fgsm_at" else None)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.dev.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            out = self.net(x)
        return F.cross_entropy(out.float(), y, label_smoothing=self.p.label_smoothing)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor
        if self.fgsm is not None:  # on the (augmented) batch: AT + augmentation attacks what the augmentation made
            x = self.fgsm.perturb(x, y)
        if self.sam:
            assert isinstance(self.opt, SAM)  # _optimizer makes a SAM for every optimizer but "sgd"
            passes: list[int] = []

            def closure() -> torch.Tensor:
                # the second (perturbed) pass must not move BatchNorm's running statistics
                with frozen_bn_stats(self.net) if passes else contextlib.nullcontext():
                    passes.append(1)
                    out = self.loss(x, y)
                    out.backward()
                return out

            self.opt.zero_grad(set_to_none=True)
            loss = self.opt.step(closure)
        else:
            loss = self.loss(x, y)
            self.opt.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.opt)
                self.scaler.update()
            else:
                loss.backward()
                self.opt.step()
        self.sched.step()
        return loss.detach()

    def run(self, stream: Iterator[tuple[torch.Tensor, torch.Tensor]], plan: batches.Plan, clock: _Budget,
            progress: bool, label: str, stop: _StoppingRule | None = None) -> tuple[float, float, float, int]:
        """Run the steps, every epoch or up to the one that meets `stop`; returns (mean loss of the
        last epoch, seconds waiting for data, loop seconds, epochs run)."""
        from pytest_psa._progress import progress as progress_bar

        self.net.train()
        wait = 0.0
        t0 = time.perf_counter()
        epoch_loss = torch.zeros((), device=self.dev)
        last = float("nan")
        # drawn only on an interactive terminal (not under -q, in CI or when output is captured)
        bar = progress_bar(desc=f"psa train {label}", total=plan.total_steps, unit="step", enabled=progress)
        try:
            for step in range(plan.total_steps):
                tw = time.perf_counter()
                x, y = next(stream)
                wait += time.perf_counter() - tw
                epoch_loss += self.step(x.contiguous(memory_format=self.fmt), y)
                bar.update(1)
                epoch, k = divmod(step + 1, plan.steps_per_epoch)
                if k == 0:
                    last = float(epoch_loss) / plan.steps_per_epoch
                    if not math.isfinite(last):
                        raise PsaUsageError(
                            f"training diverged: the mean loss of epoch {epoch} is {last}",
                            observed=f"lr={self.p.lr}, batch_size={self.p.batch_size}, autocast={self.amp}",
                            fix="lower the learning rate (lr=...) or check the data and the model",
                        )
                    epoch_loss.zero_()
                    bar.set_postfix(epoch=f"{epoch}/{plan.epochs}", loss=f"{last:.3f}")
                    if self.fgsm is not None:
                        self.fgsm.check(f"epoch {epoch}")
                    if stop is not None and stop.reached(self.net):
                        return last, wait, time.perf_counter() - t0, epoch
                clock.check(step // plan.steps_per_epoch, step + 1)
        finally:
            bar.close()
        return last, wait, time.perf_counter() - t0, plan.epochs


class _Budget:
    def __init__(self, budget_s: float | None, start: float, label: str, plan: batches.Plan) -> None:
        if budget_s is not None and not budget_s > 0:
            raise PsaUsageError("budget_s must be positive (or None for no limit)", observed=budget_s)
        self.budget, self.start, self.label, self.plan = budget_s, start, label, plan

    def check(self, epoch: int, steps_done: int, stage: str = "training") -> None:
        check_budget(lambda: f"{stage} of {self.label} (step {steps_done}/{self.plan.total_steps})")  # a psa budget
        if self.budget is None:
            return
        elapsed = time.perf_counter() - self.start
        if elapsed <= self.budget:
            return
        total = self.plan.total_steps
        pace = f"; at this pace all {total} steps need about {elapsed * total / steps_done:.0f} s" \
            if steps_done < total else ""
        raise TimeBudgetExceeded(
            f"training {self.label} ran past its time budget of {self.budget:g} s during {stage}",
            observed=f"{elapsed:.1f} s elapsed at epoch {epoch + 1}/{self.plan.epochs}, "
                     f"step {steps_done}/{total}{pace}",
            fix="raise the budget (budget_s=...), or use a smaller preset or fewer epochs / n_train "
                "(e.g. train(..., epochs=2, n_train=5000)); with the model cache later runs skip training",
        )


# -- pieces ------------------------------------------------------------------------------------
def evaluate(model: nn.Module, data: ImageData, *, device: str | torch.device | None = None,
             autocast: torch.dtype | None = None, batch_size: int = 1000) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of `model` on clean `data`, in eval mode, without gradients."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    try:
        with torch.no_grad():
            for i in range(0, len(data), batch_size):
                x = data.images[i:i + batch_size].to(dev).float().div_(255.0)
                y = data.labels[i:i + batch_size].to(dev)
                with torch.autocast(dev.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                    out = model(x.contiguous(memory_format=torch.channels_last)).float()
                loss_sum += float(F.cross_entropy(out, y, reduction="sum"))
                correct += int((out.argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return correct / len(data), loss_sum / len(data)


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, on the [0, 1] scale (exact, in float64 chunks)."""
    c = images.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].to(torch.float64)
        s += x.sum(dim=(0, 2, 3))
        s2 += x.square().sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = s / n
    std = (s2 / n - mean.square()).clamp_min(1e-12).sqrt()
    return [float(m) / 255.0 for m in mean], [max(float(v) / 255.0, 1e-3) for v in std]


def _optimizer(net: nn.Module, p: Preset, name: str) -> torch.optim.Optimizer:
    nesterov = p.nesterov and p.momentum > 0
    if name == "sgd":
        return torch.optim.SGD(net.parameters(), lr=p.lr, momentum=p.momentum, nesterov=nesterov,
                               weight_decay=p.weight_decay)
    if name == "sam":
        return SAM(net.parameters(), torch.optim.SGD, rho=p.sam_rho,
                   lr=p.lr, momentum=p.momentum, nesterov=nesterov, weight_decay=p.weight_decay)
    return SAM(net.parameters(), torch.optim.SGD, rho=p.asam_rho, adaptive=True, eta=p.asam_eta,
               lr=p.lr, momentum=p.momentum, nesterov=nesterov, weight_decay=p.weight_decay)


def _scheduler(opt: torch.optim.Optimizer, p: Preset, total: int) -> Any:
    if p.schedule == "onecycle":
        if p.warmup_frac * total == 1:  # torch's OneCycleLR divides by zero on a warm-up of exactly one step
            raise PsaUsageError(
                f"{total} optimization steps give the one-cycle schedule a warm-up of exactly one step "
                f"({p.warmup_frac:g} of the steps), which torch's OneCycleLR cannot run",
                observed=f"n_train / batch_size x epochs = {total} steps",
                fix="train on more images or for more epochs, use a smaller batch_size, or schedule='cosine'")
        # the measured recipe: linear warm-up over 25 % to lr, then linear decay to lr / 1000
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=p.lr, total_steps=total, pct_start=p.warmup_frac, anneal_strategy="linear",
            div_factor=10.0, final_div_factor=100.0,
        )
    warm = int(p.warmup_frac * total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if p.schedule == "constant":  # the stopping rule's schedule: every model stops at the same learning rate
            return 1.0
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@contextlib.contextmanager
def _seeded(seed: int, dev: torch.device) -> Iterator[None]:
    """Seed the global torch RNG for initialization (and user models' dropout), then restore it."""
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


@contextlib.contextmanager
def _cudnn_benchmark(on: bool) -> Iterator[None]:
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on or old
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


@contextlib.contextmanager
def _compute_threads(plan: TrainingPlan) -> Iterator[None]:
    """On CPU, compute with exactly the plan's intra-op threads (`TrainingPlan.threads`: the weights
    depend on the count, and the key names it), whatever the caller's torch setting is now."""
    old = torch.get_num_threads()
    if plan.threads is not None:
        torch.set_num_threads(plan.threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _close(stream: Any) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()  # a generator: shuts down DataLoader workers at once, also after an error


def _describe_data(d: ImageData) -> dict[str, Any]:
    return {"name": d.name, "split": d.split, "n": len(d), "fingerprint": d.fingerprint(),
            "image_size": list(d.image_size), "num_classes": d.num_classes}


__all__ = [
    "OPTIMIZERS", "OptimizerName", "channel_stats", "cpu_has_native_bf16", "device_kind", "evaluate",
    "frozen_bn_stats", "resolve_autocast", "resolve_device", "train", "train_plan",
]
