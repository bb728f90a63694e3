"""The attack harness's self-checks: inputs, model state, output sanity and perturbation bounds.

Each check either passes (and is recorded as a `CheckOutcome` in the result) or raises
`AttackSelfCheckError` / `PsaUsageError` naming the problem and the fix. A failed self-check
means the attack's number cannot be trusted, so it is an error, not a warning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from pytest_psa.errors import PsaError, PsaUsageError


class AttackSelfCheckError(PsaError, AssertionError):
    """An attack's self-check failed: the model or the attack broke an invariant (mode, buffers,
    ε-bound, finite outputs, gradient masking, ε = 0, monotonicity), so its robust accuracy is void."""


@dataclass(frozen=True)
class CheckOutcome:
    """One self-check that ran: its name, whether it passed and what it saw."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


# -- inputs ------------------------------------------------------------------------------------
def validate_images(images: Any) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise PsaUsageError("images must be a torch.Tensor of shape (N, C, H, W)", observed=type(images).__name__,
                            fix="convert with torch.as_tensor(...) (e.g. ImageData.images.float() / 255)")
    if not images.is_floating_point():
        raise PsaUsageError("images must be floating point in [0, 1]", observed=f"dtype {images.dtype}",
                            fix="use images.float() / 255 for uint8 images")
    if images.dim() != 4 or images.shape[0] == 0:
        raise PsaUsageError("images must be a non-empty batch of shape (N, C, H, W)", observed=tuple(images.shape),
                            fix="add the batch dimension with images.unsqueeze(0) for a single image")
    if not torch.isfinite(images).all():
        raise PsaUsageError("images contain NaN or inf", fix="pass finite images in [0, 1]")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0:
        raise PsaUsageError(f"images look normalized (min {lo:.3g}); attacks run on the [0, 1] pixel scale",
                            observed=f"min {lo:.4g}, max {hi:.4g}",
                            fix="pass [0, 1] images and put the normalization inside the model "
                                "(e.g. nn.Sequential(Normalize(mean, std), net))")
    if hi > 1:
        hint = "divide uint8-scale images by 255" if hi > 2 else \
            "pass [0, 1] images and put any normalization inside the model"
        raise PsaUsageError(f"images exceed 1 (max {hi:.4g}); attacks run on the [0, 1] pixel scale",
                            observed=f"min {lo:.4g}, max {hi:.4g}", fix=hint)
    return images


def validate_labels(labels: Any, n: int) -> torch.Tensor:
    if isinstance(labels, torch.Tensor):
        checked = labels
    else:
        try:
            checked = torch.as_tensor(labels)
        except Exception as exc:  # noqa: BLE001 - any unconvertible object gets the same message
            raise PsaUsageError("labels must be a 1-D integer tensor", observed=type(labels).__name__,
                                fix="pass torch.tensor(labels, dtype=torch.int64)") from exc
    if checked.is_floating_point() or checked.is_complex() or checked.dtype == torch.bool:
        raise PsaUsageError("labels must be integer class indices", observed=f"dtype {checked.dtype}",
                            fix="pass class indices as int64 (not one-hot vectors or probabilities)")
    if checked.dim() != 1 or len(checked) != n:
        raise PsaUsageError("labels must be 1-D with one label per image", observed=f"shape {tuple(checked.shape)} "
                            f"for {n} images", fix="pass labels of shape (N,) matching images")
    return checked.long()


def validate_logits(out: Any, n: int, labels: torch.Tensor) -> int:
    """Check one batch of model outputs; returns the number of classes."""
    if not isinstance(out, torch.Tensor):
        raise PsaUsageError("the model must return a tensor of logits of shape (N, classes)",
                            observed=type(out).__name__,
                            fix="wrap the model so forward returns the logits tensor (e.g. out.logits or out[0])")
    if out.dim() != 2 or out.shape[0] != n or out.shape[1] < 2:
        raise PsaUsageError("the model must return logits of shape (N, classes) with classes >= 2",
                            observed=f"shape {tuple(out.shape)} for a batch of {n}",
                            fix="return one row of class scores per image")
    if not out.is_floating_point():
        raise PsaUsageError("the model returned non-float outputs (class indices?)", observed=f"dtype {out.dtype}",
                            fix="return the logits, not argmax predictions")
    k = int(out.shape[1])
    bad = labels[(labels < 0) | (labels >= k)]
    if len(bad):
        raise PsaUsageError(f"labels out of range for a model with {k} classes", observed=bad[:5].tolist(),
                            fix=f"labels must lie in 0..{k - 1}")
    return k


