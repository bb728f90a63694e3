"""Reparametrization: the linear classifier (accuracy target) and Dinh et al.'s ReLU rescale.

Raw sharpness must move under a function-preserving rescale; the magnitude-aware PAC-Bayes and the
filter-normalized variants must not.
"""

from __future__ import annotations

import math

import pytest
import torch
from flatness_cases import DTYPE, relu_net, rescaled, z_two_sided
from torch import nn

from pytest_psa.measure.flatness import measure_flatness

Z = z_two_sided(1e-3)


def _linear_classifier(d: int, n: int, scale: float = 1.0) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(11)
    w = torch.randn(d, generator=g, dtype=DTYPE)
    x = torch.randn(n, d, generator=g, dtype=DTYPE)
    y = (x @ w > 0).long()  # labels from the classifier itself: clean accuracy 1
    model = nn.Linear(d, 1, bias=False).to(DTYPE)
    with torch.no_grad():
        model.weight.copy_(scale * w)
    return model, (x, y)


def _bce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(out.reshape(-1), y.to(out.dtype))


def test_linear_classifier_accuracy_target() -> None:
    d, n = 200, 4000
    model, data = _linear_classifier(d, n)
    rep = measure_flatness(model, data, metrics="pac_bayes", loss=_bce, seed=0, n_samples=32,
                           target_type="accuracy", target=0.1, max_images=None, chunk_size=n)
    r = rep["pac_bayes"]
    assert rep.accuracy == 1.0 and r.target_type == "accuracy"
    # perturbed error = angle / pi = arctan(sigma sqrt(d-1) / ||w||) / pi  ->  sigma' = ||w|| tan(0.1 pi) / sqrt(d-1)
    sigma_true = float(model.weight.detach().norm()) * math.tan(0.1 * math.pi) / math.sqrt(d - 1)
    assert r.sigma_se < 0.05 * sigma_true
    assert abs(r.sigma - sigma_true) <= Z * r.sigma_se


def test_linear_classifier_rescale_moves_raw_not_magnitude_aware() -> None:
    d, n, alpha = 100, 2000, 3.0
    kw = dict(metrics=["pac_bayes", "pac_bayes_mag"], loss=_bce, seed=1, n_samples=16,
              target_type="accuracy", mag_eps=0.0, max_images=None)
    a = measure_flatness(*_linear_classifier(d, n), **kw)
    b = measure_flatness(*_linear_classifier(d, n, scale=alpha), **kw)
    # same classifier; raw sigma scales with alpha (mu by 1 / alpha^2), up to the step-function root
    assert b["pac_bayes"].sigma / a["pac_bayes"].sigma == pytest.approx(alpha, rel=0.05)
    assert b["pac_bayes"].value == pytest.approx(a["pac_bayes"].value / alpha**2, rel=0.1)
    # relative noise sigma |w| z sees the identical curve: the same root
    assert b["pac_bayes_mag"].sigma == pytest.approx(a["pac_bayes_mag"].sigma, rel=1e-9)


def _relu_data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, 4, generator=g, dtype=DTYPE), torch.randint(0, 3, (n,), generator=g)


def test_relu_rescale_raw_moves_normalized_does_not() -> None:
    net = relu_net()
    alpha = 4.0
    big = rescaled(net, alpha)
    x, y = _relu_data()
    with torch.no_grad():
        assert torch.allclose(net(x), big(x), atol=1e-12, rtol=0)  # the same function
    kw = dict(seed=3, n_samples=16, scale_invariant=True, mag_eps=0.0, eps=1e-2, lpf_sigma=0.05,
              power_iters=50, power_tol=1e-10)
    a = measure_flatness(net, (x, y), **kw)
    b = measure_flatness(big, (x, y), **kw)
    assert a.loss0 == pytest.approx(b.loss0, rel=1e-12)
    for metric in ("pac_bayes", "lpf", "hessian_top", "hessian_trace", "eps_sharpness"):
        raw_a, raw_b = a[metric], b[metric]
        moved = raw_b.increase / raw_a.increase if metric == "lpf" else raw_b.value / raw_a.value
        assert abs(moved - 1) > 0.1, metric  # raw sharpness is not reparametrization invariant
        assert b.invariant[metric].value == pytest.approx(a.invariant[metric].value, rel=1e-7), metric
    assert b["pac_bayes_mag"].value == pytest.approx(a["pac_bayes_mag"].value, rel=1e-7)
    assert b.weight_norm != pytest.approx(a.weight_norm, rel=0.1)  # the norms show the rescale
