"""pytest-xdist support: one set of settings for every worker, and every audit back on the controller.

Controller -> workers: the controller's resolved `Settings` (the seed included, so ``--psa-seed=random``
is drawn once) and its start time (for the session budget) travel in ``node.workerinput``,
as pytest-randomly sends its seed. Each worker then uses them instead of resolving its own.

Workers -> controller: a worker's `AuditRecord`s ride on the test's teardown report as the
attribute ``psa_records`` (a list of JSON strings). xdist serializes a report's whole
``__dict__``, so the attribute arrives with the report, and the controller's
`pytest_runtest_logreport` rebuilds the records into its own `PsaSession.records`: the terminal
summary, JSON and plots see every worker's audits. JSON text keeps numpy scalars, inf and nan
intact, which execnet's own serializer would refuse. Records a worker makes after its last
report (a session fixture's teardown) follow in ``config.workeroutput``.

Registered only when pytest-xdist is installed (its hooks do not exist otherwise); it prints
nothing and warns about nothing, with or without psa tests.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import pytest

from pytest_psa._settings import Settings
from pytest_psa._records import AuditRecord
from pytest_psa._session import PsaSession, is_worker

SETTINGS_KEY = "psa_settings"
START_KEY = "psa_session_start"  # the controller's time.time() at configure
RECORDS_ATTR = "psa_records"
GPU_ATTR = "psa_gpu"  # set on the setup report of a GPU test, so the controller sees where it ran

_WIRE_TYPES = (str, int, float, bool, type(None))
GPU_KEY = pytest.StashKey[bool]()


def settings_for_workers(settings: Settings) -> dict[str, Any]:
    """The settings as plain values execnet can send (fields of other types stay with the worker's own)."""
    out = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, _WIRE_TYPES) or (isinstance(value, (list, tuple))
                                              and all(isinstance(v, _WIRE_TYPES) for v in value)):
            out[f.name] = value
    return out


def settings_from_controller(config: pytest.Config, settings: Settings) -> Settings:
    """On a worker: `settings` with the controller's values; elsewhere `settings` unchanged."""
    sent = getattr(config, "workerinput", {}).get(SETTINGS_KEY)
    if not sent:
        return settings
    names = {f.name for f in dataclasses.fields(settings)}
    values: dict[str, Any] = {k: (tuple(v) if isinstance(getattr(settings, k), tuple) else v)
                              for k, v in sent.items() if k in names}
    return dataclasses.replace(settings, **values)


def session_start(config: pytest.Config) -> float:
    """The session's start as this process's `time.perf_counter()`: now, or the controller's start on a worker."""
    sent = getattr(config, "workerinput", {}).get(START_KEY)
    if sent is None:
        return time.perf_counter()
    return time.perf_counter() - max(0.0, time.time() - float(sent))


def records_to_wire(records: list[AuditRecord]) -> list[str]:
    return [json.dumps(dataclasses.asdict(r), default=_jsonable) for r in records]


def records_from_wire(payload: list[str]) -> list[AuditRecord]:
    names = {f.name for f in dataclasses.fields(AuditRecord)}
    out = []
    for text in payload:
        data = json.loads(text)
        out.append(AuditRecord(**{k: v for k, v in data.items() if k in names}))
    return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


class XdistHooks:
    """The xdist side of the plugin: registered in pytest_configure when pytest-xdist is present."""

    def __init__(self, config: pytest.Config, session: PsaSession) -> None:
        self.config = config
        self.session = session
        self.records = session.records  # this process's audit records
        self.shipped = 0  # records before this index have left with an earlier report
        self.gpu_workers: dict[str, str] = {}  # controller: GPU test nodeid -> the worker that ran it

    # -- controller ---------------------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        session = self.session
        node.workerinput[SETTINGS_KEY] = settings_for_workers(session.settings)
        node.workerinput[START_KEY] = time.time() - (time.perf_counter() - session.started)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        out = getattr(node, "workeroutput", None) or {}
        self.records.extend(records_from_wire(out.get(RECORDS_ATTR, [])))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if is_worker(self.config):
            return
        payload = getattr(report, RECORDS_ATTR, None)
        if payload:
            self.records.extend(records_from_wire(payload))
        if getattr(report, GPU_ATTR, False):
            self.gpu_workers[report.nodeid] = str(getattr(report, "worker_id", "?"))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.gpu_workers and not is_worker(self.config):
            from pytest_psa._devices import gpu_summary_line

            dist = str(self.config.getoption("dist", "load"))
            terminalreporter.write_line(gpu_summary_line(len(self.gpu_workers), dist,
                                                         sorted(set(self.gpu_workers.values()))))

    # -- worker -------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if not is_worker(self.config):
            return report
        if call.when == "setup" and item.stash.get(GPU_KEY, False):
            setattr(report, GPU_ATTR, True)
        # ship at teardown: by then the test's checks have added their verdicts to its records
        if call.when == "teardown":
            self.shipped = min(self.shipped, len(self.records))
            new = self.records[self.shipped:]
            if new:
                setattr(report, RECORDS_ATTR, records_to_wire(new))
                self.shipped = len(self.records)
        return report

    @pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if is_worker(config):
            from pytest_psa._devices import group_gpu_tests

            for item in group_gpu_tests(config, items):
                item.stash[GPU_KEY] = True

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if is_worker(self.config) and len(self.records) > self.shipped:
            self.config.workeroutput[RECORDS_ATTR] = records_to_wire(  # type: ignore[attr-defined]
                self.records[self.shipped:])
            self.shipped = len(self.records)

