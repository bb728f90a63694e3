"""ERM vs TrivialAugmentWide on real CIFAR-10 at the smoke preset, 3 seeds (skipped without CIFAR-10).

Measured here (closing note of issue 3): the Hessian trace fell by 16-19 % per seed (p = 0.001)
and the LPF increase by 18-40 % (p = 0.02); both must be shown flatter at alpha = 0.05. About
4 minutes on 2 idle CPU cores with an empty model cache, most of it training 6 models.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from torchvision.transforms import v2

import pytest_psa


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Not one thread here (the folder's conftest): six CIFAR-10 trainings and their measurement use
    every core of an otherwise idle runner. Measured idle on 2 cores (2026-12-04, fresh cache): 219 s
    at 2 threads vs 277 s at 1, the longest test of the suite; the verdicts passed at both counts."""
    yield


@pytest.mark.slow
@pytest.mark.cifar
def test_trivialaugment_is_flatter_than_erm_on_cifar10(cifar10, psa_cache_dir) -> None:
    result = pytest_psa.flatness(
        v2.TrivialAugmentWide(), seeds=3, metrics=["hessian_trace", "lpf"], preset="smoke",
        data="cifar10", data_root=os.environ.get("PSA_DATA_ROOT"), cache_dir=psa_cache_dir,
    )
    print(result.table())
    result.assert_flatter(metric="hessian_trace", min_rel_improvement=0.0, alpha=0.05)
    result.assert_flatter(metric="lpf", min_rel_improvement=0.0, alpha=0.05)
    # the confound the docs warn about: the augmented model sits at a higher clean loss
    assert all(a.loss0 > e.loss0 for a, e in zip(result.augmented_reports, result.erm_reports))
