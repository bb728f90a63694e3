"""The seed paper's augmentation zoo (arXiv 2505.24592, Tables 1, 3 and 7) as audited objects.

- `PixMix`: the published algorithm on generated mixing pictures (`fractals`);
- `DeepAugmentStandin`, `RandConvStandin`: stand-ins for DeepAugment and StyleAug (whose
  pretrained networks are not shipped) that leave the proximal region empty as the originals do
  on CIFAR;
- `without_proximal(aug, delta)`: any augmentation with its draws closer than δ redrawn;
- `compose(a, b, p)`, `chain(a, b, ...)`: mixtures and sequences of augmentations.

Each is a callable on one float (C, H, W) image in [0, 1] that draws only from torch's global
generator (or, for parts, through their own adapters), so `as_augmentation` audits it like any
other; `pytest_psa.augment.resolve_augmentation` knows them by name (`psa list`).
"""

from pytest_psa.augment.zoo.compose import Chain, Compose, chain, compose
from pytest_psa.augment.zoo.deepaugment import DeepAugmentStandin
from pytest_psa.augment.zoo.pixmix import PixMix
from pytest_psa.augment.zoo.proximal import PIXEL_DISTANCES, RedrawStats, WithoutProximal, without_proximal
from pytest_psa.augment.zoo.randconv import RandConvStandin

__all__ = ["PIXEL_DISTANCES", "Chain", "Compose", "DeepAugmentStandin", "PixMix", "RandConvStandin", "RedrawStats",
           "WithoutProximal", "chain", "compose", "without_proximal"]
