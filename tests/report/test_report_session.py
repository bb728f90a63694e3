"""A pytest session with density, flatness and robustness audits: the grouped summary, ``--psa-json``
(the psa run format, real values), ``--psa-plots`` (one eCDF per distance, the flatness bars, the
per-corruption errors) and the JUnit properties."""

from __future__ import annotations

import math

import json
import sys

import pytest
from torchvision.transforms import v2

import pytest_psa
from pytest_psa.report.run_files import load_run

PNG = b"\x89PNG\r\n\x1a\n"

TESTS = """
import pytest
from torchvision.transforms import v2

CROP_FLIP = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])

@pytest.mark.psa(n_images=60, draws=2)
def test_augmix_is_proximal(psa):
    psa.density(v2.AugMix()).assert_psa(gamma=0.05, min_density=0.2)

@pytest.mark.psa(n_images=60, draws=2)
def test_cropflip_three_audits(psa):
    psa.density(CROP_FLIP)
    psa.flatness(CROP_FLIP, **FLAT)
    train = {k: FLAT[k] for k in ("epochs", "n_train", "batch_size", "sanity")}  # the flatness models: cache hits
    psa.robustness(CROP_FLIP, seeds=FLAT["seeds"], corruptions=["gaussian_noise", "contrast"], severities=(1, 5),
                   attacks=["linf:8/255:2"], n_images=50, n_attack_images=10, **train)
"""


@pytest.mark.slow
def test_json_plots_and_grouped_summary(pytester: pytest.Pytester, report_cache, tiny_flatness) -> None:
    pytester.makepyfile(f"FLAT = {tiny_flatness!r}\n" + TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", f"--psa-cache-dir={report_cache}",
                                "--psa-json=out/run.json", "--psa-plots=out/figs", "--junitxml=out/junit.xml")
    result.assert_outcomes(passed=2)

    # -- the file is a psa run (the baseline format), with the values the tests measured
    doc = load_run(pytester.path / "out" / "run.json")  # the baseline reader validates it
    assert doc["schema"] == 1 and doc["format"] == "pytest-psa run" and doc["source"] == "pytest"
    assert doc["key"]["torch"] and doc["key"]["device"] == "cpu"
    assert doc["settings"]["json"] == "out/run.json" and doc["settings"]["n_images"] == 500
    entries = {(e["nodeid"].split("::")[1], e["index"]): e for e in doc["results"]}
    assert set(entries) == {("test_augmix_is_proximal", 0), ("test_cropflip_three_audits", 0),
                            ("test_cropflip_three_audits", 1), ("test_cropflip_three_audits", 2)}
    augmix = entries[("test_augmix_is_proximal", 0)]
    again = pytest_psa.density(v2.AugMix(), n_images=60, draws=2, seed=0)  # same seed: the same draws
    assert augmix["kind"] == "density" and augmix["metrics"]["F(0.05)"]["estimate"] == again.F(0.05)
    assert [e["estimate"] for e in augmix["summary"]["ecdf"]] == [again.F(g) for g in again.gammas]
    assert [v["outcome"] for v in augmix["verdicts"]] == ["pass"] and augmix["verdicts"][0]["gamma"] == 0.05
    curve = augmix["summary"]["ecdf_curve"]
    assert len(curve["gamma"]) == len(curve["F"]) == 101 and curve["gamma"] == sorted(curve["gamma"])
    flat = entries[("test_cropflip_three_audits", 1)]
    assert flat["kind"] == "flatness" and flat["seeds"] == [0, 1]
    lpf = flat["summary"]["comparisons"]["lpf"]
    assert flat["metrics"]["improvement(lpf)"]["estimate"] == pytest.approx(
        1 - math.exp(-sum(math.log(e / a) for e, a in zip(lpf["erm"], lpf["augmented"])) / 2), rel=1e-12)
    robust = entries[("test_cropflip_three_audits", 2)]
    assert robust["kind"] == "robustness" and robust["summary"]["training"]["baseline"][0]["cache"] == "hit"
    mce, erm_mce = robust["metrics"]["mce"], robust["metrics"]["baseline_mce"]
    assert mce["low"] <= mce["estimate"] <= mce["high"] and robust["metrics"]["delta_mce"]["estimate"] == \
        pytest.approx(mce["estimate"] - erm_mce["estimate"], abs=1e-12)  # paired over the same images
    json.dumps(doc, allow_nan=False)  # strict JSON

    # -- figures: one eCDF for the one distance, the flatness and the corruption figures; real PNGs
    figs = sorted((pytester.path / "out" / "figs").iterdir())
    assert [p.name for p in figs] == ["corruptions.png", "ecdf_l2.png", "flatness.png"]
    for p in figs:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, (p, len(data))

    # -- the summary: a section per augmentation, a header per audit, the files written
    result.stdout.fnmatch_lines([
        "*- psa: AugMix -*",
        "density*test_augmix_is_proximal | l2, N×K=60×2, identity 0.0% | synthetic/test[[]60[]]",
        "*γ*F_N(γ)*bounds*verdict",
        "*0.05*pass (≥0.2)",
        "*- psa: Compose*",
        "density*test_cropflip_three_audits | l2, N×K=60×2*",
        "flatness*test_cropflip_three_audits | seeds 0, 1 | preset smoke*",
        "*lpf*measured",
        "robustness*test_cropflip_three_audits | vs erm | 50 images | seeds 0, 1 | preset smoke*",
        "*metric*ERM*value [[]95%[]]*Δ [[]95%[]]*verdict",
        "*mce*%*%*pp*measured",
        "*adv_error(linf,8/255)*",
        "psa: flatness over ERM is a measurement, not proof of robustness*",
        "psa: wrote out/run.json (psa run, 4 audits)",
        "psa: wrote out/figs/ecdf_l2.png (figure)",
        "psa: wrote out/figs/flatness.png (figure)",
        "psa: wrote out/figs/corruptions.png (figure)",
    ])

    # -- JUnit: the same property names for every check
    junit = (pytester.path / "out" / "junit.xml").read_text()
    assert junit.count('name="psa_augmentation"') == 4
    assert 'name="psa_seeds" value="0,1"' in junit and 'name="psa_adv_error(linf,8/255)"' in junit


