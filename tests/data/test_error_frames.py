"""A failing psa test's report shows the user's line and the error's message, and no pytest-psa
frames, on every failure path: the fixture, the audits called directly, marker and spec
arguments, data sources, the sanity gate and the replay of a failed check. ``--fulltrace`` keeps them.
"""

from __future__ import annotations

import re

import pytest

# loaded here, before pytester's in-process runs: each run forgets the modules it imported, and torch
# imported a second time into one process crashes it
import pytest_psa.audits.density  # noqa: F401
import pytest_psa.audits.flatness  # noqa: F401
import pytest_psa.audits.robustness  # noqa: F401

SUITE = """
import itertools

import pytest
import torch

import pytest_psa


def times255(x):
    return x * 255.0


def test_fixture_contract(psa):
    psa.density(times255, n_images=8, draws=1)


def test_direct_missing_data():
    pytest_psa.density(None, data="/no/such/folder", n_images=5)


def test_n_images_above_the_data(psa):
    psa.density(None, n_images=5000, draws=1)


def test_attack_spec(psa):
    psa.robustness(None, attacks=["linf8/255"])


def test_sanity_refusal(psa):
    psa.flatness(None, n_train=50, seeds=[0], metrics=["lpf"])


def test_user_dataset_fails():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            raise KeyError(f"no item {i}")

    pytest_psa.density(None, data=Broken(), n_images=2)


audits = itertools.count()
state = {"destroy": True}


def destroys_once(x):
    return 1.0 - x if state["destroy"] else x.clone()


@pytest.mark.psa(gamma=0.05, min_density=0.5)
def test_replay_flaky(psa):
    state["destroy"] = next(audits) == 0  # fails the first audit, passes the replay
    psa.density(destroys_once, n_images=50, draws=1).assert_psa()
"""

MESSAGES = {
    "test_fixture_contract": "AugmentationContractError: augmentation times255: value range",
    "test_direct_missing_data": "DataSourceError: data set '/no/such/folder' not found",
    "test_n_images_above_the_data": "n_images=5000 asks for more images than synthetic/test holds (2000)",
    "test_attack_spec": "PsaUsageError",
    "test_sanity_refusal": "PsaSanityError: sanity gate: the training set is too small",
    "test_user_dataset_fails": "reading item",
    "test_replay_flaky": "FlakyMeasurement",
}
LIBRARY_FRAME = re.compile(r"pytest_psa/[\w/]+\.py:\d+")


def _sections(out: str) -> dict[str, str]:
    """The failure section of each test in the report, by test name."""
    parts = re.split(r"^_{3,} (test_\w+) _{3,}$", out, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_reports_show_the_users_line_and_message_without_library_frames(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_paths=SUITE)
    report = pytester.runpytest("-p", "no:cacheprovider", "-W", "ignore::pytest_psa.PsaWarning")
    report.assert_outcomes(failed=len(MESSAGES))
    sections = _sections(report.stdout.str())
    assert set(sections) == set(MESSAGES)
    for name, text in sections.items():
        assert MESSAGES[name] in text, name
        assert "test_paths.py:" in text, name  # the user's line
        assert not LIBRARY_FRAME.search(text), (name, LIBRARY_FRAME.findall(text))
    # the user's Dataset raised: its __getitem__ line is part of the story, so it stays
    assert 'raise KeyError(f"no item {i}")' in sections["test_user_dataset_fails"]
    # the flaky replay points at the user's failed check, with the first failure in its message
    assert "psa.density(destroys_once" in sections["test_replay_flaky"]
    assert "The first failure was" in sections["test_replay_flaky"]


def test_fulltrace_keeps_every_frame(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_paths=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--fulltrace", "-k", "direct_missing_data")
    result.assert_outcomes(failed=1)
    assert LIBRARY_FRAME.search(result.stdout.str())
