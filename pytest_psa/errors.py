"""The one error hierarchy of pytest-psa.

Every error says what went wrong, what was observed and how to fix it, so a user
reads one message instead of a traceback through torch internals.
"""

from __future__ import annotations

import os
import types
from typing import Any

__all__ = [
    "AugmentationContractError",
    "CacheError",
    "DataSourceError",
    "PSAViolation",
    "PsaError",
    "PsaSanityError",
    "PsaUsageError",
    "PsaWarning",
    "TimeBudgetExceeded",
    "without_library_frames",
]


def _format(problem: str, observed: Any, fix: str | None) -> str:
    lines = [problem]
    if observed is not None:
        lines.append(f"  observed: {observed}")
    if fix:
        lines.append(f"  fix: {fix}")
    return "\n".join(lines)


class PsaError(Exception):
    """Root of every error pytest-psa raises on purpose."""

    def __init__(self, problem: str, *, observed: Any = None, fix: str | None = None) -> None:
        self.problem = problem
        self.observed = observed
        self.fix = fix
        super().__init__(_format(problem, observed, fix))

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickles as cls(*args), which the keyword-only fields break; a DataLoader
        # worker sends its AugmentationContractError to the main process this way
        return _restore, (type(self), self.args, self.__dict__.copy())


class PsaUsageError(PsaError, ValueError):
    """An option, marker argument or function argument is invalid."""


class AugmentationContractError(PsaError, TypeError, ValueError):
    """An augmentation broke the image contract (float CHW in [0, 1], finite, same size).

    It is both a ``TypeError`` and a ``ValueError`` so callers can catch it either way.
    """

    def __init__(
        self,
        problem: str,
        *,
        property: str,
        observed: Any = None,
        fix: str | None = None,
        augmentation: str | None = None,
    ) -> None:
        self.property = property
        self.augmentation = augmentation
        who = f"augmentation {augmentation}: " if augmentation else ""
        super().__init__(f"{who}{property}: {problem}", observed=observed, fix=fix)


class DataSourceError(PsaError, ValueError):
    """A data set is missing, malformed or not allowed (e.g. a download was not permitted)."""


class CacheError(PsaError):
    """A cache entry is damaged or cannot be written."""


class PsaSanityError(PsaError):
    """A verdict was refused: a trained model did not learn (test accuracy not clearly above chance),
    an augmented model collapsed, or the training set is too small to measure anything.

    `record` holds the gate's numbers (rule, alpha, chance, each model's accuracy and p-value), the
    same block a result keeps under ``settings["sanity"]`` when the gate passes or only warns.
    """

    def __init__(self, problem: str, *, observed: Any = None, fix: str | None = None,
                 record: dict[str, Any] | None = None) -> None:
        self.record = record or {}
        super().__init__(problem, observed=observed, fix=fix)


class TimeBudgetExceeded(PsaError, TimeoutError):
    """A measurement ran past the time budget it was given."""


class PSAViolation(PsaError, AssertionError):
    """A psa check failed: the measured value is outside its threshold at the declared alpha.

    Raised on the test item; the message carries the table, the settings and a repro command.
    """

    def __init__(self, message: str, *, result: Any = None) -> None:
        self.result = result
        Exception.__init__(self, message)
        self.problem, self.observed, self.fix = message, None, None


class FlakyMeasurement(PsaError, RuntimeError):
    """A psa check failed, but re-measuring it once with the same seed passed.

    The failure is not a verdict: the measurement itself is not reproducible (non-deterministic
    kernels, a data race, a GPU), so neither outcome can be trusted until that is fixed.
    """

    def __init__(self, message: str, *, first: BaseException | None = None) -> None:
        self.first = first
        Exception.__init__(self, message)
        self.problem, self.observed, self.fix = message, None, None


class PsaWarning(UserWarning):
    """Something worth a look that does not fail the check (e.g. an inconclusive verdict)."""


def _restore(cls: type[PsaError], args: tuple[Any, ...], state: dict[str, Any]) -> PsaError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def without_library_frames(exc: BaseException) -> types.TracebackType | None:
    """Drop pytest-psa's own frames from `exc`'s traceback and from those of its causes and contexts.

    For errors raised on purpose (`PsaError`): their message says what happened and how to fix it,
    so the frames worth showing are the user's (the test line, their augmentation or Dataset).
    Returns `exc`'s new traceback (None when every frame was the library's: then it is left as it was).
    """
    seen: set[int] = set()
    first: types.TracebackType | None = None
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        kept = _outside_package(e.__traceback__)
        if kept is not None:
            e.__traceback__ = kept
        if e is exc:
            first = kept
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return first


def _outside_package(tb: types.TracebackType | None) -> types.TracebackType | None:
    frames = []
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            frames.append(tb)
        tb = tb.tb_next
    rebuilt: types.TracebackType | None = None
    for t in reversed(frames):
        rebuilt = types.TracebackType(rebuilt, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return rebuilt
