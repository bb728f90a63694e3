"""The density audit's fast paths change no result: distances, identity flags and the eCDF are
bit-identical to a plain per-image loop that seeds each draw from the audit's seed table and
measures with the distances' textbook formulas (issue 15: the audit's cost against such a loop)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

import pytest_psa
from pytest_psa.audits.density import density, draw_seeds
from pytest_psa.measure.density.distances import ZERO_ON_EQUAL, get_distance

# the formulas as first written (pow(2), out-of-place abs), before the in-place versions
REFERENCE = {
    "l2": lambda x, y: (x - y).flatten(1).pow(2).mean(1).sqrt(),
    "linf": lambda x, y: (x - y).flatten(1).abs().amax(1),
    "l2_raw": lambda x, y: (x - y).flatten(1).norm(dim=1),
    "l2_255": lambda x, y: (x - y).flatten(1).norm(dim=1) * 255.0,
}
# torchvision-only pipelines: a draw is the transform after seeding torch's generator alone
TRANSFORMS = {
    "crop+flip": lambda: v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]),
    "flip": lambda: v2.RandomHorizontalFlip(),  # half the draws return the image: the identity path
    "trivialaugment": lambda: v2.TrivialAugmentWide(),
}


@pytest.fixture(scope="module")
def pool():
    return pytest_psa.synthetic("test", n=120)


def plain_loop(transform, pool, n, draws, seed, reference):
    """Distances and identity flags of a per-image loop over the audit's images and seeds."""
    images = pytest_psa.load_data(pool, split="test", n=n, seed=seed)
    x = images.float_images()
    seeds = draw_seeds(seed, images.indices.numpy(), draws)
    distances, identity = np.empty((n, draws)), np.empty((n, draws), dtype=bool)
    for j in range(draws):
        outs = []
        for i in range(n):
            torch.default_generator.manual_seed(int(seeds[i, j]))
            outs.append(transform(x[i]))
        y = torch.stack(outs)
        assert float(y.min()) >= 0 and float(y.max()) <= 1  # nothing for the contract to clamp
        distances[:, j] = reference(x, y).double().numpy()
        identity[:, j] = (x == y).flatten(1).all(1).numpy()
    return images.indices.numpy(), distances, identity


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@pytest.mark.parametrize("distance", sorted(REFERENCE))
def test_audit_is_bit_identical_to_a_plain_loop(pool, name, distance):
    transform = TRANSFORMS[name]()
    state = torch.get_rng_state()
    positions, distances, identity = plain_loop(transform, pool, 40, 3, 7, REFERENCE[distance])
    torch.set_rng_state(state)
    r = density(transform, data=pool, n_images=40, draws=3, seed=7, distance=distance, chunk_size=16)
    np.testing.assert_array_equal(r.image_indices, positions)
    np.testing.assert_array_equal(r.distances, distances)  # bit for bit, not approx
    np.testing.assert_array_equal(r.identity, identity)
    if name == "flip":
        assert 0 < r.identity.mean() < 1  # both branches of the identity test ran
    # the eCDF (the mean over images of each image's share of draws within γ) from the loop's values
    gammas = np.array(get_distance(distance).gammas)
    np.testing.assert_array_equal(r.F(gammas), [((distances <= g).sum(1) / 3).mean() for g in gammas])


def set_first_value(x: torch.Tensor) -> torch.Tensor:
    """Changes one pixel of a black image by 1e-30: squared, the difference underflows to 0."""
    y = x.clone()
    y[0, 0, 0] = 1e-30
    return y


@pytest.mark.parametrize("distance", ["l2", "l2_255"])
def test_a_change_the_distance_cannot_see_is_not_an_identity_draw(distance):
    black = (np.zeros((6, 3, 32, 32), dtype=np.uint8), np.arange(6) % 2)
    r = density(set_first_value, data=black, n_images=6, draws=2, seed=0, distance=distance)
    assert get_distance(distance).fn in ZERO_ON_EQUAL  # the fast path is the one under test
    assert np.all(r.distances == 0)  # the difference underflowed
    assert not r.identity.any()  # yet every draw changed its image
    r = density(lambda x: x.clone(), data=black, n_images=6, draws=2, seed=0, distance=distance)
    assert r.identity.all() and np.all(r.distances == 0)


def gradient_step(x: torch.Tensor) -> torch.Tensor:
    """User code that needs autograd (as an adversarial augmentation does): one step down |x|²."""
    with torch.enable_grad():
        z = x.clone().requires_grad_(True)
        (z * z).sum().backward()
    assert z.grad is not None
    return (x - 0.01 * z.grad).clamp(0, 1)


def test_user_code_runs_with_autograd_available(pool):
    """Only torchvision's own transforms get inference mode; a user's function keeps autograd."""
    r = density(gradient_step, data=pool, n_images=8, draws=2, seed=0)
    x = pytest_psa.load_data(pool, split="test", n=8, seed=0).float_images()
    expected = (x - gradient_step(x)).flatten(1).pow(2).mean(1).sqrt().double().numpy()
    np.testing.assert_array_equal(r.distances[:, 0], expected)  # a deterministic step: every draw alike
    np.testing.assert_array_equal(r.distances[:, 1], expected)