# -- model state -------------------------------------------------------------------------------
@contextlib.contextmanager
def model_guard(model: Callable[..., Any], outcomes: list[CheckOutcome]) -> Iterator[None]:
    """Eval mode during the attack; afterwards every submodule's mode is restored and every buffer and
    parameter must be unchanged (buffers are compared by value, parameters by in-place version)."""
    if not isinstance(model, torch.nn.Module):
        outcomes.append(CheckOutcome("eval mode and buffers", True, "not an nn.Module: nothing to check"))
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    params = {name: (p.data_ptr(), p._version) for name, p in model.named_parameters()}
    frozen = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in frozen:  # input gradients only: no weight gradients are built or stored
        p.requires_grad_(False)
    try:
        yield
    finally:  # restore even when the attack raised, so a failed check never leaves the model altered
        switched = [n for n, m in model.named_modules() if m.training]
        for p in frozen:
            p.requires_grad_(True)
        for m, mode in modes:
            m.train(mode)
        now = dict(model.named_buffers())
        changed = [n for n, b in now.items() if n not in buffers or not _same(b, buffers[n])]
        changed += sorted(set(buffers) - set(now))
        if changed:
            with torch.no_grad():
                for n, b in now.items():
                    if n in buffers and b.shape == buffers[n].shape:
                        b.copy_(buffers[n].to(b.dtype))
        moved = [n for n, p in model.named_parameters() if params.get(n) != (p.data_ptr(), p._version)]
    if switched:
        _switched_to_train(switched, "the attack")
    if changed:
        raise AttackSelfCheckError(
            "the model changed its buffers while being attacked in eval mode (e.g. BatchNorm running statistics)",
            observed=f"changed: {changed[:8]}{' ...' if len(changed) > 8 else ''} (restored to their values "
                     "before the attack)",
            fix="make the eval-mode forward free of side effects: a custom norm layer must not update running "
                "stats when not self.training, and caches must not live in buffers")
    if moved:
        raise AttackSelfCheckError("the model modified its parameters in place during the attack",
                                   observed=f"changed: {moved[:8]}",
                                   fix="the forward pass must not write to weights (no in-place updates in forward)")
    n_bn = sum(isinstance(m, torch.nn.modules.batchnorm._NormBase) for m, _ in modes)
    was_training = sum(mode for _, mode in modes)
    outcomes.append(CheckOutcome(
        "eval mode and buffers", True,
        f"eval during the attack ({was_training} of {len(modes)} modules were in train mode before, restored); "
        f"{len(buffers)} buffers ({n_bn} norm layers) and {len(params)} parameters unchanged"))


def check_still_eval(model: Callable[..., Any]) -> None:
    """Right after the first forward pass: a forward that calls .train() is caught before its
    batch-dependent outputs trip the other checks."""
    if isinstance(model, torch.nn.Module):
        switched = [n or type(model).__name__ for n, m in model.named_modules() if m.training]
        if switched:
            _switched_to_train(switched, "a forward pass")


def _switched_to_train(switched: list[str], when: str) -> None:
    raise AttackSelfCheckError("a submodule switched itself to train mode during the attack",
                               observed=f"in train mode after {when}: {switched[:8]}",
                               fix="do not call .train() inside forward; the attack needs eval-mode behaviour")


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


