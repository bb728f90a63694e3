"""The new distances are selectable by name wherever a distance is accepted: the marker, the fixture,
``--psa-distance`` (with parameters), a conftest hook registering a configured feature distance; and the
result they produce says which distance and parameters made it (JSON, JUnit)."""

from __future__ import annotations

import json

import pytest
import torch  # noqa: F401  (loaded before any inline pytester run)

import pytest_psa
import pytest_psa.audits.density  # noqa: F401
import pytest_psa.train  # noqa: F401
from pytest_psa.measure.density import distances as dist_mod
from pytest_psa.measure.density.distances import get_distance, register_distance
from pytest_psa.measure.density.distances_feature import feature_distance


def test_builtin_names_are_registered() -> None:
    assert {"l2", "linf", "l2_raw", "l2_aligned", "feature"} <= set(pytest_psa.available_distances())
    assert get_distance("l2_aligned").params["flips"] is True
    assert get_distance("feature").params["normalize"] == "cosine"


def test_a_configured_distance_registers_under_a_new_name(monkeypatch) -> None:
    monkeypatch.setattr(dist_mod, "_REGISTRY", dict(dist_mod._REGISTRY))
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 8))
    register_distance("tiny_features", feature_distance(enc), gammas=(0.1, 0.3))
    d = get_distance("tiny_features")
    assert d.name == "tiny_features" and d.gammas == (0.1, 0.3) and d.params["encoder_class"] == "Sequential"
    r = pytest_psa.density(None, n_images=10, draws=1, distance="tiny_features")
    assert r.distance == "tiny_features" and r.gammas == (0.1, 0.3) and float(r.distances.max()) == 0.0


CROP_FLIP = """
from torchvision.transforms import v2
CROP_FLIP = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])
"""


def test_marker_selects_l2_aligned_with_parameters(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CROP_FLIP + """
import pytest

@pytest.mark.psa(distance="l2_aligned", n_images=60, draws=2, gamma=0.02, min_density=0.5, strict=True)
def test_crop_flip_is_proximal_up_to_alignment(psa):
    r = psa.check(CROP_FLIP)
    assert r.distance == "l2_aligned" and r.alignment()["flip"] > 0.2

@pytest.mark.psa(distance="l2_aligned(radius=1, flips=False)", n_images=30, draws=2)
def test_parameters_in_the_marker(psa):
    r = psa.density(CROP_FLIP)
    assert r.distance_info["params"]["radius_px"] == [1, 1] and not r.details["flip"].any()

@pytest.mark.psa(distance="l2_aligned(radios=1)", n_images=10, draws=1)
def test_a_misspelt_parameter(psa):
    psa.density(CROP_FLIP)
""")
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest(f"--junitxml={xml}")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*l2_aligned: unknown parameter(s)*radios*"])
    result.stdout.fnmatch_lines(["*test_crop_flip_is_proximal_up_to_alignment | l2_aligned (flip *%, shift *%), N×K=60×2*"])
    assert 'name="psa_distance" value="l2_aligned"' in xml.read_text()


def test_command_line_option_selects_the_distance(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CROP_FLIP + """
def test_default_distance(psa):
    r = psa.density(CROP_FLIP, n_images=30, draws=2)
    assert r.distance == "l2_aligned" and float(r.distances.max()) == 0.0
    with open("result.json", "w") as f:
        __import__("json").dump(r.to_dict(), f)
""")
    result = pytester.runpytest("--psa-distance=l2_aligned")
    result.assert_outcomes(passed=1)
    summary = json.loads((pytester.path / "result.json").read_text())
    assert summary["distance"] == "l2_aligned" and summary["alignment"]["draws"] == 60
    assert summary["distance_info"]["params"]["radius_px"] == [4, 4]


@pytest.mark.slow
def test_feature_by_name_in_the_fixture_uses_the_cached_erm(pytester: pytest.Pytester, psa_cache_dir) -> None:
    """`--psa-distance=feature` with the session's cache: the synthetic ERM baseline is trained once
    (or found, when the feature tests ran first) and the fixture's audit names it."""
    pytester.makepyfile("""
import torch

def test_noise_moves_features(psa):
    r = psa.density(lambda x: (x + 0.2 * torch.randn_like(x)).clamp(0, 1), n_images=40, draws=2)
    params = r.distance_info["params"]
    assert r.distance == "feature" and params["layer"] == "features" and params["cache_key"]
    assert r.quantile(0.5) > 0.0
""")
    result = pytester.runpytest("--psa-distance=feature", f"--psa-cache-dir={psa_cache_dir}")
    result.assert_outcomes(passed=1)


def test_a_conftest_hook_can_register_a_configured_feature_distance(pytester: pytest.Pytester,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # the inline session registers "pooled" in this process: restored afterwards, so that later runs'
    # lists of valid distance names stay the built-in ones
    monkeypatch.setattr(dist_mod, "_REGISTRY", dict(dist_mod._REGISTRY))
    pytester.makeconftest("""
import torch
import pytest_psa.measure.density.distances_feature as feat

class Pool(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, 8).flatten(1)

def pytest_psa_distances():
    return {"pooled": feat.feature_distance(Pool(), normalize="cosine")}
""")
    pytester.makepyfile("""
import pytest

@pytest.mark.psa(distance="pooled", n_images=20, draws=1)
def test_pooled(psa):
    r = psa.density(lambda x: x.flip(-1))
    assert r.distance == "pooled" and r.distance_info["params"]["encoder_class"] == "Pool"
""")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