def test_plots_without_matplotlib_is_a_usage_error_naming_the_extra(pytester: pytest.Pytester,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` sees when it is not installed
    pytester.makepyfile("def test_never_runs():\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--psa-plots=figs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pip install pytest-psa[plots]" in result.stderr.str()
    assert not (pytester.path / "figs").exists()


GATED = """
import pytest
from torchvision.transforms import v2

AUG = {aug}

@pytest.mark.psa(n_images=40, draws=2)
def test_my_augmentation(psa):
    psa.density(AUG)
"""


def test_summary_shows_the_change_against_the_baseline(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gated=GATED.format(aug="v2.RandomHorizontalFlip()"))  # half the draws: x itself
    pytester.runpytest("-p", "no:cacheprovider", "--psa-save=main").assert_outcomes(passed=1)
    far = "v2.Compose([v2.RandomInvert(p=1), v2.ColorJitter(0.8, 0.8, 0.8, 0.3), v2.RandomSolarize(0.5, p=1)])"
    pytester.makepyfile(test_gated=GATED.format(aug=far))
    result = pytester.runpytest("-p", "no:cacheprovider", "--psa-compare", "--psa-compare-fail=F(0.05):0.05")
    result.assert_outcomes(failed=1)  # the gate fails the test item
    result.stdout.fnmatch_lines([
        "density*test_my_augmentation | l2, N×K=40×2*",
        "*γ*F_N(γ)*bounds*vs baseline*verdict",
        "*0.05*0.0000*-0.* REGRESSED*measured",
        "*0.1*0.0*-0.*measured",
    ])
