"""SAM and ASAM: the ascent step's size (known answers), the step rule, and loss decrease."""

from __future__ import annotations

import pytest
import torch

from pytest_psa.errors import PsaUsageError
from pytest_psa.train import SAM

A = torch.diag(torch.tensor([4.0, 1.0, 0.25]))


def _quadratic(w: torch.Tensor) -> torch.Tensor:
    return 0.5 * w @ A @ w  # gradient A w, Hessian A


def _param(values=(1.0, -2.0, 0.5)) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.tensor(values))


@pytest.mark.parametrize("rho", [0.05, 0.3])
def test_sam_ascent_has_length_rho_along_the_gradient(rho):
    w = _param()
    w0 = w.detach().clone()
    opt = SAM([w], torch.optim.SGD, rho=rho, lr=0.1)
    _quadratic(w).backward()
    g = (A @ w0)
    opt.first_step()
    e = w.detach() - w0
    assert torch.linalg.vector_norm(e).item() == pytest.approx(rho, rel=1e-6)
    assert torch.allclose(e, rho * g / torch.linalg.vector_norm(g), atol=1e-7)


def test_asam_ascent_is_rho_in_the_rescaled_norm():
    rho, eta = 0.5, 0.01
    w = _param()
    w0 = w.detach().clone()
    opt = SAM([w], torch.optim.SGD, rho=rho, adaptive=True, eta=eta, lr=0.1)
    _quadratic(w).backward()
    g = A @ w0
    t = w0.abs() + eta
    opt.first_step()
    e = w.detach() - w0
    # Kwon et al.: e = rho T^2 g / ||T g||, i.e. ||T^-1 e|| = rho
    assert torch.allclose(e, rho * t * t * g / torch.linalg.vector_norm(t * g), atol=1e-6)
    assert torch.linalg.vector_norm(e / t).item() == pytest.approx(rho, rel=1e-6)


def test_asam_is_invariant_to_rescaling_the_weights():
    # scaling w by c and the loss's input by 1/c leaves the function unchanged; ASAM's
    # perturbation then scales with w, so the perturbed loss is the same
    def perturbed_loss(c: float) -> float:
        w = _param([1.0 * c, -2.0 * c, 0.5 * c])
        opt = SAM([w], torch.optim.SGD, rho=0.5, adaptive=True, eta=0.0, lr=0.1)
        _quadratic(w / c).backward()
        opt.first_step()
        return float(_quadratic(w.detach() / c))

    assert perturbed_loss(10.0) == pytest.approx(perturbed_loss(1.0), rel=1e-5)


def test_second_step_takes_the_base_step_from_the_original_weights_with_the_perturbed_gradient():
    rho, lr = 0.1, 0.2
    w = _param()
    w0 = w.detach().clone()
    opt = SAM([w], torch.optim.SGD, rho=rho, lr=lr)

    def closure():
        loss = _quadratic(w)
        loss.backward()
        return loss

    opt.zero_grad()
    loss = opt.step(closure)
    g0 = A @ w0
    w_adv = w0 + rho * g0 / torch.linalg.vector_norm(g0)
    expected = w0 - lr * (A @ w_adv)
    assert torch.allclose(w.detach(), expected, atol=1e-6)
    assert loss.item() == pytest.approx(_quadratic(w0).item())
    assert w.grad is None or torch.count_nonzero(w.grad) > 0


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_decreases_the_loss_of_a_small_classifier(adaptive):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = SAM(net.parameters(), torch.optim.SGD, rho=0.5 if adaptive else 0.05, adaptive=adaptive,
              lr=0.5, momentum=0.9)

    def closure():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss

    start = torch.nn.functional.cross_entropy(net(x), y).item()
    losses = []
    for _ in range(30):
        opt.zero_grad()
        losses.append(opt.step(closure).item())
    end = torch.nn.functional.cross_entropy(net(x), y).item()
    assert losses[1] < start  # the very first step already helps
    assert end < 0.5 * start, (start, end)


def test_schedulers_drive_the_base_optimizer():
    w = _param()
    opt = SAM([w], torch.optim.SGD, rho=0.05, lr=1.0, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    _quadratic(w).backward()
    opt.first_step(zero_grad=True)
    _quadratic(w).backward()
    opt.second_step(zero_grad=True)
    sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == 0.5


def test_usage_errors():
    w = _param()
    with pytest.raises(PsaUsageError, match="rho"):
        SAM([w], torch.optim.SGD, rho=0.0, lr=0.1)
    opt = SAM([w], torch.optim.SGD, rho=0.05, lr=0.1)
    with pytest.raises(PsaUsageError, match="closure"):
        opt.step()
    with pytest.raises(PsaUsageError, match="no gradients"):
        opt.first_step()
