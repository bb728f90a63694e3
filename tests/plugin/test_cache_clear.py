"""--psa-cache-clear empties both caches that hold results of trained models: the model cache and
the robustness evaluations (an evaluation of a deleted model must not outlive it)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_cache_clear_empties_models_and_robustness_evaluations(pytester: pytest.Pytester, tmp_path: Path) -> None:
    from pytest_psa.audits.evaluation_cache import EvaluationStore
    from pytest_psa.train.model_cache import ModelCache

    cache = tmp_path / "cache"
    models, evaluations = ModelCache(cache).dir, EvaluationStore(cache).dir
    models.mkdir(parents=True)
    evaluations.mkdir(parents=True)
    (models / "k.safetensors").write_bytes(b"weights")
    (models / "k.json").write_text("{}")
    (evaluations / "e.npz").write_bytes(b"arrays")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider", f"--psa-cache-dir={cache}", "--psa-cache-clear")
    result.assert_outcomes(passed=1)
    assert not (models / "k.safetensors").exists() and not (models / "k.json").exists()
    assert not (evaluations / "e.npz").exists()
