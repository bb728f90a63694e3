"""The one error hierarchy of pytest-psa.

Every error says what went wrong, what was observed and how to fix it, so a user
reads one message instead of a traceback through torch internals.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AugmentationContractError",
    "CacheError",
    "DataSourceError",
    "PSAViolation",
    "PsaError",
    "PsaUsageError",
    "PsaWarning",
    "TimeBudgetExceeded",
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
