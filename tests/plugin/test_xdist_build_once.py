"""Under ``pytest -n 2`` a shared baseline is trained once, and every worker's audits reach the controller.

One real xdist run (two worker processes, synthetic data, a one-epoch smoke model): two flatness
tests on different workers need the same ERM model at the same moment (a file barrier lines
them up), plus each trains its own augmented model. The model cache's training log must
hold exactly one training per distinct model, the second request for ERM must have waited on
the lock and loaded the stored model, and the controller must hold all four audits with their
verdicts (summary table included), under one ``--psa-seed=random`` drawn once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("xdist")

SUITE = """
import json, os, time
from pathlib import Path

import pytest
from torchvision.transforms import v2

SYNC = Path(os.environ["G2_SYNC_DIR"])
# one epoch of a small CNN on 256 images, no DataLoader worker processes: a training takes ~1 s
TINY = dict(data="tiny", seeds=[0], metrics=["lpf"], n_measure=64, epochs=1, n_train=256, workers=0,
            train_eval_n=0, measure_options={"n_samples": 4}, sanity="warn")  # at chance: plumbing, no verdict


@pytest.fixture(scope="session", autouse=True)
def both_workers_start_together():
    (SYNC / os.environ["PYTEST_XDIST_WORKER"]).touch()
    deadline = time.time() + 120
    while len(list(SYNC.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.02)


def log(name, psa, **extra):
    line = {"test": name, "worker": os.environ["PYTEST_XDIST_WORKER"], "seed": psa.seed, **extra}
    with open(os.environ["G2_EVENTS"], "a") as f:
        f.write(json.dumps(line) + "\\n")


def flatness(psa, name, aug):
    t0 = time.time()
    result = psa.flatness(aug, **TINY)
    log(name, psa, start=t0, end=time.time(), erm=result.training["erm"][0]["cache"],
        erm_wall_s=result.training["erm"][0]["wall_s"], aug=result.training["augmented"][0]["cache"])


def test_flatness_flip(psa):
    flatness(psa, "test_flatness_flip", v2.RandomHorizontalFlip(p=1.0))


def test_density_invert(psa):
    psa.density(v2.RandomInvert(p=1.0), data="tiny", n_images=40, draws=2)  # measured, not asserted
    log("test_density_invert", psa)


def test_flatness_crop(psa):
    flatness(psa, "test_flatness_crop", v2.RandomCrop(32, padding=4))


def test_density_noise(psa):
    psa.density(v2.GaussianNoise(sigma=0.01), data="tiny", n_images=40, draws=2).assert_psa(gamma=0.2, min_density=0.5, alpha=0.05)
    log("test_density_noise", psa)
"""

CONFTEST = """
import json
from pytest_psa.plugin import SESSION_KEY


def pytest_psa_data_sources():
    from pytest_psa.data.synthetic import synthetic

    # the clean set: the cluttered default leaves one-epoch models' LPF at noise level, so the
    # comparison (this test's plumbing, not its numbers) has no positive ERM value to divide by
    return {"tiny": lambda split: synthetic(split, n=512 if split == "train" else 256, variant="clean")}


def pytest_sessionfinish(session):
    if hasattr(session.config, "workerinput"):
        return
    records = session.config.stash[SESSION_KEY].records
    with open("controller_records.json", "w") as f:
        json.dump([{"nodeid": r.nodeid, "kind": r.kind, "augmentation": r.summary.get("augmentation"),
                    "verdicts": r.verdicts} for r in records], f)
"""


@pytest.mark.slow
def test_two_workers_train_a_shared_model_once_and_report_every_audit(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = pytester.path / "cache"
    sync = pytester.path / "sync"
    sync.mkdir()
    events = pytester.path / "events.jsonl"
    monkeypatch.setenv("PSA_CACHE_DIR", str(cache))  # one cache shared by both workers
    monkeypatch.setenv("G2_SYNC_DIR", str(sync))
    monkeypatch.setenv("G2_EVENTS", str(events))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)

    result = pytester.runpytest_subprocess("-n", "2", "--psa-seed=random", "-p", "no:cacheprovider",
                                           "-p", "no:hypothesispytest")

    result.assert_outcomes(passed=4)
    runs = [json.loads(line) for line in events.read_text().splitlines()]
    flat = {e["test"]: e for e in runs if "erm" in e}
    assert {e["worker"] for e in flat.values()} == {"gw0", "gw1"}, "precondition: one flatness test per worker"

    # 1. build once: one training per distinct model (ERM shared, one per augmentation), across both workers
    from pytest_psa.train.model_cache import ModelCache

    trainings = ModelCache(cache).trainings()
    keys = [t["key"] for t in trainings]
    assert len(keys) == len(set(keys)) == 3, trainings
    assert [t["augmentation"] for t in trainings].count("none") == 1, trainings  # ERM: no augmentation
    assert sorted(e["erm"] for e in flat.values()) == ["hit", "miss"]
    assert [e["aug"] for e in flat.values()] == ["miss", "miss"]
    # the worker that got the hit had asked before the other's ERM training could have finished: it waited
    trained = next(e for e in flat.values() if e["erm"] == "miss")
    waited = next(e for e in flat.values() if e["erm"] == "hit")
    assert waited["start"] < trained["start"] + trained["erm_wall_s"]

    # 2. every worker's audit reached the controller, verdicts included, and the summary shows them
    records = json.loads((pytester.path / "controller_records.json").read_text())
    assert sorted(r["nodeid"].split("::")[-1] for r in records) == sorted(e["test"] for e in runs)
    assert sorted(r["kind"] for r in records) == ["density", "density", "flatness", "flatness"]
    noise = next(r for r in records if r["nodeid"].endswith("test_density_noise"))
    assert [v["outcome"] for v in noise["verdicts"]] == ["pass"]
    out = result.stdout.str()
    summary = out.split("[100%]", 1)[1]  # what the controller printed after the tests ran
    for e in runs:
        assert e["test"] in summary, e["test"]

    # 3. --psa-seed=random is drawn once, on the controller, and every worker measures with it
    header_seed = int(re.search(r"psa: seed=(\d+) \(random\)", out).group(1))
    assert {e["seed"] for e in runs} == {header_seed}


def test_records_and_settings_survive_the_trip_between_processes() -> None:
    import dataclasses
    import math
    from types import SimpleNamespace

    import numpy as np

    from pytest_psa._settings import resolve
    from pytest_psa._xdist import (SETTINGS_KEY, records_from_wire, records_to_wire, settings_for_workers,
                                   settings_from_controller)
    from pytest_psa.fixture import AuditRecord

    summary = {"metrics": {"F(0.05)": {"estimate": np.float64(0.25), "low": -math.inf, "high": math.nan}},
               "curve": np.arange(3, dtype=np.float32), "n": np.int64(7)}
    rec = AuditRecord("t.py::test_x", summary, verdicts=[{"outcome": "pass", "F_high": np.float64(0.3)}],
                      kind="density")
    (back,) = records_from_wire(records_to_wire([rec]))
    metric = back.summary["metrics"]["F(0.05)"]
    assert metric["estimate"] == 0.25 and metric["low"] == -math.inf and math.isnan(metric["high"])
    assert back.summary["curve"] == [0.0, 1.0, 2.0] and back.summary["n"] == 7
    assert (back.nodeid, back.kind, back.verdicts) == ("t.py::test_x", "density", [{"outcome": "pass", "F_high": 0.3}])

    controller = resolve({"seed": "random"}, {})  # drawn once, here
    worker_own = resolve({"seed": "random"}, {})  # what a worker would draw on its own
    worker = SimpleNamespace(workerinput={SETTINGS_KEY: settings_for_workers(controller)})
    assert settings_from_controller(worker, worker_own) == controller  # type: ignore[arg-type]
    assert dataclasses.asdict(settings_from_controller(SimpleNamespace(), worker_own)) == \
        dataclasses.asdict(worker_own)  # type: ignore[arg-type]
