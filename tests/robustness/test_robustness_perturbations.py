"""CIFAR-10-P style sequences: frame counts and windows, the reference's ramps, identity frames, batch
independence of the random frames, and the tilt homography."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytest_psa import PsaUsageError
from pytest_psa.data.synthetic import synthetic
from pytest_psa.measure.robustness.perturbations import (
    CIFAR10_P, PERTURBATIONS, frame_indices, resolve_perturbations, sequence, tilt_homography,
)

DATA = synthetic("test", n=12)
X, IDS = DATA.float_images(), torch.arange(12)


def test_the_ten_test_perturbations_and_their_reference_frame_counts() -> None:
    assert resolve_perturbations("cifar10-p") == CIFAR10_P and len(CIFAR10_P) == 10
    assert {n: PERTURBATIONS[n].frames for n in ("gaussian_noise", "motion_blur", "translate", "rotate")} == {
        "gaussian_noise": 31, "motion_blur": 21, "translate": 16, "rotate": 31}
    assert resolve_perturbations(None) == ()
    with pytest.raises(PsaUsageError, match="did you mean 'tilt'"):
        resolve_perturbations(["tlit"])


def test_fewer_frames_keep_the_step_and_take_the_central_window_of_symmetric_ramps() -> None:
    assert frame_indices("rotate", None) == list(range(31))
    assert frame_indices("rotate", 11) == list(range(10, 21))  # -5 .. +5 degrees, 1 degree per frame
    assert frame_indices("translate", 4) == list(range(6, 10))  # -1 .. +2 pixels
    assert frame_indices("gaussian_noise", 5) == [0, 1, 2, 3, 4]  # clean frame first, then noisy draws
    assert frame_indices("zoom_blur", 99) == list(range(31))
    with pytest.raises(PsaUsageError, match="at least 2 frames"):
        frame_indices("rotate", 1)


@pytest.mark.parametrize(("name", "t"), [("rotate", 15), ("translate", 7), ("scale", 15), ("brightness", 15)])
def test_the_middle_of_a_symmetric_ramp_is_the_clean_image(name: str, t: int) -> None:
    frames = list(sequence(name, X, IDS))
    assert torch.allclose(frames[t], X, atol=1e-6), name
    assert not torch.allclose(frames[0], X, atol=1e-3), name


def test_translate_shifts_by_whole_pixels_with_zero_fill() -> None:
    frames = list(sequence("translate", X, IDS))
    assert torch.equal(frames[10][..., 3:], X[..., :-3]) and frames[10][..., :3].abs().sum() == 0  # +3 px
    assert torch.equal(frames[0][..., :-7], X[..., 7:])  # -7 px


def test_noise_frames_are_fresh_draws_keyed_by_image_and_frame() -> None:
    frames = list(sequence("gaussian_noise", X, IDS, seed=3, frames=4))
    assert torch.equal(frames[0], X)
    assert not torch.equal(frames[1], frames[2])  # a new draw per frame
    d = (frames[1] - X)[(X > 0.1) & (X < 0.9)]  # away from clipping the spread is the reference's 0.02
    assert float(d.std()) == pytest.approx(0.02, rel=0.1)
    alone = list(sequence("gaussian_noise", X[5:6], IDS[5:6], seed=3, frames=4))
    assert all(torch.equal(a[0], f[5]) for a, f in zip(alone, frames))  # independent of the batch
    other = list(sequence("gaussian_noise", X, IDS, seed=4, frames=4))
    assert not torch.equal(other[1], frames[1])


def test_zoom_blur_is_the_running_mean_of_zooms() -> None:
    from pytest_psa.measure.robustness.perturbations import _zoom

    frames = list(sequence("zoom_blur", X, IDS, frames=4))
    expected = (X + _zoom(X, 1.004) + _zoom(X, 1.008) + _zoom(X, 1.012)) / 4
    assert torch.allclose(frames[3], expected.clamp(0, 1), atol=1e-6) and torch.equal(frames[0], X)


def test_motion_blur_sweeps_the_angle_and_every_frame_is_a_valid_image() -> None:
    for name in CIFAR10_P:
        for f in sequence(name, X, IDS, frames=3):
            assert f.shape == X.shape and f.dtype == X.dtype and 0 <= float(f.min()) and float(f.max()) <= 1, name
    a, b = list(sequence("motion_blur", X, IDS, frames=2))
    assert not torch.equal(a, b)  # angles -180 and -171 degrees


def test_tilt_homography_matches_the_pinhole_construction() -> None:
    """At 0 degrees the reference's construction is a scaling by f / (1 + f) about the centre
    (the plane sits at depth 1 + f); the tilt frames stay within a pixel of the image otherwise."""
    h = w = 32
    f = math.hypot(w, h)
    s = f / (1 + f)
    expected = np.array([[s, 0, w / 2 * (1 - s)], [0, s, h / 2 * (1 - s)], [0, 0, 1]])
    m = tilt_homography(h, w, 0.0)
    assert np.allclose(m / m[2, 2], expected)
    m = tilt_homography(h, w, 11.25)
    assert not np.allclose(m / m[2, 2], expected) and abs(np.linalg.det(m)) > 0


def test_spatter_layer_flows_down_with_the_frames() -> None:
    """On dark images (no clipping) frame t adds the frame-0 water layer shifted down by round(0.8 t) rows."""
    dark = X * 0.3
    frames = list(sequence("spatter", dark, IDS, seed=1, frames=6))
    layer = frames[0] - dark
    assert float(layer.abs().max()) > 0.05  # some water on these images
    for t in (1, 3, 5):
        assert torch.allclose(frames[t] - dark, torch.roll(layer, round(0.8 * t), dims=-2), atol=1e-6), t
