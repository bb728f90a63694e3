"""Comments, docstrings and docs cite files that exist in this repository.

A path into the repository (``pytest_psa/...``, ``docs/...``, ``tests/...``, ``benchmarks/...``,
``examples/...``) must name a file that is there, and nothing cites notes that live outside it
(the developers' ``shared/`` folder): a reader of the repository cannot open them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*ROOT.glob("pytest_psa/**/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("docs/*.md"),
                  ROOT / "README.md"])
IN_REPO = re.compile(r"(?<![\w./-])((?:pytest_psa|docs|tests|benchmarks|examples)/[\w./-]*\w\.(?:py|md|png|toml))")
OUTSIDE = re.compile(r"shared/(?:reference|seeds|datasets|tools)/[\w.-]+\.md|cpu_feasibility")
# a user's own test file in a documented example, not a file of this repository
EXAMPLES = {"tests/test_aug.py", "tests/test_x.py"}


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_files_exist(source: Path) -> None:
    text = source.read_text(encoding="utf-8")
    missing = sorted({m for m in IN_REPO.findall(text) if m not in EXAMPLES and not (ROOT / m).exists()})
    assert missing == [], f"{source.relative_to(ROOT)} cites files that are not in the repository"
    outside = sorted(set(OUTSIDE.findall(text)))
    assert outside == [], f"{source.relative_to(ROOT)} cites notes outside the repository"


def test_the_check_reads_something() -> None:
    assert len(SOURCES) > 100
    hits = sum(len(IN_REPO.findall(p.read_text(encoding="utf-8"))) for p in SOURCES)
    assert hits > 20
