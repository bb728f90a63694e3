"""The docs name every option, ini key and marker argument the code accepts (and the reverse)."""

from __future__ import annotations

import re
from pathlib import Path

from pytest_psa._settings import MARKER_ARGS, OPTIONS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_option_and_ini_key_is_documented() -> None:
    text = (DOCS / "options.md").read_text()
    missing = [o.cli for o in OPTIONS if not re.search(rf"`{re.escape(o.cli)}[`=\[]", text)] + \
              [o.ini for o in OPTIONS if f"`{o.ini}`" not in text]
    assert not missing, f"docs/options.md does not document: {missing}"


def test_documented_options_exist() -> None:
    text = (DOCS / "options.md").read_text()
    documented = set(re.findall(r"`(--psa-[a-z0-9-]+)", text))
    known = {o.cli for o in OPTIONS}
    assert documented <= known, f"docs/options.md documents unknown options: {sorted(documented - known)}"


def test_every_marker_argument_is_documented() -> None:
    text = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    missing = [k for k in MARKER_ARGS if not re.search(rf"\b{re.escape(k)}\b\s*=", text)
               and f"`{k}`" not in text]
    assert not missing, f"no page in docs/ documents the marker arguments: {missing}"
