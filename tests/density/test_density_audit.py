"""The density audit itself: seeded draws independent of chunking, draw count and the other images
audited; identity draws seen and excluded; the result's bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import transforms as v1
from torchvision.transforms import v2

import pytest_psa
from pytest_psa import PsaUsageError, PSAViolation, numpy_augmentation
from pytest_psa.audits.density import density, draw_seeds
from pytest_psa.measure.density.distances import get_distance

HYP = settings(deadline=None, max_examples=12, database=None)


def noise(x: torch.Tensor) -> torch.Tensor:
    return (x + 0.05 * torch.randn_like(x)).clamp(0, 1)


def hwc_shift(img: np.ndarray) -> np.ndarray:
    return np.clip(img.astype(np.int16) + np.random.randint(-30, 31), 0, 255).astype(np.uint8)


# cheap per-image augmentations of each adapter kind that draws from an RNG
CHEAP = {
    "tensor": noise,
    "v2": v2.RandomResizedCrop(32, scale=(0.5, 1.0), antialias=True),
    "pil": v1.RandomCrop(32, padding=4),
    "numpy": numpy_augmentation(hwc_shift),
}


@pytest.fixture(scope="module")
def pool():
    return pytest_psa.synthetic("test", n=120)


def _rows(r) -> dict[int, np.ndarray]:
    return {int(i): row for i, row in zip(r.image_indices, r.distances)}


_ONE_CHUNK: dict[str, object] = {}


@HYP
@given(kind=st.sampled_from(sorted(CHEAP)), chunk=st.integers(1, 23))  # 24 images: every split
def test_distances_do_not_depend_on_chunk_size(pool, kind, chunk):
    if kind not in _ONE_CHUNK:
        _ONE_CHUNK[kind] = density(CHEAP[kind], data=pool, n_images=24, draws=3, seed=4, chunk_size=256)
    ref = _ONE_CHUNK[kind]
    r = density(CHEAP[kind], data=pool, n_images=24, draws=3, seed=4, chunk_size=chunk)
    np.testing.assert_array_equal(r.distances, ref.distances)
    np.testing.assert_array_equal(r.identity, ref.identity)


@HYP
@given(kind=st.sampled_from(sorted(CHEAP)),
       picks=st.lists(st.integers(0, 119), min_size=2, max_size=20, unique=True), data=st.data())
def test_an_image_gets_the_same_draws_whatever_else_is_audited(pool, kind, picks, data):
    """Draws are seeded by (seed, position in the split, draw): other images, their number and their
    order change nothing for the images two audits share."""
    order = data.draw(st.permutations(picks))
    other = data.draw(st.lists(st.integers(0, 119), min_size=1, max_size=20, unique=True))
    a = density(CHEAP[kind], data=pool.take(torch.tensor(order)), n_images=len(order), draws=2, seed=9)
    b = density(CHEAP[kind], data=pool.take(torch.tensor(other)), n_images=len(other), draws=2, seed=9)
    rows_a, rows_b = _rows(a), _rows(b)
    assert set(rows_a) == set(picks)
    for i in set(rows_a) & set(rows_b):
        np.testing.assert_array_equal(rows_a[i], rows_b[i])


def test_more_draws_only_add_columns(pool):
    few = density(noise, data=pool, n_images=30, draws=2, seed=1)
    many = density(noise, data=pool, n_images=30, draws=5, seed=1)
    np.testing.assert_array_equal(many.distances[:, :2], few.distances)


def test_more_images_only_add_rows(pool):
    small = density(noise, data=pool, n_images=20, draws=2, seed=3)
    large = density(noise, data=pool, n_images=60, draws=2, seed=3)
    rows = _rows(large)
    assert set(_rows(small)) <= set(rows)
    for i, row in _rows(small).items():
        np.testing.assert_array_equal(rows[i], row)


def test_seed_changes_the_draws_and_none_means_zero(pool):
    a = density(noise, data=pool, n_images=20, draws=2, seed=0)
    b = density(noise, data=pool, n_images=20, draws=2, seed=None)
    c = density(noise, data=pool, n_images=20, draws=2, seed=1)
    np.testing.assert_array_equal(a.distances, b.distances)
    assert a.seed == b.seed == 0
    assert not np.array_equal(_rows(a).get(int(c.image_indices[0])), c.distances[0])


def test_draws_of_one_image_are_distinct_samples(pool):
    r = density(noise, data=pool, n_images=10, draws=8)
    assert all(len(set(row.tolist())) == 8 for row in r.distances)


def test_draw_seed_table():
    s = draw_seeds(0, np.arange(50), 6)
    assert s.shape == (50, 6) and s.dtype == np.int64 and (s >= 0).all()
    assert len(np.unique(s)) == s.size
    np.testing.assert_array_equal(draw_seeds(0, np.array([7, 3]), 6), s[[7, 3]])
    assert not np.array_equal(draw_seeds(1, np.arange(50), 6), s)


def test_distances_match_a_plain_loop(pool):
    """The batched audit measures exactly what a per-image loop over the same seeds measures."""
    aug = pytest_psa.as_augmentation(CHEAP["v2"])
    r = density(aug, data=pool, n_images=12, draws=2, seed=5, distance="linf")
    seeds = draw_seeds(5, r.image_indices, 2)
    for row, (i, s) in enumerate(zip(r.image_indices, seeds)):
        x = pool.float_images(torch.tensor([int(i)]))
        for j in range(2):
            y = aug.apply(x, [int(s[j])])
            assert r.distances[row, j] == pytest.approx(float((x - y).abs().max()), abs=1e-7)


def test_result_bookkeeping(pool):
    r = density(noise, data=pool, n_images=20, draws=3, seed=2, distance="linf")
    assert r.n_images == 20 and r.draws == 3 and r.distance == "linf" and r.seed == 2
    assert r.distances.shape == r.identity.shape == (20, 3)
    assert r.data["name"] == "synthetic" and r.data["n"] == 20
    assert r.gammas == get_distance("linf").gammas
    assert "seed=2" in r.repro and "n_images=20" in r.repro and "draws=3" in r.repro
    assert r.environment["torch"] == torch.__version__
    assert set(r.timing) >= {"total_s", "augment_s"}
    assert sorted(np.bincount(pool.labels[r.image_indices].numpy(), minlength=10)) == [2] * 10


@pytest.mark.parametrize("kwargs", [{"n_images": 0}, {"draws": 0}, {"chunk_size": 0}, {"distance": "l7"}])
def test_audit_argument_errors(pool, kwargs):
    with pytest.raises(PsaUsageError):
        density(noise, data=pool, **{"n_images": 5, "draws": 1, **kwargs})


# -- identity draws --------------------------------------------------------------------------
P_IDENTITY = 0.3


def identity_30_percent(x: torch.Tensor) -> torch.Tensor:
    if float(torch.rand(())) < P_IDENTITY:
        return x
    return (x + 0.1 * torch.randn_like(x)).clamp(0, 1)


@pytest.fixture(scope="module")
def identity_audit(pool):
    return density(identity_30_percent, data=pool, n_images=120, draws=10, seed=0)


def test_identity_fraction_is_measured(identity_audit):
    # 1,200 independent draws: sd of the fraction is 0.013; |error| > 0.06 has probability < 1e-5
    assert abs(identity_audit.identity_fraction - P_IDENTITY) < 0.06
    assert np.all(identity_audit.distances[identity_audit.identity] == 0)
    assert np.all(identity_audit.distances[~identity_audit.identity] > 0.02)


def test_identity_draws_make_F_at_least_their_share(identity_audit):
    r = identity_audit
    assert r.F(0.01) == pytest.approx(r.identity_fraction)  # every image keeps K=10 draws
    assert r.F(0.01, exclude_identity=True) == 0.0
    assert r.quantile(0.0) == 0.0 and r.quantile(0.0, exclude_identity=True) > 0.02


def test_identity_draws_can_pass_a_check_that_the_real_draws_fail(identity_audit):
    r = identity_audit
    r.assert_psa(gamma=0.01, min_density=0.1, strict=True)
    with pytest.raises(PSAViolation) as info:
        r.assert_psa(gamma=0.01, min_density=0.1, exclude_identity=True)
    assert "excluded" in str(info.value)


def test_exclude_identity_at_audit_time(pool, identity_audit):
    r = density(identity_30_percent, data=pool, n_images=40, draws=5, seed=0, exclude_identity=True)
    # the same draws as the full audit's (same seed, positions and draw numbers), only fewer
    np.testing.assert_array_equal(r.distances, identity_audit.distances[r.image_indices, :5])
    np.testing.assert_array_equal(r.identity, identity_audit.identity[r.image_indices, :5])
    assert r.exclude_identity and r.F(0.01) == 0.0
    assert r.F(0.01, exclude_identity=False) == pytest.approx(r.identity_fraction)


def test_identity_is_exact_equality_only(pool):
    tiny = density(lambda x: (x + 1 / 255).clamp(0, 1), data=pool, n_images=20, draws=2)
    assert tiny.identity_fraction == 0.0
    none = density(None, data=pool, n_images=20, draws=2)
    assert none.identity_fraction == 1.0 and none.F(0.0) == 1.0
