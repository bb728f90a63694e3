"""Replay a failed psa check once with the same seed, so a non-reproducible failure is called flaky.

Every psa measurement is seeded, so on CPU a replay reproduces the failure bit for bit and costs
one more measurement (trained models come from the cache). A replay that passes means the
measurement itself is not deterministic: that is reported as `FlakyMeasurement`, never as a pass
and never as a verdict on the augmentation (hypothesis's `Flaky`, not pytest-rerunfailures).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from pytest_psa.errors import FlakyMeasurement, PSAViolation


def replay(item: pytest.Item, first: PSAViolation, records: list[Any]) -> None:
    """Run the test body once more; raise `first` when it fails again, `FlakyMeasurement` when not."""
    n_records, n_props = len(records), len(item.user_properties)
    try:
        item.runtest()
    except PSAViolation as again:
        del records[n_records:]  # the replay's measurements duplicate the first ones
        del item.user_properties[n_props:]
        item.user_properties.append(("psa_replay", "reproduced"))
        _add_note(first, "psa: re-measured once with the same seed; the failure reproduced.")
        if str(again) != str(first):
            _add_note(first, f"psa: the replay's numbers differed:\n{again}")
        raise first from None
    except Exception as other:  # the replay broke differently: show both, do not hide either
        _add_note(other, f"psa: raised while replaying this failed psa check:\n{first}")
        raise
    item.user_properties.append(("psa_replay", "flaky"))
    raise FlakyMeasurement(
        "flaky psa measurement: the check failed, then passed when re-measured once with the same seed, so "
        "the measurement is not reproducible and its verdict cannot be trusted either way.\n"
        "  Fix: make it deterministic (torch.use_deterministic_algorithms(True); on GPU set "
        "CUBLAS_WORKSPACE_CONFIG=:4096:8), or look for state shared between tests.\n"
        f"  The first failure was:\n{first}",
        first=first,
    ).with_traceback(first.__traceback__) from None  # at the user's failed check; its text is in the message


def _add_note(exc: BaseException, note: str) -> None:
    """`BaseException.add_note` (Python 3.11+); on 3.10 the same ``__notes__`` list, which pytest
    shows there too (through the exceptiongroup backport it depends on)."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:
        notes = getattr(exc, "__notes__", None)
        if notes is None:
            notes = []
            setattr(exc, "__notes__", notes)  # 3.10's BaseException declares no __notes__ to assign
        notes.append(note)
