"""The session at the bottom: the plugin's state for one pytest run, and the audit record.

`PsaSession` is what pytest-benchmark's `BenchmarkSession` is to its plugin: one object per run
that holds the resolved settings and every audit record, registered with pytest's plugin manager
as ``"psa-session"`` and handed to the hook objects that need it (xdist, the baseline gate,
reports). It lives here, below every layer, so that no module has to import `pytest_psa.plugin`
to find it. The repro command and the "am I an xdist worker?" test are built here once.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from pytest_psa import _timings
from pytest_psa._records import AuditRecord, StageTimingRecord
from pytest_psa._settings import Settings

SESSION_NAME = "psa-session"


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker (its controller writes files and summaries)."""
    return hasattr(config, "workerinput")


PSA_FIXTURES = ("psa", "psa_gpu")


def uses_psa(item: pytest.Item) -> bool:
    """Whether a test carries the psa marker or asks for a psa fixture."""
    return item.get_closest_marker("psa") is not None or any(f in PSA_FIXTURES for f in
                                                               getattr(item, "fixturenames", ()))


class RecordList(list[AuditRecord]):
    """The session's records. Each append notes how many stage timings had finished by then, so the
    stages of a test with several audits go to the audit that ran them (`PsaSession.attach_timings`)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage_marks: dict[int, int] = {}  # id(record) -> _timings.count() when it was added

    def append(self, record: AuditRecord) -> None:
        self.stage_marks[id(record)] = _timings.count()
        super().append(record)


@dataclass(eq=False)
class PsaSession:
    """One pytest run's psa state; registered as the plugin object ``"psa-session"``."""

    settings: Settings
    config: pytest.Config | None = None
    records: list[AuditRecord] = field(default_factory=RecordList)
    extensions_loaded: bool = False
    started: float = field(default_factory=time.perf_counter)  # session start (the controller's on xdist workers)
    header_shown: bool = False  # printed after collection when a collected test uses psa
    psa_tests: int = 0  # psa tests whose reports reached this process (the controller's count under xdist)
    unrecorded_stages: list[StageTimingRecord] = field(default_factory=list)  # stages of tests that left no record

    @property
    def is_worker(self) -> bool:
        return self.config is not None and is_worker(self.config)

    def repro_command(self, nodeid: str, seed: int | None = None, extra: Sequence[str] = ()) -> str:
        """The one-line command that re-runs `nodeid` with this run's seed and data; a user's
        ``pytest_psa_repro_command`` hook, asked with the measurement's `seed`, wins. `extra`
        arguments are appended."""
        custom = None
        if self.config is not None:
            custom = self.config.hook.pytest_psa_repro_command(
                nodeid=nodeid, seed=self.settings.seed if seed is None else seed, config=self.config)
        data = [f"--psa-data={self.settings.data}"] if self.settings.data != "synthetic" else []
        base = custom or shlex.join(["pytest", nodeid, f"--psa-seed={self.settings.seed}", *data])
        return f"{base} {shlex.join(list(extra))}" if extra else base

    def header(self) -> str:
        from pytest_psa._devices import header_note

        return f"{self.settings.header()}, {header_note(self.settings.device)}"

    def attach_timings(self, records: Sequence[AuditRecord], stages: Sequence[_timings.StageTiming]) -> None:
        """Give each of one test's `records` (in the order they were added) the stages that finished
        before it was added and after the one before; stages after the last record go to it too.
        Without a record, the stages still count in the summary's totals."""
        marks = getattr(self.records, "stage_marks", {})
        done = 0
        for i, rec in enumerate(records):
            end = len(stages) if i == len(records) - 1 else marks.get(id(rec), done)
            rec.timings.extend(cast(StageTimingRecord, s.to_dict()) for s in stages[done:max(done, end)])
            done = max(done, end)
        if not records:
            self.unrecorded_stages.extend(cast(StageTimingRecord, s.to_dict()) for s in stages)

    def stage_timings(self) -> list[StageTimingRecord]:
        """Every stage this session's psa tests ran (the workers' too, through their records)."""
        return [t for r in self.records for t in r.timings] + self.unrecorded_stages

    # -- hooks: the session is registered as a plugin ------------------------------------------
    def pytest_report_collectionfinish(self, config: pytest.Config, items: Sequence[pytest.Item]) -> list[str]:
        # after collection, not in the report header: a suite without psa tests prints nothing
        if is_worker(config) or not any(uses_psa(item) for item in items):
            return []
        self.header_shown = True
        return [self.header()]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "setup" and "psa" in report.keywords:
            self.psa_tests += 1

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if is_worker(config):
            return
        if not self.header_shown and (self.records or self.psa_tests):  # under xdist the controller collects nothing
            terminalreporter.write_line(self.header())
            self.header_shown = True
        if not self.records and not self.unrecorded_stages:
            return
        reports = config.pluginmanager.get_plugin("psa-reports")
        if reports is not None:  # one section per augmentation, stage times, then the files written
            reports.write_summary(terminalreporter)


SESSION_KEY = pytest.StashKey[PsaSession]()


def session_of(config: pytest.Config) -> PsaSession | None:
    """This run's session, or None before the plugin configured it (or with the plugin disabled)."""
    return config.stash.get(SESSION_KEY, None)


__all__ = ["SESSION_KEY", "SESSION_NAME", "AuditRecord", "PsaSession", "RecordList", "is_worker", "session_of",
           "uses_psa"]
