"""The Ray executor against a real local Ray cluster (2 CPUs): an audit's trainings run in Ray worker
processes, land in the driver's cache bit-identical to a local run, a warm rerun submits nothing, a
lost worker is retried, and a failed unit comes back naming its plan with the remote traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason='the ray executor needs Ray: pip install "pytest-psa[ray]"')
# a Ray cluster takes 15-25 s to start on 2 cores: the whole module is in the full tier (CI runs it);
# the seam itself is checked without Ray in test_executor_seam.py
pytestmark = pytest.mark.slow

import torch  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

import pytest_psa  # noqa: E402
from pytest_psa import execution  # noqa: E402
from pytest_psa.execution import RemoteUnitError, Unit, probes, runtime_versions  # noqa: E402
from pytest_psa.execution.ray_executor import RayExecutor  # noqa: E402

# a small robustness audit of one augmentation vs ERM, two seeds, on the grey-level set (tests/conftest.py)
AUDIT: dict[str, Any] = dict(seeds=[0, 1], corruptions=["gaussian_noise"], severities=(1,), attacks=None,
                             n_images=100, resolution=32, epochs=3, n_train=None, batch_size=32)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def executor(cluster: None) -> Iterator[RayExecutor]:
    ex = RayExecutor()
    previous = execution.use(ex)
    try:
        yield ex
    finally:
        execution.use(previous)


def _weights(cache: Path) -> dict[str, str]:
    """key -> SHA-256 of the stored weights, for every model in the cache."""
    return {p.stem: json.loads(p.read_text())["weights"]["sha256"] for p in (cache / "models").glob("*.json")}


def _trainings(cache: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (cache / "models" / "trainings.jsonl").read_text().splitlines()]


def test_an_audit_trains_in_ray_workers_bit_identical_to_local_and_a_rerun_submits_nothing(
        executor: RayExecutor, sanity_levels: str, tmp_path: Path) -> None:
    aug = v2.RandomHorizontalFlip()
    local_cache, ray_cache = tmp_path / "local", tmp_path / "ray"
    assert torch.get_num_threads() == executor.cpus_per_unit == 1  # conftest: both runs plan one thread
    previous = execution.use(execution.LocalExecutor())
    try:
        local = pytest_psa.robustness(aug, data=sanity_levels, cache_dir=local_cache, **AUDIT)
    finally:
        execution.use(previous)

    remote = pytest_psa.robustness(aug, data=sanity_levels, cache_dir=ray_cache, **AUDIT)
    # 2 roles x 2 seeds trained together, then their 4 corruption evaluations together
    assert executor.submitted == 4 + 4
    runs = _trainings(ray_cache)
    assert len(runs) == 4 and {r["executor"] for r in runs} == {"ray"}
    assert all(r["remote_pid"] != os.getpid() and r["pid"] == os.getpid() for r in runs)  # trained elsewhere
    assert len(_weights(ray_cache)) == 4 and _weights(ray_cache) == _weights(local_cache)  # same keys, same bytes
    assert remote.metrics()["mce"].estimate == local.metrics()["mce"].estimate
    assert remote.metrics()["clean_error"].estimate == local.metrics()["clean_error"].estimate
    assert (remote.samples.clean == local.samples.clean).all()

    again = pytest_psa.robustness(aug, data=sanity_levels, cache_dir=ray_cache, **AUDIT)
    assert executor.submitted == 8 and len(_trainings(ray_cache)) == 4  # warm cache: nothing submitted
    assert all(v == "hit" for v in again.cache.values())
    assert again.metrics()["mce"].estimate == remote.metrics()["mce"].estimate


def test_flatness_and_robustness_evaluations_run_as_ray_units_with_local_values(
        executor: RayExecutor, sanity_levels: str, tmp_path: Path) -> None:
    """The models trained locally (one thread) and copied: the Ray run only measures and evaluates,
    each model's unit in a Ray worker; every value equals the local executor's; a rerun submits nothing."""
    from test_evaluation_units import FLAT, ROB, TRAIN, local_then_copy_models, stored_workers

    aug = v2.RandomHorizontalFlip()
    flat_local = local_then_copy_models(pytest_psa.flatness, aug, sanity_levels, tmp_path / "l", tmp_path / "r",
                                        **TRAIN, **FLAT)
    flat = pytest_psa.flatness(aug, data=sanity_levels, cache_dir=tmp_path / "r", **TRAIN, **FLAT)
    assert executor.submitted == 4  # 2 roles x 2 seeds, one eps_sharpness unit each, no training
    workers = stored_workers(tmp_path / "r" / "flatness")
    assert len(workers) == 4 and all(w["executor"] == "ray" and w["pid"] != os.getpid() for w in workers)
    assert flat.metrics["eps_sharpness"].to_dict() == flat_local.metrics["eps_sharpness"].to_dict()

    rob_local = local_then_copy_models(pytest_psa.robustness, aug, sanity_levels, tmp_path / "l", tmp_path / "r",
                                       **TRAIN, **ROB)
    rob = pytest_psa.robustness(aug, data=sanity_levels, cache_dir=tmp_path / "r", **TRAIN, **ROB)
    assert executor.submitted == 4 + 12  # 4 models x (corruptions, perturbations, one attack)
    workers = stored_workers(tmp_path / "r" / "robustness")
    assert len(workers) == 12 and all(w["executor"] == "ray" and w["pid"] != os.getpid() for w in workers)
    assert (rob.samples.corruption == rob_local.samples.corruption).all()
    assert all((rob.samples.adversarial[k] == v).all() for k, v in rob_local.samples.adversarial.items())
    assert rob.metrics()["mce"].estimate == rob_local.metrics()["mce"].estimate

    pytest_psa.flatness(aug, data=sanity_levels, cache_dir=tmp_path / "r", **TRAIN, **FLAT)
    again = pytest_psa.robustness(aug, data=sanity_levels, cache_dir=tmp_path / "r", **TRAIN, **ROB)
    assert executor.submitted == 16 and all(v == "hit" for v in again.cache.values())  # warm: nothing submitted


def test_a_worker_lost_mid_unit_is_retried(cluster: None, tmp_path: Path) -> None:
    marker = tmp_path / "crashed.pid"
    [outcome] = RayExecutor(max_retries=1).run([Unit("k" * 64, "crash once", probes.crash_once, str(marker))])
    value = outcome.result()
    assert marker.exists() and value["crashed_pid"] != value["pid"]  # the first worker died; a second finished
    assert outcome.worker["executor"] == "ray" and outcome.worker["pid"] == value["pid"] != os.getpid()

    marker2 = tmp_path / "again.pid"
    [lost] = RayExecutor(max_retries=0).run([Unit("c" * 64, "crash, no retry", probes.crash_once, str(marker2))])
    assert isinstance(lost.error, RemoteUnitError) and "worker was lost 1 time(s)" in str(lost.error)


def test_a_failed_unit_names_its_plan_and_carries_the_remote_traceback(cluster: None) -> None:
    units = [Unit("a" * 64, "fails", probes.fail, "boom in the worker"), Unit("b" * 64, "fine", probes.where, 7)]
    failed, fine = RayExecutor().run(units)
    assert fine.result()["plan"] == 7  # one unit failing does not lose the others
    message = str(failed.error)
    assert isinstance(failed.error, RemoteUnitError)
    assert "fails (plan aaaaaaaaaaaaaaaa) failed on its worker: ValueError: boom in the worker" in message
    assert "remote traceback:" in message and 'raise ValueError(message)' in message and "probes.py" in message
    with pytest.raises(RemoteUnitError, match="boom in the worker"):
        failed.result()


def test_version_skew_between_driver_and_worker_is_refused(cluster: None) -> None:
    driver = {**runtime_versions(), "torch": "0.0.1-driver"}
    [outcome] = RayExecutor(expected_versions=driver).run([Unit("d" * 64, "skewed", probes.where, None)])
    message = str(outcome.error)
    assert "version skew" in message and "skewed (plan dddddddddddddddd)" in message
    assert f"torch: driver 0.0.1-driver, worker {runtime_versions()['torch']}" in message


def test_a_remote_failure_reaches_the_pytest_report_with_the_plan(cluster: None, pytester: pytest.Pytester,
                                                                   sanity_levels: str) -> None:
    """--psa-executor=ray: an augmentation defined in a test file cannot be imported by the Ray workers
    (they do not have the file), so its training fails there; the test fails with the plan and the fix."""
    pytester.makepyfile(test_remote=f"""
        import torch
        import pytest_psa

        class Darken:
            def __call__(self, x):
                return x * 0.9

        def test_audit():
            pytest_psa.robustness(Darken(), data={sanity_levels!r}, seeds=[0], corruptions=None, attacks=None,
                                  n_images=50, epochs=1, n_train=None, batch_size=32, sanity="warn")
    """)
    result = pytester.runpytest_inprocess("--psa-executor=ray", "-p", "no:cacheprovider",
                                          f"--psa-cache-dir={pytester.path / 'cache'}")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "RemoteUnitError" in text and "could not start on its Ray worker" in text
    assert "small_cnn + <test_remote.Darken object" in text and "[smoke] (plan " in text
    assert "No module named 'test_remote'" in text and "\x1b[" not in text  # Ray's colour codes stripped
    assert execution.current_executor().name != "ray"  # the inline run left this process's executor alone
