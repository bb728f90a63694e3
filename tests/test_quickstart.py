"""The guide's quick start runs as written: its test file, its command, and the output it promises.

The code blocks are read from docs/guide.md itself, so the page cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"


def _quick_start() -> dict[str, str]:
    """The quick start's file name, test file, run command and expected output lines."""
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)
    name = re.search(r"save this file as `([^`]+)`", section)
    assert name, "the quick start names the file to save"
    python = [body for lang, body in blocks if lang == "python" and "def test_" in body]
    commands = [line for lang, body in blocks if lang == "bash" for line in body.splitlines()
                if line.startswith("python -m pytest ")]
    expected = [body for lang, body in blocks if lang == "text"]
    assert python and len(commands) == 1 and len(expected) == 1, "one test file, one pytest command, one output"
    return {"file": name.group(1), "code": python[0], "command": commands[0], "expected": expected[0]}


def test_the_quick_start_is_complete_and_compiles() -> None:
    qs = _quick_start()
    compile(qs["code"], qs["file"], "exec")
    assert qs["file"] in qs["command"]
    assert "pip install pytest-psa\n" not in GUIDE.read_text(encoding="utf-8")  # not published
    assert 'pip install -c constraints.txt -e ".[test]"' in GUIDE.read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_quick_start_passes_as_written(tmp_path) -> None:
    qs = _quick_start()
    (tmp_path / qs["file"]).write_text(qs["code"], encoding="utf-8")
    args = shlex.split(qs["command"])
    assert args[:3] == ["python", "-m", "pytest"]
    env = {**os.environ, "PSA_CACHE_DIR": str(tmp_path / "cache")}  # a first contact: nothing cached
    env.pop("PSA_DATA_ROOT", None)  # the default data, as a new user has it
    run = subprocess.run([sys.executable, *args[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=1800)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    squeezed = {" ".join(line.split()) for line in out.splitlines()}
    for line in qs["expected"].splitlines():
        want = " ".join(line.split())
        if re.fullmatch(r"\d+ passed", want):
            assert re.search(rf"\b{want} in ", out), f"expected {want!r} in the summary:\n{out}"
        else:
            assert want in squeezed, f"the guide promises {want!r}; the run printed:\n{out}"
