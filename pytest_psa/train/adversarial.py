"""FGSM adversarial training with a random start ("fast is better than free", Wong et al. 2020).

Each training batch (after the augmentation, when there is one: AT + AugMix of the seed paper's
Table 8 augments first, then attacks the augmented batch) is replaced by

    δ ~ U[-ε, ε]^d,  δ ← clamp(x + δ, 0, 1) - x                  (random start inside the ball and the image box)
    δ ← clamp(δ + α · sign(∇_δ CE(f(x + δ), y)), -ε, ε)          (one gradient-sign step, α = 1.25 ε by default)
    x_adv = clamp(x + δ, 0, 1)

on the [0, 1] pixel scale (the model normalizes inside). The attack's forward pass leaves
BatchNorm's running statistics alone (they follow the batches trained on). Random starts come from
a generator seeded by the training seed, so an AT training is as reproducible as any other.

`linf_attack` with ``steps > 1`` is PGD with the same random start: `robust_accuracy` uses it for
the training record's catastrophic-overfitting check (FGSM accuracy far above PGD accuracy is its
sign). The audits measure robustness with `pytest_psa.measure.robustness.attacks`, not with this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pytest_psa.data.image_data import ImageData
from pytest_psa.errors import PsaError
from pytest_psa.train.sam import frozen_bn_stats

# the record's check: PGD-10 at the training ε, step ε/4, one random start, on this many test images
CHECK_IMAGES = 500
CHECK_PGD_STEPS = 10


class AdversarialTrainingError(PsaError, RuntimeError):
    """The FGSM step broke its own contract (a perturbation outside the ε-ball or images outside [0, 1])."""


def linf_attack(loss_of: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, epsilon: float, step: float,
                steps: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial images within ε of `x` (L-inf) in [0, 1]: random start, then `steps` gradient-sign steps.

    `loss_of(images)` returns the summed (or mean) loss to ascend; ``steps=1`` is FGSM with a random
    start (Wong et al. 2020), more steps are PGD. Gradients of the model's parameters are left unset.
    """
    x = x.detach()
    delta = torch.empty_like(x).uniform_(-epsilon, epsilon, generator=generator)
    delta = (x + delta).clamp_(0.0, 1.0) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        grad, = torch.autograd.grad(loss_of(x + delta), delta)
        delta = (delta.detach() + step * grad.sign()).clamp_(-epsilon, epsilon)
        delta = (x + delta).clamp_(0.0, 1.0) - x
    return (x + delta).clamp_(0.0, 1.0).detach()


def check_perturbation(x: torch.Tensor, x_adv: torch.Tensor, epsilon: float) -> torch.Tensor:
    """How far the batch breaks the contract, as a 0-d tensor (<= 0: within ε and [0, 1]); no host sync."""
    tol = 4 * torch.finfo(x.dtype).eps  # one rounding of x + δ on the [0, 1] scale
    over_eps = (x_adv - x).abs().amax() - epsilon - tol
    outside = torch.maximum(-x_adv.amin(), x_adv.amax() - 1.0)
    return torch.maximum(over_eps, outside)


def raise_if_broken(violation: float, epsilon: float, where: str) -> None:
    """Raise `AdversarialTrainingError` when `check_perturbation` found a violation (a bug, not a user error)."""
    if violation > 0:
        raise AdversarialTrainingError(
            f"FGSM adversarial training produced a perturbation outside its contract ({where})",
            observed=f"max violation {violation:.3g} beyond eps={epsilon:.6g} (L-inf) or the [0, 1] image range",
            fix="this is a bug in pytest_psa.train.adversarial: please report it with the plan's repr")


class FgsmTrainer:
    """The per-batch attack of an FGSM-AT training loop: `perturb(x, y)` and the running self-check."""

    def __init__(self, net: nn.Module, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *,
                 epsilon: float, step: float, seed: int, device: torch.device) -> None:
        self.net, self.loss, self.epsilon, self.step = net, loss, float(epsilon), float(step)
        self.generator = torch.Generator(device=device).manual_seed(_start_seed(seed))
        self.worst = torch.full((), -1.0, device=device)  # max contract violation so far (checked per epoch)

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with frozen_bn_stats(self.net):  # the running statistics follow the batches trained on
            x_adv = linf_attack(lambda z: self.loss(z, y), x, epsilon=self.epsilon, step=self.step,
                                generator=self.generator)
        self.worst = torch.maximum(self.worst, check_perturbation(x, x_adv, self.epsilon))
        return x_adv  # x + δ keeps x's memory format (channels-last)

    def check(self, where: str) -> None:
        raise_if_broken(float(self.worst), self.epsilon, where)


def robust_accuracy(net: nn.Module, data: ImageData, *, epsilon: float, device: torch.device,
                    n: int = CHECK_IMAGES, seed: int = 0, batch_size: int = 250) -> dict[str, Any]:
    """Clean, FGSM (random start, α = 1.25 ε) and PGD-10 (α = ε/4) accuracy on the first `n` images of `data`.

    Fractions correct, eval mode, L-inf ε on the [0, 1] scale: the record's cheap check for
    catastrophic overfitting (Wong et al. 2020: FGSM accuracy high while PGD accuracy collapses).
    """
    was_training = net.training
    net.eval()
    gen = torch.Generator(device=device).manual_seed(_start_seed(seed, check=True))
    counts = {"clean": 0, "fgsm": 0, "pgd": 0}
    m = min(n, len(data))
    try:
        for lo in range(0, m, batch_size):
            x = data.images[lo:min(lo + batch_size, m)].to(device).float().div_(255.0)
            y = data.labels[lo:min(lo + batch_size, m)].to(device)

            def loss_of(z: torch.Tensor) -> torch.Tensor:
                return F.cross_entropy(net(z), y, reduction="sum")

            with torch.no_grad():
                counts["clean"] += int((net(x).argmax(1) == y).sum())
            for name, step, steps in (("fgsm", 1.25 * epsilon, 1), ("pgd", epsilon / 4, CHECK_PGD_STEPS)):
                with torch.enable_grad():
                    x_adv = linf_attack(loss_of, x, epsilon=epsilon, step=step, steps=steps, generator=gen)
                with torch.no_grad():
                    counts[name] += int((net(x_adv).argmax(1) == y).sum())
    finally:
        net.train(was_training)
    return {"n_images": m, "epsilon": epsilon, "clean_accuracy": counts["clean"] / m,
            "fgsm_accuracy": counts["fgsm"] / m, "pgd_accuracy": counts["pgd"] / m,
            "convention": f"fraction correct on the first {m} test images, eval mode, L-inf eps on the [0, 1] scale; "
                          f"FGSM: random start + one step of 1.25 eps; PGD: random start + {CHECK_PGD_STEPS} steps of "
                          "eps/4 (this module's attack, not the audit's)",
            "catastrophic_overfitting_sign": bool(counts["fgsm"] - counts["pgd"] > 0.3 * m)}


def _start_seed(seed: int, check: bool = False) -> int:
    from pytest_psa._seeding import sequence_seed, text_key

    return sequence_seed(int(seed), text_key("fgsm-at check" if check else "fgsm-at random start") & ((1 << 62) - 1))


__all__ = ["AdversarialTrainingError", "CHECK_IMAGES", "CHECK_PGD_STEPS", "FgsmTrainer", "check_perturbation",
           "linf_attack", "raise_if_broken", "robust_accuracy"]
