"""`Oracle`: every model call of an attack goes through here, so it is counted and checked.

Counts are per sample (adv-lib's convention): a forward on a batch of 250 adds 250. The loss is
per-sample cross-entropy summed over the batch, so each sample's input gradient is its own
unscaled gradient (a mean would divide it by the batch size and can underflow).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from pytest_psa.measure.robustness.attacks.checks import AttackSelfCheckError


class Oracle:
    def __init__(self, model: Callable[[torch.Tensor], torch.Tensor],
                 memory_format: torch.memory_format = torch.contiguous_format) -> None:
        self.model = model
        self.memory_format = memory_format
        self.forwards = 0
        self.backwards = 0
        self.calls = 0
        self.zero_grad_samples = 0

    def raw(self, x: torch.Tensor) -> object:
        """The model's output at x, counted but unchecked (the caller validates it)."""
        self.calls += 1
        self.forwards += len(x)
        return self.model(x.contiguous(memory_format=self.memory_format))

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.raw(x)
        assert isinstance(out, torch.Tensor)
        self.check_finite(out)
        return out

    @staticmethod
    def check_finite(out: torch.Tensor) -> None:
        if not torch.isfinite(out).all():
            bad = (~torch.isfinite(out)).reshape(len(out), -1).any(1).sum().item()
            raise AttackSelfCheckError(
                "the model returned NaN or inf logits (on clean images or inside the ε-ball)",
                observed=f"{bad} of {len(out)} samples in a batch",
                fix="check the model for divisions/logs that blow up on inputs in [0, 1] (e.g. an unclamped "
                    "log or a normalization by a zero std); the attack needs finite logits everywhere in the ε-ball",
            )

    def loss_grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, per-sample CE, ∂CE/∂x) at x."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self._logits(x)
            loss = F.cross_entropy(logits.float(), y, reduction="none")
            (grad,) = torch.autograd.grad(loss.sum(), x)
        self.backwards += len(x)
        return logits.detach(), loss.detach(), grad.detach()

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, per-sample CE) at x, without a gradient."""
        with torch.no_grad():
            logits = self._logits(x)
            return logits, F.cross_entropy(logits.float(), y, reduction="none")

    def note_first_gradient(self, grad: torch.Tensor) -> None:
        """Gradient masking check at a batch's first gradient: all-zero for every sample is an error."""
        zero = grad.reshape(len(grad), -1).abs().amax(1) == 0
        n_zero = int(zero.sum())
        self.zero_grad_samples += n_zero
        if n_zero == len(grad) and len(grad) >= 2:
            raise AttackSelfCheckError(
                "gradient masking: the loss gradient with respect to the input is exactly zero for every "
                "attacked sample of a batch, so a gradient attack cannot move and its robust accuracy means nothing",
                observed=f"{n_zero} of {len(grad)} samples with an all-zero input gradient",
                fix="remove non-differentiable steps from the model's forward (argmax, rounding/quantization, "
                    "thresholds, .detach() or torch.no_grad inside forward); for a deliberately non-differentiable "
                    "defense use a gradient-free attack (e.g. Square) or BPDA instead",
            )
