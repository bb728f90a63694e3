"""ERM vs augmented flatness on the synthetic set: the whole comparison, the cache and the assertion.

The configuration is a small slice of the smoke preset (3 epochs on 2,000 images, 2 seeds,
250 measured images) so the comparison runs in CI; the models are trained once per module.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2

import pytest_psa
from pytest_psa import PsaUsageError, PSAViolation

pytestmark = pytest.mark.slow  # every test reads the comparison trained once per module (4 models)

CROP_FLIP = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])
# the clean synthetic variant: 3 epochs on 2,000 cluttered images end at chance, and the sanity gate refuses
SMALL = {"epochs": 3, "n_train": 2000, "batch_size": 64, "n_measure": 250, "data": "synthetic-clean"}
METRICS = ["eps_sharpness", "lpf"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def comparison(cache_dir):
    return pytest_psa.flatness(CROP_FLIP, seeds=2, metrics=METRICS, cache_dir=cache_dir, **SMALL)


def test_comparison_pairs_seeds_and_reports_everything(comparison) -> None:
    assert comparison.seeds == (0, 1)
    for name in METRICS:
        c = comparison[name]
        assert len(c.erm) == len(c.augmented) == 2
        for e, a, imp in zip(c.erm, c.augmented, c.improvement):
            assert imp == pytest.approx(1 - a / e, rel=1e-12)
        # the improvement of the geometric-mean ratio (issue 12); the per-seed 1 - aug/ERM are for display
        assert c.mean == pytest.approx(1 - math.exp(-sum(c.log_ratio) / 2))
        assert c.low <= c.mean <= c.high and 0.0 <= c.p_value <= 1.0
    # both models of a seed were measured on the same un-augmented images with the same seed
    for erm, aug, seed in zip(comparison.erm_reports, comparison.augmented_reports, comparison.seeds):
        assert erm.n_images == aug.n_images == 250 and erm.seed == aug.seed == seed
        assert erm["lpf"].increase == pytest.approx(comparison["lpf"].erm[comparison.seeds.index(seed)])
    erm_rec, aug_rec = comparison.training["erm"][0], comparison.training["augmented"][0]
    assert erm_rec["augmentation"] == "none" and "RandomCrop" in aug_rec["augmentation"]
    assert erm_rec["test_accuracy"] > 0.5  # well above 10 % chance (about 0.99 measured) after 3 epochs
    text = comparison.table()
    assert "eps_sharpness" in text and "L0 (train loss)" in text and "test accuracy" in text
    assert comparison.to_dict()["settings"]["baseline"] == "erm"


def test_warm_run_trains_nothing_and_measures_the_same(comparison, cache_dir) -> None:
    again = pytest_psa.flatness(CROP_FLIP, seeds=2, metrics=METRICS, cache_dir=cache_dir, **SMALL)
    for label in ("erm", "augmented"):
        assert [r["cache"] for r in again.training[label]] == ["hit", "hit"]
    for name in METRICS:
        assert again[name].erm == comparison[name].erm
        assert again[name].augmented == comparison[name].augmented


def test_no_augmentation_is_not_flatter_than_itself(comparison, cache_dir) -> None:
    same = pytest_psa.flatness(None, seeds=2, metrics=["lpf"], cache_dir=cache_dir, **SMALL)
    assert same["lpf"].improvement == (0.0, 0.0)
    with pytest.raises(PSAViolation) as info:
        same.assert_flatter(metric="lpf")
    message = str(info.value)
    assert "not shown flatter than ERM" in message and "seeds [0, 1]" in message
    assert "not proof of robustness" in message and "reproduce:" in message


def test_one_seed_cannot_show_a_claim(comparison, cache_dir) -> None:
    one = pytest_psa.flatness(CROP_FLIP, seeds=[0], metrics=["lpf"], cache_dir=cache_dir, **SMALL)
    assert one["lpf"].low == -math.inf
    with pytest.raises(PSAViolation):
        one.assert_flatter(metric="lpf", min_rel_improvement=-0.99)


def test_assert_flatter_thresholds_and_errors(comparison) -> None:
    c = comparison["eps_sharpness"]
    # the verdict turns exactly at the lower bound
    comparison.assert_flatter(metric="eps_sharpness", min_rel_improvement=c.low - 1e-9)
    with pytest.raises(PSAViolation):
        comparison.assert_flatter(metric="eps_sharpness", min_rel_improvement=c.low + 1e-9)
    with pytest.raises(PsaUsageError, match="was not measured"):
        comparison.assert_flatter(metric="hessian_top")
    with pytest.raises(PsaUsageError, match="unknown flatness metric"):
        pytest_psa.flatness(CROP_FLIP, metrics=["sharpness"])


def test_fixture_marker_summary_and_junit(comparison, cache_dir, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(f"""
        import pytest
        from torchvision.transforms import v2

        @pytest.mark.psa(metric="lpf", seeds=2, min_rel_improvement=0.0)
        def test_identity_is_not_flatter(psa):
            result = psa.flatness(None, epochs=3, n_train=2000, batch_size=64, n_measure=250, metrics=["lpf"],
                                    data="synthetic-clean")
            result.assert_flatter()
    """)
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest(f"--psa-cache-dir={cache_dir}", f"--junitxml={xml}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*not shown flatter than ERM: none on lpf*",
        "*reproduce: pytest test_fixture_marker_summary_and_junit.py::test_identity_is_not_flatter --psa-seed=0*",
        "*- psa: none -*",
        "flatness*test_identity_is_not_flatter | seeds 0, 1 | preset smoke*",
        "*lpf*+0.0%*+0.0%*fail (>+0.0%)*",
        "*flatness over ERM is a measurement, not proof of robustness*",
    ])
    assert 'name="psa_flatness_verdict(lpf)" value="fail"' in xml.read_text()


def test_train_records_say_where_they_ran(comparison) -> None:
    rec = comparison.training["erm"][0]
    assert rec["device"].startswith("cpu") or torch.cuda.is_available()
    assert rec["seed"] == 0 and rec["preset"] == "smoke" and rec["preset_fields"]["epochs"] == 3
