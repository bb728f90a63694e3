"""The fixed measurement problem: a model, the tensors we perturb, fixed data chunks and a loss.

Every metric evaluates the model through :func:`torch.func.functional_call` with its own
weight tensors, so the user's module is never written to: the only state we touch is the
train/eval flag, which :mod:`pytest_psa.measure.flatness._state` restores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Union, cast

import torch
from torch import nn
from torch.func import functional_call

from pytest_psa._time_budget import check_budget
from pytest_psa.errors import PsaUsageError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
AccuracyFn = Callable[[torch.Tensor, torch.Tensor], Union[torch.Tensor, None]]  # correct count, or None: no accuracy
ParamSpec = Union[str, Sequence[str], Callable[[str, nn.Parameter], bool]]

PARAM_POLICIES = ("trainable", "weights")


def to_chunks(
    data: Any, *, max_images: int | None, chunk_size: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Turn `data` into fixed (x, y) chunks on `device`, keeping the first `max_images` rows.

    Accepts a tuple ``(inputs, targets)``, an object with ``.images`` (uint8 NCHW) and
    ``.labels`` (the project's ``ImageData``), or an iterable of ``(x, y)`` batches.
    uint8 inputs become float in [0, 1].
    """
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        xs, ys = [data[0]], [data[1]]
    elif hasattr(data, "images") and hasattr(data, "labels"):
        xs, ys = [torch.as_tensor(data.images)], [torch.as_tensor(data.labels)]
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, torch.Tensor)):
        seen = 0
        for batch in data:
            if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                raise PsaUsageError(
                    "measure_flatness: every batch of an iterable must be an (inputs, targets) pair",
                    observed=type(batch).__name__,
                    fix="pass a DataLoader yielding (x, y), a tuple (inputs, targets), or an ImageData",
                )
            xs.append(torch.as_tensor(batch[0]))
            ys.append(torch.as_tensor(batch[1]))
            seen += len(xs[-1])
            if max_images is not None and seen >= max_images:
                break  # the rest is never used: do not iterate a long loader to its end
    else:
        raise PsaUsageError(
            "measure_flatness: unsupported data",
            observed=type(data).__name__,
            fix="pass a tuple (inputs, targets) of tensors, an ImageData, or an iterable of (x, y) batches",
        )
    if not xs or sum(len(x) for x in xs) == 0:
        raise PsaUsageError(
            "measure_flatness: the data is empty", fix="pass at least one (input, target) example"
        )
    x = torch.cat([t.reshape(len(t), *t.shape[1:]) for t in xs])
    y = torch.cat(ys)
    if len(x) != len(y):
        raise PsaUsageError(
            "measure_flatness: inputs and targets differ in length",
            observed=f"{len(x)} inputs, {len(y)} targets",
            fix="pass one target per input",
        )
    if max_images is not None:
        x, y = x[:max_images], y[:max_images]
    if x.dtype == torch.uint8:
        x = x.float() / 255  # the project's image contract: float in [0, 1]
    x, y = x.to(device), y.to(device)
    return list(zip(x.split(chunk_size), y.split(chunk_size)))


def select_params(model: nn.Module, spec: ParamSpec) -> tuple[str, ...]:
    """Names of the parameters to perturb, in `model.named_parameters()` order."""
    named = list(model.named_parameters())
    if isinstance(spec, str):
        if spec == "trainable":
            names = [n for n, p in named if p.requires_grad]
        elif spec == "weights":  # Li et al.'s "biasbn" choice: no biases, no BN affine
            names = [n for n, p in named if p.requires_grad and p.ndim >= 2]
        else:
            raise PsaUsageError(
                f"measure_flatness: unknown params policy {spec!r}",
                fix=f"use one of {PARAM_POLICIES}, a list of parameter names or a callable (name, param) -> bool",
            )
    elif callable(spec):
        names = [n for n, p in named if spec(n, p)]
    else:
        wanted = list(spec)
        known = {n for n, _ in named}
        missing = [n for n in wanted if n not in known]
        if missing:
            raise PsaUsageError(
                "measure_flatness: params names not found in the model",
                observed=missing[:5],
                fix=f"use names from model.named_parameters(), e.g. {sorted(known)[:5]}",
            )
        names = [n for n, _ in named if n in set(wanted)]
    if not names:
        raise PsaUsageError(
            "measure_flatness: the model has no trainable parameters to perturb",
            observed=f"params={spec!r}; {len(named)} parameters, none selected",
            fix="pass a model with requires_grad parameters, or choose them with params=[names]",
        )
    return tuple(names)


