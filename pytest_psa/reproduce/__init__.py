"""`psa reproduce`: the seed paper's experiment run through the tool's public audits (docs/reproduce.md).

A layer above `report` and below `cli`: `design` (the arms, sizes and CPU defaults), `runner` (the
audits, through the caches), `analysis` (claim table, correlations, rival predictors), `render` and
`page` (tables, the results page), `figures`, and `paper` (the paper's own numbers, with their sources).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from pytest_psa.reproduce.main import reproduce


class _CallableModule(types.ModuleType):
    # importing a submodule binds `pytest_psa.reproduce` to this package, which would hide the
    # function `pytest_psa.reproduce(...)` of the same name: the package calls it instead
    def __call__(self, **kwargs: Any) -> dict[str, Any]:
        return reproduce(**kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["reproduce"]
