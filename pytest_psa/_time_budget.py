"""Time budgets: per test (``@pytest.mark.psa(budget_s=...)``) and per session (``--psa-time-budget``).

A budget is a deadline held in a context variable. Measurement code calls `check_budget(step)`
between steps (a training step, one draw of a density-audit chunk, a loss evaluation of a
flatness metric, a robustness evaluation batch), and the first call past a deadline raises
`TimeBudgetExceeded` naming the budget, the time spent, the step that overran and the fix.

Cooperative on purpose: no signal and no watchdog thread interrupts anything, so a step always
finishes, caches and files stay consistent, and the error lands on the test that overran (with
pytest-xdist and on every platform alike). The price: a step is never cut short, so a budget can
be overshot by at most one step. A call costs ~150 ns without a budget, ~400 ns with one, so
measurement code calls it unconditionally.

Torch-free: the plugin imports this module at start-up.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_psa.errors import PsaUsageError, TimeBudgetExceeded

__all__ = ["BudgetHooks", "Deadline", "check_budget", "remaining", "time_budget"]


@dataclass(frozen=True)
class Deadline:
    """One budget: `budget_s` seconds from `started` (a `time.perf_counter()` value)."""

    budget_s: float
    started: float
    what: str  # e.g. "the time budget of tests/test_x.py::test_y (@pytest.mark.psa(budget_s=30))"
    fix: str

    @property
    def at(self) -> float:
        return self.started + self.budget_s


# every budget that applies here, innermost last; each is checked (a test inside a session budget)
_DEADLINES: ContextVar[tuple[Deadline, ...]] = ContextVar("pytest_psa_deadlines", default=())

GENERIC_FIX = "raise the budget, or measure less: fewer images (n_images), fewer draws or a smaller preset"


def check_budget(step: str | Callable[[], str]) -> None:
    """Raise `TimeBudgetExceeded` when a budget in force has run out; call it between measurement steps.

    `step` names what just finished or is about to start ("training step 40/200 of small_cnn + ERM");
    pass a callable to build the name only when it is needed (hot loops).
    """
    __tracebackhide__ = True  # the failure points at the measurement step, not at this helper
    deadlines = _DEADLINES.get()
    if not deadlines:
        return
    now = time.perf_counter()
    for d in deadlines:
        if now > d.at:
            raise _overrun(d, f"during {step() if callable(step) else step}", now)


def _overrun(d: Deadline, where: str, now: float) -> TimeBudgetExceeded:
    return TimeBudgetExceeded(f"{d.what} ran out {where}",
                              observed=f"{now - d.started:.1f} s elapsed of a {d.budget_s:g} s budget", fix=d.fix)


def remaining() -> float | None:
    """Seconds left in the tightest budget in force (negative when overrun), or None without one."""
    deadlines = _DEADLINES.get()
    if not deadlines:
        return None
    return min(d.at for d in deadlines) - time.perf_counter()


@contextlib.contextmanager
def time_budget(budget_s: float, *, what: str = "the time budget", fix: str = GENERIC_FIX,
                started: float | None = None) -> Iterator[Deadline]:
    """Put a budget of `budget_s` seconds (from `started`, default now) in force inside the block.

    Budgets nest: inside another budget both apply, so the earlier deadline decides.
    Example::

        with time_budget(60, what="my audit"):
            result = pytest_psa.density(aug, n_images=5000)   # checks between draws
    """
    if not isinstance(budget_s, (int, float)) or isinstance(budget_s, bool) or not budget_s > 0:
        raise PsaUsageError(f"a time budget must be a number of seconds > 0, got {budget_s!r}",
                            fix="budget_s=30 (seconds)")
    deadline = Deadline(float(budget_s), time.perf_counter() if started is None else started, what, fix)
    token = _DEADLINES.set((*_DEADLINES.get(), deadline))
    try:
        yield deadline
    finally:
        _DEADLINES.reset(token)


# -- the pytest side -----------------------------------------------------------------------------
def _marker_budget(item: Any) -> float | None:
    for mark in item.iter_markers("psa"):  # closest first
        if "budget_s" in mark.kwargs:
            return float(mark.kwargs["budget_s"])
    return None


class BudgetHooks:
    """Puts the session budget and each test's marker budget in force around the test (setup included)."""

    def __init__(self, session_budget_s: float | None, session_started: float) -> None:
        self.session: Deadline | None = None
        if session_budget_s is not None:
            self.session = Deadline(
                session_budget_s, session_started, f"the session time budget (--psa-time-budget={session_budget_s:g})",
                f"raise --psa-time-budget (ini psa_time_budget), or measure less: --psa-n-images, --psa-draws, "
                f"--psa-preset=smoke, or fewer psa tests per job")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        budget_s = _marker_budget(item)
        if budget_s is None and self.session is None:
            return (yield)
        deadlines: tuple[Deadline, ...] = () if self.session is None else (self.session,)
        if budget_s is not None:
            deadlines += (Deadline(
                budget_s, time.perf_counter(),
                f"the time budget of {item.nodeid} (@pytest.mark.psa(budget_s={budget_s:g}))",
                "raise budget_s in the psa marker, or measure less: lower n_images or draws, use a smaller "
                "preset (preset='smoke') or fewer epochs / n_train for training"),)
        token = _DEADLINES.set((*_DEADLINES.get(), *deadlines))
        try:
            return (yield)
        finally:
            _DEADLINES.reset(token)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        __tracebackhide__ = True
        result = yield
        # a test whose own code overran (no measurement step in between) fails at its end
        if _marker_budget(item) is not None:
            test_deadline, now = _DEADLINES.get()[-1], time.perf_counter()
            if now > test_deadline.at:
                raise _overrun(test_deadline, "by the end of the test (after its last measurement step)", now)
        return result
