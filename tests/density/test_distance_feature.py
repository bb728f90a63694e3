"""``feature``: embeddings under an encoder. A user's module or callable, batched encoding (each clean
image once), the normalization, and the default encoder: the cached ERM baseline of the audited data,
the same cache entry `pytest_psa.flatness` uses, trained once (about 5 s on the synthetic set)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from image_pair_strategies import image_pairs
from torch import nn

import pytest_psa
import pytest_psa.train  # noqa: F401  (loaded before any inline pytester run)
from pytest_psa import PsaUsageError
from pytest_psa._stats import mean_bounds
from pytest_psa.audits.density import density
from pytest_psa.measure.density.distances import get_distance
from pytest_psa.measure.density.distances_feature import feature_distance, state_sha256
from pytest_psa.train import ModelCache, resolve_preset

HYP = settings(deadline=None, max_examples=25, database=None)


class TinyEncoder(nn.Module):
    """A fixed random conv layer + ReLU + pooling: an encoder that needs no training."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen) * 0.3)
            self.conv.bias.copy_(torch.randn(16, generator=gen) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x)).mean((2, 3))


class Counting:
    """An encoder callable that counts its calls and the images it saw."""

    def __init__(self, encoder: nn.Module) -> None:
        self.encoder, self.calls, self.images = encoder, 0, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.images += len(x)
        return self.encoder(x)


def noise(sigma: float):
    return lambda x: (x + sigma * torch.randn_like(x)).clamp(0, 1)


# -- a user's encoder -------------------------------------------------------------------------
def test_identity_is_zero_and_clean_images_are_encoded_once_per_chunk() -> None:
    counting = Counting(TinyEncoder())
    r = density(None, n_images=40, draws=3, distance=feature_distance(counting))
    assert float(np.abs(r.distances).max()) == 0.0 and r.identity.all()
    assert counting.calls == 1 + 3 and counting.images == 40 * (1 + 3)  # one batched call per chunk and draw
    counting.calls = counting.images = 0
    density(noise(0.1), n_images=40, draws=2, chunk_size=16, distance=feature_distance(counting, batch_size=8))
    # 3 chunks (16, 16, 8), each split into batches of 8: clean 5 calls, each draw 5 calls
    assert counting.images == 40 * 3 and counting.calls == 5 * 3


def test_result_records_the_encoder() -> None:
    enc = TinyEncoder()
    r = density(noise(0.05), n_images=20, draws=2, distance=feature_distance(enc))
    params = r.distance_info["params"]
    assert r.distance == "feature" and params["normalize"] == "cosine" and params["layer"] == "call"
    assert params["encoder_class"] == "TinyEncoder" and params["weights_sha256"] == state_sha256(enc)
    assert "encoder: TinyEncoder, layer call, cosine normalization" in r.table()
    assert r.to_dict()["distance_info"]["params"]["encoder_class"] == "TinyEncoder"
    assert "distance=<distance feature>" in r.repro


def test_cosine_ignores_the_encoders_scale_and_l2_median_divides_by_the_typical_norm() -> None:
    x = pytest_psa.synthetic("test", n=16).float_images()
    y = noise(0.1)(x)
    enc = TinyEncoder()
    base = feature_distance(enc)(x, y)
    scaled = feature_distance(lambda z: 7.0 * enc(z))(x, y)
    torch.testing.assert_close(base, scaled, rtol=1e-5, atol=1e-7)
    med = density(noise(0.1), n_images=16, draws=1, distance=feature_distance(enc, normalize="l2_median"))
    med7 = density(noise(0.1), n_images=16, draws=1,
                   distance=feature_distance(lambda z: 7.0 * enc(z), normalize="l2_median"))
    np.testing.assert_allclose(med.distances, med7.distances, rtol=1e-5)
    s = med.distance_info["params"]["scale"]
    audited = pytest_psa.load_data(None, split="test", n=16, seed=0).float_images()  # what density picked
    with torch.no_grad():
        assert s == pytest.approx(float(enc(audited).double().norm(dim=1).median()), rel=1e-5)
    assert "median embedding norm of the 16 audited clean images" in med.distance_info["params"]["scale_from"]


