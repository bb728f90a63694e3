"""Put a model in eval mode for a measurement and prove afterwards that nothing else changed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def measuring(model: nn.Module) -> Iterator[None]:
    """Eval mode inside; on exit every module's own train flag is restored and the parameters,
    buffers and ``.grad`` fields are checked to be bit-for-bit what they were."""
    modes = [(m, m.training) for m in model.modules()]  # per module: a user may mix modes
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    grads = [(p, p.grad) for p in model.parameters()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
    changed = [k for k, v in model.state_dict(keep_vars=True).items() if k not in state or not torch.equal(v.detach(), state[k])]
    changed += [f"{type(p).__name__}.grad" for p, g in grads if p.grad is not g]
    if changed:  # functional_call never writes to the module; reaching this is a bug in pytest_psa
        raise AssertionError(f"measure_flatness changed the model's state: {changed[:5]}")
