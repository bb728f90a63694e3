"""One matplotlib figure per experiment, drawn from its `ExperimentResult` (never from internals).

matplotlib is an optional dependency (the `plots` extra) and is imported here only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_psa.errors import PsaUsageError
from pytest_psa.sco.results import NOTE, ExperimentResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLORS = {"SA-GD": "tab:red", "SAM": "tab:blue", "GD": "tab:green"}


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PsaUsageError("the SCO figures need matplotlib", observed=str(exc), fix="pip install 'pytest-psa[plots]'") from None
    return plt


def _subplots(*args: Any, **kwargs: Any) -> tuple[Figure, Any]:
    """``plt.subplots`` on the Agg backend: (the figure, its axes)."""
    _plt()  # a clear error without matplotlib; selects Agg
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*args, **kwargs)
    return fig, axes


def figure_e1(res: ExperimentResult) -> Figure:
    fig, (a, b) = _subplots(1, 2, figsize=(10, 4))
    bad = res.part("bad_event")
    ns = [r["n"] for r in bad]
    a.errorbar(ns, [r["observed"] for r in bad], yerr=[2 * r["stderr"] for r in bad], fmt="o", label="observed (±2 s.e.)")
    a.plot(ns, [r["exact"] for r in bad], "k--", label="exact 1 − (1 − 2⁻ⁿ)^(2ⁿ)")
    a.axhline(1 - 1 / np.e, color="grey", lw=0.8, label="1 − 1/e")
    a.set(xlabel="n (samples; d = 2ⁿ + 1)", ylabel="P(some coordinate unseen)", title="Thm 1: the bad event", ylim=(0.5, 0.75))
    a.legend(fontsize=8)
    n = max(ns)
    rows = [r for r in res.part("erm", n=n) if r["r"] == r["rho"] or r["rho"] == 0]
    rows = list({r["rho"]: r for r in rows}.values())
    x = np.arange(len(rows))
    b.bar(x - 0.2, [r["flat_pop"] for r in rows], 0.4, color="tab:red", label="flat ERM e_I: F(w)")
    b.bar(x + 0.2, [r["sharp_pop"] for r in rows], 0.4, color="tab:green", label="sharp ERM ρe_d: F(w) = 0")
    b.plot(x - 0.2, [r["pred_flat_pop"] for r in rows], "k_", ms=20, label="¼(1 − ρ)²")
    b.axhline(1 / 16, color="grey", ls=":", label="1/16")
    b.set_xticks(x, [f"ρ = {r['rho']:g}" for r in rows])
    b.set(ylabel="population risk", title=f"Thm 1 (n = {n}): both minimize F_S; only e_I is flat")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_e2(res: ExperimentResult) -> Figure:
    fig, (a, b, c) = _subplots(1, 3, figsize=(15, 4.2))
    main = res.part("main")
    T = np.array([r["T"] for r in main])
    a.loglog(T, [r["sar_last"] for r in main], "o", color=COLORS["SA-GD"], label="SA-GD: F_S^r(w_T)")
    a.loglog(T, 8 / T, "k--", label="8/T = ½(r − ρ)²")
    a.loglog(T, [r["thm2_bound"] for r in main], ":", color="grey", label="Thm 2 bound")
    a.set(xlabel="T", ylabel="sharpness-aware empirical risk", title="SA-GD reaches a flat minimum at O(1/T)")
    a.legend(fontsize=8)
    b.semilogx(T, [r["pop_last"] for r in main], "o-", color=COLORS["SA-GD"], label="SA-GD last")
    b.semilogx(T, [r["pop_average"] for r in main], "s-", color=COLORS["SA-GD"], alpha=0.6, label="SA-GD average")
    for name, key in (("SAM", "sam_pop_last"), ("GD", "gd_pop_last")):
        if key in main[0]:
            big = name == "SAM"  # SAM and GD coincide (both never move): draw SAM hollow and larger
            b.semilogx(T, [r[key] for r in main], "^-", color=COLORS[name], mfc="none" if big else None, ms=10 if big else 6, label=f"{name} last")
    b.axhline(NOTE["e2"]["pop_last"], color="k", ls="--", lw=0.8, label="note: 0.2025")
    b.axhline(NOTE["e2"]["pop_average"], color="k", ls=":", lw=0.8, label="note: ≈0.057")
    b.set(xlabel="T", ylabel="population risk F", title="…whose population risk stays Ω(1); GD stays at 0")
    b.legend(fontsize=8)
    for rho, marker in ((0.0, "o"), (0.1, "s")):
        rows = [r for r in res.rows if r.get("part") == "sweep" and r["rho"] == rho]
        if rows:
            c.plot([r["x"] for r in rows], [r["pop_last"] for r in rows], marker, color=COLORS["SA-GD"], label=f"last, ρ = {rho:g}")
            c.plot([r["x"] for r in rows], [r["pop_average"] for r in rows], marker, mfc="none", color=COLORS["SA-GD"], label=f"average, ρ = {rho:g}")
    xs = np.linspace(0, 1, 50)
    c.plot(xs, xs / 4, "k--", lw=0.8, label="x/4 (ρ = 0, exact)")
    c.set(xlabel="x = η²(r − ρ)²T", ylabel="population risk F", title=f"Thm 3: F grows linearly in x (T = {res.params['sweep_T']})")
    c.legend(fontsize=8)
    for ax in (a, b):  # label the T actually run, not log-scale minor ticks
        ax.set_xticks(T, [str(t) for t in T])
        ax.minorticks_off()
    fig.tight_layout()
    return fig


def figure_e3(res: ExperimentResult) -> Figure:
    fig, (a, b) = _subplots(1, 2, figsize=(10, 4))
    for name in ("SAM", "GD", "SA-GD"):
        rows = res.part("1d", algorithm=name)
        big = name == "SAM"  # SAM and GD coincide here (neither moves from w = 0)
        a.plot([r["r"] for r in rows], [max(r["sar_last"], 1e-30) for r in rows], "o-", color=COLORS[name], mfc="none" if big else None, ms=10 if big else 5, label=name)
    rs = np.linspace(0.05, 0.5, 50)
    a.plot(rs, rs**2 / 2, "k--", lw=0.8, label="½r² (Thm 6)")
    a.set(yscale="log", xlabel="r", ylabel="F^r(w_T)", title="Thm 6, f = ½[w]₊²: SAM stays at the sharp w = 0")
    a.legend(fontsize=8)
    r_values = sorted({r["r"] for r in res.part("curve")})
    r_show = 0.1 if 0.1 in r_values else r_values[0]
    for name in ("SA-GD", "SAM", "GD"):
        rows = res.part("curve", algorithm=name, r=r_show)
        b.loglog([r["t"] for r in rows], [max(r["sar"], 1e-12) for r in rows], "o-", ms=3, color=COLORS[name], label=name)
    t = np.geomspace(1, res.params["T2"], 50)
    w_star = np.asarray(res.params["w_star"])
    b.loglog(t, w_star @ w_star / (res.params["eta"] * t), "k:", lw=0.8, label="Thm 2: ‖w₁ − w⋆‖²/(ηt)")
    b.set(xlabel="t", ylabel="F_S^r(w_t) (floored at 1e-12)", title=f"2-D ρ-flat testbed, r = {r_show:g} ≤ ρ = {res.params['rho']:g}")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_e4(res: ExperimentResult) -> Figure:
    fig, ax = _subplots(figsize=(6, 4.2))
    main = res.part("main")
    x = np.array([r["x"] for r in main])
    ax.plot(x, [r["pop_last"] for r in main], "o-", color=COLORS["SAM"], label="SAM last")
    ax.plot(x, [r["pop_average"] for r in main], "s-", color=COLORS["SAM"], alpha=0.6, label="SAM average")
    ax.plot(x, [r["gd_pop_last"] for r in main], "^-", color=COLORS["GD"], label="GD last (≈ 0)")
    note = [(r["x"], r["note_pop_last"]) for r in main if np.isfinite(r["note_pop_last"])]
    if note:
        ax.plot(*zip(*note), "kx", ms=8, label="note [SIM] last")
    xs = np.linspace(0, x.max(), 50)
    ax.plot(xs, xs / 4, "k--", lw=0.8, label="x/4")
    ax.plot(xs, xs / 128, "k:", lw=0.8, label="x/128 (proof's certificate)")
    ax.set(xlabel="x = η²r²T", ylabel="population risk F", title="Thm 7: SAM's risk grows linearly in η²r²T (ρ = 0)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figure_e5(res: ExperimentResult) -> Figure:
    fig, ax = _subplots(figsize=(6.5, 4.2))
    for source, color in (("E2", COLORS["SA-GD"]), ("E4", COLORS["SAM"])):
        rows = [r for r in res.part("bound") if r["source"] == source]
        T = [r["T"] for r in rows]
        ax.loglog(T, [r["bound"] for r in rows], "--", color=color, label=f"{source} ({rows[0]['algorithm']}): stability bound")
        ax.loglog(T, [r["pop_last"] for r in rows], "o-", color=color, label=f"{source}: measured F (last)")
        ax.loglog(T, [r["x"] for r in rows], ":", color=color, label=f"{source}: η²(r − ρ)²T")
        ax.set_xticks(T, [str(t) for t in T])
    ax.minorticks_off()
    ax.set(xlabel="T", ylabel="population risk / bound", title="Thms 4, 8: measured risk stays under the stability bound")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


FIGURES = {"E1": figure_e1, "E2": figure_e2, "E3": figure_e3, "E4": figure_e4, "E5": figure_e5}


def save_figures(results: dict[str, ExperimentResult], out: str | Path, *, fmt: str = "png") -> list[Path]:
    """Write one `<experiment>.<fmt>` per result into `out`; returns the paths."""
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, res in results.items():
        fig = FIGURES[name](res)
        path = out / f"{name.lower()}.{fmt}"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
