"""Elastic transform against scipy re-statements of the reference with the kernel's own draws.

cv2.warpAffine(BORDER_REFLECT_101) is restated with scipy.ndimage.affine_transform(order=1,
mode='mirror'), skimage's gaussian(mode='reflect', truncate=3) with scipy's gaussian_filter, and
map_coordinates(order=1, mode='reflect') is the reference's own call.
"""

from __future__ import annotations

import corrupt_b_reference as ref
import numpy as np
import pytest
import torch

import pytest_psa
from pytest_psa.measure.robustness.corruptions.elastic import ELASTIC_TABLES, elastic_transform
from pytest_psa.measure.robustness.corruptions.rng import CounterRNG


def _draws(rng: CounterRNG, params: tuple, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's draws: control-point moves (stream 0) and the two U(-1, 1) fields (stream 1)."""
    affine = params[2]
    moves = rng.uniform((3, 2), stream=0).double().numpy() * (2 * affine) - affine
    fields = rng.uniform((2, size, size), stream=1).double().numpy() * 2 - 1
    return moves, fields


def test_cifar_table_is_the_reference_fractions_times_32():
    assert ELASTIC_TABLES[32][0] == (0, 0, 32 * 0.08)
    assert np.allclose(ELASTIC_TABLES[32][1], (1.6, 6.4, 2.24))
    assert np.allclose([row[2] for row in ELASTIC_TABLES[32]], [2.56, 2.24, 1.92, 1.6, 0.96])
    assert ELASTIC_TABLES[224][0] == (244 * 2, 244 * 0.7, 244 * 0.1)  # the reference's 244, kept


@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_elastic_equals_the_reference_with_the_same_draws(severity):
    params = ELASTIC_TABLES[32][severity - 1]
    x = pytest_psa.load_data("synthetic", split="test").float_images()[:6]
    rng = CounterRNG(13, torch.arange(6), "elastic_transform", severity)
    out = elastic_transform(x, params, rng).double().numpy()
    moves, fields = _draws(rng, params, 32)
    for n in range(6):
        expected = ref.elastic(x[n].permute(1, 2, 0).double().numpy(), params, moves[n], fields[n])
        assert np.abs(out[n].transpose(1, 2, 0) - expected).max() < 2e-4


@pytest.mark.parametrize("severity", [1, 3])
def test_elastic_at_224_px_equals_the_reference(severity):
    # ImageNet rows: sigma up to 170 px with truncate 3 (a 1025-tap kernel folded by reflection).
    params = ELASTIC_TABLES[224][severity - 1]
    gen = torch.Generator().manual_seed(severity)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 28, 28, generator=gen), size=224, mode="bilinear")
    rng = CounterRNG(14, torch.arange(1), "elastic_transform", severity)
    out = elastic_transform(x, params, rng)[0].double().numpy().transpose(1, 2, 0)
    moves, fields = _draws(rng, params, 224)
    expected = ref.elastic(x[0].permute(1, 2, 0).double().numpy(), params, moves[0], fields[0])
    assert np.abs(out - expected).max() < 1e-3  # float32 coordinates of up to ~100 px displacements
