"""Flatness measurements and robustness evaluations as executor units, without Ray: an in-process
executor that claims to be remote ships every unit through pickle (as Ray does), so the audit takes
the remote path (collect every missing entry, submit at once, store on the driver, read back). Its
values must be the local executor's, and a rerun must submit nothing. The Ray twin of these checks,
with units in worker processes, is in test_ray_executor.py (slow tier)."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

import pytest_psa
from pytest_psa import execution
from pytest_psa.execution import LocalExecutor, Outcome, RemoteUnitError, Unit
from pytest_psa.train.models import SmallCNN

TRAIN: dict[str, Any] = dict(seeds=[0, 1], epochs=3, n_train=None, batch_size=32, sanity="warn")
FLAT: dict[str, Any] = dict(metrics=["eps_sharpness"], n_measure=64,
                            measure_options={"ascent_steps": 2, "restarts": 1})
ROB: dict[str, Any] = dict(corruptions=["gaussian_noise"], severities=(1,), attacks=["linf:8/255:2"], n_images=100,
                           n_attack_images=40, perturbations=["translate"], n_perturbation_images=20,
                           perturbation_frames=3, resolution=32)


class PickledExecutor(LocalExecutor):
    """Runs each unit here after a pickle round trip of the unit and of its value: a remote executor
    in everything but the process (what crosses must pickle; the driver keeps nothing of the unit)."""

    name = "pickled"
    remote = True
    cpus_per_unit = 1

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[str] = []

    def run(self, units: Sequence[Unit], *, desc: str = "psa units", progress: bool = True) -> list[Outcome]:
        self.labels += [u.label for u in units]
        shipped = [pickle.loads(pickle.dumps(u)) for u in units]
        outcomes = super().run(shipped, desc=desc, progress=progress)
        return [Outcome(u, value=pickle.loads(pickle.dumps(o.value)), error=o.error, worker=o.worker)
                for u, o in zip(units, outcomes)]


@pytest.fixture
def pickled() -> Iterator[PickledExecutor]:
    ex = PickledExecutor()
    previous = execution.use(ex)
    try:
        yield ex
    finally:
        execution.use(previous)


def local_then_copy_models(audit: Any, aug: Any, data: str, local: Path, remote: Path, **kw: Any) -> Any:
    """The local audit, then its trained models copied to `remote`: the remote run trains nothing and
    evaluates everything."""
    previous = execution.use(LocalExecutor())
    try:
        result = audit(aug, data=data, cache_dir=local, **kw)
    finally:
        execution.use(previous)
    shutil.copytree(local / "models", remote / "models", dirs_exist_ok=True)
    return result


def stored_workers(folder: Path) -> list[dict[str, Any]]:
    """Where each stored entry in `folder` was computed (None: in the driver, by a local run)."""
    out = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path, allow_pickle=False) as z:
            import json

            out.append(json.loads(str(z["meta"]))["material"].get("executor"))
    return out


def test_a_flatness_audit_measures_as_units_with_local_values_and_a_rerun_submits_nothing(
        pickled: PickledExecutor, sanity_levels: str, tmp_path: Path) -> None:
    aug = v2.RandomHorizontalFlip()
    local = local_then_copy_models(pytest_psa.flatness, aug, sanity_levels, tmp_path / "l", tmp_path / "r",
                                   **TRAIN, **FLAT)
    remote = pytest_psa.flatness(aug, data=sanity_levels, cache_dir=tmp_path / "r", **TRAIN, **FLAT)
    assert pickled.submitted == 4 and all(lb.startswith("flatness eps_sharpness seed ") for lb in pickled.labels)
    workers = stored_workers(tmp_path / "r" / "flatness")
    assert len(workers) == 4 and all(w["executor"] == "pickled" for w in workers)
    for mine, theirs in ((remote.erm_reports, local.erm_reports), (remote.augmented_reports, local.augmented_reports)):
        assert [r.results["eps_sharpness"].to_dict() | {"seconds": 0} for r in mine] == \
               [r.results["eps_sharpness"].to_dict() | {"seconds": 0} for r in theirs]
        assert all(r.cached == {"eps_sharpness": False} for r in mine)  # computed by this run, if not in this process
    assert remote.metrics["eps_sharpness"].to_dict() == local.metrics["eps_sharpness"].to_dict()

    again = pytest_psa.flatness(aug, data=sanity_levels, cache_dir=tmp_path / "r", **TRAIN, **FLAT)
    assert pickled.submitted == 4 and all(r.cached == {"eps_sharpness": True} for r in again.erm_reports)
    assert again.metrics["eps_sharpness"].to_dict() == remote.metrics["eps_sharpness"].to_dict()


def test_a_robustness_audit_evaluates_as_units_with_local_values_and_a_rerun_submits_nothing(
        pickled: PickledExecutor, sanity_levels: str, tmp_path: Path) -> None:
    aug = v2.RandomHorizontalFlip()
    local = local_then_copy_models(pytest_psa.robustness, aug, sanity_levels, tmp_path / "l", tmp_path / "r",
                                   **TRAIN, **ROB)
    remote = pytest_psa.robustness(aug, data=sanity_levels, cache_dir=tmp_path / "r", **TRAIN, **ROB)
    assert pickled.submitted == 12  # 4 models x (corruptions, perturbations, one attack), submitted together
    assert len(stored_workers(tmp_path / "r" / "robustness")) == 12
    assert (remote.samples.clean == local.samples.clean).all()
    assert (remote.samples.flips == local.samples.flips).all()
    assert (remote.samples.corruption == local.samples.corruption).all()
    assert all((remote.samples.adversarial[k] == v).all() for k, v in local.samples.adversarial.items())
    assert remote.metrics()["mce"].estimate == local.metrics()["mce"].estimate
    assert all(v == "miss" for k, v in remote.cache.items() if not k.endswith("model"))

    again = pytest_psa.robustness(aug, data=sanity_levels, cache_dir=tmp_path / "r", **TRAIN, **ROB)
    assert pickled.submitted == 12 and all(v == "hit" for v in again.cache.values())
    assert again.metrics()["mce"].estimate == remote.metrics()["mce"].estimate


class WrongShape(SmallCNN):
    """Returns (N, 1, classes): the evaluation refuses it, in the unit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)[:, None]


def test_a_failed_unit_names_its_model_and_the_good_units_are_stored_first(
        pickled: PickledExecutor, sanity_levels: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    good, bad = SmallCNN(10, 3, widths=(8, 16, 16, 32)).eval(), WrongShape(10, 3, widths=(8, 16, 16, 32)).eval()
    kw: dict[str, Any] = dict(data=sanity_levels, corruptions=["gaussian_noise"], severities=(1,), attacks=None,
                              n_images=50, resolution=32, cache_dir=tmp_path)
    with pytest.raises(RemoteUnitError, match=r"WrongShape \(baseline\) corruptions \(plan [0-9a-f]{16}\) failed on "
                                              r"its worker: PsaUsageError: the model must return logits"):
        pytest_psa.robustness(good, baseline=bad, **kw)
    assert pickled.submitted == 2
    again = pytest_psa.robustness(good, **kw)
    assert pickled.submitted == 2 and again.cache == {"SmallCNN corruptions": "hit"}  # stored before the raise
