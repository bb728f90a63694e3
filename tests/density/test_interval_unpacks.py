"""`DensityResult.interval` unpacks as ``(low, high)`` like scipy's ``ConfidenceInterval`` and keeps
its attributes and its JSON form (issue 12, "Inputs")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
import torch

import pytest_psa
from pytest_psa._stats import ProportionInterval, proportion_interval
from pytest_psa.audits.density import density


@pytest.fixture(scope="module")
def result() -> pytest_psa.DensityResult:
    data = pytest_psa.synthetic("test", n=40)
    return density(lambda x: (x + 0.04 * torch.randn_like(x)).clamp(0, 1), data=data, n_images=40, draws=4)


def test_interval_unpacks_as_low_high(result: pytest_psa.DensityResult) -> None:
    iv = result.interval(0.05, 0.01)
    low, high = iv
    assert (low, high) == (iv.low, iv.high)
    assert low <= iv.estimate <= high


def test_interval_behaves_as_scipys_pair() -> None:
    scipy_ci = scipy.stats.binomtest(7, 20).proportion_ci(0.95)
    ours = proportion_interval(np.array([7.0]), np.array([20.0]), 0.05)
    for ci in (scipy_ci, ours):
        low, high = ci
        assert len(ci) == 2 and tuple(ci) == (ci[0], ci[1]) == (ci.low, ci.high) == (low, high)
        assert ci[-1] == ci.high and list(ci) == [low, high]


def test_an_unpackable_interval_keeps_its_attributes_and_dict(result: pytest_psa.DensityResult) -> None:
    iv = result.interval(0.1, 0.05)
    assert isinstance(iv, ProportionInterval) and tuple(iv) == (iv.low, iv.high)
    d = iv.to_dict()
    assert list(d) == ["estimate", "low", "high", "confidence", "n_draws", "n_units"]
    assert d == {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "confidence": 0.95,
                 "n_draws": float(iv.n_draws), "n_units": float(iv.n_units)}
    ecdf = json.loads(json.dumps(result.to_dict()))["ecdf"][0]
    assert set(ecdf) == {"gamma", "image_coverage", *d}


def test_a_one_sided_interval_unpacks_too() -> None:
    low, high = proportion_interval(np.array([1.0, 0.0, 1.0, 1.0]), np.ones(4), 0.05, "upper")
    assert low == 0.0 and 0.75 <= high <= 1.0
