"""`psa reproduce` at the CI size: real (tiny) trainings and audits on the synthetic set, then checks that
the tables, the claim table and the correlations are produced and agree with the numbers behind them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import pytest_psa
from pytest_psa.errors import PsaUsageError
from pytest_psa.reproduce.analysis import AGREES, DISAGREES, INCONCLUSIVE, NOT_RUN, paper_claims, verdict
from pytest_psa.reproduce.design import TINY, design


# The fast tier runs the pipeline end to end on two arms (an augmentation and a regime: 6 trainings);
# the whole tiny design (5 arms, 12 trainings, correlations across arms, the domain row) is slow and
# reads the same model cache, so in a full run the small run's models are hits for it.
SMALL_ARMS = ("randaugment", "fgsm_at")  # RandAugment has paper claims; TrivialAugment has none


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    repro_cache = tmp_path_factory.mktemp("reproduce-cache")
    out = tmp_path_factory.mktemp("reproduce-small-out")
    cold = pytest_psa.reproduce(tiny=True, arms=list(SMALL_ARMS), cache_dir=repro_cache, out=out, quiet=True)
    warm = pytest_psa.reproduce(tiny=True, arms=list(SMALL_ARMS), cache_dir=repro_cache, quiet=True)
    return {"cold": cold, "warm": warm, "out": out, "cache": repro_cache}


@pytest.fixture(scope="module")
def runs(small: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # `small` first in any order or selection (its cold run must find the cache empty); its models are hits here
    repro_cache = small["cache"]
    out = tmp_path_factory.mktemp("reproduce-out")
    cold = pytest_psa.reproduce(tiny=True, cache_dir=repro_cache, out=out, quiet=True)
    warm = pytest_psa.reproduce(tiny=True, cache_dir=repro_cache, quiet=True)
    return {"cold": cold, "warm": warm, "out": out, "cache": repro_cache}


def test_two_arms_end_to_end_rows_page_claims_and_a_warm_rerun(small: dict[str, Any]) -> None:
    """The fast counterpart of the slow tests below: every arm and pair has its row, the page and the
    tables are written, each claim's verdict follows its interval, and a warm rerun trains nothing."""
    from pytest_psa.reproduce.main import main_text

    r = small["cold"]
    d = design(tiny=True, arms=list(SMALL_ARMS))
    assert list(r["raw"]["arms"]) == list(d.arms) == ["erm", *SMALL_ARMS]
    assert list(r["raw"]["pairs"]) == [f"{s} vs {b}" for s, b in d.pairs()] == [f"{a} vs erm" for a in SMALL_ARMS]
    for key, arm in r["raw"]["arms"].items():
        f = arm["density"]["tool"]["ecdf"]
        assert f and all(0 <= e["low"] <= e["estimate"] <= e["high"] <= 1 for e in f), key
    for name, pair in r["raw"]["pairs"].items():
        assert set(pair["flatness"]) == set(d.flatness_keys), name
        assert "delta_mce" in pair["robustness"]["metrics"], name
    assert list(r["analysis"]["per_arm"]) == ["randaugment"]  # regimes are not in the per-arm table
    text = main_text(r)
    for title in ("Table 1:", "Table 2:", "Table 3:", "Claim table", "Wall time per stage"):  # Table 8: AT + AugMix
        assert title in text, title
    saved = json.loads((small["out"] / "reproduce.json").read_text())
    assert saved["analysis"]["claims"] == json.loads(json.dumps(r["analysis"]["claims"]))
    page = (small["out"] / "results.md").read_text()
    assert "pytest_psa.reproduce(tiny=True" in page and "| claim | source | gain [interval] | verdict |" in page
    # the precision the models trained in is on the page: it depends on the CPU (bf16 autocast where native)
    from pytest_psa.train.plan import cpu_has_native_bf16

    env = r["environment"]
    assert env["cpu_native_bf16"] == cpu_has_native_bf16()
    assert env["training_autocast"] == (["bf16"] if cpu_has_native_bf16() else ["off"])
    assert f"training autocast: {env['training_autocast'][0]} (" in page
    claims = r["analysis"]["claims"]
    assert [c["id"] for c in claims] == [c.id for c in paper_claims("linf,1/255")]
    ran = [c for c in claims if c["verdict"] != NOT_RUN]
    assert {"randaugment>erm:mce", "randaugment>erm:pgd", "randaugment>erm:lpf(bisla)"} <= {c["id"] for c in ran}
    # a claim not run says why: an arm left out, or (its domain rows) no multi-domain set audited
    reasons = {c["id"]: c["reason"] for c in claims if c["verdict"] == NOT_RUN}
    assert reasons["augmix>erm:mce"] == "an arm of the claim was left out (--arms)"
    assert reasons["augmix>erm:domain"] == "needs a multi-domain set (--domains)"
    assert "needs a multi-domain set (--domains)" in text and "an arm of the claim was left out" in text
    for c in ran:
        low, high = c["low"], c["high"]
        if low is None or high is None:
            assert c["verdict"] == INCONCLUSIVE
            continue
        assert low <= c["estimate"] <= high, c["id"]
        expected = (INCONCLUSIVE if low <= 0 <= high else
                    AGREES if (low > 0) == c["better"] else DISAGREES)
        assert c["verdict"] == expected, c
    c = next(c for c in claims if c["id"] == "randaugment>erm:mce")  # the audit's paired delta, sign flipped
    delta = r["raw"]["pairs"]["randaugment vs erm"]["robustness"]["metrics"]["delta_mce"]
    assert (c["estimate"], c["low"], c["high"]) == (-delta["estimate"], -delta["high"], -delta["low"])
    assert r["raw"]["timings"]["trained"] == 3 * len(d.seeds)
    assert small["warm"]["raw"]["timings"]["trained"] == 0
    assert small["warm"]["analysis"]["claims"] == claims


