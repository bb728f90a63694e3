"""Distances d(x, A(x)): metric-like properties (hypothesis), their scale, and the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from image_pair_strategies import image_pairs

import pytest_psa
from pytest_psa import PsaUsageError
from pytest_psa.measure.density import distances as dist_mod
from pytest_psa.audits.density import density
from pytest_psa.measure.density.distances import Distance, get_distance, l2, l2_raw, linf

HYP = settings(deadline=None, max_examples=40, database=None)


@HYP
@given(image_pairs())
def test_distances_are_non_negative_symmetric_and_bounded(pair):
    x, y = pair
    for fn in (l2, linf, l2_raw):
        d = fn(x, y)
        assert d.shape == (x.shape[0],)
        assert bool((d >= 0).all()) and bool(torch.isfinite(d).all())
        assert torch.equal(d, fn(y, x))
    assert float(l2(x, y).max()) <= 1.0 + 1e-6 and float(linf(x, y).max()) <= 1.0


@HYP
@given(image_pairs())
def test_distances_are_zero_on_identical_inputs(pair):
    x, _ = pair
    for fn in (l2, linf, l2_raw):
        assert torch.equal(fn(x, x.clone()), torch.zeros(x.shape[0]))


@HYP
@given(image_pairs())
def test_l2_raw_is_l2_times_sqrt_d_and_linf_dominates_l2(pair):
    x, y = pair
    dim = x[0].numel()
    torch.testing.assert_close(l2_raw(x, y), l2(x, y) * math.sqrt(dim), rtol=1e-5, atol=1e-6)
    assert bool((l2(x, y) <= linf(x, y) * (1 + 1e-5) + 1e-7).all())  # RMS <= max
    assert bool((l2_raw(x, y) >= linf(x, y) * (1 - 1e-5) - 1e-7).all())  # ||.||_2 >= ||.||_inf


@HYP
@given(image_pairs(), st.integers(0, 3))
def test_distance_of_an_image_does_not_depend_on_the_batch(pair, i):
    x, y = pair
    i = min(i, x.shape[0] - 1)
    for fn in (l2, linf, l2_raw):
        torch.testing.assert_close(fn(x[i:i + 1], y[i:i + 1])[0], fn(x, y)[i], rtol=1e-6, atol=1e-7)


def test_l2_reads_as_the_sigma_of_gaussian_noise():
    """The normalization that makes γ readable: nL2 of unclipped N(0, σ²) noise is ≈ σ."""
    gen = torch.Generator().manual_seed(0)
    x = torch.full((4, 3, 32, 32), 0.5)
    y = x + 0.03 * torch.randn(x.shape, generator=gen)  # |noise| < 0.5 with overwhelming probability
    d = l2(x, y)
    assert bool(((d - 0.03).abs() < 0.0015).all())  # 3072 pixels: sd of the RMS is 0.03/sqrt(6144)


def test_32x32_rgb_scale_factor():
    x, y = torch.zeros(1, 3, 32, 32), torch.full((1, 3, 32, 32), 0.1)
    assert float(l2_raw(x, y)[0]) == pytest.approx(float(l2(x, y)[0]) * 55.4256, rel=1e-4)


# -- registry --------------------------------------------------------------------------------
def test_builtin_distances_are_registered():
    assert {"l2", "linf", "l2_raw"} <= set(pytest_psa.available_distances())
    assert get_distance("l2").fn is l2 and get_distance("linf").gammas[0] == pytest.approx(1 / 255)


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(dist_mod, "_REGISTRY", dict(dist_mod._REGISTRY))
    return dist_mod


def test_register_distance_as_a_decorator_and_use_it(registry):
    @pytest_psa.register_distance("l1_mean", gammas=(0.01, 0.05))
    def l1_mean(x, y):
        """Mean absolute difference."""
        return (x - y).abs().flatten(1).mean(1)

    d = get_distance("l1_mean")
    assert d.gammas == (0.01, 0.05) and d.description == "Mean absolute difference."
    r = density(lambda x: x.flip(-1), data=pytest_psa.synthetic("test", n=8), n_images=8, draws=1,
                           distance="l1_mean")
    assert r.distance == "l1_mean" and r.gammas == (0.01, 0.05)
    x = pytest_psa.synthetic("test", n=8).float_images()
    np.testing.assert_allclose(r.distances[:, 0], l1_mean(x, x.flip(-1)).double().numpy(), rtol=1e-6)


def test_register_distance_twice_needs_replace(registry):
    registry.register_distance("mine", lambda x, y: (x - y).flatten(1).abs().sum(1))
    with pytest.raises(PsaUsageError, match="already registered"):
        registry.register_distance("mine", lambda x, y: (x - y).flatten(1).abs().amax(1))
    registry.register_distance("mine", linf, replace=True)
    assert get_distance("mine").fn is linf


@pytest.mark.parametrize("name", ["not an identifier", "", 3])
def test_register_distance_rejects_bad_names(registry, name):
    with pytest.raises(PsaUsageError):
        registry.register_distance(name, l2)


def test_unknown_distance_lists_the_registered_ones():
    with pytest.raises(PsaUsageError) as info:
        get_distance("l3")
    assert "l2" in str(info.value) and "linf" in str(info.value) and "register_distance" in str(info.value)


def test_bare_callable_and_distance_objects_are_accepted():
    d = get_distance(lambda x, y: (x - y).flatten(1).abs().amax(1))
    assert isinstance(d, Distance)
    assert get_distance(d) is d


def test_distance_with_the_wrong_output_shape():
    bad = Distance("bad", lambda x, y: (x - y).abs().mean())
    with pytest.raises(PsaUsageError, match="one value per image"):
        bad(torch.zeros(3, 3, 4, 4), torch.ones(3, 3, 4, 4))


def test_negative_distance_is_refused_by_the_audit():
    with pytest.raises(PsaUsageError, match="negative or non-finite"):
        density(lambda x: x.flip(-1), data=pytest_psa.synthetic("test", n=4), n_images=4, draws=1,
                           distance=lambda x, y: -(x - y).flatten(1).abs().sum(1) - 1)
