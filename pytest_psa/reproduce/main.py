"""`pytest_psa.reproduce(...)`: run the seed paper's experiment through the tool and write what it found.

    import pytest_psa
    report = pytest_psa.reproduce(out="repro", data_root="/data")          # the CPU run on CIFAR-10 (hours)
    report = pytest_psa.reproduce(tiny=True, out="repro-ci")               # the CI size on the synthetic set
    report["analysis"]["claims"]                                             # the claim table

`psa reproduce` is the same function. The outputs (under `out`): ``reproduce.json`` (the design, every
measurement, the analysis, versions and the stage timings), ``results.md`` (the results page)
and ``figures/`` (eCDFs, flatness bars, per-corruption errors, the density-robustness scatter).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_psa.reproduce.design import GPU_NOTE, PAPER_GAMMA, TOOL_GAMMA, Design, design as make_design



def reproduce(*, data: str | None = None, data_root: Any = None, preset: str | None = None, model: str | None = None,
              seeds: Sequence[int] | None = None, arms: Sequence[str] | None = None, out: Any = None,
              cache_dir: Any = None, tiny: bool = False, plots: bool | None = None, command: str | None = None,
              quiet: bool = False, **sizes: Any) -> dict[str, Any]:
    """Run the seed paper's experiment (see `pytest_psa.reproduce.design.Design` for every parameter and its
    CPU default; `sizes` are its other fields: n_measure, n_density, draws, n_images, n_attack_images,
    n_perturbation_images, n_affinity, attacks, corruptions, flatness_keys, bootstrap, alpha) and return
    the report (a dict: design, raw, analysis, environment). With `out`, write reproduce.json,
    results.md and figures/ there. `plots`: None draws the figures when matplotlib is installed, True
    requires it. `tiny` is the CI size on the synthetic set (seconds per model)."""
    from pytest_psa.reproduce.analysis import analyse
    from pytest_psa.reproduce.runner import Runner

    d = make_design(tiny, data=data, preset=preset, model=model, seeds=seeds, arms=arms, **sizes)
    say = (lambda text: None) if quiet else None
    raw = Runner(d, data_root=data_root, cache_dir=cache_dir, say=say).run()
    records = raw.pop("_records", None)
    env = {**environment(), "training_autocast": sorted(_autocasts(records or []))}
    report: dict[str, Any] = {
        "schema": "psa-reproduce/1", "design": d.to_dict(), "raw": raw, "analysis": analyse(raw, d),
        "environment": env, "command": command or _python_call(d, tiny),
        "conventions": {"density_gammas": {"tool": f"F(γ={TOOL_GAMMA:g}) on l2 (RMS on [0, 1])",
                                           "paper": f"F(γ={PAPER_GAMMA:g}) on l2_255 (L2 on 0-255 pixels)"},
                        "intervals": f"two-sided {100 * (1 - d.alpha):.0f}%"},
    }
    if out is not None:
        write(report, d, Path(out), records or [], plots)
    return report


def _python_call(d: Design, tiny: bool) -> str:
    return f"pytest_psa.reproduce(tiny={tiny}, data={d.data!r}, preset={d.preset!r}, seeds={list(d.seeds)})"


def environment() -> dict[str, Any]:
    """Versions and machine: what a reader needs to rerun the numbers."""
    from pytest_psa._version import __version__

    versions = {"pytest-psa": __version__, "python": platform.python_version()}
    for dist in ("torch", "torchvision", "numpy", "scipy"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:  # noqa: BLE001 - a missing distribution is reported as such
            versions[dist] = "not installed"
    from pytest_psa.report.environment import cpu_name
    from pytest_psa.train.plan import cpu_has_native_bf16

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"versions": versions, "source": _source_commit(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "cpu": cpu_name(), "cpu_native_bf16": cpu_has_native_bf16(), "torch_threads": _torch_threads(),
            "load_average": list(load) if load else None,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _source_commit() -> str | None:
    """The git commit of a source checkout the package runs from (None when installed from a wheel): the
    version string does not change between commits, and corruption kernels or presets may."""
    import subprocess

    here = Path(__file__).resolve().parents[2]
    if not (here / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no",
                                "--", "pytest_psa"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (" (with uncommitted changes to pytest_psa/)" if dirty.strip() else "")


def _autocasts(node: Any) -> set[str]:
    """Every training record's autocast dtype name in the audits' records ("bf16", "off", ...)."""
    if isinstance(node, dict):
        found = {node["autocast"]} if isinstance(node.get("autocast"), str) and "wall_s" in node else set()
        return found.union(*(_autocasts(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_autocasts(v) for v in node))
    return set()


def _torch_threads() -> int | None:
    """Intra-op threads: CPU weights depend on the count (docs/scaling.md), so a rerun must use the same."""
    import sys

    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def write(report: dict[str, Any], d: Design, out: Path, records: list[dict[str, Any]], plots: bool | None) -> list[Path]:
    """Write reproduce.json, results.md and the figures into `out`; returns the paths written."""
    from pytest_psa._storage import atomic_write_bytes, atomic_write_json, json_safe
    from pytest_psa.reproduce.figures import write_figures
    from pytest_psa.reproduce.page import page

    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(report, records, out / "figures", required=bool(plots)) if plots is not False else []
    report["figures"] = [str(p.relative_to(out)) for p in figures]
    atomic_write_json(out / "reproduce.json", json_safe(report))
    atomic_write_bytes(out / "results.md", page(report, d).encode("utf-8"))
    return [out / "reproduce.json", out / "results.md", *figures]


def main_text(report: dict[str, Any]) -> str:
    """The terminal form: every table, then the summary."""
    from pytest_psa.reproduce.render import summary, tables, terminal

    d = Design(**{**report["design"], "seeds": tuple(report["design"]["seeds"]), "arms": tuple(report["design"]["arms"]),
                  "attacks": tuple(report["design"]["attacks"]),
                  "flatness_keys": tuple(report["design"]["flatness_keys"]),
                  "domain_held_out": None if report["design"].get("domain_held_out") is None
                  else tuple(report["design"]["domain_held_out"]),
                  "corruptions": report["design"]["corruptions"] if isinstance(report["design"]["corruptions"], str)
                  else tuple(report["design"]["corruptions"])})
    return terminal(tables(report, d)) + "\n\n" + "\n".join(summary(report, d))


__all__ = ["GPU_NOTE", "environment", "main_text", "reproduce", "write"]
