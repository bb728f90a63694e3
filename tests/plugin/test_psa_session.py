"""The session at the bottom (pytest_psa/_session.py): registered as the plugin object, one repro
builder for the fixture and the baseline gate, and verdicts copied from results into records."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

_NOISE = """
import torch
import pytest


def noise(x):
    return (x + 0.01 * torch.randn_like(x)).clamp(0, 1)


@pytest.mark.psa(gamma=0.05, min_density=0.5, n_images=40, draws=2)
def test_noise(psa):
    psa.density(noise).assert_psa()
    psa.density(noise, seed=3).assert_psa(gamma=[0.02, 0.05])
"""


@pytest.mark.slow
def test_session_is_the_registered_plugin_and_verdicts_reach_records_and_junit(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
from pytest_psa._session import SESSION_NAME, PsaSession, session_of

def pytest_sessionfinish(session):
    psa = session.config.pluginmanager.get_plugin(SESSION_NAME)
    assert isinstance(psa, PsaSession) and psa is session_of(session.config)
    (record_a, record_b) = psa.records
    assert [v["gamma"] for v in record_a.verdicts] == [0.05]
    assert [v["gamma"] for v in record_b.verdicts] == [0.02, 0.05]
    assert {v["outcome"] for v in record_a.verdicts + record_b.verdicts} == {"pass"}
    print("CHECKED-SESSION")
""")
    pytester.makepyfile(test_a=_NOISE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*CHECKED-SESSION*"])
    props = {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "out.xml").iter("property")}
    assert props["psa_verdict(0.05)"] == "pass" and props["psa_verdict(0.02)"] == "pass"
    assert float(props["psa_F(0.05)"]) > 0.5


@pytest.mark.slow
def test_repro_hook_is_asked_with_the_measurement_seed(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
def pytest_psa_repro_command(nodeid, seed, config):
    return f"make repro NODE={nodeid} SEED={seed}"
""")
    pytester.makepyfile(test_b="""
import pytest


@pytest.mark.psa(gamma=0.001, min_density=0.9, n_images=40, draws=2, seed=7)
def test_far(psa):
    psa.density(lambda x: 1 - x).assert_psa()
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--psa-no-replay")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*reproduce: make repro NODE=test_b.py::test_far SEED=7*"])


def test_default_repro_names_the_run_seed_and_data() -> None:
    from pytest_psa._session import PsaSession
    from pytest_psa._settings import resolve

    settings = resolve({"seed": 5, "data": "cifar10"}, {})
    cmd = PsaSession(settings).repro_command("t.py::test_x", seed=9, extra=["--psa-compare=0002"])
    assert cmd == "pytest t.py::test_x --psa-seed=5 --psa-data=cifar10 --psa-compare=0002"
