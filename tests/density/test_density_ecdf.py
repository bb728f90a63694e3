"""The eCDF F_N(γ) and its result object: properties over arbitrary distance tables (hypothesis)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pytest_psa import PsaUsageError
from pytest_psa.results.density import DensityResult

HYP = settings(deadline=None, max_examples=40, database=None)

# distances with many ties and exact zeros, as real augmentations produce (identity ops, flips)
DIST = st.one_of(st.sampled_from([0.0, 0.01, 0.05, 0.05, 0.2]), st.floats(0.0, 1.0, allow_nan=False))
GAMMAS = st.lists(st.floats(-0.1, 1.2, allow_nan=False), min_size=1, max_size=8)


@st.composite
def tables(draw, min_images: int = 1):
    n = draw(st.integers(min_images, 30))
    k = draw(st.integers(1, 6))
    distances = draw(hnp.arrays(np.float64, (n, k), elements=DIST))
    identity = draw(hnp.arrays(np.bool_, (n, k))) & (distances == 0)
    return distances, identity


def result(distances: np.ndarray, identity: np.ndarray | None = None, **kwargs) -> DensityResult:
    identity = np.zeros(distances.shape, bool) if identity is None else identity
    return DensityResult(augmentation="table", distance="l2", distances=distances, identity=identity, seed=0,
                         data={"describe": "table"}, **kwargs)


@HYP
@given(tables(), GAMMAS)
def test_F_is_monotone_and_a_fraction(table, gammas):
    r = result(*table)
    gammas = np.sort(np.asarray(gammas))
    f = r.F(gammas)
    assert f.shape == gammas.shape
    assert np.all((0 <= f) & (f <= 1))
    assert np.all(np.diff(f) >= -1e-12)
    for exclude in (False, True):
        if (~table[1]).any():
            fe = r.F(gammas, exclude_identity=exclude)
            assert np.all(np.diff(fe) >= -1e-12)


@HYP
@given(tables())
def test_F_at_the_ends(table):
    distances, identity = table
    r = result(distances, identity)
    assert r.F(np.inf) == 1.0 and r.F(float(distances.max())) == 1.0
    assert r.F(-1e-9) == 0.0
    assert r.F(0.0) == pytest.approx(float((distances == 0).mean()))


@HYP
@given(tables(), st.floats(0.0, 1.0))
def test_F_is_the_pooled_fraction_with_equal_draws(table, gamma):
    distances, _ = table
    assert result(distances).F(gamma) == pytest.approx(float((distances <= gamma).mean()), abs=1e-12)


@HYP
@given(tables(), st.floats(0.0, 1.0))
def test_quantile_and_F_agree(table, q):
    distances, _ = table
    r = result(distances)
    m = distances.size
    t = r.quantile(q)
    assert distances.min() <= t <= distances.max()
    # the eCDF reaches q at the q-quantile, up to the one-draw step of the interpolated quantile
    assert r.F(t) >= q - 1.0 / m - 1e-12
    assert float((distances < t).mean()) <= q + 1.0 / m + 1e-12
    qs = np.linspace(0, 1, 5)
    assert np.all(np.diff(r.quantile(qs)) >= 0)


@HYP
@given(tables(), st.floats(0.0, 1.0))
def test_image_coverage_is_at_least_F(table, gamma):
    r = result(*table)
    assert r.F(gamma) <= r.image_coverage(gamma) + 1e-12
    assert 0 <= r.image_coverage(gamma) <= 1


@HYP
@given(tables(), st.floats(0.0, 1.0), st.sampled_from([0.5, 0.05, 1e-3]),
       st.sampled_from(["two-sided", "lower", "upper"]))
def test_interval_bounds_are_probabilities(table, gamma, alpha, side):
    r = result(*table)
    iv = r.interval(gamma, alpha, side=side)
    assert 0.0 <= iv.low <= 1.0 and 0.0 <= iv.high <= 1.0
    assert iv.estimate == pytest.approx(r.F(gamma))
    assert iv.n_units == r.n_images and iv.n_draws == r.distances.size
    assert iv.confidence == pytest.approx(1 - alpha)
    if side == "lower":
        assert iv.high == 1.0
    if side == "upper":
        assert iv.low == 0.0


@HYP
@given(tables(min_images=5), st.floats(0.0, 1.0))
def test_wider_interval_at_smaller_alpha(table, gamma):
    r = result(*table)
    loose, tight = r.interval(gamma, 0.2), r.interval(gamma, 0.01)
    assert tight.low <= loose.low + 1e-6 and tight.high >= loose.high - 1e-6


BLOCKS = np.r_[np.full((50, 4), 0.5), np.zeros((50, 4))]  # images sorted so the far ones come first


@HYP
@example(table=(BLOCKS, np.zeros(BLOCKS.shape, bool)), gamma=0.1, alpha=0.05)
@given(tables(min_images=2), st.floats(0.0, 1.0), st.sampled_from([0.2, 0.05, 1e-3]))
def test_interval_contains_the_estimate(table, gamma, alpha):
    r = result(*table)
    iv = r.interval(gamma, alpha)
    assert iv.low <= iv.estimate <= iv.high, iv


# -- identity draws --------------------------------------------------------------------------
def test_identity_draws_are_reported_and_can_be_left_out():
    distances = np.array([[0.0, 0.3, 0.0, 0.3], [0.3, 0.3, 0.3, 0.3], [0.0, 0.0, 0.0, 0.0]])
    identity = distances == 0
    r = result(distances, identity)
    assert r.identity_fraction == pytest.approx(6 / 12)
    assert r.F(0.1) == pytest.approx((0.5 + 0 + 1) / 3)
    # left out: image 3 has no draw left and drops out; image 1 keeps its two far draws
    assert r.F(0.1, exclude_identity=True) == 0.0
    assert r.F(0.5, exclude_identity=True) == 1.0
    assert r.interval(0.1, exclude_identity=True).n_units == 2
    assert r.quantile(0.0, exclude_identity=True) == pytest.approx(0.3)
    assert r.image_coverage(0.1) == pytest.approx(2 / 3) and r.image_coverage(0.1, exclude_identity=True) == 0
    excluded = result(distances, identity, exclude_identity=True)
    assert excluded.F(0.1) == 0.0 and excluded.F(0.1, exclude_identity=False) == r.F(0.1)


def test_all_identity_draws():
    r = result(np.zeros((3, 2)), np.ones((3, 2), bool))
    assert r.identity_fraction == 1.0 and r.F(0.0) == 1.0
    assert np.isnan(r.F(0.0, exclude_identity=True))
    with pytest.raises(PsaUsageError, match="every draw was the identity"):
        r.quantile(0.5, exclude_identity=True)


# -- assert_psa on fixed tables (the statistics are deterministic given the table) -----------
def test_assert_psa_rules():
    near = result(np.where(np.arange(400 * 8).reshape(400, 8) % 4 == 0, 0.01, 0.5))  # F(0.05) = 0.25
    near.assert_psa(gamma=0.05, min_density=0.1, strict=True)
    near.assert_psa(gamma=[0.02, 0.05], min_density=0.1, alpha=0.01)
    far = result(np.full((400, 8), 0.5))
    with pytest.raises(AssertionError):  # PSAViolation is an AssertionError
        far.assert_psa(gamma=0.05, min_density=0.05)


def test_assert_psa_refuses_a_check_that_cannot_fail():
    few = result(np.full((5, 8), 0.5))
    with pytest.raises(PsaUsageError, match="cannot fail"):
        few.assert_psa(gamma=0.05, min_density=0.05)


@pytest.mark.parametrize("kwargs", [{"alpha": 0}, {"alpha": 1}, {"min_density": 0}, {"min_density": 1.5}])
def test_assert_psa_argument_errors(kwargs):
    r = result(np.full((50, 2), 0.01))
    with pytest.raises(PsaUsageError):
        r.assert_psa(**{"gamma": 0.05, "min_density": 0.05, **kwargs})


def test_to_dict_and_table():
    r = result(np.linspace(0, 0.3, 40).reshape(10, 4))
    d = r.to_dict(include_distances=True)
    assert d["n_images"] == 10 and d["draws"] == 4 and len(d["distances"]) == 10
    assert [row["gamma"] for row in d["ecdf"]] == list(r.gammas)
    assert "F(0.05)" in r.table()


@pytest.mark.slow
def test_public_density_name():
    """`pytest_psa.density(...)` stays the function after the measurement submodules were imported."""
    code = ("import pytest_psa.measure.density.distances\n"
            "import pytest_psa\n"
            "from pytest_psa.audits.density import density\n"
            "print(pytest_psa.density is density)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True", f"pytest_psa.density is {out.stdout.strip()!r}"
