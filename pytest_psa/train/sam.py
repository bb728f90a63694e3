"""Sharpness-aware minimization as an optimizer wrapper.

SAM (Foret et al., 2021) takes the base optimizer's step at the gradient of the *perturbed*
weights w + e, with e = rho * g / ||g|| the first-order worst case inside an L2 ball.
ASAM (Kwon et al., 2021) makes the ball scale-adaptive with T_w = |w| + eta:
e = rho * T_w^2 g / ||T_w g||, so a function-preserving rescaling of the weights does not
change what counts as "sharp". Users compare augmentation-induced flatness with the
flatness these optimizers buy (seed paper, Appendix E.2).

    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    loss_fn(model(x), y).backward(); opt.first_step(zero_grad=True)
    loss_fn(model(x), y).backward(); opt.second_step(zero_grad=True)

or ``opt.zero_grad(); opt.step(closure)`` with a closure that computes the loss, calls
``backward()`` and returns the loss (the gradients are zeroed between the two passes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from pytest_psa.errors import PsaUsageError


class SAM(torch.optim.Optimizer):
    """SAM / ASAM around any base optimizer; `param_groups` are the base's (schedulers work)."""

    def __init__(self, params: Iterable[Any], base_optimizer: Callable[..., torch.optim.Optimizer],
                 rho: float = 0.05, adaptive: bool = False, eta: float = 0.01, **kwargs: Any) -> None:
        if not rho > 0:
            raise PsaUsageError("SAM needs a positive radius rho", observed=rho,
                                fix="use e.g. rho=0.05 for SAM, rho=0.5 for ASAM on CIFAR-10")
        if eta < 0:
            raise PsaUsageError("ASAM needs eta >= 0", observed=eta, fix="use the default eta=0.01")
        super().__init__(params, dict(rho=rho, adaptive=adaptive, eta=eta, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    @torch.no_grad()
    def _scale(self, p: torch.Tensor, group: dict[str, Any]) -> torch.Tensor | float:
        return p.abs() + group["eta"] if group["adaptive"] else 1.0

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move to w + e (the ascent step) and remember w."""
        norms = [torch.linalg.vector_norm(self._scale(p, g) * p.grad)
                 for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not norms:
            raise PsaUsageError("SAM.first_step found no gradients",
                                fix="call loss.backward() before first_step()")
        grad_norm = torch.linalg.vector_norm(torch.stack(norms))
        for group in self.param_groups:
            factor = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self._scale(p, group)
                e = (s * s) * p.grad * factor if group["adaptive"] else p.grad * factor
                self.state[p]["old_p"] = p.detach().clone()
                p.add_(e)
        if zero_grad:
            self.zero_grad(set_to_none=True)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to w and take the base optimizer's step with the gradient taken at w + e."""
        for group in self.param_groups:
            for p in group["params"]:
                old = self.state[p].pop("old_p", None)
                if old is not None:
                    p.copy_(old)
        self.base_optimizer.step()
        self._opt_called = True  # what a wrapped step() sets: LR schedulers then see that a step happened
        if zero_grad:
            self.zero_grad(set_to_none=True)

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """Full SAM step: `closure` computes the loss, calls backward and returns the loss; it runs twice."""
        if closure is None:
            raise PsaUsageError("SAM.step needs a closure (it evaluates the loss twice)",
                                fix="pass closure=lambda: ..., or call first_step()/second_step() yourself")
        closure = torch.enable_grad()(closure)
        loss = closure()
        self.first_step(zero_grad=True)
        closure()
        self.second_step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.base_optimizer.param_groups = self.param_groups


@contextlib.contextmanager
def frozen_bn_stats(net: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalize with the batch but leave their running statistics unchanged
    (SAM's perturbed pass, FGSM-AT's attack pass)."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (mom, nbt) in zip(bns, saved):
            m.momentum = mom
            if nbt is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(nbt)