@pytest.mark.slow
def test_every_arm_and_pair_has_a_row(runs: dict[str, Any]) -> None:
    r = runs["cold"]
    d = design(tiny=True)
    assert list(r["raw"]["arms"]) == list(d.arms) == ["erm", *TINY["arms"]]
    assert list(r["raw"]["pairs"]) == [f"{s} vs {b}" for s, b in d.pairs()]
    assert "fgsm_at+augmix vs fgsm_at" in r["raw"]["pairs"]  # Table 8's own baseline
    for key, arm in r["raw"]["arms"].items():
        f = arm["density"]["tool"]["ecdf"]
        assert f and all(0 <= e["low"] <= e["estimate"] <= e["high"] <= 1 for e in f), key
    for name, pair in r["raw"]["pairs"].items():
        assert set(pair["flatness"]) == set(d.flatness_keys), name
        assert "delta_mce" in pair["robustness"]["metrics"], name
    per_arm = r["analysis"]["per_arm"]
    assert sorted(per_arm) == sorted(a for a in TINY["arms"] if not a.startswith("fgsm_at"))
    for row in per_arm.values():
        assert 0 < row["affinity"] <= 2 and row["diversity"] > 0


@pytest.mark.slow
def test_the_tables_and_the_page_are_written(runs: dict[str, Any]) -> None:
    from pytest_psa.reproduce.main import main_text

    text = main_text(runs["cold"])
    for title in ("Table 1:", "Table 2:", "Table 3:", "Table 7:", "Table 8 (flatness)", "Table 8 (robustness)",
                  "Claim table", "Correlation: each predictor vs robustness", "Wall time per stage"):
        assert title in text, title
    assert "paper: 50" in text and "0.0993" in text  # AugMix's Table 1 value, in a row marked as the paper's
    out: Path = runs["out"]
    saved = json.loads((out / "reproduce.json").read_text())
    assert saved["analysis"]["claims"] == json.loads(json.dumps(runs["cold"]["analysis"]["claims"]))
    page = (out / "results.md").read_text()
    assert "pytest_psa.reproduce(tiny=True" in page and "## What the tool found" in page
    assert "| claim | source | gain [interval] | verdict |" in page
    # the tiny design trains 5 of the 13 arms: the page names what it left out
    assert "**Not the whole experiment:**" in page and "PixMix (IFS fractals)" in page
    assert f"torch intra-op threads: {torch.get_num_threads()}" in page
    # the training cost comes from each model's record, so a warm rerun still shows it
    augmix = runs["cold"]["raw"]["pairs"]["augmix vs erm"]["training"]
    assert len(augmix["epochs"]["subject"]) == len(TINY["seeds"]) and all(w > 0 for w in augmix["wall_s"]["subject"])
    assert runs["warm"]["raw"]["pairs"]["augmix vs erm"]["training"]["wall_s"] == augmix["wall_s"]
    row = next(line for line in page.splitlines() if line.startswith("| epochs trained (seed mean)"))
    mean = sum(augmix["epochs"]["subject"]) / len(augmix["epochs"]["subject"])
    assert f"{mean:.1f}" in row.split("|")[3], row


