"""The corruption evaluation generates each corrupted set once and feeds it to every model.

The reference path is the kernel itself: `corrupt` on the whole subset at the default thread
count, then each model's arg-max, one model at a time. The audit's path (chunked, one intra-op
thread, shared between models) must give the same predictions bit for bit, and its counter of
generated images must read N x C x S however many models it evaluates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_psa import _timings
from pytest_psa.audits import robustness_evaluation as RE
from pytest_psa.audits.evaluation_cache import EvaluationStore, model_checksum
from pytest_psa.audits.robustness import robustness
from pytest_psa.data.image_data import ImageData
from pytest_psa.data.synthetic import synthetic
from pytest_psa.measure.robustness.corruptions import corrupt

# a random corruption, a whole-batch kernel and a digital one
NAMES = ("gaussian_noise", "motion_blur", "contrast")
SEVERITIES = (1, 3, 5)
N = 200


class NearestMean(torch.nn.Module):
    """Nearest class mean on `pool`-averaged pixels, fitted to the synthetic test split (what these
    tests evaluate on: they check the pipeline, not generalization): a real classifier whose
    predictions vary with the image, without a training run."""

    def __init__(self, pool: int) -> None:
        super().__init__()
        train = synthetic("test")
        x = torch.nn.functional.avg_pool2d(train.float_images(), pool).flatten(1)
        means = torch.stack([x[train.labels == c].mean(0) for c in range(10)])
        self.pool, self.linear = pool, torch.nn.Linear(x.shape[1], 10)
        with torch.no_grad():  # argmax_c of -|x - mu_c|^2 / 2 = x.mu_c - |mu_c|^2 / 2
            self.linear.weight.copy_(means)
            self.linear.bias.copy_(-0.5 * (means**2).sum(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(torch.nn.functional.avg_pool2d(x, self.pool).flatten(1))
        return out


@pytest.fixture(scope="module")
def trained() -> list[torch.nn.Module]:
    return [NearestMean(1).eval(), NearestMean(2).eval(), NearestMean(4).eval()]


@pytest.fixture(scope="module")
def data() -> ImageData:
    return synthetic("test").subset(N, seed=0)


@pytest.fixture(scope="module")
def models(trained: list[torch.nn.Module]) -> list[torch.nn.Module]:
    return trained[:2]


@pytest.fixture(scope="module")
def reference(data: ImageData, models: list[torch.nn.Module]) -> list[np.ndarray]:
    """Predictions [C, S, N] per model, each model on its own corrupted copies (the kernel, called directly)."""
    images, ids = data.float_images(), RE.sample_indices(data)
    out = [np.zeros((len(NAMES), len(SEVERITIES), N), np.int16) for _ in models]
    with torch.no_grad():
        for k, m in enumerate(models):
            for ci, name in enumerate(NAMES):
                for si, sev in enumerate(SEVERITIES):
                    x = corrupt(images, name, sev, seed=7, indices=ids)
                    out[k][ci, si] = m(x).argmax(1).numpy()
    return out


def _subjects(models: list[torch.nn.Module]) -> list[RE.Subject]:
    return [RE.Subject(f"m{k}", m, model_checksum(m)) for k, m in enumerate(models)]


def test_shared_chunks_give_the_kernels_predictions_and_are_made_once(
        data: ImageData, models: list[torch.nn.Module], reference: list[np.ndarray], tmp_path: Path,
        trained: list[torch.nn.Module], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RE, "CHUNK", 96)  # three chunks of 200: chunk borders are crossed
    settings = RE.CorruptionSettings(NAMES, SEVERITIES, seed=7)
    store = EvaluationStore(tmp_path)
    _timings.reset()
    arrays, status, timing = RE.evaluate_corruptions(_subjects(models), data, settings, store, batch_size=100)
    assert status == ["miss", "miss"]
    for a, ref, m in zip(arrays, reference, models):
        np.testing.assert_array_equal(a["pred"], ref)
        with torch.no_grad():
            np.testing.assert_array_equal(a["clean"], m(data.float_images()).argmax(1).numpy())
    assert len(np.unique(reference[0])) >= 5 and not np.array_equal(reference[0], reference[1])  # a real check
    # one corrupted set for both models, not one each
    assert timing["generated_images"] == N * len(NAMES) * len(SEVERITIES)
    stages = [(s.name, s.cached) for s in _timings.collect()]
    assert stages == [("clean", False), ("corruptions", False)]

    _timings.reset()
    _, status, timing = RE.evaluate_corruptions(_subjects(models), data, settings, store, batch_size=100)
    assert status == ["hit", "hit"] and timing["generated_images"] == 0
    assert [(s.name, s.cached) for s in _timings.collect()] == [("corruptions", True)]

    # a third model next to two cached ones: one more generation, for it alone
    third = trained[2]
    arrays, status, timing = RE.evaluate_corruptions(_subjects([*models, third]), data, settings, store)
    assert status == ["hit", "hit", "miss"]
    assert timing["generated_images"] == N * len(NAMES) * len(SEVERITIES)
    np.testing.assert_array_equal(arrays[0]["pred"], reference[0])


def test_chunks_count_what_they_make(data: ImageData) -> None:
    settings = RE.CorruptionSettings(("brightness",), (2, 4), seed=0)
    chunks = RE.CorruptedChunks(data.float_images(), RE.sample_indices(data), settings, torch.device("cpu"))
    seen = [(ci, si, part.start, part.stop, tuple(x.shape)) for ci, si, part, x in chunks]
    assert len(seen) == len(chunks) == 2 and chunks.images == 2 * N
    assert seen[0] == (0, 0, 0, N, (N, 3, 32, 32)) and seen[1][:2] == (0, 1)


def test_the_audit_generates_once_for_both_models(data: ImageData, models: list[torch.nn.Module],
                                                  reference: list[np.ndarray], tmp_path: Path) -> None:
    """robustness_of_model with a baseline: its numbers are the reference's errors, from one generation."""
    result = robustness(models[0], baseline=models[1], data="synthetic", corruptions=list(NAMES),
                                   severities=SEVERITIES, attacks=None, n_images=N, seed=7, cache_dir=tmp_path)
    labels = data.labels.numpy()
    np.testing.assert_array_equal(result.samples.corruption, (reference[0] != labels).astype(np.float64))
    assert result.baseline_samples is not None
    np.testing.assert_array_equal(result.baseline_samples.corruption, (reference[1] != labels).astype(np.float64))
    assert result.timing["corruptions_generated_images"] == N * len(NAMES) * len(SEVERITIES)
