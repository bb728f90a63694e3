"""`python -m pytest_psa.sco figures --out DIR` and `python -m pytest_psa.sco table`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pytest_psa.sco.experiments import run_all
from pytest_psa.sco.results import ExperimentResult, format_table

E2_COLUMNS = ["T", "d", "r", "train_max", "sar_last", "pred_sar", "pop_last", "pred_pop_last", "pop_last_mc", "pop_last_mc_stderr", "pop_average", "pred_pop_average", "pop_min_suffix", "gd_pop_last", "sam_pop_last"]
E4_COLUMNS = ["T", "d", "x", "pop_last", "note_pop_last", "last_ratio", "pop_average", "average_ratio", "min_suffix_ratio", "train_average", "chain_held", "w2_over_eta_r", "max_norm", "gd_pop_last"]


def tables(results: dict[str, ExperimentResult]) -> str:
    """The E2 and E4 tables with the note's predictions alongside (plus the bad-event frequencies)."""
    out = []
    if "E2" in results:
        e2 = results["E2"]
        out += [
            "E2 (Thm 2 + 3, SA-GD, adversarial oracle): n={n}, eta={eta}, rho={rho}, r = rho + 1/(eta sqrt T)".format(**e2.params),
            "note: F_S = 0, F_S^r = 8/T, F(last) = 0.2025, F(avg) ~ 0.057 ([SIM] 0.058-0.063), GD 0",
            format_table(e2.part("main"), E2_COLUMNS),
            "",
            format_table(e2.part("control"), ["control", "rho", "r", "x", "pop_last", "pop_average", "pop_min_suffix"]),
            "",
            format_table(e2.part("ablation"), ["oracle", "x", "pop_last", "pop_average", "certified_gap"]),
            "",
            format_table(e2.part("bad_event"), ["theorem", "n", "draws", "observed", "exact", "stderr"]),
            "",
        ]
    if "E4" in results:
        e4 = results["E4"]
        out += [
            "E4 (Thm 7, SAM): n={n}, eta={eta:.5f}, r={r}, delta_j={deltas}, x = eta^2 r^2 T".format(**e4.params),
            "note: F(last) = 0.0014 0.0064 0.0146 0.0260 0.0588 (0.21-0.23 x), F(avg) 0.07-0.08 x, F_S = 0, max|w| <= 0.49, GD ~ 4e-32",
            format_table(e4.part("main"), E4_COLUMNS),
            "",
            format_table(e4.part("bad_event"), ["theorem", "n", "draws", "observed", "exact", "stderr"]),
            "",
        ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_psa.sco", description="Flat minima that generalize badly (arXiv 2511.03548): experiments E1-E5.")
    sub = parser.add_subparsers(dest="command", required=True)
    fig = sub.add_parser("figures", help="run E1-E5 and write one figure per experiment")
    fig.add_argument("--out", required=True, type=Path, help="output folder")
    fig.add_argument("--format", default="png", choices=["png", "pdf", "svg"])
    tab = sub.add_parser("table", help="run E2 and E4 and print their tables next to the note's predictions")
    tab.add_argument("--all", action="store_true", help="also run E1, E3, E5 (for --json)")
    for p in (fig, tab):
        p.add_argument("--quick", action="store_true", help="smaller grids (seconds instead of tens of seconds)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--json", type=Path, help="also write all results as JSON to this file")
        p.add_argument("--only", help="comma-separated experiments to run, e.g. E2,E4 (E5 needs E2 and E4, run along)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    only = None if args.command == "figures" or args.all else ["E2", "E4"]
    if args.only:
        only = [e.strip().upper() for e in args.only.split(",") if e.strip()]
        unknown = sorted(set(only) - {"E1", "E2", "E3", "E4", "E5"})
        if unknown:
            parser.error(f"unknown experiment(s) {', '.join(unknown)}: choose from E1-E5")
    results = run_all(quick=args.quick, seed=args.seed, only=only)
    if args.json:
        args.json.write_text(json.dumps({k: v.to_dict() for k, v in results.items()}, indent=1))
    if args.command == "figures":
        from pytest_psa.sco.figures import save_figures

        for path in save_figures(results, args.out, fmt=args.format):
            print(path)
    else:
        print(tables(results))
    print(f"({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
