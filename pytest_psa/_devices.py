"""Which device a psa measurement runs on: ``--psa-device``, one GPU per pytest-xdist worker, GPU skips.

- ``cpu`` and ``cuda:N`` are taken as given (an explicit pin is the user's decision).
- ``auto`` and ``cuda`` on a machine with G visible CUDA devices give xdist worker ``gwK`` the
  device ``cuda:(K mod G)``, and make it that process's current device, so code that says
  ``.cuda()`` lands on the same GPU. Without xdist: the current CUDA device.
- ``auto`` without CUDA means "let the preset choose" (CPU for smoke; the GPU presets fail fast).
- ``cuda`` without CUDA, a ``device="cuda"`` marker, or the `psa_gpu` fixture skip the test with
  the reason, or fail it under ``--psa-require-gpu`` (a skipped GPU test must not look green).

Torch is imported only inside the functions that ask CUDA, never at import.
"""

from __future__ import annotations

import os
import sys
from typing import TypeGuard

import pytest

WORKER_ENV = "PYTEST_XDIST_WORKER"  # "gw0", "gw1", ... set by pytest-xdist in each worker
GPU_GROUP = "psa-gpu"  # the xdist_group name given to GPU tests under --dist loadgroup


def worker_index() -> int | None:
    """This process's pytest-xdist worker number (gw3 -> 3), or None outside xdist."""
    name = os.environ.get(WORKER_ENV, "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else None


def cuda_device_count() -> int:
    """How many CUDA devices this process can use (0 without CUDA; imports torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def assign(setting: str, n_gpus: int, worker: int | None, current: int = 0) -> str | None:
    """The device for `setting` given `n_gpus` visible devices: a pure function of its arguments.

    Returns "cpu", "cuda:N", or None ("auto" without CUDA: the preset decides). Raises
    `GpuUnavailable` when the setting needs a GPU that is not there.
    """
    if setting == "cpu":
        return "cpu"
    if setting.startswith("cuda:"):
        index = int(setting[5:])
        if index >= n_gpus:
            raise GpuUnavailable(f"--psa-device={setting}", n_gpus)
        return setting
    if n_gpus == 0:
        if setting == "cuda":
            raise GpuUnavailable("--psa-device=cuda", 0)
        return None
    return f"cuda:{worker % n_gpus if worker is not None else current}"


def measurement_device(setting: str) -> str | None:
    """The device this process's psa measurements use for `setting` (see the module docstring)."""
    if setting == "cpu":
        return "cpu"  # no torch import, no CUDA initialization
    import torch

    n = cuda_device_count()
    worker = worker_index()
    device = assign(setting, n, worker, torch.cuda.current_device() if n else 0)
    if device is not None and setting in ("auto", "cuda") and worker is not None:
        torch.cuda.set_device(torch.device(device))  # this worker's GPU, also for plain .cuda()
    return device


class GpuUnavailable(Exception):
    """A test needs a CUDA device that this process does not have (turned into a skip or a failure)."""

    def __init__(self, wanted: str, n_gpus: int) -> None:
        self.wanted, self.n_gpus = wanted, n_gpus
        super().__init__(f"{wanted} needs a CUDA device, and {_visible(n_gpus)}")


def _visible(n_gpus: int) -> str:
    if n_gpus:
        return f"only {n_gpus} CUDA device(s) are visible"
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch.version, "cuda", None) is None:
        return f"this torch {torch.__version__} is a CPU-only build"
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "torch.cuda.is_available() is False" + (f" (CUDA_VISIBLE_DEVICES={hidden!r})" if hidden is not None else "")


def skip_or_fail(why: str, *, require_gpu: bool) -> None:
    """Skip the running test because `why` (a missing GPU); fail it instead under --psa-require-gpu."""
    __tracebackhide__ = True
    if require_gpu:
        pytest.fail(f"psa: {why}.\n  --psa-require-gpu turns this skip into a failure, so that a GPU test "
                    "never looks green on a machine without a GPU.\n  fix: run on a machine with a CUDA GPU "
                    "and a CUDA build of torch, or drop --psa-require-gpu to skip instead", pytrace=False)
    pytest.skip(f"psa: {why} (--psa-require-gpu makes this a failure)")


