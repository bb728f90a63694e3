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
from typing import Any

import pytest

from pytest_psa._records import AuditRecord
from pytest_psa._settings import Settings

SESSION_NAME = "psa-session"


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker (its controller writes files and summaries)."""
    return hasattr(config, "workerinput")


@dataclass(eq=False)
class PsaSession:
    """One pytest run's psa state; registered as the plugin object ``"psa-session"``."""

    settings: Settings
    config: pytest.Config | None = None
    records: list[AuditRecord] = field(default_factory=list)
    extensions_loaded: bool = False
    started: float = field(default_factory=time.perf_counter)  # session start (the controller's on xdist workers)

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

    # -- hooks: the session is registered as a plugin ------------------------------------------
    def pytest_report_header(self, config: pytest.Config) -> str:
        from pytest_psa._devices import header_note

        return f"{self.settings.header()}, {header_note(self.settings.device)}"

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if not self.records or is_worker(config):
            return
        reports = config.pluginmanager.get_plugin("psa-reports")
        if reports is not None:  # one section per augmentation, then the files written
            reports.write_summary(terminalreporter)


SESSION_KEY = pytest.StashKey[PsaSession]()


def session_of(config: pytest.Config) -> PsaSession | None:
    """This run's session, or None before the plugin configured it (or with the plugin disabled)."""
    return config.stash.get(SESSION_KEY, None)


__all__ = ["SESSION_KEY", "SESSION_NAME", "AuditRecord", "PsaSession", "is_worker", "session_of"]
