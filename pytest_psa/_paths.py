"""Where pytest-psa keeps things: the data root and the cache directory."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "PSA_DATA_ROOT"
CACHE_DIR_ENV = "PSA_CACHE_DIR"


def default_data_root() -> Path | None:
    """The data root from $PSA_DATA_ROOT, or None (only the embedded synthetic set is available)."""
    value = os.environ.get(DATA_ROOT_ENV)
    return Path(value).expanduser() if value else None


def default_cache_dir() -> Path:
    """$PSA_CACHE_DIR, else $XDG_CACHE_HOME/pytest-psa, else ~/.cache/pytest-psa."""
    value = os.environ.get(CACHE_DIR_ENV)
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-psa"
