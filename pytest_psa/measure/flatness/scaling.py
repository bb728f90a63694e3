"""Scale-invariant geometry and weight norms.

Raw sharpness changes under function-preserving rescaling (Dinh et al. 2017): multiplying a ReLU
layer by a and the next by 1/a leaves the network's function unchanged but moves sigma, lambda_max,
LPF and the trace. Filter normalization (Li et al. 2018) measures perturbations relative to the
size of each filter, which undoes such rescalings:

* a tensor with 2+ dims (conv kernel, linear matrix) gets, per output slice f, the scale
  ``||w_f|| / sqrt(n_f)``, so that isotropic noise of size sigma has ``||delta_f|| ~ sigma ||w_f||``;
* a 1-D tensor (bias, BN affine) gets ``|w_i|`` per entry (as loss-landscapes does), since a
  bias moves with its filter under such a rescale.

A metric in this geometry perturbs ``w + s * u`` instead of ``w + u``; the Hessian becomes
``diag(s) H diag(s)``.
"""

from __future__ import annotations

import math

import torch

from pytest_psa.measure.flatness._problem import Problem

NORMALIZATIONS = ("none", "filter")


def filter_scale(problem: Problem) -> torch.Tensor:
    """The flat per-entry scale s of filter normalization for the problem's weights."""
    parts = []
    for t in problem.split(problem.w):
        if t.ndim >= 2:
            per_filter = t.reshape(t.shape[0], -1)
            norms = per_filter.norm(dim=1, keepdim=True) / math.sqrt(per_filter.shape[1])
            parts.append(norms.expand_as(per_filter).reshape(-1))
        else:
            parts.append(t.abs().reshape(-1))
    return torch.cat(parts)


def weight_norms(problem: Problem) -> dict[str, float]:
    """L2 norm of each perturbed tensor, by parameter name."""
    return {n: float(t.double().norm()) for n, t in zip(problem.names, problem.split(problem.w))}
