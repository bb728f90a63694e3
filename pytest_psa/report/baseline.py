"""The baseline gate inside pytest: save runs, compare each test's audits with its stored baseline,
and fail the test item itself on a regression (docs/baselines.md).

Registered by `pytest_psa.plugin` only when a baseline option is given. Per test, at the end of
its call phase, every audit it recorded is compared with the newest stored entry of the same
test (or the one in ``--psa-compare=ID``); the outcome goes into the `AuditRecord` (``baseline``),
the JUnit properties, and on a regression or a missing baseline into the test's own report.
Files are written once, by the controller, when the session ends.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_psa._session import is_worker
from pytest_psa.errors import PsaError
from pytest_psa.report.compare import RecordComparison, compare_entries, parse_fail_specs
from pytest_psa.report.entries import key_for, make_entry
from pytest_psa.report.environment import autosave_name, commit_info, key_id, machine_info
from pytest_psa.report.gate_messages import count_words, missing_message, regression_message, rel, summary_lines
from pytest_psa.report.run_files import DEFAULT_STORAGE, Storage, StoredRun, run_document

_START = pytest.StashKey[int]()
DEFAULT_NAME = "baseline"  # the file new baselines go to when no --psa-save name is given


class BaselineGate:
    """The plugin object behind ``--psa-save/--psa-autosave/--psa-compare/--psa-baseline-update``."""

    def __init__(self, config: pytest.Config, settings: Any, storage: Storage, *,
                 explicit: list[StoredRun] | None, save_name: str | None) -> None:
        self.config = config
        self.settings = settings
        self.storage = storage
        self.explicit = explicit  # --psa-compare=ID: the runs it names (newest first)
        self.save_name = save_name
        self.comparing = settings.compare is not None or settings.baseline_update
        self.update = bool(settings.baseline_update)
        self.specs = parse_fail_specs(settings.compare_fail)
        self._planned: dict[str, Path] = {}
        self.written: list[tuple[Path, str]] = []

    # -- set-up ----------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: pytest.Config, settings: Any, cli: Mapping[str, Any]) -> BaselineGate:
        """Validate the options and the stored runs before any test runs (usage errors, not test errors)."""
        if cli.get("compare_fail") and settings.compare is None and not settings.baseline_update:
            raise pytest.UsageError("--psa-compare-fail needs --psa-compare (the run to compare with): add "
                                    "--psa-compare to compare with the latest stored run")
        storage = Storage(storage_root(config, settings, cli))
        try:
            if settings.compare is not None or settings.baseline_update:
                storage.scan()  # a damaged file stops the run here, naming the file
            explicit = None
            if settings.compare not in (None, "latest"):
                explicit = storage.find(settings.compare)
                if not explicit:
                    known = sorted({r.id for runs in storage.scan().values() for r in runs})
                    raise pytest.UsageError(
                        f"--psa-compare={settings.compare}: no stored run matches it in {storage.root}"
                        f" (stored: {', '.join(known[-8:]) or 'none'}). If {settings.compare!r} is a test path, "
                        f"write --psa-compare=latest or put --psa-compare after the paths.")
        except PsaError as exc:
            raise pytest.UsageError(f"psa baselines: {exc}") from None
        save_name = settings.save
        if save_name is None and settings.autosave:
            save_name = autosave_name(commit_info(config.rootpath))
        return cls(config, settings, storage, explicit=explicit, save_name=save_name)

    # -- per test ------------------------------------------------------------------------------
    def _records(self) -> list[Any]:
        from pytest_psa._session import session_of

        session = session_of(self.config)
        return session.records if session is not None else []

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        item.stash[_START] = len(self._records())

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if call.when == "call" and not report.skipped:
            try:
                self._gate(item, report)
            except PsaError as exc:  # e.g. a storage problem found late: on this test, readable
                self._fail(report, f"psa baselines: {exc}")
        return report

    def _key(self, item: pytest.Item, summary: Mapping[str, Any]) -> dict[str, Any]:
        dev = next((m.kwargs["device"] for m in item.iter_markers("psa") if "device" in m.kwargs),
                   self.settings.device)
        return key_for(summary, dev)

    def _gate(self, item: pytest.Item, report: pytest.TestReport) -> None:
        start = item.stash.get(_START, 0)
        records = [r for r in self._records()[start:] if r.nodeid == item.nodeid]
        own: list[str] = []
        for mark in item.iter_markers("psa"):  # closest marker wins
            if "compare_fail" in mark.kwargs:
                own = [str(s) for s in parse_fail_specs(mark.kwargs["compare_fail"])]
                break
        problems = []
        for index, record in enumerate(records):
            key = self._key(item, record.summary)
            kid = key_id(key)
            info = {"key": key, "key_id": kid, "index": index, "compare_fail": own}
            if not self.comparing:
                record.baseline = {"status": "not compared", **info}
                continue
            entry = make_entry(record, index, own)
            run, stored = self._lookup(record.nodeid, index, kid)
            rc = compare_entries(stored, entry, self.specs, baseline_key=None if run is None else run.key,
                                 current_key=key, baseline_file=None if run is None else rel(run.path),
                                 baseline_run=None if run is None else run.summary())
            status = "updated" if self.update else rc.status
            write_to = self.target(kid) if status in ("updated", "missing") else None
            record.baseline = {**rc.to_dict(), **info, "status": status,
                               "written_to": None if write_to is None else rel(write_to)}
            self._properties(item, report, record.baseline, rc)
            if status == "regressed":
                problems.append(regression_message(rc, record.summary, key, self.specs,
                                                   functools.partial(self._repro, record.nodeid)))
            elif status == "missing":
                problems.append(missing_message(rc, record.summary, rel(self.storage.folder(kid)), write_to))
        if problems:
            self._fail(report, "\n\n".join(problems))

    def _lookup(self, nodeid: str, index: int, kid: str) -> tuple[StoredRun | None, dict[str, Any] | None]:
        """The baseline entry: in --psa-compare=ID's run, else the newest run of this key folder
        holding the test (entries that regressed when stored are passed over), else the newest one
        in another key folder (compared only to report why it is skipped)."""
        if self.explicit is not None:
            run = next((r for r in self.explicit if r.path.parent.name == kid), self.explicit[0])
            return run, run.entry(nodeid, index)
        for run in reversed(self.storage.runs(kid)):
            found = run.entry(nodeid, index)
            if found is not None and found.get("gate") != "regressed":
                return run, found
        elsewhere = [(run, e) for k, runs in self.storage.scan().items() if k != kid for run in runs
                     if (e := run.entry(nodeid, index)) is not None]
        if elsewhere:
            return max(elsewhere, key=lambda pair: str(pair[0].doc.get("created")))
        return None, None

    def target(self, kid: str) -> Path:
        """Where new baselines of key folder `kid` go at the end of the session."""
        if kid not in self._planned:
            same = [r for r in self.explicit or [] if r.path.parent.name == kid]
            if same:  # --psa-compare=ID: that file is rewritten in place
                self._planned[kid] = same[0].path
            else:
                name = self.save_name or (self.explicit[0].name if self.explicit else DEFAULT_NAME)
                self._planned[kid] = self.storage.planned_path(kid, name)
        return self._planned[kid]

    @staticmethod
    def _fail(report: pytest.TestReport, message: str) -> None:
        if report.passed:
            report.outcome = "failed"
            report.longrepr = message
        else:  # already failed for its own reason: add the gate's finding beside it
            report.sections.append(("psa baseline", message))

    @staticmethod
    def _properties(item: pytest.Item, report: pytest.TestReport, info: Mapping[str, Any],
                    rc: RecordComparison) -> None:
        suffix = f"#{rc.index + 1}" if rc.index else ""
        props = [(f"psa_baseline{suffix}", info["status"])]
        if rc.reason:
            props.append((f"psa_baseline_reason{suffix}", rc.reason))
        if rc.baseline_file:
            props.append((f"psa_baseline_file{suffix}", rc.baseline_file))
        for d in rc.regressions:
            props.append((f"psa_regression({d.name}){suffix}",
                          f"{d.describe()}; allowed {d.threshold:.4g} ({d.violated})"))
        item.user_properties.extend(props)  # JUnit XML reads them from the teardown report
        report.user_properties.extend(props)

    # -- messages --------------------------------------------------------------------------------
    def _repro(self, nodeid: str, extra: list[str]) -> str:
        from pytest_psa._session import PsaSession, session_of

        session = session_of(self.config) or PsaSession(self.settings, self.config)
        storage = [] if self.storage.root == self.config.rootpath / DEFAULT_STORAGE else \
            [f"--psa-storage={rel(self.storage.root)}"]
        return session.repro_command(nodeid, extra=[*storage, *extra])

    # -- end of session ----------------------------------------------------------------------------
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if is_worker(self.config):
            return  # the controller writes, once, from every worker's records
        groups: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        for record in self._records():
            info = record.baseline
            if info is None or "key_id" not in info:
                continue
            groups.setdefault(info["key_id"], []).append((make_entry(record, info["index"], info["compare_fail"]),
                                                          record))
        if not groups:
            return
        commit = commit_info(self.config.rootpath)
        settings = (dataclasses.asdict(self.settings)
                    if dataclasses.is_dataclass(self.settings) and not isinstance(self.settings, type) else {})
        for kid, items in groups.items():
            key = items[0][1].baseline["key"]
            device_name = _device_name(key)
            entries = [e for e, _ in items]

            def doc(results: list[dict[str, Any]]) -> dict[str, Any]:
                return run_document(key=key, machine=machine_info(key, device_name), commit=commit,  # noqa: B023
                                    settings=settings, results=results)

            saved = None
            if self.save_name:
                planned = self._planned.get(kid) if self.explicit is None else None
                saved = self.storage.write_new(kid, self.save_name, doc(entries), planned=planned)
                self.written.append((saved, f"saved run: {len(entries)} audits"))
            pending = [e for e, r in items if r.baseline["status"] in ("missing", "updated")]
            if not (self.comparing and pending):
                continue
            what = count_words(r.baseline["status"] for _, r in items if r.baseline["status"] in ("missing", "updated"))
            target = self.target(kid)
            if target.exists() and any(r.path == target for r in self.explicit or []):
                self.storage.merge(target, pending)
                self.written.append((target, f"rewritten in place: {what}"))
            elif saved is not None and self.explicit is None:
                self.written[-1] = (saved, f"saved run: {len(entries)} audits, {what}")
            else:
                path = self.storage.write_new(kid, target.name.split("_", 1)[1][:-5], doc(pending), planned=target)
                self.written.append((path, f"new baselines: {what}"))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if is_worker(self.config):
            return
        infos = [(r.nodeid, r.baseline) for r in self._records() if r.baseline and "status" in r.baseline]
        if not infos and not self.written:
            return
        where = rel(self.storage.root) + (f" run {self.settings.compare}" if self.explicit
                                          else " (newest baseline per test)")
        terminalreporter.write_sep("-", "psa: baselines")
        for line, markup in summary_lines(infos, compared_with=where if self.comparing else None,
                                          specs=self.specs, written=self.written):
            terminalreporter.write_line(line, **markup)


def storage_root(config: pytest.Config, settings: Any, cli: Mapping[str, Any]) -> Path:
    """--psa-storage is relative to where pytest was started; the ini value to the ini file's folder;
    the default is ``<rootdir>/.psa``."""
    if cli.get("storage"):
        return (config.invocation_params.dir / Path(cli["storage"])).resolve()
    if settings.storage:
        base = config.inipath.parent if config.inipath else config.rootpath
        return (base / Path(settings.storage)).resolve()
    return config.rootpath / DEFAULT_STORAGE


def _device_name(key: Mapping[str, Any]) -> str | None:
    if key.get("device") != "cuda":
        return None
    try:
        import torch

        return str(torch.cuda.get_device_name())
    except Exception:  # no CUDA in this (controller) process: the kind is in the key anyway
        return None
