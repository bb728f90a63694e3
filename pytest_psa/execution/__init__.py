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
from typing import Any

from pytest_psa._specs.executors import EXECUTORS
from pytest_psa.errors import PsaUsageError
from pytest_psa.execution.units import (
    DEFAULT_MAX_RETRIES,
    EXECUTOR_ENV,
    RAY_ADDRESS_ENV,
    Executor,
    LocalExecutor,
    Outcome,
    RemoteUnitError,
    Unit,
    execute,
    outcome_from,
    runtime_versions,
)

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
