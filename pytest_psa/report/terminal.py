"""Terminal summary tables (plain text; no torch)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def density_table(records: Iterable[Any]) -> list[str]:
    """One row per (test, audit, γ): augmentation, distance, N×K, F with its bounds, identity share, verdict."""
    rows = [("test", "augmentation", "distance", "N×K", "γ", "F_N(γ)", "bounds", "identity", "verdict")]
    for rec in records:
        s = rec.summary
        name = s["augmentation"] if len(s["augmentation"]) <= 32 else s["augmentation"][:29] + "..."
        base = (rec.nodeid.split("::")[-1], name, s["distance"], f"{s['n_images']}×{s['draws']}")
        ident = f"{100 * s['identity_fraction']:.1f}%"
        if rec.verdicts:
            for v in rec.verdicts:
                rows.append((*base, f"{v['gamma']:g}", f"{v['F_estimate']:.4f}",
                             f"[{v['F_low']:.4f}, {v['F_high']:.4f}]", ident,
                             f"{v['outcome']} (≥{v['min_density']:g})"))
        else:
            for e in s["ecdf"]:
                if e["gamma"] in (0.02, 0.05, 0.1) or len(s["ecdf"]) <= 3:
                    rows.append((*base, f"{e['gamma']:g}", f"{e['estimate']:.4f}",
                                 f"[{e['low']:.4f}, {e['high']:.4f}]", ident, "measured"))
    return _align(rows)


def flatness_table(records: Iterable[Any]) -> list[str]:
    """One row per (test, metric): ERM and augmented means over seeds, improvement, lower bound, verdict."""
    rows = [("test", "augmentation", "metric", "seeds", "ERM", "augmented", "improvement", "lower bound", "verdict")]
    for rec in records:
        s = rec.summary
        name = s["augmentation"] if len(s["augmentation"]) <= 32 else s["augmentation"][:29] + "..."
        verdicts = {v["metric"]: v for v in rec.verdicts}
        for metric, c in s["metrics"].items():
            v = verdicts.get(metric)
            rows.append((rec.nodeid.split("::")[-1], name, metric, str(len(s["seeds"])),
                         f"{sum(c['erm']) / len(c['erm']):.4g}", f"{sum(c['augmented']) / len(c['augmented']):.4g}",
                         f"{c['mean']:+.3f}", f"{c['low']:+.3f}",
                         f"{v['outcome']} (>{v['min_rel_improvement']:g})" if v else "measured"))
    return _align(rows)


def _align(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
