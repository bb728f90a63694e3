"""The tidy result every experiment returns, and the numbers the note predicts for it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_psa.errors import PsaUsageError

# Numbers printed in the note (§5) for comparison; the exact closed forms are computed per run instead.
NOTE: dict[str, dict[str, Any]] = {
    "e2": {"pop_last": 0.2025, "pop_average": 0.057, "pop_average_sim": (0.058, 0.063), "sar": "8/T", "train": 0.0, "gd": 0.0},
    "e3": {"sagd_sar_max": 1e-5, "sam_sar": {0.1: 1e-3, 0.2: 4e-3}},
    "e4": {
        "pop_last": {16: 0.0014, 64: 0.0064, 144: 0.0146, 256: 0.0260, 576: 0.0588},
        "last_ratio": (0.21, 0.23),
        "average_ratio": (0.07, 0.08),
        "w2_over_eta_r": -0.68,
        "max_norm": 0.49,
        "gd": 4e-32,
    },
}


def _plain(x: Any) -> Any:
    """numpy scalars → Python numbers, so rows serialize to JSON as they are."""
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        return x.item()
    return x


@dataclass(frozen=True)
class ExperimentResult:
    """One experiment in long ("tidy") form: each row is a flat dict; `part` says which table it belongs to."""

    experiment: str
    params: Mapping[str, Any]
    rows: tuple[dict[str, Any], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple({k: _plain(v) for k, v in row.items()} for row in self.rows))

    def part(self, name: str, **where: Any) -> list[dict[str, Any]]:
        """The rows of one table, optionally filtered by exact column values."""
        out = [r for r in self.rows if r.get("part") == name and all(r.get(k) == v for k, v in where.items())]
        if not out:
            parts = sorted({str(r.get("part")) for r in self.rows})  # str: a row without a part must not break sorting
            raise PsaUsageError(f"no rows in part {name!r} matching {where}", observed=parts, fix="pick one of the listed parts")
        return out

    def column(self, part: str, name: str, **where: Any) -> list[Any]:
        return [r[name] for r in self.part(part, **where)]

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "params": dict(self.params), "rows": [dict(r) for r in self.rows]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=_plain, indent=1)


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain fixed-width text table (used by `python -m pytest_psa.sco table`)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            if v == 0 or (1e-3 <= abs(v) < 1e4):
                return f"{v:.4g}"  # four significant digits: the note prints two to four
            return f"{v:.2e}" if math.isfinite(v) else str(v)
        return str(v)

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
