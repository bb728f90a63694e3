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

Bisla et al.'s code (LPF-SGD repository, ``model.norm()``) normalizes differently, and its LPF
numbers are measured that way: each unit f is divided by ``p_f`` before N(0, sigma^2) noise is
added, and multiplied back by ``p_f`` after it (a fixed per-channel factor, so the function is
unchanged), with

* ``p_f = ||w_f|| + |b_f|`` for a conv / linear output slice (``|b_f|`` = 0 without a bias),
* ``p_c = |gamma_c| + |beta_c|`` for a BatchNorm (or other 1-D affine) channel.

Noise sigma * z on the normalized weights is noise ``sigma * p_f * z`` on the weights themselves,
so `bisla_scale` is that ``p_f`` per entry (the weight's and the bias's entries of a unit alike).
Per weight entry it is ``sqrt(n_f) (1 + |b_f| / ||w_f||)`` times Li et al.'s scale ``||w_f|| / sqrt(n_f)``:
12-24x larger on 3x3 convolutions with 16-64 input channels. The two are different numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from pytest_psa.measure.flatness._problem import Problem

NORMALIZATIONS = ("none", "filter", "bisla")  # the order also derives each variant's noise seed


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


def _unit_norms(module_params: Mapping[str, torch.Tensor], name: str) -> torch.Tensor | None:
    """Bisla et al.'s p per output unit of the module owning `name` (".weight" / ".bias"), or None."""
    prefix, _, leaf = name.rpartition(".")
    if leaf not in ("weight", "bias"):
        return None
    dot = prefix + "." if prefix else ""
    weight, bias = module_params.get(dot + "weight"), module_params.get(dot + "bias")
    if weight is None or weight.ndim == 0:
        return None
    w = weight.detach().double().reshape(weight.shape[0], -1)
    p = w.norm(dim=1) if weight.ndim >= 2 else w.abs().reshape(-1)
    if bias is not None and bias.numel() == weight.shape[0]:
        p = p + bias.detach().double().abs().reshape(-1)
    return p


def bisla_scale(problem: Problem) -> torch.Tensor:
    """The flat per-entry scale p of Bisla et al.'s normalization (see the module docstring).

    Weights and biases of a module share their unit's p, whether or not the partner is perturbed.
    A tensor not named like a module's weight or bias is normalized on its own: ||t_f|| per
    slice for 2+ dims, |t_i| for 1-D. A unit with p = 0 (a dead filter) gets no noise.
    """
    module_params = dict(problem.model.named_parameters())
    parts = []
    for name, t in zip(problem.names, problem.split(problem.w)):
        p = _unit_norms(module_params, name)
        if p is not None and (t.numel() % len(p) or (name.endswith("bias") and len(p) != t.numel())):
            p = None  # units not along dim 0 (e.g. a transposed convolution): normalize the tensor alone
        if p is None:
            flat = t.detach().double().reshape(t.shape[0] if t.ndim else 1, -1)
            p = flat.norm(dim=1) if t.ndim >= 2 else flat.abs().reshape(-1)
        per_unit = t.numel() // max(len(p), 1)
        parts.append(p.to(device=t.device).repeat_interleave(per_unit))
    return torch.cat(parts).to(problem.w.dtype)


def scale_for(problem: Problem, normalization: str) -> torch.Tensor | None:
    """The per-entry scale of a geometry: None (raw), `filter_scale` or `bisla_scale`."""
    if normalization == "filter":
        return filter_scale(problem)
    if normalization == "bisla":
        return bisla_scale(problem)
    return None


def weight_norms(problem: Problem) -> dict[str, float]:
    """L2 norm of each perturbed tensor, by parameter name."""
    return {n: float(t.double().norm()) for n, t in zip(problem.names, problem.split(problem.w))}
