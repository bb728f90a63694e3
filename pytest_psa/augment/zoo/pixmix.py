"""PixMix (Hendrycks et al., CVPR 2022), per image, on generated mixing pictures.

The algorithm is the released one (github.com/andyzoujm/pixmix, ``cifar.py`` and
``pixmix_utils.py``), checked against it:

- start from the image or, with probability 1/2, one base operation applied to it;
- k ~ U{0, ..., k_max} mixing rounds (k_max = 4); each round mixes in, with probability 1/2, a
  fresh base operation of the image, else the mixing picture, by additive or multiplicative mixing
  (chosen with probability 1/2), then clips to [0, 1];
- mixing weights (a, b): with probability 1/2 a ~ Beta(β, 1), b ~ Beta(1, β); else
  a = 1 + Beta(1, β), b = −Beta(1, β) (β = 3 for CIFAR). Additive: ((2x−1)a + (2y−1)b + 1)/2;
  multiplicative: (2x)^a · (2y)^b / 2 (y clipped at 1e-37);
- base operations: AugMix's list (autocontrast, equalize, posterize, rotate, solarize, shear x/y,
  translate x/y) at severity 3; ``all_ops=True`` adds colour, contrast, brightness and sharpness;
- one mixing picture per image, as the reference's PixMixDataset draws, taken at
  (H + H/8) px and randomly cropped to H x W (the reference's Resize(36) + RandomCrop(32)).

Deviation: the mixing pictures are not the released fractal/feature-visualization set but a
procedural one (`pytest_psa.augment.zoo.fractals`): IFS fractals and other structured patterns,
`n_pictures` of them, generated from `pictures_seed` at the image's size. The final normalization
of the reference (to [−1, 1]) is left to the model, as for every augmentation here.
All draws come from torch's generator (the adapter seeds it per image); Beta variates by inversion
(Beta(β, 1) = U^(1/β)).
"""

from __future__ import annotations

import torch

from pytest_psa.augment.zoo import _ops
from pytest_psa.augment.zoo._draw import choice, coin, integer, uniform
from pytest_psa.augment.zoo.fractals import mixing_bank
from pytest_psa.errors import PsaUsageError


class PixMix:
    """PixMix on one float (C, H, W) image in [0, 1]; see the module docstring for the algorithm."""

    name = "pixmix"

    def __init__(self, *, k: int = 4, beta: float = 3.0, severity: float = 3.0, all_ops: bool = False,
                 n_pictures: int = 128, pictures_seed: int = 0) -> None:
        if int(k) < 0 or float(beta) <= 0 or not 0.1 < float(severity) <= 10 or int(n_pictures) < 1:
            raise PsaUsageError(
                f"PixMix needs k >= 0, beta > 0, severity in (0.1, 10] and n_pictures >= 1; got k={k}, "
                f"beta={beta}, severity={severity}, n_pictures={n_pictures}",
                fix="use the published defaults: PixMix(k=4, beta=3, severity=3)")
        self.k = int(k)
        self.beta = float(beta)
        self.severity = float(severity)
        self.all_ops = bool(all_ops)
        self.n_pictures = int(n_pictures)
        self.pictures_seed = int(pictures_seed)

    def __repr__(self) -> str:
        return (f"PixMix(k={self.k}, beta={self.beta:g}, severity={self.severity:g}, all_ops={self.all_ops}, "
                f"n_pictures={self.n_pictures}, pictures_seed={self.pictures_seed})")

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(torch.float32)
        mixed = self._augment(x) if coin() else x
        for _ in range(integer(0, self.k + 1)):
            partner = self._augment(x) if coin() else self._picture(x)
            mix = _add if coin() else _multiply
            mixed = mix(mixed, partner, self.beta).clamp_(0.0, 1.0)
        return mixed

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        op = choice(_ops.AUGMENTATIONS_ALL if self.all_ops else _ops.AUGMENTATIONS)
        return op(x, self.severity)

    def _picture(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = x.shape
        big_h, big_w = h + max(1, h // 8), w + max(1, w // 8)
        bank = mixing_bank(self.pictures_seed, self.n_pictures, big_h, big_w)
        pic = bank[integer(0, self.n_pictures)]
        top, left = integer(0, big_h - h + 1), integer(0, big_w - w + 1)
        pic = pic[:, top:top + h, left:left + w]
        if c == 3:
            return pic
        gray = pic.mean(0, keepdim=True)  # a grey picture for other channel counts
        return gray.expand(c, h, w)


def _beta_pair(beta: float) -> tuple[float, float]:
    """The reference's `get_ab`."""
    if coin():
        return _beta(beta, 1.0), _beta(1.0, beta)
    return 1.0 + _beta(1.0, beta), -_beta(1.0, beta)


def _beta(a: float, b: float) -> float:
    """Beta(a, 1) or Beta(1, b) by inversion of its CDF (the only two shapes PixMix uses)."""
    u = uniform()
    return float(u ** (1.0 / a) if b == 1.0 else 1.0 - u ** (1.0 / b))


def _add(x: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    a, b = _beta_pair(beta)
    return (a * (x * 2 - 1) + b * (y * 2 - 1) + 1) / 2


def _multiply(x: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    a, b = _beta_pair(beta)
    return (x * 2).pow(a) * (y * 2).clamp(min=1e-37).pow(b) / 2

