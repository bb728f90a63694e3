"""What every result class shares: default thresholds as plain data, the verdict log, the record form.

A result's ``assert_*`` method decides verdicts, appends them to the result's verdict log and
raises `PSAViolation` on a failure; it calls nothing outside itself. Whoever wants the verdicts
(the `psa` fixture, a notebook) reads `verdict_log()` afterwards. Defaults for the thresholds (a
pytest marker's, say) and the command that reproduces a failure are set with `with_defaults` and
`with_repro`, which return a copy: nothing is injected into a result behind its back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

from pytest_psa._records import RECORD_SCHEMA, MetricEstimate

R = TypeVar("R", bound="Checked")


@runtime_checkable
class CheckVerdict(Protocol):
    """One decision of an assertion: its outcome ("pass", "fail", "inconclusive") and its record."""

    @property
    def outcome(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


class Checked:
    """Mixin for the frozen result dataclasses (which declare `assert_defaults` and `repro`)."""

    assert_defaults: Mapping[str, Any]
    repro: str
    audit_kind: str = ""  # "density", "flatness" or "robustness": the record's kind

    def with_defaults(self: R, **thresholds: Any) -> R:
        """A copy whose ``assert_*`` uses these thresholds when a call does not pass its own."""
        return dataclasses.replace(self, assert_defaults={**self.assert_defaults, **thresholds})  # type: ignore[type-var]

    def with_repro(self: R, command: str) -> R:
        """A copy whose failure messages end with ``reproduce: <command>``."""
        return dataclasses.replace(self, repro=command)  # type: ignore[type-var]

    def verdict_log(self) -> tuple[CheckVerdict, ...]:
        """Every verdict this result's assertions reached, in order (a refused check adds none)."""
        return tuple(self.__dict__.get("_verdict_log", ()))

    def _log_verdicts(self, verdicts: list[Any]) -> None:
        # frozen dataclass: the log is plain instance state, outside the fields (a copy starts empty)
        self.__dict__.setdefault("_verdict_log", []).extend(verdicts)

    def headline(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def metric_estimates(self) -> dict[str, MetricEstimate]:
        """The headline metrics, typed."""
        return {k: MetricEstimate.from_record(v) for k, v in self.headline().items()}

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_record(self) -> dict[str, Any]:
        """`to_dict()` with the record schema version stated (what reports and baselines read)."""
        return {"schema": RECORD_SCHEMA, **self.to_dict(), "kind": self.audit_kind}


def pick(*values: Any) -> Any:
    """The first value that is not None (a call's argument, then the defaults, then the built-in)."""
    return next((v for v in values if v is not None), None)


__all__ = ["CheckVerdict", "Checked", "pick"]
