"""Units, outcomes and the local executor: the seam's types (see `pytest_psa.execution`)."""


from __future__ import annotations

import functools
import os
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from pytest_psa._version import __version__
from pytest_psa.errors import PsaError, PsaUsageError

EXECUTOR_ENV: Final = "PSA_EXECUTOR"
RAY_ADDRESS_ENV: Final = "PSA_RAY_ADDRESS"
DEFAULT_MAX_RETRIES: Final = 2  # a lost worker is retried this often, then the unit fails


class RemoteUnitError(PsaError):
    """A unit failed where it ran (raised, lost its worker past the retries, or refused a version skew)."""


@dataclass(frozen=True, eq=False)
class Unit:
    """One unit of work: ``fn(plan)`` is a pure function of `plan`; `key` is its fingerprint (the cache key).

    `fn` must be a module-level function (it is shipped by reference); `plan` must pickle
    (cloudpickle: a user's augmentation or factory defined in an importable module travels).
    `gpus` 1 asks the executor for a GPU for this unit; `cpus` the CPU cores it uses.
    """

    key: str
    label: str
    fn: Callable[[Any], Any]
    plan: Any
    cpus: float = 1.0
    gpus: float = 0.0

    def describe(self) -> str:
        return f"{self.label} (plan {self.key[:16]})"


@dataclass(frozen=True)
class Outcome:
    """What one unit gave back: `value` or `error` (never both), where it ran and how long it took."""

    unit: Unit
    value: Any = None
    error: PsaError | None = None
    worker: dict[str, Any] = field(default_factory=dict)  # pid, host, executor
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def result(self) -> Any:
        """The value, or raise the unit's error."""
        __tracebackhide__ = True
        if self.error is not None:
            raise self.error
        return self.value


class Executor(Protocol):
    """Runs units; `submitted` counts the units it was ever given (a warm cache gives it none)."""

    name: str
    submitted: int

    def run(self, units: Sequence[Unit], *, desc: str = "psa units", progress: bool = True) -> list[Outcome]: ...


# -- what runs inside a worker (local or remote) ------------------------------------------------
@functools.cache
def runtime_versions() -> dict[str, str]:
    """The versions that must agree between the driver and a worker: pytest-psa, torch, Python (x.y).

    Read from the installed distributions' metadata: torch is not imported for it.
    """
    from importlib import metadata

    out = {"pytest_psa": __version__, "python": ".".join(platform.python_version_tuple()[:2])}
    for dist in ("torch",):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def execute(unit: Unit, expected_versions: dict[str, str] | None, executor: str) -> dict[str, Any]:
    """Run ``unit.fn(unit.plan)`` here and return ``{"value"|"error", "worker", "seconds"}``: never raises
    for the unit's own failure (its traceback text travels back instead)."""
    start = time.perf_counter()
    worker = {"pid": os.getpid(), "host": platform.node(), "executor": executor}
    here = runtime_versions() if expected_versions else {}
    skew = {k: (v, here.get(k)) for k, v in (expected_versions or {}).items() if here.get(k) != v}
    if skew:
        return {"skew": skew, "worker": worker, "seconds": time.perf_counter() - start}
    try:
        value = unit.fn(unit.plan)
    except Exception as exc:  # the unit's failure is a value: the driver names the plan
        return {"error": {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc(),
                          "psa": isinstance(exc, PsaError)},
                "worker": worker, "seconds": time.perf_counter() - start}
    return {"value": value, "worker": worker, "seconds": time.perf_counter() - start}


def outcome_from(unit: Unit, raw: dict[str, Any]) -> Outcome:
    """The `Outcome` of `execute`'s dict: an error becomes a `RemoteUnitError` naming the unit."""
    worker, seconds = raw.get("worker", {}), float(raw.get("seconds", 0.0))
    where = f"pid {worker.get('pid')} on {worker.get('host')} ({worker.get('executor')} executor)"
    if "skew" in raw:
        lines = ", ".join(f"{k}: driver {d}, worker {w}" for k, (d, w) in sorted(raw["skew"].items()))
        return Outcome(unit, error=RemoteUnitError(
            f"version skew: the worker that took {unit.describe()} runs other versions than this driver, "
            f"so its result would not be the one the cache key promises; refused",
            observed=f"{lines} ({where})",
            fix="install the same pytest-psa and torch on the workers as on the driver (see docs/scaling.md)"),
            worker=worker, seconds=seconds)
    if "error" in raw:
        err = raw["error"]
        return Outcome(unit, error=RemoteUnitError(
            f"{unit.describe()} failed on its worker: {err['type']}: {err['message'].splitlines()[0] if err['message'] else ''}",
            observed=f"{where}; remote traceback:\n{err['traceback'].rstrip()}",
            fix="fix the cause above; the other units' results are stored, so a rerun computes only this one"),
            worker=worker, seconds=seconds)
    return Outcome(unit, value=raw["value"], worker=worker, seconds=seconds)


# -- the local executor ---------------------------------------------------------------------------
class LocalExecutor:
    """Each unit in this process, in the order given (today's behaviour; the default)."""

    name = "local"
    remote = False

    def __init__(self) -> None:
        self.submitted = 0

    def run(self, units: Sequence[Unit], *, desc: str = "psa units", progress: bool = True) -> list[Outcome]:
        self.submitted += len(units)
        return [outcome_from(u, execute(u, None, self.name)) for u in units]



__all__ = ["DEFAULT_MAX_RETRIES", "EXECUTOR_ENV", "RAY_ADDRESS_ENV", "Executor", "LocalExecutor", "Outcome",
           "RemoteUnitError", "Unit", "execute", "outcome_from", "runtime_versions"]
