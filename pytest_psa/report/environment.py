"""What a stored run records about where its numbers came from: the comparability key (which
runs may be compared at all), machine info and git commit info. Stdlib only; never raises for a
missing git."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def comparability_key(device_kind: str, deterministic: bool) -> dict[str, Any]:
    """Fields that must agree for two runs' numbers to be compared (docs/baselines.md, "Keying").

    PyTorch does not promise equal results across releases, platforms or CPU vs GPU, and
    deterministic mode changes kernels. Versions are public ones: ``2.14.1+cpu`` -> ``2.14.1``.
    """
    def public(v: str | None) -> str | None:
        return None if v is None else v.split("+")[0]

    return {"os": platform.system(), "arch": platform.machine(), "torch": public(_version("torch")),
            "torchvision": public(_version("torchvision")), "device": device_kind,
            "deterministic": bool(deterministic)}


def key_id(key: Mapping[str, Any]) -> str:
    """The folder name of a key, e.g. ``Linux-x86_64-torch2.14.1-tv0.29.1-cpu-nondet``."""
    raw = (f"{key.get('os')}-{key.get('arch')}-torch{key.get('torch')}-tv{key.get('torchvision')}-"
           f"{key.get('device')}-{'det' if key.get('deterministic') else 'nondet'}")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", raw)


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; else what platform reports)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(key: Mapping[str, Any], device_name: str | None = None) -> dict[str, Any]:
    """Where the numbers were measured: platform, Python, CPU, library versions, device, determinism."""
    return {
        "platform": platform.platform(), "system": platform.system(), "machine": platform.machine(),
        "python": platform.python_version(), "python_implementation": platform.python_implementation(),
        "cpu": cpu_name(), "cpu_count": os.cpu_count(),
        "torch": _version("torch"), "torchvision": _version("torchvision"), "numpy": _version("numpy"),
        "scipy": _version("scipy"), "pytest": _version("pytest"), "pytest_psa": _version("pytest-psa"),
        "device": key.get("device"), "device_name": device_name, "deterministic": key.get("deterministic"),
    }


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit_info(root: Path | str) -> dict[str, Any]:
    """Git commit, branch, dirty flag and commit time; all None outside git (never raises).

    Falls back to GitHub Actions' ``GITHUB_SHA``/``GITHUB_REF_NAME`` when git is not usable.
    """
    root = Path(root)
    rev = _git(root, "rev-parse", "HEAD")
    if rev is None:
        sha = os.environ.get("GITHUB_SHA")
        return {"id": sha, "branch": os.environ.get("GITHUB_REF_NAME"), "dirty": None, "time": None,
                "source": "environment" if sha else "none"}
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"id": rev, "branch": None if branch in (None, "HEAD") else branch,
            "dirty": None if status is None else bool(status), "time": _git(root, "log", "-1", "--format=%cI"),
            "source": "git"}


def autosave_name(commit: Mapping[str, Any]) -> str:
    """``<commit8>`` or ``<commit8>-dirty`` (``unversioned`` outside git); the number in front keeps
    file names unique and the time is inside the file, so every xdist worker derives the same name."""
    rev = commit.get("id")
    return (rev[:8] + ("-dirty" if commit.get("dirty") else "")) if rev else "unversioned"
