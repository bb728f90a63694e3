"""A DeepAugment stand-in: images through a small image-to-image network whose weights and
activations are perturbed anew for every draw.

DeepAugment (Hendrycks et al., ICCV 2021) passes each image through a pretrained image-to-image
network (a CAE or EDSR) while perturbing it per sample: weights scaled by noise, zeroed or negated,
activations swapped and perturbed. This stand-in keeps that distortion mechanism and replaces the
pretrained network (which is not shipped) by a conv encoder/decoder with randomly drawn weights:

    conv3x3(C→16) → act → conv3x3 stride 2 (16→32) → act → ×2 nearest up → conv3x3(32→16) → act → conv3x3(16→C)

The base weights are drawn once from `net_seed` (He-normal, no bias). Per draw, from torch's
generator: every weight is multiplied by (1 + σ·ε) with σ ~ U(0, `weight_noise`), each filter is
negated with probability `p_negate` and zeroed with probability `p_zero`, each layer's activation is
one of ReLU / leaky ReLU / ELU / tanh / GELU, and Gaussian noise of σ ~ U(0, `activation_noise`)
times the feature map's spread is added after each activation. The output is matched to the
input's per-image mean and standard deviation (over all pixels and channels) and clipped to
[0, 1]: a random network has no calibrated output range, the pretrained one has.

It is a stand-in, named so everywhere ("deepaugment-standin"): it reproduces what the seed paper
measures for DeepAugment on CIFAR (no draws near the original), not DeepAugment's images.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as nnf

from pytest_psa.augment.zoo._draw import choice, coin, uniform
from pytest_psa.errors import PsaUsageError

_ACTIVATIONS: tuple[tuple[str, Callable[[torch.Tensor], torch.Tensor]], ...] = (
    ("relu", nnf.relu), ("leaky_relu", lambda t: nnf.leaky_relu(t, 0.2)), ("elu", nnf.elu),
    ("tanh", torch.tanh), ("gelu", nnf.gelu))


class DeepAugmentStandin:
    """A perturbed random conv encoder/decoder on one float (C, H, W) image (see the module docstring)."""

    name = "deepaugment-standin"

    def __init__(self, *, width: int = 16, weight_noise: float = 0.5, p_negate: float = 0.1, p_zero: float = 0.05,
                 activation_noise: float = 0.2, net_seed: int = 0) -> None:
        if int(width) < 1 or weight_noise < 0 or activation_noise < 0 or not (0 <= p_negate <= 1 and 0 <= p_zero <= 1):
            raise PsaUsageError(
                f"DeepAugmentStandin needs width >= 1, non-negative noise levels and probabilities in [0, 1]; got "
                f"width={width}, weight_noise={weight_noise}, activation_noise={activation_noise}, "
                f"p_negate={p_negate}, p_zero={p_zero}", fix="keep the defaults or use values in those ranges")
        self.width = int(width)
        self.weight_noise = float(weight_noise)
        self.p_negate = float(p_negate)
        self.p_zero = float(p_zero)
        self.activation_noise = float(activation_noise)
        self.net_seed = int(net_seed)
        self._weights: dict[int, tuple[torch.Tensor, ...]] = {}  # channels -> base weights (from net_seed)

    def __repr__(self) -> str:
        return (f"DeepAugmentStandin(width={self.width}, weight_noise={self.weight_noise:g}, "
                f"p_negate={self.p_negate:g}, p_zero={self.p_zero:g}, activation_noise={self.activation_noise:g}, "
                f"net_seed={self.net_seed})")

    def __getstate__(self) -> dict[str, object]:  # the weights are rebuilt from net_seed, not pickled
        return {k: v for k, v in self.__dict__.items() if k != "_weights"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._weights = {}

    def base_weights(self, channels: int) -> tuple[torch.Tensor, ...]:
        """The unperturbed weights for `channels` input/output channels, a function of `net_seed`."""
        if channels not in self._weights:
            gen = torch.Generator().manual_seed(self.net_seed * 1009 + channels)  # local: the global one is untouched
            w = self.width
            shapes = ((w, channels), (2 * w, w), (w, 2 * w), (channels, w))
            self._weights[channels] = tuple(
                torch.randn(out, inp, 3, 3, generator=gen) * (2.0 / (inp * 9)) ** 0.5 for out, inp in shapes)
        return self._weights[channels]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(torch.float32)
        c, h, w = x.shape
        weights = [self._perturb(wt) for wt in self.base_weights(c)]
        a_noise = uniform(0.0, self.activation_noise)
        t = x[None]
        t = self._act(nnf.conv2d(t, weights[0], padding=1), a_noise)
        t = self._act(nnf.conv2d(t, weights[1], padding=1, stride=2), a_noise)
        t = nnf.interpolate(t, size=(h, w), mode="nearest")
        t = self._act(nnf.conv2d(t, weights[2], padding=1), a_noise)
        out = nnf.conv2d(t, weights[3], padding=1)[0]
        # the input's brightness and contrast, the network's structure
        spread = out.std().clamp(min=1e-6)
        return ((out - out.mean()) / spread * x.std() + x.mean()).clamp_(0.0, 1.0)

    def _perturb(self, weight: torch.Tensor) -> torch.Tensor:
        sigma = uniform(0.0, self.weight_noise)
        out = weight * (1.0 + sigma * torch.randn(weight.shape))
        filters = weight.shape[0]
        sign = torch.where(torch.rand(filters) < self.p_negate, -1.0, 1.0)
        keep = (torch.rand(filters) >= self.p_zero).to(torch.float32)
        return out * (sign * keep)[:, None, None, None]

    def _act(self, t: torch.Tensor, noise: float) -> torch.Tensor:
        _, fn = choice(_ACTIVATIONS)
        t = fn(t)
        if noise > 0 and coin(0.5):
            t = t + noise * t.std() * torch.randn(t.shape)
        return t