def default_accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Number of correct predictions, or None when the output is not a classifier's.

    (N, C>=2) logits with integer labels: argmax; (N,) or (N, 1) logits with 0/1 labels: sign.
    """
    if y.is_floating_point() or y.is_complex():
        return None
    if out.ndim == 2 and out.shape[1] >= 2 and y.shape == (out.shape[0],):
        return (out.argmax(1) == y).sum()
    if (out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)) and y.numel() == out.shape[0]:
        yy = y.reshape(-1)
        if bool(((yy == 0) | (yy == 1)).all()):
            return ((out.reshape(-1) > 0) == yy.bool()).sum()
    return None


class Problem:
    """Loss (and accuracy) of `model` on fixed chunks as a function of a flat weight vector."""

    def __init__(
        self,
        model: nn.Module,
        chunks: list[tuple[torch.Tensor, torch.Tensor]],
        loss_fn: LossFn,
        names: tuple[str, ...],
        accuracy_fn: AccuracyFn | None = default_accuracy,
    ) -> None:
        self.model = model
        self.chunks = chunks
        self.loss_fn = loss_fn
        self.names = names
        named = dict(model.named_parameters())
        self.base = [named[n].detach() for n in names]
        self.shapes = [p.shape for p in self.base]
        self.numels = [p.numel() for p in self.base]
        self.n_images = sum(len(x) for x, _ in chunks)
        self.weights = [len(x) / self.n_images for x, _ in chunks]  # mean loss of a chunk -> share of the total
        dtypes = {p.dtype for p in self.base}
        # one flat dtype: the model's own when uniform float32/64 (exact closed-form checks), else float32
        self.dtype = dtypes.pop() if len(dtypes) == 1 and dtypes <= {torch.float32, torch.float64} else torch.float32
        self.w = torch.cat([p.reshape(-1).to(self.dtype) for p in self.base])  # flat copy of the weights
        self.n_params = int(self.w.numel())
        self.device = self.w.device
        self.accuracy_fn = accuracy_fn
        self.forward_passes = 0  # full passes over the data, forward only
        self.gradient_passes = 0  # full passes with a backward
        self.loss0, self.accuracy0 = self.evaluate(None)
        self.forward_passes = 0

    # -- flat <-> tensors -------------------------------------------------------------
    def unflat(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = flat.split(self.numels)
        return {
            n: t.view(s).to(b.dtype) for n, t, s, b in zip(self.names, parts, self.shapes, self.base)
        }

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [t.view(s) for t, s in zip(flat.split(self.numels), self.shapes)]

    def _call(self, params: dict[str, torch.Tensor] | None, x: torch.Tensor) -> torch.Tensor:
        # both calls are typed Any (nn.Module.__call__, functional_call): the model maps a batch to one tensor
        if params is None:
            return cast(torch.Tensor, self.model(x))
        return cast(torch.Tensor, functional_call(self.model, params, (x,), strict=False))

    # -- evaluations ------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, flat: torch.Tensor | None) -> tuple[float, float | None]:
        """Mean loss over all chunks (float64 sum of chunk means weighted by size) and accuracy."""
        check_budget("a loss evaluation of a flatness measurement")  # a psa time budget, between passes
        params = None if flat is None else self.unflat(flat)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.device)
        accuracy_fn = self.accuracy_fn
        for (x, y), share in zip(self.chunks, self.weights):
            out = self._call(params, x)
            total += self.loss_fn(out, y).double() * share
            if accuracy_fn is not None:
                c = accuracy_fn(out, y)
                if c is None:
                    accuracy_fn = None  # not a classifier: no accuracy for this problem
                    self.accuracy_fn = None
                else:
                    correct += c.double()
        self.forward_passes += 1
        loss = float(total)
        return loss, (float(correct) / self.n_images if accuracy_fn is not None else None)

    def loss_and_grad(self, flat: torch.Tensor) -> tuple[float, torch.Tensor]:
        """Mean loss and its gradient with respect to the flat weights."""
        check_budget("a gradient evaluation of a flatness measurement")
        leaves = [t.detach().requires_grad_(True) for t in self.split(flat)]
        params = {n: t.to(b.dtype) for n, t, b in zip(self.names, leaves, self.base)}
        total = 0.0
        grad = torch.zeros_like(flat)
        for (x, y), share in zip(self.chunks, self.weights):
            loss = self.loss_fn(self._call(params, x), y) * share
            g = torch.autograd.grad(loss, leaves, allow_unused=True)
            grad += torch.cat([
                (gi if gi is not None else torch.zeros_like(li)).reshape(-1) for gi, li in zip(g, leaves)
            ])
            total += float(loss.detach().double())
        self.gradient_passes += 1
        return total, grad
