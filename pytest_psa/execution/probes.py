"""Tiny units for measuring and checking an executor (benchmarks/bench_executor.py, tests/execution).

Each is a module-level function of its plan, so any executor can ship it by reference.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def where(plan: Any) -> dict[str, Any]:
    """Does nothing but say where it ran: the smallest unit (an executor's overhead per unit)."""
    return {"pid": os.getpid(), "plan": plan}


def spin(seconds: float) -> dict[str, Any]:
    """Keeps one core busy for `seconds` (a CPU-bound unit of known length)."""
    end = time.perf_counter() + float(seconds)
    n = 0
    while time.perf_counter() < end:
        n += 1
    return {"pid": os.getpid(), "loops": n}


def crash_once(marker: str) -> dict[str, Any]:
    """Kills its own process the first time (writing its pid to `marker`), returns the second time:
    a worker lost mid-unit, which the executor must retry."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(1)  # no cleanup, no exception: the process is gone, as under an OOM kill
    return {"pid": os.getpid(), "crashed_pid": int(path.read_text())}


def fail(message: str) -> None:
    """Raises ValueError(message) where it runs."""
    raise ValueError(message)


__all__ = ["crash_once", "fail", "spin", "where"]
