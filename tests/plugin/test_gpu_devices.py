"""Devices: per-worker GPU assignment, GPU skips that --psa-require-gpu turns into failures, the header.

There is no GPU here: the assignment logic is tested as a pure function and, for the plugin
paths, with torch.cuda's availability and device count monkeypatched (the plugin's own logic
is under test, not CUDA). The real CUDA paths take a ``torch.device`` and nothing else.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pytest_psa import _devices
from pytest_psa._devices import GpuUnavailable, assign

# the hypothesis plugin alone costs ~1.7 s of CPU per in-process run; these runs do not use it
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")

GPU_SUITE = """
import pytest


@pytest.mark.psa(device="cuda")
def test_marked_gpu():
    pass


def test_gpu_fixture(psa_gpu):
    pass


def test_psa_fixture(psa):
    pass


def test_plain():
    pass
"""


@pytest.mark.parametrize(("setting", "n_gpus", "worker", "expected"), [
    ("cpu", 4, 1, "cpu"),
    ("auto", 0, None, None),  # no CUDA: the preset decides (CPU for smoke)
    ("auto", 0, 3, None),
    ("auto", 1, None, "cuda:0"),
    ("auto", 2, None, "cuda:0"),
    ("cuda", 2, 0, "cuda:0"),
    ("cuda", 2, 1, "cuda:1"),
    ("auto", 2, 5, "cuda:1"),  # gw5 on 2 GPUs
    ("auto", 3, 7, "cuda:1"),
    ("cuda:1", 4, 0, "cuda:1"),  # an explicit pin is kept on every worker
])
def test_assignment_is_worker_index_modulo_device_count(setting: str, n_gpus: int, worker: int | None,
                                                        expected: str | None) -> None:
    assert assign(setting, n_gpus, worker) == expected


@pytest.mark.parametrize(("setting", "n_gpus"), [("cuda", 0), ("cuda:0", 0), ("cuda:2", 2)])
def test_asking_for_a_missing_gpu_raises(setting: str, n_gpus: int) -> None:
    with pytest.raises(GpuUnavailable, match="needs a CUDA device"):
        assign(setting, n_gpus, None)


def fake_gpus(monkeypatch: pytest.MonkeyPatch, n: int) -> list[Any]:
    """Make torch report `n` CUDA devices; returns the devices passed to set_device."""
    chosen: list[Any] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    return chosen


def test_a_worker_takes_its_gpu_and_makes_it_current(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = fake_gpus(monkeypatch, 2)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert _devices.worker_index() == 3
    assert _devices.measurement_device("auto") == "cuda:1"
    assert chosen == [torch.device("cuda:1")]  # plain .cuda() in the test lands there too
    assert _devices.measurement_device("cuda:0") == "cuda:0"  # a pin is not moved
    assert _devices.measurement_device("cpu") == "cpu"
    assert len(chosen) == 1
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert _devices.worker_index() is None
    assert _devices.measurement_device("auto") == "cuda:0"


def test_gpu_tests_skip_with_the_reason_without_a_gpu(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 0)
    pytester.makepyfile(test_gpu=GPU_SUITE)
    result = pytester.runpytest("-rs", *QUIET, "--psa-device=cuda")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines([
        "*psa: test_gpu.py::test_marked_gpu (marker device='cuda') needs a CUDA device, and "
        "torch.cuda.is_available() is False*(--psa-require-gpu makes this a failure)",
        "*psa: test_gpu.py::test_gpu_fixture (psa_gpu fixture) needs a CUDA device*",
        "*psa: --psa-device=cuda needs a CUDA device*",
    ])


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_require_gpu_turns_every_gpu_skip_into_a_failure(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                         how: str) -> None:
    fake_gpus(monkeypatch, 0)
    pytester.makepyfile(test_gpu=GPU_SUITE)
    args = ["--psa-require-gpu"] if how == "flag" else []
    if how == "ini":
        pytester.makeini("[pytest]\npsa_require_gpu = true\n")
    # -rN: no short summary, whose lines are only truncated outside CI and would repeat the message
    result = pytester.runpytest(*QUIET, "-rN", "--psa-device=cuda", *args)
    result.assert_outcomes(passed=1, errors=3)
    out = result.stdout.str()
    assert out.count("--psa-require-gpu turns this skip into a failure, so that a GPU test never looks green") == 3
    assert "fix: run on a machine with a CUDA GPU and a CUDA build of torch, or drop --psa-require-gpu" in out


def test_with_gpus_the_fixtures_hand_out_this_workers_device(pytester: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 2)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    pytester.makepyfile("""
        import pytest
        import torch

        @pytest.mark.psa(device="cuda")
        def test_gpu(psa, psa_gpu):
            assert psa.device == "cuda:1" and psa_gpu == torch.device("cuda:1")

        @pytest.mark.psa(device="cpu")
        def test_marker_pins_cpu(psa):
            assert psa.device == "cpu"
    """)
    result = pytester.runpytest(*QUIET, "--psa-require-gpu")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["psa: seed=0, device=auto, *, compute=cuda, 2 device(s), one per xdist worker "
                                 "(not bitwise deterministic: cuDNN autotuning)"])


def test_header_says_cpu_and_deterministic(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 0)
    pytester.makepyfile("import pytest\n\n@pytest.mark.psa(n_images=10)\ndef test_x():\n    pass\n")
    result = pytester.runpytest(*QUIET)
    result.stdout.fnmatch_lines(["psa: seed=0, device=auto, *, compute=cpu, no CUDA device (deterministic: bitwise "
                                 "on CPU)"])
    result = pytester.runpytest(*QUIET, "--psa-device=cpu")
    result.stdout.fnmatch_lines(["psa: seed=0, device=cpu, *, compute=cpu (deterministic: bitwise on CPU)"])


def test_the_driver_probe_honours_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert _devices._driver_gpu_count() == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert _devices._driver_gpu_count() == 0


@pytest.mark.parametrize(("value", "problem"), [("tpu", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
                                                ("cuda:x", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'")])
def test_bad_marker_devices_fail_their_test(pytester: pytest.Pytester, value: str, problem: str) -> None:
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.psa(device={value!r})
        def test_x():
            pass
    """)
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*device={value!r} {problem}*"])
