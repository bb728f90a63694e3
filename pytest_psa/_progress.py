"""Progress bars on long steps: shown on an interactive terminal, silent under ``-q``, in CI logs
and whenever the output is not a terminal.

Measurement code calls one function and never decides policy itself::

    from pytest_psa._progress import progress

    for batch in progress(batches, desc="psa corrupt gaussian_noise", total=len(batches), unit="batch"):
        ...
    bar = progress(desc="psa attack pgd-20", total=n_images, unit="img")   # manual updates
    with bar:
        bar.update(len(x))

Inside pytest the plugin configures the policy (verbosity, TTY, CI) and routes the bar past
pytest's output capture, so a bar appears during a long test on a terminal and nowhere else.
Outside pytest (``psa audit``, scripts) a bar is shown when stderr is a terminal and no CI
variable is set. No import of tqdm until a bar is made.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Callable, Protocol

# Variables CI services set (GitHub Actions, GitLab, Azure, Jenkins, TeamCity, CircleCI, Travis, Buildkite).
CI_VARIABLES = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "TF_BUILD", "JENKINS_URL", "TEAMCITY_VERSION",
                "CIRCLECI", "TRAVIS", "BUILDKITE")


def in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a CI service's variable is set (``CI=false`` / ``CI=0`` count as not set)."""
    env = os.environ if environ is None else environ
    return any(env.get(name, "").strip().lower() not in ("", "0", "false", "no") for name in CI_VARIABLES)


class TextStream(Protocol):
    """Where a bar writes: a text file such as ``sys.stderr``, or a `PastCaptureStream`."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class Policy:
    """Where bars go and whether they are drawn. ``enabled=None`` decides from the stream (TTY, CI)."""

    enabled: bool | None = None
    stream: TextStream | None = None  # None: sys.stderr at the time the bar is made
    delay: float = 0.5  # seconds before a bar appears: short steps never flash one


_policy = Policy()


def configure(enabled: bool | None = None, stream: TextStream | None = None, delay: float = 0.5) -> Policy:
    """Set the process-wide policy; returns the previous one (to restore it later)."""
    global _policy
    previous, _policy = _policy, Policy(enabled, stream, delay)
    return previous


def restore(policy: Policy) -> None:
    """Put back a policy returned by `configure`."""
    global _policy
    _policy = policy


def bars_enabled() -> bool:
    """Whether a bar made now would be drawn."""
    if _policy.enabled is False or in_ci():
        return False
    if _policy.enabled:
        return True
    stream = _policy.stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress(iterable: Iterable[Any] | None = None, desc: str = "", total: int | float | None = None, *,
             unit: str = "it", enabled: bool = True, leave: bool = False, **kwargs: Any) -> Any:
    """A tqdm bar over `iterable` (or for manual ``update(n)`` when it is None), drawn only when the
    policy allows it and `enabled` is true; otherwise a silent bar (iterating and ``update`` still work).

    Pass ``enabled=False`` to force it off for one call (a caller's own ``progress=False``).
    """
    from tqdm.auto import tqdm

    draw = enabled and bars_enabled()
    kwargs.setdefault("delay", _policy.delay)
    if draw and isinstance(_policy.stream, PastCaptureStream):
        _policy.stream.start_bar()
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=not draw,
                file=_policy.stream or sys.stderr, dynamic_ncols=True, **kwargs)


class PastCaptureStream:
    """A text stream that writes to the real terminal while pytest captures test output.

    `suspend` is a context manager factory that turns capture off for the duration of a write
    (pytest's ``capturemanager.global_and_fixture_disabled``); tqdm writes a few times a second.
    """

    def __init__(self, suspend: Callable[[], AbstractContextManager[Any]], isatty: bool) -> None:
        self._suspend = suspend
        self._isatty = isatty
        self._newline = False

    def start_bar(self) -> None:
        """The next visible write starts a new line, so the bar does not overwrite pytest's own
        (``test_file.py ...``) line; a bar that never appears (shorter than the delay) writes nothing."""
        self._newline = True

    def write(self, text: str) -> int:
        if self._newline and text.strip():
            text, self._newline = "\n" + text, False
        with self._suspend():
            sys.stderr.write(text)
            sys.stderr.flush()
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self._isatty


def configure_for_pytest(config: Any) -> Policy:
    """The policy for one pytest session: bars only with verbosity >= 0 (not ``-q``), a terminal
    and no CI variable, drawn past output capture. Returns the previous policy."""
    from pytest_psa._session import is_worker

    verbose = int(getattr(config.option, "verbose", 0) or 0)
    reporter = config.pluginmanager.getplugin("terminalreporter")
    isatty = bool(getattr(reporter, "isatty", False))
    capman = config.pluginmanager.getplugin("capturemanager")
    suspend = getattr(capman, "global_and_fixture_disabled", None)
    if verbose < 0 or not isatty or in_ci() or suspend is None or is_worker(config):
        return configure(enabled=False)
    return configure(enabled=True, stream=PastCaptureStream(suspend, isatty=True))

