"""What a pytest session reports: the grouped terminal summary with its stage times, ``--psa-json``,
``--psa-markdown``, ``--psa-plots``, pytest-html extras and the progress-bar policy. Registered by
the plugin for every session; torch-free, and each output imports its libraries only when asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_psa._session import is_worker

_FIRST_RECORD = pytest.StashKey[int]()


def resolve_path(config: pytest.Config, option: str, value: str | None) -> Path | None:
    """A path option: relative to the invocation folder on the command line, to the ini file's
    folder in the ini file."""
    if not value:
        return None
    if config.getoption(f"psa_{option}") is not None:
        return (config.invocation_params.dir / value).resolve()
    base = config.inipath.parent if config.inipath else config.rootpath
    return (base / value).resolve()


class ReportHooks:
    """The plugin object behind ``--psa-json``, ``--psa-markdown``, ``--psa-plots``, pytest-html extras and
    progress bars."""

    def __init__(self, config: pytest.Config, session: Any) -> None:
        self.config = config
        self.session = session
        settings = session.settings
        self.json_path = resolve_path(config, "json", getattr(settings, "json", None))
        markdown = getattr(settings, "markdown", None)
        self.github_summary = markdown == "github"  # append to the job summary GitHub Actions gives the step
        self.markdown_path = None if self.github_summary else resolve_path(config, "markdown", markdown)
        self.plots_dir = resolve_path(config, "plots", getattr(settings, "plots", None))
        if self.plots_dir is not None:
            from pytest_psa.errors import PsaUsageError
            from pytest_psa.report.plots import require_matplotlib

            try:
                require_matplotlib()  # before the tests run, not after
            except PsaUsageError as exc:
                raise pytest.UsageError(f"--psa-plots: {exc}") from None
        # pytest-html is installed (its plugin is registered as "html") and writes a report (--html)
        self.html = config.pluginmanager.getplugin("html") is not None and bool(config.getoption("htmlpath", None))
        self.written: list[tuple[Path, str]] = []
        self.problems: list[str] = []
        self._previous_progress: Any = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        from pytest_psa import _progress as progress

        # here, not at configure time: the terminal reporter (is it a TTY?) exists only now
        self._previous_progress = progress.configure_for_pytest(self.config)

    @property
    def worker(self) -> bool:
        return is_worker(self.config)

    # -- per test: pytest-html extras ----------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        item.stash[_FIRST_RECORD] = len(self.session.records)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if call.when == "call" and self.html:
            from pytest_psa.report.html import attach

            start = item.stash.get(_FIRST_RECORD, 0)
            attach(report, [r for r in self.session.records[start:] if r.nodeid == item.nodeid])
        return report

    # -- end of session: files ---------------------------------------------------------------------
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.worker:
            return  # the controller writes, from every worker's records
        records = list(self.session.records)
        if self.json_path is not None:
            from pytest_psa._timings import summarize
            from pytest_psa.report.json_report import run_document, write_json

            try:
                doc = run_document(records, settings=self.session.settings, source="pytest",
                                   root=self.config.rootpath,
                                   extra={"timings": summarize(self.session.stage_timings())})
                self.written.append((write_json(self.json_path, doc), f"psa run, {len(records)} audits"))
            except Exception as exc:  # a report must not hide the test results: say what failed
                self.problems.append(f"--psa-json {self.json_path}: {type(exc).__name__}: {exc}")
        if self.markdown_path is not None or self.github_summary:
            self._write_markdown(records)
        if self.plots_dir is not None:
            from pytest_psa.report.plots import write_plots

            try:
                paths = write_plots(records, self.plots_dir)
                self.written += [(p, "figure") for p in paths]
                if not paths:
                    self.problems.append(f"--psa-plots {self.plots_dir}: no psa audits with figures in this run")
            except Exception as exc:
                self.problems.append(f"--psa-plots {self.plots_dir}: {type(exc).__name__}: {exc}")

    def _write_markdown(self, records: list[Any]) -> None:
        from pytest_psa._storage import atomic_write_bytes
        from pytest_psa.report.markdown import render_markdown

        option = "--psa-markdown" if self.config.getoption("psa_markdown") is not None else "ini psa_markdown"
        try:
            text = render_markdown(records, repro=self.session.repro_command)
            if self.markdown_path is not None:
                self.markdown_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(self.markdown_path, text.encode("utf-8"), mode=0o644)
                self.written.append((self.markdown_path, f"Markdown summary, {len(records)} audits"))
                return
            target = os.environ.get("GITHUB_STEP_SUMMARY")
            if not target:
                self.problems.append(f"{option}=github: $GITHUB_STEP_SUMMARY is not set (it is, inside a GitHub "
                                     "Actions step); write to a file with --psa-markdown=PATH")
                return
            # one O_APPEND write: other steps' text in the file stays whole, ours lands in one piece
            fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, ("\n" + text).encode("utf-8"))
            finally:
                os.close(fd)
            self.written.append((Path(target), f"appended the Markdown summary to $GITHUB_STEP_SUMMARY, "
                                               f"{len(records)} audits"))
        except Exception as exc:  # a report must not hide the test results: say what failed
            where = self.markdown_path or "github"
            self.problems.append(f"{option} {where}: {type(exc).__name__}: {exc}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._previous_progress is not None:
            from pytest_psa import _progress as progress

            progress.restore(self._previous_progress)

    # -- the terminal summary (called by the plugin) -----------------------------------------------
    def write_summary(self, terminalreporter: Any) -> None:
        if self.worker:
            return
        from pytest_psa._timings import summarize
        from pytest_psa.report.terminal import stage_lines, summary_notes, summary_sections

        tr = terminalreporter
        for title, lines in summary_sections(self.session.records):
            tr.write_sep("-", title)
            for line in lines:
                tr.write_line(line)
        for line in summary_notes(self.session.records):
            tr.write_line(line)
        for line in stage_lines(summarize(self.session.stage_timings())):
            tr.write_line(line)
        for path, what in self.written:
            tr.write_line(f"psa: wrote {_relative(path)} ({what})")
        for problem in self.problems:
            tr.write_line(f"psa: could not write {problem}", red=True)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)

