"""Attack accounting and metric names (issue 12, findings 6 and 7).

- A fooling image that re-verification classifies correctly counts as NOT robust, and the result
  says how many there were.
- AutoAttack's APGD-CE configuration is available by name ("autoattack-apgd-ce": 100 steps, 1
  restart) in `run_attack`, in spec strings and in the psa marker, and results name it.
- The CE ratio is "mce_ratio"; Hendrycks & Dietterich's relative mCE (clean error subtracted on both
  sides) is "hd_relative_mce"; the old "rel_mce" is a deprecated alias of the ratio.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from pytest_psa import PSAViolation, PsaUsageError, PsaWarning
from pytest_psa._settings import marker_problems
from pytest_psa._specs.attacks import parse_attack, resolve_attacks
from pytest_psa.measure.robustness import error_stats as M
from pytest_psa.measure.robustness.attacks import harness, run_attack
from pytest_psa.measure.robustness.attacks.apgd import checkpoint_windows
from pytest_psa.results.robustness import RobustnessResult, Samples
from pytest_psa.results.robustness_budgets import evaluate_budgets


# -- finding 6: fooling images that re-verification disagrees on ---------------------------------
def _net(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                        nn.Linear(128, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net.eval()


def _labelled(model: nn.Module, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand((n, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return x, model(x).argmax(1)


class _FlipsBack:
    """An oracle whose re-verification pass classifies the first `k` fooling images correctly."""

    def __init__(self, oracle: object, labels: torch.Tensor, k: int) -> None:
        self.oracle, self.labels, self.k = oracle, labels, k

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        out = self.oracle.raw(x).clone()  # type: ignore[attr-defined]
        for j in range(min(self.k, len(x))):
            out[j] = -10.0
            out[j, self.labels[j]] = 10.0
        return out


def test_fooling_images_that_flip_back_on_reverification_count_as_not_robust(monkeypatch) -> None:
    """Two fooling images come back correct on the separate forward pass (within the allowance of
    max(2, 1 %), so the run passes): they fooled the attack's own pass, so they are not robust.
    Robust accuracy equals the run without re-verification; before the fix it was 2/64 higher."""
    model = _net()
    x, y = _labelled(model)
    unchecked = run_attack(model, x, y, eps=8 / 255, steps=5, check=False)
    assert (unchecked.clean_correct & ~unchecked.robust_correct).sum() >= 4  # enough fooled images

    original = harness._reverify
    seen = {}

    def reverify(oracle, x_adv, labels, fooled, stats):  # type: ignore[no-untyped-def]
        where = fooled.nonzero().squeeze(1)
        seen["fooled"] = int(len(where))
        return original(_FlipsBack(oracle, labels[where], 2), x_adv, labels, fooled, stats)

    monkeypatch.setattr(harness, "_reverify", reverify)
    checked = run_attack(model, x, y, eps=8 / 255, steps=5, check=True)
    assert seen["fooled"] >= 4
    assert checked.reverify_mismatches == 2
    assert np.array_equal(checked.robust_correct, unchecked.robust_correct)
    assert checked.robust_accuracy == unchecked.robust_accuracy
    detail = next(c.detail for c in checked.checks if c.name == "fooling images re-verified")
    assert "2 near-boundary disagreements counted as not robust" in detail
    assert "counted as not robust" in checked.summary()
    assert checked.to_dict()["reverify_mismatches"] == 2


def test_more_disagreements_than_the_allowance_still_fail_the_run(monkeypatch) -> None:
    from pytest_psa.measure.robustness.attacks import AttackSelfCheckError

    model = _net()
    x, y = _labelled(model)
    original = harness._reverify

    def reverify(oracle, x_adv, labels, fooled, stats):  # type: ignore[no-untyped-def]
        where = fooled.nonzero().squeeze(1)
        return original(_FlipsBack(oracle, labels[where], 3), x_adv, labels, fooled, stats)

    monkeypatch.setattr(harness, "_reverify", reverify)
    with pytest.raises(AttackSelfCheckError, match="did not fool the model when evaluated again"):
        run_attack(model, x, y, eps=8 / 255, steps=5)


# -- finding 6: AutoAttack's APGD-CE configuration by name -----------------------------------------
def test_autoattack_configuration_resolves_to_100_steps_and_is_named_in_the_result() -> None:
    model = _net()
    x, y = _labelled(model, 32)
    res = run_attack(model, x, y, eps=1 / 255, config="autoattack-apgd-ce")
    s = res.settings
    assert (s.method, s.steps, s.restarts, s.config) == ("apgd-ce", 100, 1, "autoattack-apgd-ce")
    assert s.step_size == pytest.approx(2 / 255)  # AutoAttack's initial step 2ε
    assert checkpoint_windows(s.steps) == (22, 3, 6)  # AutoAttack's checkpoints at N = 100
    assert res.config == "autoattack-apgd-ce" and res.to_dict()["config"] == "autoattack-apgd-ce"
    assert res.to_dict()["settings"]["config"] == "autoattack-apgd-ce"
    assert "APGD-CE-100" in res.summary() and "autoattack-apgd-ce" in res.summary()
    # the same attack as APGD-CE with those settings given one by one, which is labelled as custom
    same = run_attack(model, x, y, eps=1 / 255, method="apgd-ce", steps=100)
    assert np.array_equal(res.robust_correct, same.robust_correct) and same.config == ""


def test_autoattack_configuration_in_specs_labels_and_the_marker() -> None:
    p = parse_attack("linf:8/255:autoattack-apgd-ce")
    assert p == {"norm": "linf", "eps": pytest.approx(8 / 255), "steps": 100, "method": "apgd-ce", "restarts": 1,
                 "config": "autoattack-apgd-ce"}
    assert parse_attack({"norm": "l2", "eps": 0.5, "config": "autoattack-apgd-ce"})["steps"] == 100
    specs = resolve_attacks(["linf:8/255:20", "linf:8/255:autoattack-apgd-ce"])
    # the configuration is part of the label, so of the metric name: never compared with PGD-20's
    assert [sp.label for sp in specs] == ["linf,8/255", "linf,8/255,autoattack-apgd-ce"]
    assert specs[1].settings["config"] == "autoattack-apgd-ce" and "autoattack-apgd-ce" in specs[1].describe()
    assert "config" not in specs[0].settings
    assert marker_problems((), {"attacks": ["linf:8/255:autoattack-apgd-ce"]}) == []
    assert marker_problems((), {"attacks": [{"norm": "linf", "config": "autoattack-apgd-ce"}]}) == []
    problems = marker_problems((), {"attacks": ["linf:8/255:autoattack"]})
    assert problems and "ensemble" in problems[0] and "autoattack-apgd-ce" in problems[0]
    with pytest.raises(PsaUsageError, match="fixes steps=100"):
        parse_attack({"norm": "linf", "config": "autoattack-apgd-ce", "steps": 20})
    with pytest.raises(PsaUsageError, match="fixes the step size"):
        run_attack(_net(), *_labelled(_net(), 4), config="autoattack-apgd-ce", step_size=0.01)


# -- finding 7: the CE ratio and H&D's relative mCE ------------------------------------------------
# errors[c, s, i]: 2 corruptions x 2 severities x 4 images; clean[i]
CLEAN = np.array([1, 0, 0, 0], float)                                   # E_clean = 0.25
ERRORS = np.array([[[1, 1, 0, 0], [1, 1, 1, 0]],                        # c0: 0.50, 0.75
                   [[1, 0, 0, 0], [1, 1, 1, 0]]], float)                # c1: 0.25, 0.75
BASE_CLEAN = np.array([1, 1, 0, 0], float)                              # E_clean = 0.50
BASE = np.array([[[1, 1, 1, 0], [1, 1, 1, 1]],                          # c0: 0.75, 1.00
                 [[1, 1, 0, 0], [1, 1, 1, 0]]], float)                  # c1: 0.50, 0.75


def test_hd_relative_mce_by_hand_differs_from_the_ratio() -> None:
    # ratio: c0 (0.5 + 0.75) / (0.75 + 1.0) = 5/7, c1 (0.25 + 0.75) / (0.5 + 0.75) = 0.8
    _, ratio, _ = M.relative_corruption_errors(ERRORS, BASE, 0.05)
    assert ratio.estimate == pytest.approx((5 / 7 + 0.8) / 2)  # 0.757
    # H&D: c0 (1.25 - 2 * 0.25) / (1.75 - 2 * 0.5) = 1.0, c1 (1.0 - 0.5) / (1.25 - 1.0) = 2.0
    per, hd, dropped = M.hd_relative_corruption_errors(ERRORS, CLEAN, BASE, BASE_CLEAN, 0.05)
    assert [e.estimate for e in per] == pytest.approx([1.0, 2.0]) and dropped == []
    assert hd.estimate == pytest.approx(1.5)
    assert hd.method == "delta" and hd.low <= hd.estimate <= hd.high


def test_hd_relative_ce_can_be_negative_and_is_undefined_when_the_baseline_does_not_degrade() -> None:
    better = ERRORS.copy()
    better[0] = 0.0  # c0: no error at all under corruption, below the clean error 0.25
    per, _, _ = M.hd_relative_corruption_errors(better, CLEAN, BASE, BASE_CLEAN, 0.05)
    assert per[0].estimate == pytest.approx((0 - 0.5) / 0.75) and per[0].low < per[0].estimate  # not clipped at 0
    flat = BASE.copy()
    flat[1] = BASE_CLEAN  # c1: the baseline's corrupted error equals its clean error
    per, mean, dropped = M.hd_relative_corruption_errors(ERRORS, CLEAN, flat, BASE_CLEAN, 0.05)
    assert dropped == [1] and np.isnan(per[1].estimate) and mean.estimate == pytest.approx(1.0)


def test_hd_interval_width_agrees_with_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(0)
    n = 1500
    clean, base_clean = (rng.random(n) < 0.2).astype(float), (rng.random(n) < 0.25).astype(float)
    err = np.maximum(clean[None, None], rng.random((3, 5, n)) < 0.35).astype(float)
    base = np.maximum(base_clean[None, None], rng.random((3, 5, n)) < 0.45).astype(float)
    _, hd, _ = M.hd_relative_corruption_errors(err, clean, base, base_clean, 0.05)
    boots = []
    for _ in range(400):
        i = rng.integers(0, n, n)
        boots.append(M.hd_relative_corruption_errors(err[..., i], clean[i], base[..., i], base_clean[i], 0.05)[1].estimate)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    assert (hd.high - hd.low) == pytest.approx(hi - lo, rel=0.2)


def _result() -> RobustnessResult:
    def samples(clean: np.ndarray, errors: np.ndarray) -> Samples:
        return Samples(clean=np.tile(clean, 10), corruption=np.tile(errors, 10), flips=np.zeros((0, 0)),
                       adversarial={})

    return RobustnessResult(
        subject="toy", kind="augmentation", baseline="erm", corruptions=("gaussian_noise", "contrast"),
        severities=(1, 3), perturbations=(), attacks=(), samples=samples(CLEAN, ERRORS),
        baseline_samples=samples(BASE_CLEAN, BASE), data={"describe": "toy"}, n_images=40, n_attack_images=0,
        n_perturbation_images=0, seed=0, seeds=(0,), preset="smoke", device="cpu", settings={}, attack_runs={},
        per_seed={}, training={}, cache={}, timing={})


def test_result_reports_both_under_their_own_names_only() -> None:
    r = _result()
    m = r.metrics()
    assert m["mce_ratio"].estimate == pytest.approx((5 / 7 + 0.8) / 2)
    assert m["hd_relative_mce"].estimate == pytest.approx(1.5)
    assert "rel_mce" not in m and "rel_mce" not in r.to_dict()["metrics"]
    assert {"mce_ratio", "hd_relative_mce"} <= set(r.to_dict()["metrics"])
    assert [e.estimate for e in r.hd_relative_corruption_errors().values()] == pytest.approx([1.0, 2.0])
    text = r.table()
    assert "CE ratio" in text and "H&D rel. CE" in text and "rel. CE [" not in text.replace("H&D rel. CE [", "")
    with pytest.warns(PsaWarning, match="'mce_ratio'"):
        assert r["rel_mce"] is not None


def test_rel_mce_in_a_budget_warns_and_maps_to_the_ratio() -> None:
    r = _result()
    with pytest.warns(PsaWarning, match=r"'rel_mce' is deprecated: write 'mce_ratio'.*Hendrycks & Dietterich"):
        verdicts = evaluate_budgets(r, {"vs_erm": {"rel_mce": 10.0}}, 1e-3)
    assert [(v.name, v.metric) for v in verdicts] == [("vs_erm[mce_ratio]", "mce_ratio")]
    assert verdicts[0].estimate == pytest.approx((5 / 7 + 0.8) / 2)  # the ratio, not H&D's 1.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names do not warn
        names = [v.metric for v in evaluate_budgets(r, {"vs_erm": {"mce_ratio": "x10", "hd_relative_mce": "x10"}}, 1e-3)]
        assert names == ["mce_ratio", "hd_relative_mce"]
        assert [v.metric for v in evaluate_budgets(r, {"vs_erm": "x10"}, 1e-3)] == ["mce_ratio"]  # one ratio: mce_ratio
    with pytest.warns(PsaWarning), pytest.raises(PsaUsageError, match="same budget"):
        evaluate_budgets(r, {"vs_erm": {"rel_mce": 1.0, "mce_ratio": 1.0}}, 1e-3)
    with pytest.warns(PsaWarning), pytest.raises(PSAViolation, match=r"vs_erm\[mce_ratio\]"):
        r.assert_budget(vs_erm={"rel_mce": 0.01})


def test_marker_validation_takes_the_new_names_and_the_old_alias() -> None:
    for vs in ({"mce_ratio": 0.95}, {"hd_relative_mce": 0.9}, {"rel_mce": 0.95}, 0.95):
        assert marker_problems((), {"vs_erm": vs}) == [], vs
    (problem,) = marker_problems((), {"vs_erm": {"relative_mce": 0.9}})
    assert "mce_ratio" in problem and "hd_relative_mce" in problem and "rel_mce," not in problem
    assert marker_problems((), {"vs_erm": {"hd_relative_mce": 0.0}})  # a ratio ceiling must be > 0