@pytest.mark.slow
def test_claim_verdicts_follow_their_intervals(runs: dict[str, Any]) -> None:
    claims = runs["cold"]["analysis"]["claims"]
    assert [c["id"] for c in claims] == [c.id for c in paper_claims("linf,1/255")]
    ran = [c for c in claims if c["verdict"] != NOT_RUN]
    assert len(ran) >= 10
    for c in ran:
        low, high = c["low"], c["high"]
        if low is None or high is None:
            assert c["verdict"] == INCONCLUSIVE
            continue
        assert low <= c["estimate"] <= high, c["id"]
        expected = (INCONCLUSIVE if low <= 0 <= high else
                    AGREES if (low > 0) == c["better"] else DISAGREES)
        assert c["verdict"] == expected, c
    # a robustness claim's gain is the audit's paired delta, sign flipped (> 0 = lower error)
    c = next(c for c in claims if c["id"] == "augmix>erm:mce")
    delta = runs["cold"]["raw"]["pairs"]["augmix vs erm"]["robustness"]["metrics"]["delta_mce"]
    assert (c["estimate"], c["low"], c["high"]) == (-delta["estimate"], -delta["high"], -delta["low"])


@pytest.mark.slow
def test_rho_recomputed_from_the_per_arm_table(runs: dict[str, Any]) -> None:
    an = runs["cold"]["analysis"]
    rows = an["correlations"]
    assert {r["family"] for r in rows} == {"robustness", "flatness"}
    checked = 0
    for r in rows:
        if r["rho"] is None:
            continue
        x = [an["per_arm"][k][r["predictor"]] for k in r["arms"]]
        y = [an["per_arm"][k][r["outcome"]] for k in r["arms"]]
        assert r["rho"] == pytest.approx(float(spearmanr(x, y).statistic), abs=1e-12), r
        assert r["low"] <= r["high"] and -1 <= r["low"] and r["high"] <= 1
        checked += 1
    assert checked >= 5
    claim = next(c for c in an["claims"] if c["id"] == "rho:density-mce")
    corr = next(r for r in rows if r["claim"] == "rho:density-mce")
    assert claim["estimate"] == corr["rho"]


@pytest.mark.slow
def test_a_warm_rerun_trains_nothing_and_gives_the_same_numbers(runs: dict[str, Any]) -> None:
    assert runs["cold"]["raw"]["timings"]["trained"] > 0
    assert runs["warm"]["raw"]["timings"]["trained"] == 0
    assert runs["warm"]["analysis"]["claims"] == runs["cold"]["analysis"]["claims"]
    assert runs["warm"]["analysis"]["per_arm"] == runs["cold"]["analysis"]["per_arm"]


def test_the_scale_that_would_decide_is_named_only_within_reach() -> None:
    """An inconclusive claim names the size that would decide it if the estimate held; an effect of ~0
    against a wide interval (every model near 100 % PGD error) once printed ≈ 4e36 test images."""
    from pytest_psa.reproduce.analysis import MAX_SCALE_UP, would_decide

    d = design(tiny=True)
    claim = {"quantity": "mce", "estimate": 0.01, "low": -0.01, "high": 0.03, "unit": "error fraction"}
    n = d.n_images
    assert would_decide(claim, {}, d) == (f"≈ {4 * n} test images per model (now {n}), if the seed spread does "
                                          "not dominate")  # half-width 0.02 over 0.01: 4x the images
    tiny = {**claim, "quantity": "pgd", "estimate": 1e-20, "low": -0.004, "high": 0.004}
    text = would_decide(tiny, {}, d)
    assert text.startswith(f"more than {MAX_SCALE_UP}x the test images per model (now {d.n_attack_images})"), text
    assert "e+" not in text and "tiny against its interval" in text


def test_a_rho_on_or_outside_its_interval_is_marked_and_explained() -> None:
    """The CIFAR-10 page had rho +0.350 [+0.350, +0.582] and -0.818 [-0.735, +0.248]: a step function
    of ranks under resampling. Such rows carry a dagger and the table says what it means."""
    from pytest_psa.reproduce.render import claims_table, correlation_table, on_edge

    def row(rho: float, low: float, high: float) -> dict:
        return {"predictor": "p", "outcome": "o", "n_arms": 10, "rho": rho, "low": low, "high": high,
                "family": "robustness"}

    rows = [row(0.35, 0.35, 0.582), row(-0.818, -0.735, 0.248), row(0.7, 0.5, 0.8)]
    assert [on_edge(r) for r in rows] == [True, True, False]
    t = correlation_table(rows, "robustness")
    assert [cells[-1].endswith(" †") for cells in t.rows] == [True, True, False]
    assert any(n.startswith("†: 2 of 3 rows have rho on or outside its interval") for n in t.notes)
    plain = correlation_table([rows[2]], "robustness")
    assert not any("†" in n for n in plain.notes)  # no note when no row needs it
    claim = {"text": "c", "source": "s", "estimate": 0.35, "low": 0.35, "high": 0.582, "unit": "rho",
             "verdict": "agrees"}
    assert claims_table([claim]).rows[0][2].endswith(" †")


