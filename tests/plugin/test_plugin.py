"""The pytest surface: options and ini twins, marker validation, fixture, failures on the item,
summary, JUnit properties, hooks, and that the plugin costs nothing to a suite without psa tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_psa._settings import OPTIONS

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_psa"

FAR = """
from torchvision.transforms import v2
FAR = v2.Compose([v2.RandomInvert(p=1), v2.ColorJitter(0.8, 0.8, 0.8, 0.3), v2.RandomSolarize(0.5, p=1)])
"""


PSA_MARKED = "import pytest\n\n@pytest.mark.psa(n_images=10)\ndef test_x():\n    pass\n"


def test_plugin_import_does_not_import_torch() -> None:
    code = "import sys, pytest_psa, pytest_psa.plugin; print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"  # ray only on --psa-executor=ray, at the first remote unit


@pytest.mark.slow
def test_suite_without_psa_tests_never_imports_torch(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import sys
        def pytest_sessionfinish(session):
            with open("torch_loaded.txt", "w") as f:
                f.write(str("torch" in sys.modules))
    """)
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess()  # the plugin loads through its pytest11 entry point
    result.assert_outcomes(passed=1)
    assert (pytester.path / "torch_loaded.txt").read_text() == "False"
    assert [line for line in result.stdout.lines if line.startswith("psa")] == []  # no header, no summary


