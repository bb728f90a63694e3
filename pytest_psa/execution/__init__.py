"""The executor seam: an audit's heavy units (trainings, evaluations) run here or on a Ray cluster.

A *unit* is a frozen, fingerprinted plan plus the module-level function that executes it; the
execution is a pure function of the plan, so where it runs does not change the result, and the
plan's fingerprint is the cache key under which the driver stores what comes back::

    units = [Unit(key=plan.fingerprint, label=plan.label, fn=train_payload, plan=plan, gpus=1)]
    outcomes = current_executor().run(units, desc="psa training")   # one Outcome per unit, in order
    outcomes[0].value      # the payload (weights bytes + record), or
    outcomes[0].error      # a PsaError naming the unit's label and key, with the remote traceback

An executor never raises for a failed unit: every outcome carries its value or its error, so an
audit that submitted twenty units hears about all of them. Executors:

- ``local`` (the default): each unit runs in this process, in order. What the audits did before
  the seam existed; the model cache keeps its in-process path for it (`ModelCache.get_or_train_plan`).
- ``ray``: each unit is a Ray task with a resource request (``num_gpus=1`` for a GPU unit, CPUs
  otherwise), retried by Ray when its worker dies (`max_retries`); results come back through Ray's
  object store and the driver writes them to its cache. ray is imported only here, on first use.

Which executor runs: `configure` (the plugin calls it from ``--psa-executor`` / ini
``psa_executor`` / ``$PSA_EXECUTOR``, the CLI from ``psa audit --executor``), else the environment.
No torch and nothing above the foundation is imported by this package (tests/architecture).
"""

from __future__ import annotations

import os
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from pytest_psa._version import __version__
from pytest_psa.errors import PsaError, PsaUsageError

EXECUTORS: Final = ("local", "ray")
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
    here = runtime_versions()
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


# -- choosing one ---------------------------------------------------------------------------------
_current: Executor | None = None
_config: tuple[str, str | None] | None = None


def parse_executor(value: str) -> str:
    """'local' or 'ray' (case-insensitive); PsaUsageError naming the choices otherwise."""
    name = str(value).strip().lower()
    if name not in EXECUTORS:
        raise PsaUsageError(f"unknown executor {value!r}", observed=value,
                            fix=f"use one of {', '.join(EXECUTORS)} (ray needs: pip install \"pytest-psa[ray]\")")
    return name


def configure(name: str | None = None, address: str | None = None, **options: Any) -> Executor:
    """Choose the executor the audits use from now on (None: ``$PSA_EXECUTOR``, else local).

    `address` (ray only; None: ``$PSA_RAY_ADDRESS``, else start a local cluster; "auto" or
    "ray://host:port" join one). `options` go to the executor (ray: ``max_retries``, ``num_cpus``).
    """
    global _current, _config
    chosen = parse_executor(name or os.environ.get(EXECUTOR_ENV) or "local")
    address = address or os.environ.get(RAY_ADDRESS_ENV) or None
    if _current is not None and _config == (chosen, address) and not options:
        return _current
    if chosen == "ray":
        from pytest_psa.execution.ray_executor import RayExecutor

        _current = RayExecutor(address=address, **options)
    else:
        _current = LocalExecutor()
    _config = (chosen, address)
    return _current


def current_executor() -> Executor:
    """The executor the audits use (`configure`'s choice; first call: from the environment)."""
    return _current if _current is not None else configure()


def use(executor: Executor | None) -> Executor | None:
    """Install `executor` as the current one (None: choose again on next use); returns the previous one."""
    global _current, _config
    previous, _current = _current, executor
    _config = (executor.name, getattr(executor, "address", None)) if executor is not None else None
    return previous


def is_remote(executor: Executor) -> bool:
    """Whether `executor` runs units outside this process (their results then come back as payloads)."""
    return bool(getattr(executor, "remote", False))


__all__ = ["DEFAULT_MAX_RETRIES", "EXECUTORS", "EXECUTOR_ENV", "RAY_ADDRESS_ENV", "Executor", "LocalExecutor",
           "Outcome", "RemoteUnitError", "Unit", "configure", "current_executor", "execute", "is_remote",
           "outcome_from", "parse_executor", "runtime_versions", "use"]
