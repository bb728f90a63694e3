"""The executor seam without Ray: units as values, the local executor, choosing an executor."""

from __future__ import annotations

import os

import pytest

from pytest_psa import execution
from pytest_psa.errors import PsaError, PsaUsageError
from pytest_psa.execution import LocalExecutor, RemoteUnitError, Unit, probes


def test_the_local_executor_runs_units_here_in_order_and_returns_errors_as_values() -> None:
    ex = LocalExecutor()
    units = [Unit("1" * 64, "first", probes.where, "a"), Unit("2" * 64, "broken", probes.fail, "no"),
             Unit("3" * 64, "third", probes.where, "c")]
    first, broken, third = ex.run(units)
    assert ex.submitted == 3 and [first.result()["plan"], third.result()["plan"]] == ["a", "c"]
    assert first.worker == {"pid": os.getpid(), "host": first.worker["host"], "executor": "local"}
    assert isinstance(broken.error, RemoteUnitError) and isinstance(broken.error, PsaError) and not broken.ok
    assert "broken (plan 2222222222222222) failed on its worker: ValueError: no" in str(broken.error)
    assert "probes.py" in str(broken.error)  # the traceback travels as text


def test_version_skew_is_checked_before_the_unit_runs(tmp_path) -> None:
    marker = tmp_path / "ran"
    raw = execution.execute(Unit("4" * 64, "skewed", probes.crash_once, str(marker)),
                            {**execution.runtime_versions(), "pytest_psa": "0.0.0-elsewhere"}, "test")
    out = execution.outcome_from(Unit("4" * 64, "skewed", probes.crash_once, str(marker)), raw)
    assert not marker.exists()  # refused before running (crash_once would have killed this process)
    assert "version skew" in str(out.error) and "pytest_psa: driver 0.0.0-elsewhere" in str(out.error)


def test_choosing_an_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = execution.use(None)
    try:
        monkeypatch.delenv("PSA_EXECUTOR", raising=False)
        assert execution.current_executor().name == "local"
        with pytest.raises(PsaUsageError, match="unknown executor 'spark'") as info:
            execution.configure("spark")
        assert "use one of local, ray" in str(info.value)
        monkeypatch.setenv("PSA_EXECUTOR", "LOCAL")
        assert execution.configure().name == "local" and not execution.is_remote(execution.current_executor())
    finally:
        execution.use(previous)


def test_the_executor_option_is_validated(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--psa-executor=spark")
    assert result.ret != 0 and "unknown executor 'spark'" in result.stderr.str()


def test_ray_without_an_address_is_refused_in_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker would start its own cluster claiming every core; the fix names the shared one."""
    ray = pytest.importorskip("ray", reason='the ray executor needs Ray: pip install "pytest-psa[ray]"')
    from pytest_psa.execution.ray_executor import RayExecutor

    if ray.is_initialized():
        pytest.skip("this process is already connected to a Ray cluster (no new one would be started)")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    with pytest.raises(PsaUsageError, match="needs a shared cluster") as info:
        RayExecutor().run([Unit("5" * 64, "any", probes.where, None)])
    assert "--psa-ray-address=auto" in str(info.value)
