"""The ``--psa-compare-fail`` grammar: which metrics a spec gates and by how much.

Grammar of a fail spec (pytest-benchmark's): ``METRIC:N%`` (relative to the baseline estimate)
or ``METRIC:X`` (absolute, in the metric's unit). ``METRIC`` is a name from
``summary["metrics"]``. It matches that exact name, or every name whose base, the part before
a parenthesis, is ``METRIC``: ``adv_error`` matches ``adv_error(linf,8/255)`` and
``adv_error(l2,0.5)``, ``F`` matches every ``F(γ)``, and ``F(0.05)`` matches only itself.
``*`` and ``?`` are shell wildcards (``*:5%`` gates every metric).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pytest_psa.errors import PsaUsageError

_METRIC = re.compile(r"^[^\s:]+$")


@dataclass(frozen=True)
class FailSpec:
    """One ``--psa-compare-fail`` expression: which metrics it gates and how much worse they may get."""

    metric: str
    amount: float
    relative: bool

    def __str__(self) -> str:
        return f"{self.metric}:{self.amount:g}%" if self.relative else f"{self.metric}:{self.amount:g}"

    def matches(self, name: str) -> bool:
        """Exact name, base name before ``(``, or a shell pattern when the spec holds ``*`` or ``?``."""
        if "*" in self.metric or "?" in self.metric:
            return fnmatch.fnmatchcase(name, self.metric)
        return name == self.metric or name.startswith(self.metric + "(")

    def allowance(self, baseline: float) -> float:
        """How much worse than `baseline` the metric may get (in the metric's unit)."""
        return self.amount / 100.0 * abs(baseline) if self.relative else self.amount


def parse_fail_spec(text: str) -> FailSpec:
    """``"mce:2%"`` -> FailSpec("mce", 2.0, relative=True); bad text raises PsaUsageError."""
    if not isinstance(text, str):
        raise PsaUsageError(f"a compare-fail spec must be a string like 'mce:2%', got {text!r}")
    metric, sep, amount = text.strip().rpartition(":")
    fix = "write METRIC:N% (relative, e.g. mce:2%) or METRIC:X (absolute, e.g. adv_error:0.01)"
    if not sep or not metric or not amount:
        raise PsaUsageError(f"compare-fail spec {text!r} is not METRIC:N% or METRIC:X", fix=fix)
    if not _METRIC.match(metric):
        raise PsaUsageError(f"compare-fail spec {text!r}: metric name {metric!r} must not hold spaces", fix=fix)
    relative = amount.endswith("%")
    try:
        value = float(amount[:-1] if relative else amount)
    except ValueError:
        raise PsaUsageError(f"compare-fail spec {text!r}: {amount!r} is not a number", fix=fix) from None
    if not math.isfinite(value) or value < 0:
        raise PsaUsageError(f"compare-fail spec {text!r}: the allowance must be a finite number >= 0", fix=fix)
    return FailSpec(metric, value, relative)


def parse_fail_specs(specs: Iterable[str | FailSpec] | str | None) -> tuple[FailSpec, ...]:
    """Parse many specs; a single string may hold several separated by whitespace."""
    if specs is None:
        return ()
    if isinstance(specs, str):
        specs = specs.split()
    return tuple(s if isinstance(s, FailSpec) else parse_fail_spec(s) for s in specs)


def specs_for(metric: str, specs: Sequence[FailSpec], overrides: Sequence[FailSpec] = ()) -> tuple[FailSpec, ...]:
    """The specs that gate `metric`: a test's own (marker) specs replace the global ones for the
    metrics they match; global specs still gate the metrics the test's specs do not mention."""
    own = tuple(s for s in overrides if s.matches(metric))
    return own if own else tuple(s for s in specs if s.matches(metric))
