"""The audit grammar in `pytest_psa._specs` is torch-free, and the psa marker uses it as it is.

`_settings` validates psa markers at collection with the attack parser and the name lists of
`pytest_psa._specs`, the same ones the measurement code uses; so neither may import torch, and the
marker must accept an attack spec exactly when `resolve_attacks` does.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_psa._settings import marker_problems
from pytest_psa._specs import resolve_attacks
from pytest_psa.errors import PsaUsageError


def test_the_settings_and_the_specs_do_not_import_torch() -> None:
    code = ("import sys, pytest_psa._settings, pytest_psa._specs, pytest_psa._specs.attacks, pytest_psa._specs.names; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_measurement_side_uses_the_same_parser() -> None:
    from pytest_psa.measure.robustness import specs

    assert specs.resolve_attacks is resolve_attacks


GOOD = [
    "default",
    "linf:8/255:20",
    "l2:0.25:7",
    " LINF: 4/255 :10:APGD ",  # case, spaces and method aliases
    "l∞:2/255",  # a norm alias the old regex copy did not know
    "2:0.5",
    "l2:1e-1:7",  # eps in exponent notation
    [],
    ("linf:8/255:20", {"norm": "l2", "eps": 0.5, "steps": 7}),
    {"norm": "linf", "eps": 0.01, "method": "apgd_ce", "restarts": 2, "step_size": 0.005},
    ["linf:8/255:20", "linf:8/255:100:apgd-ce"],  # same norm and eps: labelled apart by method
]
BAD = [
    "linf8",
    "linf:8:20",  # an L∞ eps of 8 allows any image (the old regex copy let it through)
    "l3:0.5",
    "linf:8/255:x",
    "linf:8/255:0",
    "linf:8/255:20:fgsm",
    "linf:1/0",
    "linf:8/255:20:pgd:extra",
    {"norm": "l2", "stepz": 7},
    {"eps": -1},
    ["linf:8/255:20", "linf:8/255:20"],  # listed twice
    ["default", "l2:0.5:7"],  # "default" stands alone
    [5],
]


@pytest.mark.parametrize("spec", GOOD + BAD, ids=repr)
def test_the_marker_accepts_an_attack_spec_exactly_when_resolve_attacks_does(spec) -> None:
    try:
        resolve_attacks(spec)
        accepted = True
    except PsaUsageError:
        accepted = False
    problems = marker_problems((), {"attacks": spec})
    assert accepted == (spec in GOOD)
    assert (problems == []) == accepted, problems
    if problems:
        assert len(problems) == 1 and problems[0].startswith(f"attacks={spec!r} ")


def test_marker_attack_problems_say_what_is_wrong() -> None:
    (typo,) = marker_problems((), {"attacks": "linf8"})
    assert "not a spec like 'linf:8/255:20'" in typo and "norm:eps[:steps[:method]]" in typo
    (big,) = marker_problems((), {"attacks": "linf:8:20"})
    assert "L∞ eps of 1 or more" in big and "8/255 rather than 8" in big
    (key,) = marker_problems((), {"attacks": [{"norm": "l2", "stepz": 7}]})
    assert "dict with unknown key(s) ['stepz']" in key and "did you mean 'steps'?" in key
    (twice,) = marker_problems((), {"attacks": ["l2:0.5", "l2:0.5"]})
    assert "is listed twice" in twice and "list each attack once" in twice
    # None would mean the default in a marker (not "no attacks", as for resolve_attacks): refused
    (none,) = marker_problems((), {"attacks": None})
    assert "must be 'default'" in none


def test_the_registries_implement_exactly_the_declared_names() -> None:
    from pytest_psa._specs import names
    from pytest_psa.measure.flatness.measure import METRICS
    from pytest_psa.measure.robustness.corruptions.registry import CORRUPTIONS
    from pytest_psa.measure.robustness.perturbations import PERTURBATIONS

    assert tuple(CORRUPTIONS) == names.CORRUPTION_NAMES
    assert tuple(PERTURBATIONS) == names.PERTURBATION_NAMES
    assert METRICS is names.FLATNESS_METRICS