def test_every_option_has_an_ini_twin(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    for opt in OPTIONS:
        assert opt.cli in text, opt.cli
        assert re.search(rf"^\s+{opt.ini} \(", text, re.M), opt.ini


@pytest.mark.parametrize(
    ("ini", "cli", "env", "expected"),
    [
        ("psa_seed = 7", [], {}, "seed=7"),
        ("psa_seed = 7", ["--psa-seed=11"], {}, "seed=11"),
        ("", [], {"PSA_DATA_ROOT": "/some/where"}, "data root /some/where"),
        ("psa_data_root = /ini/root", [], {"PSA_DATA_ROOT": "/env/root"}, "data root /ini/root"),
        ("psa_device = cpu", [], {}, "device=cpu"),
    ],
)
def test_precedence_cli_over_ini_over_env(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                          ini: str, cli: list[str], env: dict[str, str], expected: str) -> None:
    monkeypatch.delenv("PSA_DATA_ROOT", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(PSA_MARKED)  # the header shows when a collected test uses psa
    result = pytester.runpytest(*cli)
    assert expected in result.stdout.str()


@pytest.mark.parametrize(("args", "message"), [
    (["--psa-seed=-3"], "seed must be >= 0"),
    (["--psa-device=tpu"], "device must be auto, cpu, cuda or cuda:N"),
    (["--psa-alpha=2"], "alpha must be a number in (0, 1)"),
    (["--psa-draws=0"], "expected an integer >= 1"),
])
def test_bad_option_values_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\npsa_alpha = often\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini psa_alpha" in result.stderr.str()


def test_marker_arguments_are_validated_at_collection_and_fail_their_own_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.psa(gama=0.05)
        def test_typo(psa):
            raise AssertionError("must not run")

        @pytest.mark.psa(min_density=3)
        def test_range(psa):
            raise AssertionError("must not run")

        @pytest.mark.psa(gamma=0.05)
        def test_fine():
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=2)  # the bad markers fail their own tests, in setup
    out = result.stdout.str()
    assert "test_typo: @pytest.mark.psa: unknown argument 'gama' (did you mean 'gamma'?)" in out
    assert "@pytest.mark.psa: min_density=3 must be a number in (0, 1]" in out
    assert "must not run" not in out
    assert "plugin.py" not in out  # one readable message, no traceback through the plugin


def test_bad_distance_name_gets_did_you_mean(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.psa(distance="l2_algined")
        def test_typo(psa):
            raise AssertionError("must not run")

        @pytest.mark.psa(distance="l2_aligned(radius=2)")
        def test_with_parameters():
            pass
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.psa: distance='l2_algined' is not a known distance (did you mean "
                                 "'l2_aligned'? valid: feature, l2, l2_255, l2_aligned, l2_raw, linf;*"])


def test_hook_distances_count_as_known_and_the_option_is_checked_too(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        def pytest_psa_distances():
            return {"mean_abs": lambda x, y: (x - y).abs().flatten(1).mean(1)}
    """)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.psa(distance="mean_abs")
        def test_hooked():
            pass

        @pytest.mark.psa(n_images=10)
        def test_option_distance():
            pass
    """)
    pytester.runpytest().assert_outcomes(passed=2)
    result = pytester.runpytest("--psa-distance=mean_ab")
    result.assert_outcomes(passed=1, errors=1)  # the test with its own distance is not concerned
    result.stdout.fnmatch_lines(["*--psa-distance='mean_ab' is not a known distance (did you mean 'mean_abs'?*"])


def test_a_bad_marker_outside_the_selection_fails_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.psa(distance="l2_algined", gama=1)
        def test_broken(psa):
            pass

        def test_other():
            pass
    """)
    result = pytester.runpytest("-k", "other")
    result.assert_outcomes(passed=1, deselected=1)
    assert result.ret == pytest.ExitCode.OK
    assert "l2_algined" not in result.stdout.str() + result.stderr.str()


def test_header_only_when_a_collected_test_uses_psa(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.makepyfile(test_marked=PSA_MARKED)
    pytester.makepyfile(test_fixture="def test_f(psa):\n    pass\n")
    assert "psa: seed=" not in pytester.runpytest("test_plain.py").stdout.str()
    for path in ("test_marked.py", "test_fixture.py"):
        result = pytester.runpytest(path)
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["collected 1 item", "psa: seed=0, device=auto, data=synthetic*"])
        assert result.stdout.str().count("psa: seed=") == 1
    # deselected psa tests leave no header either
    assert "psa: seed=" not in pytester.runpytest("test_plain.py", "test_marked.py", "-k", "plain").stdout.str()


@pytest.mark.slow
def test_check_passes_and_fails_on_the_item_with_table_and_repro(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FAR + """
import pytest

@pytest.mark.psa(gamma=0.05, min_density=0.2, n_images=100)
def test_noise_is_proximal(psa):
    import torch
    psa.check(lambda x: (x + 0.02 * torch.randn_like(x)).clamp(0, 1))

@pytest.mark.psa(gamma=[0.02, 0.05], min_density=0.2, n_images=100)
def test_far_is_not(psa):
    psa.density(FAR).assert_psa()
""")
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest("--psa-seed=5", f"--junitxml={xml}")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*PSAViolation: PSA condition violated*",
        "*F_N(γ) < min_density=0.2 at alpha=0.001*",
        "*distance l2 | N=100 images x K=8 draws | seed=5*",
        "*0.02*FAIL*", "*0.05*FAIL*",
        "*reproduce: pytest test_check_passes_and_fails_on_the_item_with_table_and_repro.py::test_far_is_not"
        " --psa-seed=5*",
    ])
    # the summary: one section per augmentation, a header line per audit, then its γ rows
    assert re.search(r"density\s+test_noise_is_proximal \| l2, N×K=100×8.*\n\s+γ\s+F_N\(γ\).*\n\s+0.05\s+1.0000\s.*pass",
                     out), out
    junit = xml.read_text()
    assert 'name="psa_verdict(0.05)" value="fail"' in junit
    assert 'name="psa_seed" value="5"' in junit


def test_contract_error_is_readable_not_a_traceback(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_bad(psa):
            psa.density(lambda x: x * 255, n_images=10).assert_psa()
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "value range: output values leave [0, 1]" in out
    assert "fix: pixel values look like the 0-255 scale" in out
    assert "adapters.py" not in out and "contract.py" not in out  # library frames hidden


def test_hooks_add_distances_and_data_fixture_supplies_a_dataset(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest, torch

        def pytest_psa_distances():
            return {"mean_abs": lambda x, y: (x - y).abs().flatten(1).mean(1)}

        class Tiny(torch.utils.data.Dataset):
            def __len__(self):
                return 40
            def __getitem__(self, i):
                g = torch.Generator().manual_seed(i)
                return torch.rand(3, 16, 16, generator=g), i % 4

        @pytest.fixture
        def psa_data():
            return Tiny()
    """)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.psa(distance="mean_abs", n_images=30, draws=2)
        def test_custom(psa):
            r = psa.density(lambda x: x.flip(-1))
            assert r.distance == "mean_abs"
            assert r.n_images == 30 and r.data["image_size"] == [16, 16]
            assert r.F(1.0) == 1.0 and r.F(0.0) == 0.0
    """)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)


def test_unknown_distance_names_the_registered_ones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        def test_x(psa):
            psa.density(None, distance="cosine", n_images=5)
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*unknown distance 'cosine'*", "*registered: feature, l2, l2_255, l2_aligned, l2_raw, linf*"])


def test_no_private_pytest_api() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if re.search(r"^\s*(from|import) _pytest", text, re.M) or re.search(r"config\._\w", text):
            offenders.append(path.name)
    assert offenders == []
