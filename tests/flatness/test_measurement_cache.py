"""Cached flatness measurements (pytest_psa/audits/measurement_cache.py) and the evaluation store's healing.

A warm measurement computes nothing (the store's and the module's counters say so), returns the very
values the cold one did and says it was cached; a change of any key field (seed, a metric's setting,
the weights) measures again; a damaged entry (truncated file, arrays that do not match their
checksum) warns and is measured again, in the flatness and the robustness folders alike. Models are
real SmallCNNs on real (synthetic) images; nothing is mocked.
"""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest
import torch

from pytest_psa import PsaWarning
from pytest_psa._timings import collect, reset
from pytest_psa.audits import measurement_cache
from pytest_psa.audits.evaluation_cache import EvaluationStore
from pytest_psa.audits.measurement_cache import KIND, measure_cached
from pytest_psa.data.synthetic import synthetic
from pytest_psa.measure.flatness.measure import COMMON_OPTIONS, DEFAULTS, METRIC_OPTIONS, METRICS, measure_flatness
from pytest_psa.train.models import SmallCNN

FAST = {"n_samples": 2, "ascent_steps": 2, "restarts": 1, "chunk_size": 48}
TRIO = ("pac_bayes", "lpf", "eps_sharpness")


@pytest.fixture(scope="module")
def data():  # 48 real synthetic images: an ImageData with a content fingerprint
    return synthetic("train", 48, seed=3)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return SmallCNN(10, 3, widths=(8, 16, 16, 32)).eval()  # narrow: the cache, not the model, is under test


def _values(report) -> dict:
    return {m: r.to_dict() | {"seconds": None} for m, r in report.results.items()}


def _measure(model, data, store, **kw):
    opts = {**FAST, **kw.pop("options", {})}
    return measure_cached(model, data, metrics=kw.pop("metrics", TRIO), seed=kw.pop("seed", 0), store=store,
                          options=opts, **kw)


def test_every_setting_belongs_to_a_key() -> None:
    """A new option that changes a value must be named in the key, or warm values would be stale."""
    named = set(COMMON_OPTIONS) | {k for opts in METRIC_OPTIONS.values() for k in opts}
    assert set(DEFAULTS) | {"n_samples"} == named
    assert set(METRIC_OPTIONS) == set(METRICS)


def test_a_warm_measurement_computes_nothing_and_returns_the_same_values(tmp_path, data) -> None:
    store, model = EvaluationStore(tmp_path, kind=KIND), _model()
    before = dict(measurement_cache.stats)
    reset()
    cold = _measure(model, data, store, detail="cold")
    assert store.computed == 3 and store.hits == 0 and cold.cached == {m: False for m in TRIO}
    warm_store = EvaluationStore(tmp_path, kind=KIND)  # a fresh process's view of the same folder
    warm = _measure(model, data, warm_store, detail="warm")
    assert warm_store.computed == 0 and warm_store.hits == 3 and warm.cached == {m: True for m in TRIO}
    assert measurement_cache.stats["computed"] - before.get("computed", 0) == 3
    assert measurement_cache.stats["loaded"] - before.get("loaded", 0) == 3
    assert _values(warm) == _values(cold)  # bit for bit: floats round-trip through the entry exactly
    assert (warm.loss0, warm.accuracy, warm.weight_norm) == (cold.loss0, cold.accuracy, cold.weight_norm)
    stages = {s.detail: s for s in collect() if s.name == "flatness"}
    assert not stages["cold"].cached and stages["warm"].cached
    # and the same values as measuring without any cache
    direct = measure_flatness(model, data, metrics=list(TRIO), seed=0, **FAST)
    assert {m: r.value for m, r in direct.results.items()} == {m: r.value for m, r in warm.results.items()}
    assert warm.to_dict()["cached"] == {m: True for m in TRIO}


@pytest.mark.parametrize(("change", "recomputed"), [
    ({"seed": 1}, set(TRIO)),
    ({"options": {"lpf_sigma": 0.02}}, {"lpf"}),
    ({"options": {"target": 0.05}}, {"pac_bayes"}),
    ({"options": {"eps": 1e-3}}, {"eps_sharpness"}),
    ({"options": {"n_samples": 4}}, {"pac_bayes", "lpf"}),
    ({"options": {"max_images": 32}}, set(TRIO)),
    ({"options": {"power_iters": 7}}, set()),  # a Hessian setting does not touch these three
    ({"weights": True}, set(TRIO)),
])
def test_a_changed_key_field_measures_again(tmp_path, data, change, recomputed) -> None:
    model = _model()
    cold = _measure(model, data, EvaluationStore(tmp_path, kind=KIND))
    if change.pop("weights", False):
        with torch.no_grad():
            model.head.bias[0] += 1e-4  # one weight moved a little
    store = EvaluationStore(tmp_path, kind=KIND)
    again = _measure(model, data, store, **change)
    assert {m for m, hit in again.cached.items() if not hit} == recomputed
    assert store.computed == len(recomputed)
    for m in set(TRIO) - recomputed:
        assert again[m].value == cold[m].value


