"""An SCO instance's empirical loss as a torch `nn.Module`, so the plugin's flatness metrics can measure it.

The module's one parameter is w; its input is a tensor of sample indices and its output the per-sample
losses f(w, z_k). `EmpiricalRiskModule.data()` and `EmpiricalRiskModule.loss` are the `data` and `loss`
arguments of `pytest_psa.measure.flatness.measure_flatness`, which then measures F_S exactly:

    m = EmpiricalRiskModule(inst.loss, inst.flat_erm())
    measure_flatness(m, m.data(), loss=m.loss, metrics=["eps_sharpness"], seed=0)
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from pytest_psa.errors import PsaUsageError


class TorchLoss(Protocol):
    """What the module needs of an SCO loss: its sizes and its per-sample losses in torch."""

    @property
    def n(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def per_sample_torch(self, w: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor: ...


def _mean(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """F_S on a chunk: the mean of the per-sample losses (targets are placeholders)."""
    return out.mean()


class EmpiricalRiskModule(nn.Module):
    """forward(indices) -> f(w, z_k) for each index k; w is the parameter `w` (float64 by default)."""

    loss = staticmethod(_mean)

    def __init__(self, problem: Any, w: Any, *, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if not callable(getattr(problem, "per_sample_torch", None)):
            raise PsaUsageError(
                "the problem has no torch form of its loss",
                observed=type(problem).__name__,
                fix="pass an SCO loss (MaskedNormLoss, ChainTriggerLoss, Hinge1D, FlatRegression2D)",
            )
        w = torch.as_tensor(np.asarray(w, dtype=np.float64), dtype=dtype).reshape(-1).clone()
        if w.numel() != problem.dim:
            raise PsaUsageError("w does not match the problem's dimension", observed=w.numel(), fix=f"pass {problem.dim} values")
        self.problem: TorchLoss = problem  # it has per_sample_torch (checked above)
        self.w = nn.Parameter(w)

    @property
    def n(self) -> int:
        return int(self.problem.n)

    def forward(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        if idx is not None:
            idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
                raise PsaUsageError("sample index out of range", observed=(int(idx.min()), int(idx.max())), fix=f"use 0 <= k < {self.n}")
        out = self.problem.per_sample_torch(self.w, idx)
        n_out = self.n if idx is None else idx.numel()
        return out.reshape(-1).expand(n_out) if out.numel() == 1 else out

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) covering the training set once: indices 0..n−1 and placeholder targets."""
        return torch.arange(self.n), torch.zeros(self.n, dtype=self.w.dtype)

    def point(self) -> np.ndarray:
        """The current w as a numpy vector (to evaluate the population risk at the measured point)."""
        return self.w.detach().cpu().numpy().astype(np.float64)