# -- output sanity -----------------------------------------------------------------------------
def check_not_probabilities(logits: torch.Tensor, outcomes: list[CheckOutcome]) -> None:
    """Softmax outputs saturate the CE gradient (AutoAttack's flag); the attack needs logits."""
    z = logits.detach().double()
    sums = z.sum(1)
    if len(z) >= 2 and bool((z >= 0).all()) and bool(((sums - 1).abs() <= 1e-3).all()):
        raise AttackSelfCheckError(
            "the model returns probabilities (every row is non-negative and sums to 1), not logits; "
            "cross-entropy on probabilities has vanishing gradients and under-reports attack success",
            observed=f"row sums in [{float(sums.min()):.6f}, {float(sums.max()):.6f}] over {len(z)} samples",
            fix="remove the final softmax from the model's forward (apply it outside for reporting)")
    outcomes.append(CheckOutcome("logits, not probabilities", True,
                                 f"{len(z)} rows: min {float(z.min()):.3g}, row sums "
                                 f"[{float(sums.min()):.3g}, {float(sums.max()):.3g}]"))


def forward_precision(model: Callable[..., Any], x: torch.Tensor) -> tuple[str, float]:
    """The least precise arithmetic a forward on `x` may compute in, and its unit roundoff: the model's
    half-precision parameters or an active autocast, else TF32 where CUDA float32 convolutions or
    matrix products may use it (PyTorch's default for cuDNN convolutions), else the input's dtype."""
    params = [p for p in getattr(model, "parameters", lambda: [])() if p.is_floating_point()]
    halves = {p.dtype for p in params if p.dtype in (torch.float16, torch.bfloat16)}
    if halves:
        dtype = max(halves, key=lambda d: torch.finfo(d).eps)
        return str(dtype).removeprefix("torch."), float(torch.finfo(dtype).eps)
    dtype = _autocast_dtype(x.device.type)
    if dtype is not None:
        return f"autocast {str(dtype).removeprefix('torch.')}", float(torch.finfo(dtype).eps)
    if x.device.type == "cuda" and x.dtype == torch.float32 and (
            torch.backends.cudnn.allow_tf32 or torch.get_float32_matmul_precision() != "highest"):
        return "tf32 (CUDA float32 with TF32 allowed)", 2.0 ** -10
    return str(x.dtype).removeprefix("torch."), float(torch.finfo(x.dtype).eps)


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype of an autocast active for `device_type`, or None (the per-device calls are torch >= 2.4)."""
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    if device_type == "cuda":  # pragma: no cover - torch < 2.4
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None  # pragma: no cover


def check_deterministic(first: torch.Tensor, second: torch.Tensor, outcomes: list[CheckOutcome], *,
                        precision: tuple[str, float] = ("float32", float(torch.finfo(torch.float32).eps))) -> None:
    """Two forward passes on the same images (the second on a smaller batch) must agree: randomized
    defenses need EoT attacks, and batch statistics make the attack optimize against the batch. Kernels
    may pick other algorithms for another batch size, so the tolerance is the larger of 1e-4 and four
    unit roundoffs of the forward's precision (`forward_precision`), relative to the largest logit:
    TF32 convolutions on CUDA differ by about 3e-4 of it between batch sizes (measured on an H200)."""
    a, b = first.detach().double(), second.detach().double()
    diff = float((a - b).abs().max())
    name, unit = precision
    tol = max(1e-4, 4 * unit) * max(1.0, float(a.abs().max()))
    if diff > tol:
        raise AttackSelfCheckError(
            "randomized or batch-dependent outputs: two forward passes on the same images in eval mode "
            "disagree, so the attack optimizes against noise and its robust accuracy is not reproducible",
            observed=f"max |logit difference| {diff:.3g} (tolerance {tol:.3g} for {name} arithmetic)",
            fix="make eval-mode forward deterministic and per-sample (dropout via nn.Dropout, not "
                "F.dropout(training=True); no noise injection; no batch statistics), or evaluate a randomized "
                "defense with an EoT attack")
    outcomes.append(CheckOutcome("deterministic outputs", True,
                                 f"two passes on {len(a)} samples: max |Δlogit| {diff:.2g} <= {tol:.2g} ({name})"))


def perturbation_tolerance(eps: float, norm: str, dtype: torch.dtype, numel: int) -> float:
    """ε(1 + 1e-6) plus the rounding of x + δ in `dtype` (one ulp of 1 per pixel; √d of them in L2)."""
    ulp = float(torch.finfo(dtype).eps)
    return eps * (1 + 1e-6) + (2 * ulp if norm == "linf" else 2 * ulp * numel ** 0.5)
