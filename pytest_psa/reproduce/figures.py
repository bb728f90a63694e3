"""The reproduction's figures: the report layer's eCDF, flatness and per-corruption figures of the
audits' records, plus the density-robustness scatter (matplotlib, the `plots` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_psa.reproduce.design import ARMS, TOOL_GAMMA


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_figures(report: Mapping[str, Any], records: Sequence[Mapping[str, Any]], folder: Path, *,
                  required: bool = False) -> list[Path]:
    """Write the figures as PNGs into `folder`; none without matplotlib unless `required` (then a
    PsaUsageError naming the extra)."""
    from pytest_psa.report import plots

    if required:
        plots.require_matplotlib()
    elif not available():
        return []
    from pytest_psa._records import AuditRecord

    recs = [AuditRecord(f"psa-reproduce::{r['key']}", dict(r["summary"]), [], kind=r["kind"]) for r in records]
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in plots.figures(recs).items():
        fig.savefig(folder / name)
        written.append(folder / name)
    scatter = scatter_figure(report)
    if scatter is not None:
        scatter.savefig(folder / "scatter_density_mce.png")
        written.append(folder / "scatter_density_mce.png")
    return written


def scatter_figure(report: Mapping[str, Any]) -> Any:
    """Proximal density F(γ) on l2 (x) vs mCE gain over ERM in pp (y), one point per augmentation, seed spread as
    error bars; rho and its interval in the title. None when no augmentation arm ran."""
    from pytest_psa.report.plots import _figure

    series = report["analysis"]["per_seed"]
    x_name, y_name = f"F_l2({TOOL_GAMMA:g})", "gain mce (pp)"
    pts = [(k, r[x_name], r[y_name]) for k, r in series.items() if r.get(x_name) is not None and r.get(y_name)]
    if not pts:
        return None
    import numpy as np

    fig = _figure(6.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for k, x, ys in pts:
        y = np.asarray(ys, float)
        ax.errorbar([x], [y.mean()], yerr=[[y.mean() - y.min()], [y.max() - y.mean()]], fmt="o", capsize=3)
        ax.annotate(ARMS[k].label if k in ARMS else k, (x, y.mean()), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    corr = next((c for c in report["analysis"]["correlations"]
                 if c["predictor"] == x_name and c["outcome"] == y_name), None)
    title = "density vs robustness gain"
    if corr and corr["rho"] is not None:
        lo, hi = corr["low"], corr["high"]
        title += f": Spearman rho {corr['rho']:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None else "")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"proximal density F(γ = {TOOL_GAMMA:g}, l2 RMS on [0, 1])")
    ax.set_ylabel("mCE gain over ERM (pp; bars: seed min-max)")
    ax.axhline(0, color="grey", lw=0.8)
    return fig


__all__ = ["available", "scatter_figure", "write_figures"]
