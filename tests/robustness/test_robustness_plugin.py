"""The pytest surface of the robustness audit: `psa.robustness`, marker twins of `assert_budget`
(validated at collection), `psa.check` running the budgets, the summary and JUnit properties.

Runs in subprocesses (torch must not be imported twice in one process) on a tiny training recipe
(1 epoch on 500 synthetic images) with a cache folder shared by the tests of this module.
"""

from __future__ import annotations

import pytest

TEST_FILE = """
import pytest
from torchvision.transforms import v2

NOISE = v2.GaussianNoise(sigma=0.1)
SMALL = dict(corruptions=["gaussian_noise", "contrast"], attacks=["linf:2/255:5"], n_images=200,
             n_attack_images=50, epochs=1, n_train=500, batch_size=64,
             sanity="warn")  # one epoch on 500 images is at chance: the budgets' plumbing, not a verdict on them


@pytest.mark.psa(max_mce=0.95, max_adv_error={"linf,2/255": 1.0}, vs_erm={"mce": 0.5})
def test_within_budget(psa):
    result = psa.robustness(NOISE, **SMALL)
    result.assert_budget()  # the marker's budgets
    assert result.seeds == (0,)


@pytest.mark.psa(max_mce=0.0)
def test_over_budget(psa):
    psa.robustness(NOISE, **SMALL).assert_budget()
"""


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("plugin-cache")


@pytest.mark.slow
def test_marker_budgets_pass_fail_and_report(pytester: pytest.Pytester, shared_cache) -> None:
    pytester.makepyfile(test_audit=TEST_FILE)
    result = pytester.runpytest_subprocess(f"--psa-cache-dir={shared_cache}", "--psa-no-replay", "-p", "no:randomly",
                                           "--junitxml=report.xml")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "robustness budget exceeded" in out and "max_mce" in out and "reproduce:" in out
    assert "pytest test_audit.py::test_over_budget --psa-seed=0" in out
    print(out)
    assert "robustness" in out and "mce" in out  # the summary section lists the robustness rows
    xml = (pytester.path / "report.xml").read_text()
    assert 'name="psa_mce"' in xml and 'name="psa_budget(max_mce)" value="fail"' in xml
    assert 'name="psa_budget(vs_erm[mce])" value="pass"' in xml


@pytest.mark.slow
def test_check_runs_the_budgets_the_marker_sets(pytester: pytest.Pytester, shared_cache) -> None:
    pytester.makepyfile(test_check="""
        import pytest
        from torchvision.transforms import v2

        @pytest.mark.psa(gamma=0.2, min_density=0.05, max_clean_error=0.0, corruptions=["gaussian_noise"],
                         attacks=[], n_images=200)
        def test_check(psa, monkeypatch):
            import pytest_psa.audits.robustness as audit
            real = audit.robustness
            monkeypatch.setattr(audit, "robustness",
                                lambda *a, **k: real(*a, epochs=1, n_train=500, batch_size=64, sanity="warn", **k))
            psa.check(v2.GaussianNoise(sigma=0.1))
    """)
    result = pytester.runpytest_subprocess(f"--psa-cache-dir={shared_cache}", "--psa-no-replay")
    result.assert_outcomes(failed=1)
    assert "max_clean_error" in result.stdout.str() and "robustness budget exceeded" in result.stdout.str()


INVALID = [
    ("max_mce=2", "max_mce=2 must be a number in [0, 1]"),
    ("vs_erm={'mcee': 0.0}", "unknown vs_erm key 'mcee'"),
    ("attacks='linf8'", "not a spec like 'linf:8/255:20'"),
    ("corruptions=['gausian_noise']", "unknown name(s) ['gausian_noise']"),
    ("max_adv_error={'linf,8/255': 1.5}", "max_adv_error={'linf,8/255': 1.5} must be"),
    ("perturbations='cifar10p'", "unknown name(s) ['cifar10p']"),
]


def test_marker_twins_are_validated_at_collection(pytester: pytest.Pytester) -> None:
    body = "import pytest\n" + "".join(f"\n@pytest.mark.psa({m})\ndef test_{i}(psa):\n    pass\n"
                                        for i, (m, _) in enumerate(INVALID))
    pytester.makepyfile(body)
    result = pytester.runpytest()
    result.assert_outcomes(errors=len(INVALID))  # each bad marker fails its own test, in setup
    for i, (_, problem) in enumerate(INVALID):
        assert f"test_{i}: @pytest.mark.psa: " in result.stdout.str()
        assert problem in result.stdout.str(), problem