def require_gpu(wanted: str, device: str, *, require_gpu: bool) -> None:
    """Skip or fail (see `skip_or_fail`) unless this process has `device` ("cuda": any CUDA device)."""
    __tracebackhide__ = True
    index = int(device[5:]) if device.startswith("cuda:") else None
    n = cuda_device_count()
    if n == 0 or (index is not None and index >= n):
        skip_or_fail(f"{wanted} needs {'a CUDA device' if index is None else f'cuda:{index}'}, and {_visible(n)}",
                     require_gpu=require_gpu)


def marker_device(item: pytest.Item) -> str | None:
    """The closest psa marker's ``device=`` argument, if any."""
    for mark in item.iter_markers("psa"):
        if "device" in mark.kwargs:
            return str(mark.kwargs["device"])
    return None


def needs_gpu(device: str | None) -> TypeGuard[str]:
    return device is not None and (device == "cuda" or device.startswith("cuda:"))


def group_gpu_tests(config: pytest.Config, items: list[pytest.Item]) -> list[pytest.Item]:
    """Give tests marked ``psa(device="cuda")`` the ``xdist_group("psa-gpu")`` mark under --dist loadgroup.

    Returns the GPU tests. Tests that already name an xdist_group keep theirs. Other dist modes
    ignore groups, and the mode is never changed behind the user's back: the controller says in
    the summary where the GPU tests actually ran (see `gpu_summary_line`).
    """
    gpu = [item for item in items if needs_gpu(marker_device(item))]
    if gpu and config.getoption("loadgroup", False):
        for item in gpu:
            if item.get_closest_marker("xdist_group") is None:
                item.add_marker(pytest.mark.xdist_group(GPU_GROUP))
    return gpu


def gpu_summary_line(n_gpu_tests: int, dist: str, workers: list[str]) -> str:
    """One line for the controller's summary: where the GPU tests ran, as observed from their reports."""
    where = f"{len(workers)} worker(s) ({', '.join(workers)})"
    if dist == "loadgroup" and len(workers) == 1:
        return f"psa: {n_gpu_tests} GPU test(s) ran in xdist_group '{GPU_GROUP}' (--dist loadgroup): all on {workers[0]}"
    if dist == "loadgroup":
        return (f"psa: {n_gpu_tests} GPU test(s) carry xdist_group('{GPU_GROUP}') but ran on {where}: this "
                f"pytest-xdist did not keep the group on one worker (known with pytest >= 9.2: pytest-xdist#1386), "
                f"so GPU tests may have shared a GPU at the same time")
    return (f"psa: {n_gpu_tests} GPU test(s) ran under --dist {dist} on {where}, in parallel (worker gwK uses "
            f"cuda:K mod #GPUs); --dist loadgroup keeps them on one worker, one at a time")


def header_note(setting: str) -> str:
    """'compute=cpu (deterministic)' or the like for the report header, without importing torch.

    With torch already imported (a conftest that imports it) the CUDA count is exact; otherwise
    the visible NVIDIA devices are counted from the driver's /proc entries (Linux) and the
    note says so, because the header is printed before any test could load torch.
    """
    if setting == "cpu":
        return "compute=cpu (deterministic: bitwise on CPU)"
    n: int | None
    if "torch" in sys.modules:
        n, how = cuda_device_count(), ""
    else:
        n, how = _driver_gpu_count(), " visible to the driver"
    if n is None:
        return f"compute={setting} (resolved when a psa test first runs)"
    if n == 0:
        if setting == "auto":
            return "compute=cpu, no CUDA device (deterministic: bitwise on CPU)"
        return f"compute={setting}, but no CUDA device{how}: GPU tests skip (fail with --psa-require-gpu)"
    per_worker = ", one per xdist worker" if n > 1 else ""
    return f"compute=cuda, {n} device(s){how}{per_worker} (not bitwise deterministic: cuDNN autotuning)"


def _driver_gpu_count() -> int | None:
    """NVIDIA GPUs the driver lists, limited by CUDA_VISIBLE_DEVICES; None where that cannot be told."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    root = "/proc/driver/nvidia/gpus"
    if not sys.platform.startswith("linux"):
        return None
    if os.path.exists("/dev/kfd"):
        return None  # ROCm: torch's "cuda" devices are AMD GPUs, not listed under /proc/driver/nvidia
    try:
        n = len(os.listdir(root))
    except OSError:
        return 0
    if visible is not None:
        n = min(n, len([v for v in visible.split(",") if v.strip()]))
    return n

