"""The leave-one-domain-out audit on the procedural set, trained for real at a tiny size, and its
pytest surface (marker floors validated at collection, pass and fail through pytester, JSON).

Tiny recipe: four shape classes at 16 px, 600 images per style (480 held-in train each), 10 epochs at
batch 32 of the smoke preset's small CNN; one held-out domain (sketch), so two trainings. At 300 images
per style the two intervals overlapped in CI (in-domain 90.0 % [84.7, 94.0], held-out 82.7 % [77.9, 86.8]:
the gap held but 180 in-domain test images could not show it). Measured at 600 (ERM, 2-core EPYC, 1 and
2 threads, fp32 and bf16): in-domain 97.2-98.9 %, held-out 82.0-83.8 %, the nearest interval edges 8-10
points apart. The models
are shared by the tests of this module through one cache folder (the pytester run finds them there).
"""

from __future__ import annotations

import json

import pytest

from pytest_psa._settings import marker_problems

SMALL = {"epochs": 10, "batch_size": 32}
HELD_OUT = ["sketch"]


def _data():  # type: ignore[no-untyped-def]
    from pytest_psa.data.domains import synthetic_domains

    return synthetic_domains(600, n_classes=4, size=16)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return tmp_path_factory.mktemp("domain-cache")


@pytest.mark.slow
def test_held_out_domains_are_harder_and_augmentation_is_compared_with_intervals(shared_cache) -> None:
    from pytest_psa import domain_generalization

    r = domain_generalization("cropflip", data=_data(), held_out=HELD_OUT, seeds=1, cache_dir=shared_cache,
                              progress=False, **SMALL)
    print(r.table())
    m = r.metrics()
    assert r.domains == tuple(HELD_OUT) and r.augmentation == "cropflip" and r.baseline == "erm"
    # the domain gap: ERM on images of its training domains vs the style it never saw, beyond both intervals
    for d in HELD_OUT:
        indomain, heldout = m[f"erm_accuracy_indomain[{d}]"], m[f"erm_accuracy_heldout[{d}]"]
        assert indomain.low > heldout.high, f"{d}: in-domain {indomain.text()} vs held-out {heldout.text()}"
    # ERM vs the augmentation: a paired difference with an interval around it, per domain and averaged
    for name in [f"delta_accuracy_heldout[{d}]" for d in HELD_OUT] + ["delta_accuracy_heldout_avg"]:
        e = m[name]
        assert e.low is not None and e.high is not None and e.low <= e.estimate <= e.high and e.high - e.low > 0
    avg = m["accuracy_heldout_avg"].estimate
    assert avg == pytest.approx(m["accuracy_heldout[sketch]"].estimate)  # one held-out domain: its own accuracy
    summary = r.to_dict()
    assert summary["per_domain"][0]["train_domains"] == ["photo", "cartoon", "infrared"]
    assert summary["per_domain"][0]["n_heldout"] == 600 and summary["per_domain"][0]["n_indomain"] == 360
    assert summary["per_domain"][0]["sanity"]["passed"]  # the models learned (the gate's record)
    assert {t["cache"] for d in summary["per_domain"] for t in d["training"]["erm"]} == {"miss"}
    again = domain_generalization("cropflip", data=_data(), held_out=HELD_OUT, seeds=1, cache_dir=shared_cache,
                                  progress=False, **SMALL)
    assert {t["cache"] for d in again.to_dict()["per_domain"] for t in d["training"]["augmented"]} == {"hit"}
    assert again.metrics()["accuracy_heldout_avg"].estimate == avg  # same models, same numbers


def test_marker_floors_are_validated() -> None:
    assert marker_problems((), {"min_domain_accuracy": 0.5, "domain_vs_erm": "-1pp"}) == []
    assert "min_domain_accuracy=1.5" in marker_problems((), {"min_domain_accuracy": 1.5})[0]
    (problem,) = marker_problems((), {"domain_vs_erm": "-1%"})
    assert "ambiguous" in problem
    (problem,) = marker_problems((), {"domain_vs_erm": -0.01})
    assert "has no unit" in problem and "-1.00pp" in problem


TEST_FILE = f"""
import pytest
from pytest_psa.data.domains import synthetic_domains

DATA = synthetic_domains(600, n_classes=4, size=16)
SMALL = dict(data=DATA, held_out={HELD_OUT!r}, progress=False, **{SMALL!r})


@pytest.mark.psa(min_domain_accuracy=0.1, domain_vs_erm="-100pp")
def test_within_floor(psa):
    psa.domain_generalization("cropflip", **SMALL).assert_budget()


@pytest.mark.psa(min_domain_accuracy=0.99)
def test_below_floor(psa):
    psa.domain_generalization("cropflip", **SMALL).assert_budget()
"""


@pytest.mark.slow
def test_marker_floors_pass_and_fail_through_pytest(pytester: pytest.Pytester, shared_cache) -> None:
    pytester.makepyfile(test_domains=TEST_FILE)
    result = pytester.runpytest_subprocess(f"--psa-cache-dir={shared_cache}", "--psa-no-replay", "-p", "no:randomly",
                                           "--junitxml=report.xml", "--psa-json=run.json")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "below its floor" in out and "min_domain_accuracy" in out and "reproduce:" in out
    xml = (pytester.path / "report.xml").read_text()
    assert 'name="psa_budget(min_domain_accuracy)" value="fail"' in xml
    assert 'name="psa_budget(vs_erm[accuracy])" value="pass"' in xml
    run = json.loads((pytester.path / "run.json").read_text())
    kinds = {r["kind"] for r in run["results"]}
    assert kinds == {"domain"}
    failed = next(r for r in run["results"] if r["nodeid"].endswith("test_below_floor"))
    assert failed["verdicts"][0]["outcome"] == "fail" and "accuracy_heldout_avg" in failed["metrics"]
