"""The density audit outside pytest: python examples/audit_script.py [data spec]."""

import sys

from torchvision.transforms import v2

import pytest_psa

FAR = v2.Compose([v2.RandomInvert(p=1), v2.ColorJitter(0.8, 0.8, 0.8, 0.3), v2.RandomSolarize(0.5, p=1)])

if __name__ == "__main__":
    data = sys.argv[1] if len(sys.argv) > 1 else "synthetic"
    for aug in (v2.AugMix(), v2.RandAugment(), v2.TrivialAugmentWide(), FAR):
        result = pytest_psa.density(aug, data=data, n_images=500, draws=8, seed=0)
        print(result.table(alpha=0.05))
        print()
