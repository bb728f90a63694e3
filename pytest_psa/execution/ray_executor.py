"""The Ray executor: each unit a Ray task, its result back through the object store to the driver.

    configure("ray")                        # start a local cluster on first use (all this host's cores)
    configure("ray", address="auto")        # join the cluster this host belongs to (`ray start --head`)
    configure("ray", address="ray://head:10001")   # Ray Client

A unit asks for ``num_gpus=1`` when it trains on a GPU and for CPUs otherwise, so Ray places it; a
task whose worker dies (OOM kill, lost node) is retried by Ray up to `max_retries` times, then its
outcome is a `RemoteUnitError`. A task that raises is not retried (the plan would raise again): its
traceback comes back as text with the unit. Before running, each task compares the worker's
pytest-psa, torch and Python versions with the driver's and refuses a skew. Workers need no shared
file system: the driver writes every result into its own cache.

ray is imported here only, when the executor is first used: importing pytest_psa never imports it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from typing import Any

from pytest_psa._progress import progress as progress_bar
from pytest_psa.errors import PsaUsageError
from pytest_psa.execution.units import (
    DEFAULT_MAX_RETRIES,
    Outcome,
    RemoteUnitError,
    Unit,
    execute,
    outcome_from,
    runtime_versions,
)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its task names in error text


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PsaUsageError("the ray executor needs Ray, which is not installed", observed="import ray failed",
                            fix='pip install "pytest-psa[ray]" (or choose --psa-executor=local)') from None
    return ray


def _task(unit: Unit, expected: dict[str, str]) -> dict[str, Any]:
    """The Ray task: `execute` in the worker (module-level, so Ray ships it by reference)."""
    return execute(unit, expected, "ray")


class RayExecutor:
    """Runs units as Ray tasks; see the module docstring. `submitted` counts the tasks submitted."""

    name = "ray"
    remote = True

    def __init__(self, address: str | None = None, *, max_retries: int = DEFAULT_MAX_RETRIES,
                 num_cpus: int | None = None, cpus_per_unit: int = 1,
                 expected_versions: dict[str, str] | None = None) -> None:
        for name, value, least in (("max_retries", max_retries, 0), ("cpus_per_unit", cpus_per_unit, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise PsaUsageError(f"{name} must be a whole number >= {least}", observed=value)
        self.address = address
        # cores a CPU training asks for, and the torch threads it trains with (CPU weights depend on it)
        self.cpus_per_unit = cpus_per_unit
        self.max_retries = max_retries
        self.num_cpus = num_cpus
        # what the workers must run; the driver's own by default (a test may pose as another driver)
        self.expected_versions = dict(expected_versions if expected_versions is not None else runtime_versions())
        self.submitted = 0
        self._remote: Any = None

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, max_retries={self.max_retries})"

    def connect(self) -> Any:
        """Join or start the cluster (once) and return the ray module."""
        ray = _ray()
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if not ray.is_initialized() and self.address is None and worker:
            # n workers would start n clusters, each claiming every core
            raise PsaUsageError(f"--psa-executor=ray under pytest-xdist (worker {worker}) needs a shared cluster",
                                fix="start one once (`ray start --head`) and pass --psa-ray-address=auto, or "
                                    "run without -n (the Ray cluster already runs the trainings in parallel)")
        if not ray.is_initialized():
            try:
                if self.address is None:  # a local cluster for this process; quiet, no dashboard
                    ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address=self.address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise PsaUsageError(f"cannot join the Ray cluster at {self.address!r}",
                                    observed=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                                    fix="start it (`ray start --head` on the head node), pass its address "
                                        "(--psa-ray-address=auto or ray://host:10001), or omit the address "
                                        "to start a local cluster") from None
        if self._remote is None:
            self._remote = ray.remote(_task)
        return ray

    def run(self, units: Sequence[Unit], *, desc: str = "psa units", progress: bool = True) -> list[Outcome]:
        """Submit every unit at once, wait for all with a progress bar, return their outcomes in order."""
        if not units:
            return []
        ray = self.connect()
        refs = [self._remote.options(num_cpus=u.cpus, num_gpus=u.gpus, max_retries=self.max_retries,
                                     retry_exceptions=False, name=f"psa:{u.label}"[:120])
                .remote(u, self.expected_versions) for u in units]
        self.submitted += len(units)
        position = {ref: i for i, ref in enumerate(refs)}
        outcomes: list[Outcome | None] = [None] * len(units)
        start = time.perf_counter()
        pending = list(refs)
        with progress_bar(desc=f"{desc} (ray)", total=len(units), unit="unit", enabled=progress) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = position[ref]
                    outcomes[i] = self._collect(ray, ref, units[i], start)
                    bar.update(1)
        return [o for o in outcomes if o is not None]

    def _collect(self, ray: Any, ref: Any, unit: Unit, start: float) -> Outcome:
        try:
            return outcome_from(unit, ray.get(ref))
        except ray.exceptions.RayTaskError as exc:  # raised outside `execute`: the unit could not be unpickled
            cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
            return Outcome(unit, error=RemoteUnitError(
                f"{unit.describe()} could not start on its Ray worker: {type(cause).__name__}: "
                f"{str(cause).splitlines()[0] if str(cause) else ''}",
                observed=f"remote traceback:\n{_ANSI.sub('', str(exc)).strip()[-4000:]}",
                fix="install on every worker what the plan refers to: pytest-psa, and the modules that define "
                    "your augmentation, model factory or training recipe (a test file is not importable there: "
                    "move them into an installed package), see docs/scaling.md"),
                seconds=time.perf_counter() - start)
        except Exception as exc:  # the worker died past the retries, or the object was lost
            return Outcome(unit, error=RemoteUnitError(
                f"{unit.describe()} did not finish on the Ray cluster: its worker was lost "
                f"{self.max_retries + 1} time(s) (max_retries={self.max_retries})",
                observed=f"{type(exc).__name__}: {str(exc).strip()[:2000]}",
                fix="look for out-of-memory kills or lost nodes in the cluster's logs (`ray logs`); "
                    "a rerun computes only the units still missing"),
                seconds=time.perf_counter() - start)


__all__ = ["RayExecutor"]
