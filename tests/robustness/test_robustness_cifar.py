"""ERM vs TrivialAugmentWide on real CIFAR-10 at the smoke preset (skipped without CIFAR-10).

Uses the session cache folder of the flatness CIFAR test, so in a full run the ERM and TA models of
seed 0 are cache hits; alone it trains both (about 85 s on 2 idle cores). 500 test images x the
CIFAR-10-C corruptions, PGD-10 L∞ 2/255 on 500 images.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from torchvision.transforms import v2

import pytest_psa
from pytest_psa.measure.robustness import error_stats as M


@pytest.mark.slow
@pytest.mark.cifar
def test_trivialaugment_vs_erm_on_cifar10(cifar10, psa_cache_dir) -> None:
    result = pytest_psa.robustness(
        v2.TrivialAugmentWide(), data="cifar10", data_root=os.environ.get("PSA_DATA_ROOT"), preset="smoke", seeds=1,
        corruptions="cifar10-c", attacks=["linf:2/255:10"], perturbations=["translate", "rotate", "scale"],
        n_images=500, n_attack_images=500, n_perturbation_images=500, cache_dir=psa_cache_dir)
    print(result.table())
    m = result.metrics(alpha=2e-3)  # two-sided 99.8 %: each bound one-sided at 1e-3
    assert m["delta_mfp"].high < 0, m["delta_mfp"].text()
    result.assert_budget(vs_erm={"mfp": 0.0}, alpha=1e-3)  # passes: TA flips less than ERM
    # corruptions hurt: for both models the error at severity 5 exceeds severity 1 (paired over images) and
    # the mCE exceeds the clean error
    for samples in (result.samples, result.baseline_samples):
        rise = M.paired_difference(samples.corruption[:, -1].mean(0), samples.corruption[:, 0].mean(0), 2e-3)
        assert rise.low > 0, rise.text()
        gap = M.paired_difference(samples.corruption.reshape(-1, samples.corruption.shape[-1]).mean(0),
                                  samples.clean, 2e-3)
        assert gap.low > 0, gap.text()
    assert len(result.corruptions) == 15 and np.isfinite(m["mce_ratio"].estimate)