def test_verdict_rule() -> None:
    assert verdict(True, 0.01, 0.2) == AGREES and verdict(False, 0.01, 0.2) == DISAGREES
    assert verdict(True, -0.2, -0.01) == DISAGREES and verdict(False, -0.2, -0.01) == AGREES
    assert verdict(True, -0.1, 0.1) == INCONCLUSIVE and verdict(True, None, None) == INCONCLUSIVE
    assert verdict(True, -math.inf, 0.3) == INCONCLUSIVE


def test_unknown_arm_and_one_seed_are_usage_errors() -> None:
    with pytest.raises(PsaUsageError, match="unknown arm 'automix'") as e:
        design(arms=["automix"])
    assert "augmix" in str(e.value)
    with pytest.raises(PsaUsageError, match="at least two training seeds"):
        design(seeds=[0])


def test_affinity_of_the_identity_is_one_and_diversity_is_a_paired_ratio() -> None:
    from pytest_psa.augment.adapters import as_augmentation
    from pytest_psa.measure.affinity import affinity, diversity

    data = pytest_psa.load_data("synthetic-clean", split="test", n=60, seed=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    est, per_seed = affinity([model], as_augmentation(None), data)
    assert per_seed == [1.0] and est.estimate == 1.0  # same images, same predictions
    noisy = pytest_psa.tensor_augmentation(lambda x: (x + 0.5 * torch.randn_like(x)).clamp(0, 1))
    est, _ = affinity([model], noisy, data)
    assert est.low is not None and est.high is not None and est.low <= est.estimate <= est.high
    dv, per = diversity([0.4, 0.6], [0.2, 0.3])
    assert per == pytest.approx([2.0, 2.0]) and dv.estimate == pytest.approx(2.0)
    assert dv.low == pytest.approx(2.0) and dv.high == pytest.approx(2.0)  # no spread across seeds
    dv, _ = diversity([0.4, 0.9], [0.2, 0.3])
    assert dv.low is not None and dv.high is not None and dv.low < np.sqrt(2 * 3) < dv.high


@pytest.mark.slow
def test_the_domain_shift_row(runs: dict[str, Any]) -> None:
    """Table 3's PACS / OfficeHome row on the procedural multi-domain set: one arm vs ERM, sketch held
    out (four classes at 16 px, as tests/domain); the arm's other audits come from the module's cache."""
    r = pytest_psa.reproduce(tiny=True, arms=["augmix"], cache_dir=runs["cache"], quiet=True, plots=False,
                             domains="synthetic-domains", domain_held_out=["sketch"], domain_per_domain=300,
                             domain_size=16, domain_classes=4, domain_overrides={"epochs": 10, "batch_size": 32})
    run = r["raw"]["domains"]["augmix"]
    assert run["held_out"] == ["sketch"] and set(run["per_domain"]) == {"sketch"}
    a = run["averages"]
    for name, m in a.items():
        assert m["low"] <= m["estimate"] <= m["high"], name
    # one held-out domain: its average is that domain's numbers
    assert a["accuracy_heldout"]["estimate"] == pytest.approx(run["per_domain"]["sketch"]["accuracy_heldout"]["estimate"])
    # ERM is measurably worse on the style it never saw than on its own styles' held-in images
    assert a["erm_accuracy_indomain"]["estimate"] > a["erm_accuracy_heldout"]["estimate"]
    claim = next(c for c in r["analysis"]["claims"] if c["id"] == "augmix>erm:domain")
    assert claim["estimate"] == pytest.approx(a["delta_accuracy_heldout"]["estimate"])
    assert claim["verdict"] == verdict(True, claim["low"], claim["high"])
    title = "Table 3 (domain shift)"
    from pytest_psa.reproduce.main import main_text

    text = main_text(r)
    assert title in text
    assert "82.1" in text and "PACS 79.8" in text  # the paper's PACS numbers (AugMix, ERM), marked as the paper's
    # the CIFAR-10 design runs no domain audit: its claim rows say "not run"
    cold = next(c for c in runs["cold"]["analysis"]["claims"] if c["id"] == "augmix>erm:domain")
    assert cold["verdict"] == NOT_RUN and cold["reason"] == "needs a multi-domain set (--domains)"
