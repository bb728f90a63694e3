"""Progress bars: drawn on an interactive terminal, silent under -q, with a CI variable and when the
output is not a terminal; the trainer and the density audit draw theirs through the same policy."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from collections.abc import Iterator

import pytest

import pytest_psa
from pytest_psa import _progress as progress
from pytest_psa._progress import CI_VARIABLES, bars_enabled, in_ci


@pytest.fixture
def no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CI_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def drawn(no_ci: None) -> Iterator[io.StringIO]:
    """Bars forced on (no delay), written into a buffer; the previous policy restored afterwards."""
    buf = io.StringIO()
    previous = progress.configure(enabled=True, stream=buf, delay=0)
    try:
        yield buf
    finally:
        progress.restore(previous)


def test_ci_variables() -> None:
    assert in_ci({"CI": "true"}) and in_ci({"GITHUB_ACTIONS": "true"}) and in_ci({"JENKINS_URL": "http://j"})
    assert not in_ci({}) and not in_ci({"CI": "false"}) and not in_ci({"CI": "0"}) and not in_ci({"CI": ""})


def test_policy(drawn: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    assert bars_enabled()
    assert list(progress.progress(range(3), desc="psa forced")) == [0, 1, 2]
    assert "psa forced" in drawn.getvalue()
    bar = progress.progress(desc="psa off", total=4, enabled=False)  # a caller's progress=False
    bar.update(4)
    bar.close()
    assert "psa off" not in drawn.getvalue()
    monkeypatch.setenv("CI", "true")
    assert not bars_enabled()
    list(progress.progress(range(3), desc="psa in ci"))
    assert "psa in ci" not in drawn.getvalue()
    progress.configure(enabled=None, stream=io.StringIO())  # decide from the stream: not a terminal
    monkeypatch.delenv("CI")
    assert not bars_enabled()


@pytest.mark.slow
def test_density_and_trainer_draw_through_the_policy(drawn: io.StringIO) -> None:
    pytest_psa.density(None, n_images=20, draws=2)
    assert "psa density none" in drawn.getvalue()
    from pytest_psa.train.trainer import train

    train(None, epochs=1, n_train=100, batch_size=50, train_eval_n=0, workers=0)
    assert "psa train small_cnn + none [smoke]" in drawn.getvalue()
    before = drawn.getvalue()
    train(None, epochs=1, n_train=100, batch_size=50, train_eval_n=0, workers=0, progress=False)
    assert drawn.getvalue() == before


SLOW_TEST = """
import time
from pytest_psa._progress import progress

def test_long_step():
    for _ in progress(range(6), desc="psa demo step", total=6):
        time.sleep(0.12)  # 0.72 s in all: longer than the 0.5 s a bar waits before it appears
"""


def _run_in_terminal(path: str, *args: str, ci: bool = False) -> str:
    """Run pytest with a pseudo-terminal as stdout and stderr (what a developer's shell gives it)."""
    env = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES}
    if ci:
        env["CI"] = "true"
    master, slave = pty.openpty()
    lean = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark", "-p", "no:xdist"]
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *lean, *args], cwd=path,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_bars_on_a_terminal_only(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_slow=SLOW_TEST)
    where = str(pytester.path)
    assert "psa demo step" in _run_in_terminal(where)  # interactive: drawn past output capture
    assert "psa demo step" not in _run_in_terminal(where, "-q")
    assert "psa demo step" not in _run_in_terminal(where, ci=True)
