"""Argument checks shared by the SCO modules; every failure is a `PsaUsageError` with a fix."""

from __future__ import annotations

import math

from pytest_psa.errors import PsaUsageError


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PsaUsageError(f"{name} must be a positive integer", observed=repr(value), fix=f"pass {name}=1 or more")
    return value


def nonneg_float(name: str, value: object, *, upper: float | None = None) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PsaUsageError(f"{name} must be a real number", observed=repr(value), fix=f"pass a float {name}") from None
    if not math.isfinite(x) or x < 0 or (upper is not None and x > upper):
        bound = f" and at most {upper}" if upper is not None else ""
        raise PsaUsageError(f"{name} must be finite, non-negative{bound}", observed=x, fix=f"pass 0 <= {name}{bound and f' <= {upper}'}")
    return x


def positive_float(name: str, value: object) -> float:
    x = nonneg_float(name, value)
    if x == 0:
        raise PsaUsageError(f"{name} must be positive", observed=x, fix=f"pass {name} > 0")
    return x
