"""measure_flatness as a tool: model state untouched, data forms, seeds, report, errors, HVP."""

from __future__ import annotations

import json
import random
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flatness_cases import DTYPE, Quadratic, dummy_data, mean_output
from torch import nn

from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.flatness import METRICS, FlatnessReport, measure_flatness

FAST = dict(n_samples=4, power_iters=3, trace_samples=2, ascent_steps=2, restarts=1)


def small_bn_cnn() -> nn.Module:
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(6, 3),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial running stats, as after training
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.num_batches_tracked.fill_(7)
    return net


def image_data(n: int = 24) -> types.SimpleNamespace:
    g = torch.Generator().manual_seed(1)
    return types.SimpleNamespace(images=torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8),
                                 labels=torch.randint(0, 3, (n,), generator=g))


def test_model_state_is_restored_exactly() -> None:
    net = small_bn_cnn()
    net.train()
    net[1].eval()  # a mixed-mode model: each module's own flag comes back
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.25)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.grad for p in net.parameters()]
    torch_rng, np_rng, py_rng = torch.get_rng_state(), np.random.get_state(), random.getstate()
    rep = measure_flatness(net, image_data(), seed=0, chunk_size=10, scale_invariant=True, **FAST)
    assert set(rep.results) == set(METRICS)
    assert [m.training for m in net.modules()] == [not isinstance(m, nn.BatchNorm2d) or m is not net[1] for m in net.modules()]
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k  # parameters and BN running stats, bit for bit
    assert all(p.grad is g for p, g in zip(net.parameters(), grads))
    assert torch.equal(torch.get_rng_state(), torch_rng)  # global RNGs untouched
    assert np.array_equal(np.random.get_state()[1], np_rng[1]) and random.getstate() == py_rng


def test_eval_mode_is_used() -> None:
    # dropout off and BN on running stats: L0 equals an eval-mode forward pass
    net, data = small_bn_cnn(), image_data()
    rep = measure_flatness(net, data, metrics="lpf", seed=0, n_samples=2)
    net.eval()
    with torch.no_grad():
        out = net(data.images.float() / 255)
    assert rep.loss0 == pytest.approx(float(F.cross_entropy(out, data.labels)), rel=1e-6)
    assert rep.accuracy == pytest.approx(float((out.argmax(1) == data.labels).float().mean()))


def test_data_forms_agree_and_max_images() -> None:
    net, data = small_bn_cnn(), image_data(24)
    kw = dict(metrics=["lpf", "hessian_trace"], seed=5, n_samples=4, trace_samples=2, max_images=20)
    a = measure_flatness(net, data, **kw)
    b = measure_flatness(net, (data.images.float() / 255, data.labels), **kw)
    batches = [(data.images[i:i + 7], data.labels[i:i + 7]) for i in range(0, 24, 7)]
    c = measure_flatness(net, batches, **kw)
    assert a.n_images == b.n_images == c.n_images == 20
    for r in (b, c):
        assert r["lpf"].value == pytest.approx(a["lpf"].value, rel=1e-6)
        assert r["hessian_trace"].value == pytest.approx(a["hessian_trace"].value, rel=1e-4)


def test_seeded_runs_repeat_and_metrics_are_independent() -> None:
    net, data = small_bn_cnn(), image_data()
    a = measure_flatness(net, data, seed=9, **FAST)
    b = measure_flatness(net, data, metrics=["hessian_trace", "pac_bayes"], seed=9, **FAST)
    assert b["pac_bayes"].value == a["pac_bayes"].value  # a metric's draws do not depend on the others
    assert b["hessian_trace"].value == pytest.approx(a["hessian_trace"].value, rel=1e-6)
    c = measure_flatness(net, data, metrics="lpf", n_samples=4)
    assert isinstance(c.seed, int) and c.seed >= 0  # a fresh seed is drawn and recorded
    d = measure_flatness(net, data, metrics="lpf", n_samples=4, seed=c.seed)
    assert d["lpf"].value == c["lpf"].value