def test_module_with_features_uses_its_penultimate_layer_and_keeps_its_mode() -> None:
    net = pytest_psa.train.build_model("small_cnn", 10)
    net.train()
    d = feature_distance(net)
    assert d.params["layer"] == "features" and feature_distance(net, layer="call").params["layer"] == "call"
    x = pytest_psa.synthetic("test", n=8).float_images()
    d(x, noise(0.1)(x))
    assert net.training  # put in eval mode for encoding only
    with pytest.raises(PsaUsageError, match="no features"):
        feature_distance(TinyEncoder(), layer="features")


def test_bad_encoders_and_options_are_refused() -> None:
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(PsaUsageError, match="one row per image"):
        feature_distance(lambda z: z.mean())(x, x)
    with pytest.raises(PsaUsageError, match="normalize"):
        feature_distance(TinyEncoder(), normalize="dot")
    with pytest.raises(PsaUsageError, match="must be an nn.Module or a callable"):
        feature_distance("resnet")
    with pytest.raises(PsaUsageError, match="needs its encoder"):
        get_distance("feature")(x, x)  # the default encoder depends on the audited data
    with pytest.raises(PsaUsageError, match="unknown parameter"):
        get_distance("feature(normalise='cosine')")


_ENCODER = TinyEncoder()


@HYP
@given(image_pairs(channels=(3,), sides=(6, 6)))
def test_cosine_feature_distance_is_non_negative_symmetric_and_bounded(pair) -> None:
    x, y = pair
    d = feature_distance(_ENCODER)
    a, b = d(x, y), d(y, x)
    assert bool((a >= 0).all()) and bool((a <= 1 + 1e-12).all())  # ReLU features: cosine in [0, 1]
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    assert torch.equal(d(x, x.clone()), torch.zeros(len(x)))


# -- the default encoder: the ERM baseline from the model cache --------------------------------
# the default feature distance trains (or reads from the cache) the flatness ERM baseline: `slow`
@pytest.fixture(scope="module")
def noise_ladder(psa_cache_dir):
    """Gaussian noise of growing σ, 200 images x 4 draws each, under the default feature distance."""
    return {s: density(noise(s), n_images=200, draws=4, distance="feature", cache_dir=psa_cache_dir)
            for s in (0.02, 0.05, 0.1, 0.2)}


@pytest.mark.slow
def test_default_encoder_is_the_flatness_erm_baseline_from_the_cache(noise_ladder, psa_cache_dir) -> None:
    params = noise_ladder[0.02].distance_info["params"]
    train = pytest_psa.synthetic("train")
    # the key pytest_psa.flatness uses for its ERM run of seed 0 at the smoke preset
    erm_key = ModelCache(psa_cache_dir).key(None, train, None, preset=resolve_preset("smoke"), seed=0)
    assert params["cache_key"] == erm_key and params["layer"] == "features" and params["normalize"] == "cosine"
    assert params["encoder"] == "small_cnn ERM baseline (preset smoke, seed 0)"
    assert params["train_data"] == "synthetic/train[10000]" and params["test_accuracy"] > 0.5
    assert all(r.distance_info["params"]["cache"] == "hit" for r in list(noise_ladder.values())[1:])  # no retraining
    identity = density(None, n_images=50, draws=2, distance="feature", cache_dir=psa_cache_dir)
    assert float(identity.distances.max()) == 0.0


@pytest.mark.slow
def test_feature_distance_grows_with_noise_strength(noise_ladder) -> None:
    """For each step σ -> σ' of the ladder, an image's mean distance over its draws grows.

    A sign test with a stated error rate: images are i.i.d., so "the mean distance grew" is a Bernoulli
    outcome per image; the one-sided (1 - 1e-3) betting lower bound of its probability must exceed
    1/2 at every step (were increases no more likely than not, this fails with probability <= 1e-3)."""
    sigmas = sorted(noise_ladder)
    per_image = {s: noise_ladder[s].distances.mean(1) for s in sigmas}
    for lo, hi in zip(sigmas, sigmas[1:]):
        grew = (per_image[hi] > per_image[lo]).astype(float)
        low, _ = mean_bounds(grew, 1e-3, "lower")
        assert low > 0.5, (lo, hi, grew.mean())
        assert per_image[hi].mean() > per_image[lo].mean()
    medians = [noise_ladder[s].quantile(0.5) for s in sigmas]
    assert medians == sorted(medians) and medians[0] < 0.01 < medians[-1]
