"""One validator for the numbers every check takes: α, γ and thresholds (stdlib only, no torch).

Each ``*_problem`` function returns what is wrong with a value (None when it is valid), for the
marker validation in `_settings`, which collects problems; each ``check_*`` raises
`PsaUsageError` with that problem and its fix, for the measurement and assertion APIs.
"""

from __future__ import annotations

import math
from typing import Any

ALPHA_FIX = "alpha is a false-failure rate (e.g. 1e-3) or one minus an interval's confidence (e.g. 0.05)"


def is_number(v: Any) -> bool:
    """A real number, not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def alpha_problem(v: Any, upper: float = 1.0) -> str | None:
    """What is wrong with `v` as a rate α in (0, upper)."""
    if not is_number(v) or math.isnan(v) or not 0 < v < upper:
        return f"must be a number in (0, {upper:g})"
    return None


def gamma_problem(v: Any) -> str | None:
    """What is wrong with `v` as a distance threshold γ (a number >= 0, or a non-empty list of them)."""
    values = v if isinstance(v, (list, tuple)) else [v]
    if not values or not all(is_number(g) and math.isfinite(g) and g >= 0 for g in values):
        return "must be a number >= 0 or a list of them"
    return None


def fraction_problem(v: Any, *, open_low: bool = False) -> str | None:
    """What is wrong with `v` as a threshold on a fraction: in [0, 1], or (0, 1] with `open_low`."""
    if not is_number(v) or math.isnan(v) or not (0 < v <= 1 if open_low else 0 <= v <= 1):
        return f"must be a number in {'(0' if open_low else '[0'}, 1]"
    return None


def check_alpha(alpha: Any, upper: float = 1.0, *, name: str = "alpha") -> None:
    """Raise `PsaUsageError` unless `alpha` is in (0, upper)."""
    if alpha_problem(alpha, upper) is not None:
        from pytest_psa.errors import PsaUsageError

        raise PsaUsageError(f"{name} must be in (0, {upper:g}), got {alpha!r}", fix=ALPHA_FIX)


def check_gamma(gamma: Any) -> None:
    """Raise `PsaUsageError` unless `gamma` is a number >= 0 or a non-empty list of them."""
    problem = gamma_problem(gamma)
    if problem is not None:
        from pytest_psa.errors import PsaUsageError

        raise PsaUsageError(f"gamma {problem}, got {gamma!r}", fix="γ is a distance threshold, e.g. gamma=0.05")


def check_fraction(value: Any, name: str, *, open_low: bool = False) -> None:
    """Raise `PsaUsageError` unless `value` is a fraction threshold (see `fraction_problem`)."""
    problem = fraction_problem(value, open_low=open_low)
    if problem is not None:
        from pytest_psa.errors import PsaUsageError

        raise PsaUsageError(f"{name} {problem}, got {value!r}")


__all__ = ["ALPHA_FIX", "alpha_problem", "check_alpha", "check_fraction", "check_gamma", "fraction_problem",
           "gamma_problem", "is_number"]
