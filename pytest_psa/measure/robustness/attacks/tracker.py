"""Per-sample bookkeeping of one attack run: the first iterate that fools the model, else the
iterate with the highest loss. Every evaluated iterate goes through `observe`, the final one
included, so nothing found is lost (torchattacks and ART return the last iterate; adv-lib does
not evaluate the last one)."""

from __future__ import annotations

import torch


class Tracker:
    def __init__(self, start: torch.Tensor) -> None:
        n = len(start)
        self.fooled = torch.zeros(n, dtype=torch.bool, device=start.device)
        self.x_out = start.clone()
        self.loss_out = torch.full((n,), -float("inf"), device=start.device)

    def observe(self, pos: torch.Tensor, x: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor,
                y: torch.Tensor) -> torch.Tensor:
        """Record the iterate `x` of the samples at `pos`; returns which of its rows fool the model now."""
        wrong = logits.argmax(1) != y
        open_ = ~self.fooled[pos]
        new = wrong & open_
        better = open_ & ~wrong & (loss > self.loss_out[pos])
        update = new | better
        if bool(update.any()):
            p = pos[update]
            self.x_out[p] = x[update]
            self.loss_out[p] = loss[update]
            self.fooled[pos[new]] = True
        return wrong


def compact(keep: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """The rows `keep` of every tensor (the samples still being attacked)."""
    return [t[keep] for t in tensors]
