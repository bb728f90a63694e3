"""A failed psa check is re-measured once with the same seed: reproduced -> the verdict stands,
not reproduced -> FlakyMeasurement (never a pass), --psa-no-replay -> no second measurement."""

from __future__ import annotations

import pytest

# An augmentation that is destructive on its first audit and the identity afterwards: the
# density check fails once and passes on the replay, like a non-deterministic measurement.
FLIPPING = """
import itertools
import torch
audits = itertools.count()
state = {"destroy": True}

def aug(x: torch.Tensor) -> torch.Tensor:
    return 1.0 - x if state["destroy"] else x.clone()

def measure(psa, *, flaky):
    n = next(audits)
    state["destroy"] = n == 0 or not flaky
    return psa.density(aug, n_images=200, draws=2)
"""


def _suite(pytester: pytest.Pytester, flaky: bool) -> None:
    pytester.makepyfile(helper=FLIPPING)
    pytester.makepyfile(test_aug=f"""
        import pytest
        from helper import measure

        @pytest.mark.psa(gamma=0.05, min_density=0.5)
        def test_aug(psa):
            measure(psa, flaky={flaky}).assert_psa()
    """)


def test_failure_that_does_not_reproduce_is_flaky(pytester: pytest.Pytester) -> None:
    _suite(pytester, flaky=True)
    result = pytester.runpytest("-p", "no:cacheprovider", "--junitxml=out.xml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*FlakyMeasurement: flaky psa measurement*", "*The first failure was:*",
                                 "*PSA condition violated*"])
    assert 'name="psa_replay" value="flaky"' in (pytester.path / "out.xml").read_text()


def test_failure_that_reproduces_keeps_its_verdict(pytester: pytest.Pytester) -> None:
    _suite(pytester, flaky=False)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "PSAViolation: PSA condition violated" in out
    assert "re-measured once with the same seed; the failure reproduced" in out
    assert "FlakyMeasurement" not in out
    # the replay's measurement is not listed twice in the summary table
    assert sum(line.startswith("density     test_aug ") for line in out.splitlines()) == 1


def test_no_replay_option_measures_once(pytester: pytest.Pytester) -> None:
    _suite(pytester, flaky=True)
    result = pytester.runpytest("-p", "no:cacheprovider", "--psa-no-replay")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "PSAViolation: PSA condition violated" in out
    assert "re-measured" not in out and "FlakyMeasurement" not in out


def test_plain_assertion_errors_are_not_replayed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="""
        import itertools
        calls = itertools.count()

        def test_plain(psa):
            assert next(calls) == 1
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "re-measured" not in result.stdout.str()
