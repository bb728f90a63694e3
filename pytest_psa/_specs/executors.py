"""The executor names (`pytest_psa.execution`), declared once for the options and the seam."""

from __future__ import annotations

from typing import Final

EXECUTORS: Final = ("local", "ray")

__all__ = ["EXECUTORS"]