def test_an_audit_measures_a_metric_once_per_model(tmp_path, data) -> None:
    """Asking for more metrics later measures only the new one; the others are read back."""
    model = _model()
    _measure(model, data, EvaluationStore(tmp_path, kind=KIND), metrics=("lpf",))
    store = EvaluationStore(tmp_path, kind=KIND)
    report = _measure(model, data, store, metrics=("lpf", "pac_bayes"))
    assert report.cached == {"lpf": True, "pac_bayes": False} and store.computed == 1
    assert report.metrics == ("lpf", "pac_bayes")


def test_a_callable_setting_is_measured_but_not_stored(tmp_path, data) -> None:
    store = EvaluationStore(tmp_path, kind=KIND)
    opts = {"params": lambda name, p: name.startswith("head")}
    first = _measure(_model(), data, store, metrics=("lpf",), options=opts)
    second = _measure(_model(), data, store, metrics=("lpf",), options=opts)
    assert first.cached == second.cached == {"lpf": False}
    assert not list(store.dir.glob("*.npz")) if store.dir.exists() else True


def _rewrite_entry(path, mutate) -> None:
    """Rewrite a stored npz with one array changed, keeping its meta (and so its recorded checksum)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    mutate(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("damage", ["truncated", "checksum", "garbage"])
def test_a_damaged_flatness_entry_warns_and_is_measured_again(tmp_path, data, damage) -> None:
    model = _model()
    cold = _measure(model, data, EvaluationStore(tmp_path, kind=KIND), metrics=("lpf", "eps_sharpness"))
    entries = sorted((tmp_path / "flatness").glob("*.npz"))
    assert len(entries) == 2
    victim = entries[0]
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:200])
    elif damage == "garbage":
        victim.write_bytes(b"not a zip file at all")
    else:
        def forge(arrays: dict) -> None:  # a valid file whose value was changed after it was written
            doc = json.loads(str(arrays["entry"]))
            doc["result"]["fields"]["value"] = 123.0
            arrays["entry"] = np.array(json.dumps(doc))
        _rewrite_entry(victim, forge)
    store = EvaluationStore(tmp_path, kind=KIND)
    with pytest.warns(PsaWarning, match=r"flatness cache: .*damaged.*computed again"):
        healed = _measure(model, data, store, metrics=("lpf", "eps_sharpness"))
    assert store.healed == 1 and store.computed == 1 and store.hits == 1
    assert _values(healed) == _values(cold)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # healed for good: the next run reads it silently
        assert _measure(model, data, EvaluationStore(tmp_path, kind=KIND),
                        metrics=("lpf", "eps_sharpness")).cached == {"lpf": True, "eps_sharpness": True}


@pytest.mark.parametrize("damage", ["truncated", "checksum"])
def test_a_damaged_robustness_entry_warns_and_is_computed_again(tmp_path, damage) -> None:
    """The robustness evaluations share the store: the same healing (asked for by the robustness owner)."""
    store = EvaluationStore(tmp_path)
    calls: list[list[int]] = []

    def compute(todo: list[int]) -> list[dict[str, np.ndarray]]:
        calls.append(list(todo))
        return [{"pred": np.arange(5, dtype=np.int16) + i} for i in todo]

    entries = [(EvaluationStore.key({"m": i}), {"m": i}) for i in range(2)]
    store.get_or_compute(entries, compute)
    path = store.path(entries[1][0])
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        _rewrite_entry(path, lambda a: a.__setitem__("pred", a["pred"] + 1))
    with pytest.warns(PsaWarning, match=r"robustness cache: .*damaged.*computed again"):
        out, status = EvaluationStore(tmp_path).get_or_compute(entries, compute)
    assert status == ["hit", "miss"] and calls == [[0, 1], [1]]
    assert np.array_equal(out[1]["pred"], np.arange(5) + 1)
    _, status = EvaluationStore(tmp_path).get_or_compute(entries, compute)
    assert status == ["hit", "hit"]
