"""Stage timings: how long each stage of an audit took and whether it came from a cache.

Audits wrap their heavy stages; the CLI and the pytest summary print what was recorded::

    from pytest_psa._timings import stage

    with stage("training", detail="erm seed 0") as st:
        model, hit = cache.get_or_train(plan)
        st.cached = hit                        # say when nothing was computed

    stages = collect()                          # what ran since the last `reset()`, in order

Stage names in use: "training", "density", "flatness", "corruptions", "perturbations", "attacks",
"clean". The record is process-local (each xdist worker keeps its own) and costs a clock read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class StageTiming:
    """One timed stage: its name, an optional detail, wall seconds, and whether a cache served it."""

    name: str
    detail: str = ""
    seconds: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_log: list[StageTiming] = []


@contextmanager
def stage(name: str, detail: str = "", *, cached: bool = False) -> Iterator[StageTiming]:
    """Time the block as stage `name`; set ``.cached = True`` on the yielded record for a cache hit."""
    record = StageTiming(name, detail, 0.0, cached)
    start = time.perf_counter()
    try:
        yield record
    finally:
        record.seconds = time.perf_counter() - start
        _log.append(record)


def collect() -> list[StageTiming]:
    """The stages recorded since the last `reset` (a copy), in the order they finished."""
    return list(_log)


def count() -> int:
    """How many stages have finished since the last `reset` (a mark to split the log at later)."""
    return len(_log)


def reset() -> list[StageTiming]:
    """Forget the recorded stages; returns what was there."""
    out = list(_log)
    _log.clear()
    return out


def summarize(stages: Iterable[StageTiming | Mapping[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Per stage name: total seconds, count, and how many were served from a cache (insertion order).
    Takes `StageTiming`s or their dicts (as records keep them)."""
    out: dict[str, dict[str, float | int]] = {}
    for s in stages:
        d = s.to_dict() if isinstance(s, StageTiming) else s
        row = out.setdefault(str(d["name"]), {"seconds": 0.0, "count": 0, "cached": 0})
        row["seconds"] = float(row["seconds"]) + float(d["seconds"])
        row["count"] = int(row["count"]) + 1
        row["cached"] = int(row["cached"]) + int(bool(d.get("cached", False)))
    return out


__all__ = ["StageTiming", "collect", "count", "reset", "stage", "summarize"]
