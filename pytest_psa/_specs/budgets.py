"""The one unit language of robustness budgets: how a limit is written, parsed and printed.

A ``vs_erm`` limit names its unit in its spelling:

- ``"+0.5pp"`` / ``"-1pp"``: a difference audited − baseline in percentage points (``+0.5pp`` is 0.005
  as a fraction);
- ``"x1.02"`` / ``"×1.02"``: a ratio audited / baseline;
- ``"+2%"`` is rejected: it could mean either.

A bare number keeps its old meaning for its key (a difference in fractions for mce, clean_error, mfp
and adv_error; a ratio for mce_ratio, hd_relative_mce and rel_mfp); callers warn once with the explicit
spelling (`bare_number_message`). Absolute budgets (``max_mce=0.3``) are fractions, printed ``30.0%``.
Every budget line (failures, tables, JSON's ``limit_text``) is printed by `format_value` /
`budget_line`, so the same budget reads the same everywhere. Standard library and errors only: the
psa marker validation (`pytest_psa._settings`) parses with this module too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pytest_psa._specs.names import DEPRECATED_VS_ERM_KEYS, VS_ERM_KEYS, VS_ERM_RATIO_KEYS
from pytest_psa.errors import PsaUsageError

Unit = Literal["pp", "ratio", "fraction"]
UNITS: tuple[str, ...] = ("pp", "ratio", "fraction")

# a delta key written as a ratio bounds that metric's ratio instead (clean_error and adv_error have none)
_RATIO_OF = {"mce": "mce_ratio", "mfp": "rel_mfp"}
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_PP = re.compile(rf"^({_NUMBER})\s*pp$")
_RATIO = re.compile(rf"^[x×X]\s*({_NUMBER})$")
_FORMS = "'+0.5pp' (difference audited − baseline in percentage points) or 'x1.02' (ratio audited / baseline)"


@dataclass(frozen=True)
class Limit:
    """One budget limit: `value` in the metric's own terms (a fraction for pp and fraction limits, so
    ``+0.5pp`` is 0.005), its `unit`, and whether the user spelled the unit (`explicit`)."""

    value: float
    unit: Unit
    explicit: bool = True

    @property
    def text(self) -> str:
        """The limit as a user would write it (and as every report prints it): ``+0.50pp``, ``x1.02``, ``30.0%``."""
        return format_value(self.value, self.unit, exact=True)


def format_value(value: float | None, unit: str, *, exact: bool = False) -> str:
    """`value` (in the metric's own terms) in `unit`'s spelling: ``+0.60pp``, ``x0.976``, ``30.0%``.
    `exact` adds digits until the text reads back as the same number (for limits)."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    if unit == "pp":
        return _digits(100 * value, 2, exact, signed=True) + "pp"
    if unit == "ratio":
        return "x" + _trimmed(value, 3, exact)
    return _digits(100 * value, 1, exact, signed=False) + "%"


def _digits(x: float, places: int, exact: bool, *, signed: bool) -> str:
    sign = "+" if signed else ""
    text = f"{x:{sign}.{places}f}"
    if exact and not math.isclose(float(text), x, rel_tol=1e-9, abs_tol=1e-12):
        text = f"{x:{sign}.10g}"
    return text


def _trimmed(x: float, places: int, exact: bool) -> str:
    """``1.020`` -> ``1.02``, ``0.976`` stays; at least two decimals."""
    text = _digits(x, places, exact, signed=False)
    if "." in text and "e" not in text:
        whole, frac = text.split(".")
        text = f"{whole}.{frac.rstrip('0').ljust(2, '0')}"
    return text


def budget_line(check: str, estimate: float | None, limit: float, unit: str, outcome: str) -> str:
    """``vs_erm[mce] = +0.60pp ≤ +0.50pp: fail``: one budget, as failures, tables and reports print it."""
    return f"{check} = {format_value(estimate, unit)} ≤ {format_value(limit, unit, exact=True)}: {outcome}"


def unit_of(check: str, metric: str) -> Unit:
    """The unit of a budget on `metric`: ``fraction`` for absolute budgets (max_*), ``pp`` for
    differences (delta_*), ``ratio`` otherwise. For verdicts of older run files, which lack ``unit``."""
    if check.startswith("max_"):
        return "fraction"
    return "pp" if metric.startswith("delta") else "ratio"


def verdict_line(verdict: Any) -> str:
    """`budget_line` of a stored budget verdict (a ``BudgetVerdict.to_dict()``; older ones lack ``unit``)."""
    check = str(verdict.get("check") or verdict.get("metric") or "?")
    unit = str(verdict.get("unit") or unit_of(check, str(verdict.get("metric") or "")))
    limit = verdict.get("limit", verdict.get("budget"))
    limit = float(limit) if isinstance(limit, (int, float)) else float("nan")
    return budget_line(check, verdict.get("estimate"), limit, unit, str(verdict.get("outcome") or "?"))


def parse_limit(value: Any, *, where: str, bare: Unit) -> Limit:
    """A limit written as ``"+0.5pp"``, ``"x1.02"`` or a bare number (read in the `bare` unit).
    Raises PsaUsageError for ``"+2%"`` (ambiguous) and anything else, naming both spellings."""
    if isinstance(value, bool):
        raise PsaUsageError(f"{where} must be a budget, not {value!r}", fix=f"write {_FORMS}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise PsaUsageError(f"{where} must be a finite number", observed=value, fix=f"write {_FORMS}")
        return Limit(float(value), bare, explicit=False)
    if not isinstance(value, str):
        raise PsaUsageError(f"{where} must be a budget like {_FORMS}", observed=value)
    text = value.strip()
    if text.endswith("%"):
        raise PsaUsageError(f"{where} = {value!r} is ambiguous: a percentage could be a difference in "
                            "percentage points or a relative change",
                            fix=f"write {_pp_example(text)} for a difference audited − baseline in percentage "
                                f"points, or {_ratio_example(text)} for a ratio audited / baseline")
    if m := _PP.match(text):
        points = float(m.group(1))
        if not math.isfinite(points) or not -100 <= points <= 100:
            raise PsaUsageError(f"{where} = {value!r} is outside [-100pp, +100pp]", fix="give a difference of error rates")
        return Limit(points / 100, "pp")
    if m := _RATIO.match(text):
        ratio = float(m.group(1))
        if not math.isfinite(ratio) or ratio <= 0:
            raise PsaUsageError(f"{where} = {value!r} must be a ratio > 0", fix="e.g. 'x1.02' (at most 2 % worse)")
        return Limit(ratio, "ratio")
    raise PsaUsageError(f"{where} = {value!r} is not a budget this tool reads", fix=f"write {_FORMS}")


def _pp_example(text: str) -> str:
    number = text.rstrip("%").strip()
    return f"'{number if number[:1] in '+-' else '+' + number}pp'" if re.fullmatch(_NUMBER, number) else "'+0.5pp'"


def _ratio_example(text: str) -> str:
    number = text.rstrip("%").strip()
    if re.fullmatch(_NUMBER, number):
        return f"'x{1 + float(number) / 100:.4g}'"
    return "'x1.02'"


def resolve_vs_erm(key: str, value: Any) -> tuple[str, Limit]:
    """(the key that is bounded, its limit) for one ``vs_erm`` entry. A delta key written as a ratio
    bounds its ratio (``{"mce": "x1.02"}`` is ``mce_ratio``); a bare number keeps its old meaning for
    the key (a ratio for the ratio keys, else a difference in fractions). Deprecated keys are returned
    as written (the caller warns). Raises PsaUsageError on an unknown key or a unit the key has no
    metric for."""
    if not isinstance(key, str):
        raise PsaUsageError(f"vs_erm key {key!r} must be a string", fix=_keys_fix())
    attack = key.startswith("adv_error(") or ":" in key or "," in key
    if not (key in VS_ERM_KEYS or key in DEPRECATED_VS_ERM_KEYS or attack):
        raise PsaUsageError(f"unknown vs_erm key {key!r}", fix=_keys_fix())
    ratio_key = key in VS_ERM_RATIO_KEYS
    where = f"vs_erm[{key}]"
    limit = parse_limit(value, where=where, bare="ratio" if ratio_key else "pp")
    if not limit.explicit and limit.unit == "pp" and not -1 <= limit.value <= 1:
        raise PsaUsageError(f"{where} = {value!r}: a bare number is a difference of error rates in [-1, 1]",
                            fix=f"write it with its unit: {_FORMS}")
    if not limit.explicit and limit.unit == "ratio" and limit.value <= 0:
        raise PsaUsageError(f"{where} = {value!r} must be a ratio > 0", fix="e.g. 'x1.02' (at most 2 % worse)")
    if ratio_key and limit.unit == "pp":
        raise PsaUsageError(f"{where} bounds a ratio audited / baseline, not a difference",
                            fix=f"write a ratio like 'x1.02', or bound the difference with vs_erm={{'mce': {value!r}}}"
                            if key in ("mce_ratio", "hd_relative_mce", "rel_mce") else "write a ratio like 'x1.02'")
    if limit.unit == "ratio" and not ratio_key:
        if key not in _RATIO_OF:
            raise PsaUsageError(f"{where}: {key} has no ratio to the baseline, only a difference",
                                fix="write a difference like '+0.5pp'")
        return _RATIO_OF[key], limit
    return key, limit


def vs_erm_entries(vs: Any) -> list[tuple[str, str, Limit]]:
    """(key as written, key bounded, limit) for a ``vs_erm`` budget: a dict, one spelled limit (for mCE:
    ``"+0.5pp"`` bounds delta mCE, ``"x1.02"`` mce_ratio) or a bare number (mce_ratio, as before)."""
    if isinstance(vs, dict):
        if not vs:
            raise PsaUsageError("vs_erm is an empty dict", fix="give e.g. vs_erm={'mce': '+0.5pp'}")
        items = list(vs.items())
    elif isinstance(vs, str):
        items = [("mce", vs)]
    elif isinstance(vs, (int, float)) and not isinstance(vs, bool):
        items = [("mce_ratio", vs)]
    else:
        raise PsaUsageError(f"vs_erm must be a dict like {{'mce': '+0.5pp'}} or one limit, not {vs!r}", fix=f"write {_FORMS}")
    return [(str(k), *resolve_vs_erm(k, v)) for k, v in items]


def bare_number_message(key: str, value: float, bounded: str) -> str:
    """The PsaWarning for a bare vs_erm number: what it is read as, and the explicit spelling."""
    if bounded in VS_ERM_RATIO_KEYS:
        spelled = format_value(value, "ratio", exact=True)
        meaning = f"a ratio audited / baseline of {value:g}"
    else:
        spelled = format_value(value, "pp", exact=True)
        meaning = f"a difference audited − baseline of {value:g} as a fraction"
    return (f"vs_erm[{key}] = {value!r} is read as {meaning}; write {spelled!r} to say so "
            f"(budgets spell their unit: '+0.5pp' is a difference in percentage points, 'x1.02' a ratio)")


def _keys_fix() -> str:
    return f"use {', '.join(VS_ERM_KEYS)} or adv_error(<attack label>)"


def accuracy_floor(value: Any, *, where: str = "vs_erm[accuracy]") -> float:
    """A floor on a difference of accuracies, audited − baseline (the domain audit's ``vs_erm``), as a
    fraction: ``"-1pp"`` (or ``{"accuracy": "-1pp"}``) is -0.01. The unit must be spelled (no old
    meaning to keep) and must be pp (a ratio of accuracies is not offered)."""
    if isinstance(value, dict):
        if set(value) != {"accuracy"}:
            raise PsaUsageError("a domain vs_erm dict has one key, 'accuracy'", observed=sorted(map(str, value)),
                                fix="vs_erm={'accuracy': '-1pp'} or simply vs_erm='-1pp'")
        value = value["accuracy"]
    limit = parse_limit(value, where=where, bare="pp")
    if not limit.explicit:
        raise PsaUsageError(f"{where} = {value!r} has no unit",
                            fix=f"write it in percentage points, e.g. {format_value(limit.value, 'pp', exact=True)!r} "
                                "(a floor on audited − baseline)")
    if limit.unit != "pp":
        raise PsaUsageError(f"{where} = {value!r}: this budget bounds a difference of accuracies",
                            fix="write a difference in percentage points, e.g. '-1pp' (at most 1 point below ERM)")
    return limit.value


__all__ = ["UNITS", "Limit", "Unit", "accuracy_floor", "bare_number_message", "budget_line", "format_value",
           "parse_limit",
           "resolve_vs_erm", "unit_of", "verdict_line", "vs_erm_entries"]