def test_report_serializes() -> None:
    rep = measure_flatness(Quadratic(torch.eye(2, dtype=DTYPE), torch.ones(2, dtype=DTYPE)), dummy_data(),
                           loss=mean_output, seed=0, **FAST)
    assert isinstance(rep, FlatnessReport) and rep.metrics == METRICS and rep.accuracy is None
    text = json.dumps(rep.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["results"]["pac_bayes"]["setup"]["bn_policy"] == "eval"
    assert back["results"]["pac_bayes"]["setup"]["params"] == ["w"]
    assert back["config"]["n_samples"] == 4 and back["seed"] == 0
    assert "pac_bayes" in str(rep) and rep["lpf"].interval() is not None


def test_hvp_matches_autograd_hessian() -> None:
    from torch.func import functional_call

    from pytest_psa.measure.flatness._problem import Problem, select_params, to_chunks
    from pytest_psa.measure.flatness.hvp import HessianOperator

    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(DTYPE)
    x, y = torch.randn(30, 5, generator=g, dtype=DTYPE), torch.randint(0, 3, (30,), generator=g)
    problem = Problem(net, to_chunks((x, y), max_images=None, chunk_size=7, device=torch.device("cpu")),
                      F.cross_entropy, select_params(net, "trainable"))
    H = torch.autograd.functional.hessian(
        lambda w: F.cross_entropy(functional_call(net, problem.unflat(w), (x,)), y), problem.w)
    vs = [torch.randn(problem.n_params, generator=g, dtype=DTYPE) for _ in range(3)]
    s = torch.rand(problem.n_params, generator=g, dtype=DTYPE)
    for cache in (True, False, "auto"):
        op = HessianOperator(problem, cache=cache)
        for v, hv in zip(vs, op.matmat(vs)):
            torch.testing.assert_close(hv, H @ v, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(op.matvec(vs[0], scale=s), s * (H @ (s * vs[0])), rtol=1e-10, atol=1e-12)


# -- errors --------------------------------------------------------------------------------------
def test_unknown_metric_lists_valid_names() -> None:
    with pytest.raises(PsaUsageError, match="unknown metric 'sam'") as info:
        measure_flatness(small_bn_cnn(), image_data(), metrics=["lpf", "sam"])
    assert all(m in str(info.value) for m in METRICS)


@pytest.mark.parametrize(
    ("data", "kw", "match"),
    [
        ((torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.long)), {}, "data is empty"),
        ([], {}, "data is empty"),
        ((torch.zeros(4, 3, 8, 8), torch.zeros(3, dtype=torch.long)), {}, "differ in length"),
        ("images.npz", {}, "unsupported data"),
        (None, {"n_samples": 3}, "even integer"),
        (None, {"lpf_sigmaa": 0.1}, "unknown option 'lpf_sigmaa'"),
        (None, {"params": "biases"}, "unknown params policy"),
        (None, {"params": ["nope.weight"]}, "not found"),
    ],
)
def test_bad_input_is_a_usage_error(data, kw, match) -> None:
    with pytest.raises(PsaUsageError, match=match):
        measure_flatness(small_bn_cnn(), image_data() if data is None else data, metrics="lpf", **kw)


def test_no_trainable_parameters() -> None:
    net = small_bn_cnn().requires_grad_(False)
    with pytest.raises(PsaUsageError, match="no trainable parameters") as info:
        measure_flatness(net, image_data(), metrics="lpf")
    assert "fix:" in str(info.value)


def test_nan_loss() -> None:
    net = small_bn_cnn()
    with torch.no_grad():
        net[-1].bias.fill_(float("nan"))
    with pytest.raises(PsaUsageError, match="not finite"):
        measure_flatness(net, image_data(), metrics="lpf")
    assert net.training  # the mode is restored on the error path too


def test_pac_bayes_without_a_crossing_warns_and_reports_a_bound() -> None:
    from pytest_psa.errors import PsaWarning

    flat = Quadratic(torch.zeros(2, 2, dtype=DTYPE), torch.ones(2, dtype=DTYPE))  # the loss never rises
    with pytest.warns(PsaWarning, match="crosses the target"):
        r = measure_flatness(flat, dummy_data(), metrics="pac_bayes", loss=mean_output, seed=0, n_samples=2)["pac_bayes"]
    assert not r.bracketed and r.sigma == pytest.approx(1e3)


def test_hvp_graph_cache_off_gives_the_same_trace() -> None:
    net, data = small_bn_cnn(), image_data()
    kw = dict(metrics=["hessian_trace", "hessian_top"], seed=4, trace_samples=3, power_iters=3, chunk_size=10)
    a = measure_flatness(net, data, **kw)
    b = measure_flatness(net, data, hvp_cache_bytes=1, **kw)  # "auto" decides not to keep graphs
    assert b["hessian_trace"].value == pytest.approx(a["hessian_trace"].value, rel=1e-5)
    assert b["hessian_top"].value == pytest.approx(a["hessian_top"].value, rel=1e-5)
