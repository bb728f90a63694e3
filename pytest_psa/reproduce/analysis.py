"""From the raw measurements to the paper's claims: the claim table, the per-arm table and the correlations.

Conventions (each also in the JSON):

- every interval is two-sided at 1 - alpha (flatness: each bound of the audit's test one-sided at
  1 - alpha/2; robustness: the audit's paired intervals; correlations: percentile bootstrap);
- a comparison is oriented as a **gain of the subject over its baseline**, > 0 = the subject is better:
  flatness improvement 1 - exp(-mean log(baseline/subject)), robustness -(subject - baseline) error;
- a claim's verdict: "agrees" when the interval excludes 0 on the claimed side, "disagrees" when it
  excludes 0 on the other side, "inconclusive" when it holds 0. A claim "X is not better than Y"
  agrees only when X is shown worse; "no difference" cannot be shown by an interval, so such rows
  read inconclusive unless the effect goes one way clearly.
- Spearman's rho across the augmentation arms (trained with SGD, excluding ERM itself), computed on
  the per-arm seed means; its interval resamples each arm's training seeds with replacement
  (density is one measurement per arm and stays fixed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np

from pytest_psa.reproduce.design import ARMS, FLATNESS_KEYS, PAPER_GAMMA, TOOL_GAMMA, Design

AGREES, DISAGREES, INCONCLUSIVE, NOT_RUN = "agrees", "disagrees", "inconclusive", "not run"
DOMAIN_QUANTITY = "domain_accuracy(held-out avg)"
REFUSED = "refused (sanity gate)"  # a model of the pair learned nothing: no verdict


@dataclass(frozen=True)
class Claim:
    """One directional claim of the paper: `subject` is better (or not) than `baseline` on `quantity`."""

    id: str
    text: str
    source: str  # where in the paper
    subject: str
    baseline: str
    quantity: str  # a flatness key, "mce", "adv_error(...)" (robustness), or "rho(...)" (a correlation)
    better: bool  # True: the paper says the subject is better; False: not better


def verdict(better: bool, low: float | None, high: float | None) -> str:
    """Agrees / disagrees / inconclusive from an interval of the subject's gain (> 0 = better)."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if low > 0:
        return AGREES if better else DISAGREES
    if high < 0:
        return DISAGREES if better else AGREES
    return INCONCLUSIVE


def _flat_claims(subject: str, name: str, better: bool, source: str, baseline: str = "erm",
                 base_name: str = "ERM") -> list[Claim]:
    word = "flatter" if better else "not flatter"
    return [Claim(f"{subject}>{baseline}:{m}", f"{name} {word} than {base_name} ({m})", source, subject, baseline, m,
                  better) for m in ("pac_bayes(target=loss)", "lpf(bisla)", "eps_sharpness")]


def _robust_claims(subject: str, name: str, better: bool, source: str, baseline: str = "erm",
                   base_name: str = "ERM") -> list[Claim]:
    word = "lower" if better else "not lower"
    return [Claim(f"{subject}>{baseline}:mce", f"{name} {word} mCE than {base_name}", source, subject, baseline,
                  "mce", better)]


def paper_claims(attack: str) -> list[Claim]:
    """The paper's directional claims, with where each comes from; `attack` is the PGD label of §4.4's claim."""
    s43 = "§4.3 / Table 2 (CIFAR-10, 100)"
    s44 = "§4.4 / Table 3 (CIFAR-10)"
    e1 = "Appendix E.1 / Table 7"
    e1at = "Appendix E.1 / Table 8"
    claims: list[Claim] = []
    for key, name in (("augmix", "AugMix"), ("randaugment", "RandAug"), ("pixmix", "PixMix")):
        claims += _flat_claims(key, name, True, s43)
    for key, name in (("deepaugment-standin", "DeepAug (stand-in)"), ("styleaug-standin-randconv", "StyleAug (stand-in)")):
        claims += _flat_claims(key, name, False, s43)
    for key, name in (("augmix", "AugMix"), ("randaugment", "RandAug"), ("pixmix", "PixMix")):
        claims += _robust_claims(key, name, True, s44)
        claims.append(Claim(f"{key}>erm:pgd", f"{name} lower PGD error ({attack}) than ERM", s44 + ", PGD rows", key,
                            "erm", f"adv_error({attack})", True))
    for key, name in (("deepaugment-standin", "DeepAug (stand-in)"), ("styleaug-standin-randconv", "StyleAug (stand-in)")):
        claims += _robust_claims(key, name, False, s44)
    claims += _robust_claims("deepaugment-standin|augmix", "DeepAug + AugMix", True, e1, "deepaugment-standin",
                             "DeepAug")
    claims += _robust_claims("styleaug-standin-randconv|augmix", "StyleAug + AugMix", True, e1,
                             "styleaug-standin-randconv", "StyleAug")
    claims += _robust_claims("deepaugment-standin|augmix", "DeepAug + AugMix", True, e1 + " (DeepAug + StyleAug "
                             "'little extra')", "deepaugment-standin|styleaug-standin-randconv", "DeepAug + StyleAug")
    claims += _robust_claims("fgsm_at+augmix", "AT + AugMix", True, e1at, "fgsm_at", "AT")
    claims += _flat_claims("fgsm_at+augmix", "AT + AugMix", True, e1at, "fgsm_at", "AT")
    claims += _flat_claims("sam", "SAM", True, "Appendix E.2 (flat-minima optimizers)")
    claims += _robust_claims("sam", "SAM", True, "Appendix E.2 (flat-minima optimizers enhance robustness)")
    # Assumption 1 predicts it; the ablation is the tool's, not a paper table
    claims += _flat_claims("augmix", "AugMix", True, "Assumption 1 (§3.2), the tool's ablation", "augmix-without-proximal",
                           "AugMix without proximal")
    claims += _robust_claims("augmix", "AugMix", True, "Assumption 1 (§3.2), the tool's ablation",
                             "augmix-without-proximal", "AugMix without proximal")
    # Table 3's domain-shift rows (PACS: AugMix +2.3, RandAug +3.6, DeepAug -15.4 points over ERM), measured
    # only when the run audits a multi-domain set (`domains=`); "not run" otherwise
    s3d = "§4.4 / Table 3, Domain Shifts rows (PACS, OfficeHome)"
    for key, name, better in (("augmix", "AugMix", True), ("randaugment", "RandAug", True),
                              ("deepaugment-standin", "DeepAug (stand-in)", False)):
        word = "higher" if better else "not higher"
        claims.append(Claim(f"{key}>erm:domain", f"{name} {word} held-out-domain accuracy than ERM", s3d, key, "erm",
                            DOMAIN_QUANTITY, better))
    claims.append(Claim("rho:density-mce", f"denser proximal region, larger mCE gain over ERM (Spearman rho > 0, "
                        f"F(γ={TOOL_GAMMA:g}) on l2)", "§4.4 ('the more densely ..., the larger the boost')", "*", "erm",
                        f"rho(F_l2({TOOL_GAMMA:g}), mce gain)", True))
    return claims


def domain_gain(run: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The held-out-domain accuracy gain over ERM (> 0 = better) of one arm's domain audit, or None."""
    if not run or "averages" not in run:
        return None
    m = run["averages"]["delta_accuracy_heldout"]
    return {"estimate": m["estimate"], "low": m["low"], "high": m["high"], "unit": "accuracy fraction",
            "convention": "subject - ERM held-out accuracy, averaged over held-out domains (leave one domain out)"}


def gain(pair: Mapping[str, Any], quantity: str) -> dict[str, Any] | None:
    """The subject's gain over its baseline on `quantity` (> 0 = better), with its interval, or None."""
    if quantity in FLATNESS_KEYS:
        f = (pair.get("flatness") or {}).get(quantity) or {}
        if "improvement" not in f:
            return None
        return {"estimate": f["improvement"], "low": f["low"], "high": f["high"], "unit": "relative",
                "convention": "flatness improvement 1 - exp(-mean log(baseline/subject)), > 0: flatter"}
    m = ((pair.get("robustness") or {}).get("metrics") or {}).get(f"delta_{quantity}")
    if m is None:
        return None
    neg = lambda v: None if v is None else -float(v)  # noqa: E731
    return {"estimate": neg(m["estimate"]), "low": neg(m["high"]), "high": neg(m["low"]), "unit": "error fraction",
            "convention": f"-(subject - baseline) {quantity}, > 0: lower error (paired over images and seeds)"}


def claim_table(raw: Mapping[str, Any], design: Design, correlations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every paper claim with the tool's measured gain, its interval and the verdict ("not run" when an arm is missing)."""
    rows = []
    attack = _paper_attack(design)
    for c in paper_claims(attack):
        row: dict[str, Any] = {**asdict(c)}
        if c.quantity == DOMAIN_QUANTITY:
            run = (raw.get("domains") or {}).get(c.subject)
            if run is not None and "refused" in run:
                row.update(estimate=None, low=None, high=None, verdict=REFUSED, reason=run["refused"])
                rows.append(row)
                continue
            g = domain_gain(run)
        elif c.quantity.startswith("rho("):
            corr = next((r for r in correlations if r["claim"] == c.id), None)
            g = None if corr is None or corr.get("rho") is None else \
                {"estimate": corr["rho"], "low": corr["low"], "high": corr["high"], "unit": "rho",
                 "convention": "Spearman rho across augmentation arms; percentile bootstrap over seeds"}
        else:
            pair = raw["pairs"].get(f"{c.subject} vs {c.baseline}")
            if pair is not None and "refused" in pair:
                row.update(estimate=None, low=None, high=None, verdict=REFUSED, reason=pair["refused"].splitlines()[0])
                rows.append(row)
                continue
            g = None if pair is None else gain(pair, c.quantity)
        if g is None:
            why = ("needs a multi-domain set (--domains)" if c.quantity == DOMAIN_QUANTITY and not design.domains
                   else "an arm of the claim was left out (--arms)")
            row.update(estimate=None, low=None, high=None, verdict=NOT_RUN, reason=why)
        else:
            row.update(g, verdict=verdict(c.better, g["low"], g["high"]))
            if row["verdict"] == INCONCLUSIVE:
                pair = raw["pairs"].get(f"{c.subject} vs {c.baseline}") or {}
                row["would_decide"] = would_decide(row, pair, design)
        rows.append(row)
    return rows


MAX_SCALE_UP: Final = 100  # would_decide names no image count beyond 100x the run's (it printed 4e36 once)


def would_decide(claim: Mapping[str, Any], pair: Mapping[str, Any], design: Design) -> str:
    """The scale at which an inconclusive claim's interval would exclude 0, if its estimate and spread held."""
    from scipy import special

    k = len(design.seeds)
    est, low, high = claim["estimate"], claim["low"], claim["high"]
    if claim["quantity"] in FLATNESS_KEYS:
        d = np.asarray((pair.get("flatness") or {}).get(claim["quantity"], {}).get("log_ratio") or [], float)
        if d.size < 2 or d.mean() == 0:
            return "no direction measured: no scale can be named"
        s, m = float(d.std(ddof=1)), abs(float(d.mean()))
        for k2 in range(k + 1, 1001):  # the t interval over seeds: t_{k-1} s / sqrt(k) < |mean log ratio|
            if float(special.stdtrit(k2 - 1, 1 - design.alpha / 2)) * s / math.sqrt(k2) < m:
                return f"≈ {k2} training seeds (now {k}), if the per-seed spread held"
        return "more than 1000 training seeds: the effect is small against its spread across seeds"
    if est is None or est == 0 or low is None or high is None:
        return "no direction measured: no scale can be named"
    factor = ((high - low) / 2 / abs(est)) ** 2
    if claim.get("unit") == "rho":
        return f"more augmentation arms or seeds per arm (now {k} seeds); the bootstrap interval narrows slowly"
    if claim["quantity"] == DOMAIN_QUANTITY:
        if factor > MAX_SCALE_UP:
            return (f"more than {MAX_SCALE_UP}x the images per held-out domain: the effect ({100 * est:+.2f} "
                    "points) is tiny against its interval")
        return (f"≈ {max(1.0, factor):.1f}x the images per held-out domain (or more seeds; now {k}), "
                "if the spread held")
    n = design.n_images if claim["quantity"] == "mce" else design.n_attack_images
    if factor > MAX_SCALE_UP:  # e.g. every model at ~100 % PGD error: no practical size decides it
        return (f"more than {MAX_SCALE_UP}x the test images per model (now {n}): the effect "
                f"({100 * est:+.2f} pp) is tiny against its interval")
    return (f"≈ {max(n + 1, math.ceil(factor * n))} test images per model (now {n}), if the seed spread does "
            "not dominate")


def _paper_attack(design: Design) -> str:
    from pytest_psa._specs.attacks import resolve_attacks

    return resolve_attacks(design.attacks[0])[0].label if design.attacks else "none"


# -- the per-arm table and the correlations -----------------------------------------------------------
def predictor_arms(raw: Mapping[str, Any]) -> list[str]:
    """The arms the correlations run across: augmentations trained with SGD, compared with ERM (not ERM itself)."""
    return [k for k, a in raw["arms"].items() if ARMS[k].role == "augmentation" and f"{k} vs erm" in raw["pairs"]
            and "refused" not in raw["pairs"][f"{k} vs erm"]]


def _F(arm: Mapping[str, Any], scale: str, gamma: float) -> float | None:
    dens = arm.get("density") or {}
    for e in (dens.get(scale) or {}).get("ecdf", []):
        if e["gamma"] == gamma:
            return float(e["estimate"])
    return None


def per_seed_series(raw: Mapping[str, Any], design: Design) -> dict[str, dict[str, list[float] | float | None]]:
    """{arm: {variable: per-seed values (a list) or one value}}: every predictor and outcome of the correlations."""
    out: dict[str, dict[str, Any]] = {}
    for key in predictor_arms(raw):
        arm, pair = raw["arms"][key], raw["pairs"][f"{key} vs erm"]
        row: dict[str, Any] = {
            f"F_l2({TOOL_GAMMA:g})": _F(arm, "tool", TOOL_GAMMA),
            f"F_l2_255({PAPER_GAMMA:g})": _F(arm, "paper", PAPER_GAMMA),
            "affinity": (arm.get("affinity") or {}).get("per_seed"),
            "diversity": (arm.get("diversity") or {}).get("per_seed"),
        }
        for fk in design.flatness_keys:
            f = pair["flatness"].get(fk) or {}
            # per-seed log ratio log(ERM/aug): > 0 = flatter (the improvement's scale before 1 - exp(-x))
            row[f"flatness {fk}"] = f.get("log_ratio")
        seeds = pair["robustness"]["per_seed"]
        subj = {s["seed"]: s for s in seeds.get("subject", [])}
        base = {s["seed"]: s for s in seeds.get("baseline", [])}
        common = [s for s in design.seeds if s in subj and s in base]
        outcomes = ["mce"] + [f"adv_error({a})" for a in pair["robustness"]["attacks"]]
        for o in outcomes:
            if all(o in subj[s] for s in common) and common:
                # percentage points of error removed (> 0 = more robust than ERM)
                row[f"gain {o} (pp)"] = [100 * (base[s][o] - subj[s][o]) for s in common]
        out[key] = row
    return out


def _mean(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        vals = [float(x) for x in v if x is not None and math.isfinite(float(x))]
        return float(np.mean(vals)) if vals and len(vals) == len(v) else None
    return float(v)


def per_arm_table(series: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """The seed means of `per_seed_series`: what the correlations' rho is computed from."""
    return {k: {name: _mean(v) for name, v in row.items()} for k, row in series.items()}


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (scipy.stats.spearmanr, average ranks for ties); None when undefined (a constant side)."""
    from scipy.stats import spearmanr

    if len(x) < 3 or np.ptp(np.asarray(x, float)) == 0 or np.ptp(np.asarray(y, float)) == 0:
        return None
    return float(spearmanr(x, y).statistic)


def correlate(series: Mapping[str, Mapping[str, Any]], predictor: str, outcome: str, *, alpha: float,
              n_boot: int, seed: int = 0) -> dict[str, Any]:
    """rho(predictor, outcome) across the arms that have both, and its percentile bootstrap interval:
    each replicate resamples every arm's seeds with replacement (the same draw for both variables)."""
    arms = [k for k, r in series.items() if _mean(r.get(predictor)) is not None and _mean(r.get(outcome)) is not None]
    x = [_mean(series[k][predictor]) for k in arms]
    y = [_mean(series[k][outcome]) for k in arms]
    rho = spearman(x, y)  # type: ignore[arg-type]
    low = high = None
    if rho is not None:
        rng = np.random.default_rng(seed)
        reps = []
        for _ in range(n_boot):
            xs, ys = [], []
            for k in arms:
                px, py = series[k][predictor], series[k][outcome]
                n = max(len(v) for v in (px, py) if isinstance(v, list)) if any(isinstance(v, list) for v in (px, py)) \
                    else 1
                idx = rng.integers(0, n, n)
                xs.append(float(np.mean(np.asarray(px)[idx])) if isinstance(px, list) else float(px))
                ys.append(float(np.mean(np.asarray(py)[idx])) if isinstance(py, list) else float(py))
            r = spearman(xs, ys)
            if r is not None:
                reps.append(r)
        if reps:
            low, high = (float(v) for v in np.quantile(reps, [alpha / 2, 1 - alpha / 2]))
    return {"predictor": predictor, "outcome": outcome, "arms": arms, "n_arms": len(arms), "rho": rho,
            "low": low, "high": high, "confidence": 1 - alpha, "bootstrap": n_boot,
            "method": "Spearman rho of seed means (scipy.stats.spearmanr); percentile bootstrap, seeds resampled "
                      "per arm"}


def correlations(series: Mapping[str, Mapping[str, Any]], design: Design) -> list[dict[str, Any]]:
    """rho for every predictor against every robustness gain, and density against every flatness improvement."""
    if not series:
        return []
    names = list(next(iter(series.values())))
    densities = [n for n in names if n.startswith("F_")]
    flat = [n for n in names if n.startswith("flatness ")]
    gains = [n for n in names if n.startswith("gain ")]
    predictors = densities + ["affinity", "diversity"] + flat
    rows = []
    for o in gains:
        for p in predictors:
            rows.append({**correlate(series, p, o, alpha=design.alpha, n_boot=design.bootstrap), "family": "robustness"})
    for o in flat:
        for p in densities:
            rows.append({**correlate(series, p, o, alpha=design.alpha, n_boot=design.bootstrap), "family": "flatness"})
    for r in rows:
        r["claim"] = "rho:density-mce" if (r["predictor"] == f"F_l2({TOOL_GAMMA:g})" and r["outcome"] == "gain mce (pp)") \
            else None
    return rows


def best_predictors(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per robustness outcome: the predictor with the largest |rho|, and whether its interval excludes 0."""
    out = []
    for o in dict.fromkeys(r["outcome"] for r in rows if r["family"] == "robustness"):
        cands = [r for r in rows if r["outcome"] == o and r["family"] == "robustness" and r["rho"] is not None]
        if not cands:
            continue
        best = max(cands, key=lambda r: abs(r["rho"]))
        excl = best["low"] is not None and (best["low"] > 0 or best["high"] < 0)
        out.append({"outcome": o, "predictor": best["predictor"], "rho": best["rho"], "low": best["low"],
                    "high": best["high"], "interval_excludes_0": bool(excl)})
    return out


def analyse(raw: Mapping[str, Any], design: Design) -> dict[str, Any]:
    """Everything derived: the per-arm table, the correlations, the best predictors and the claim table."""
    series = per_seed_series(raw, design)
    corr = correlations(series, design)
    return {"per_seed": series, "per_arm": per_arm_table(series), "correlations": corr,
            "best_predictors": best_predictors(corr), "claims": claim_table(raw, design, corr)}


__all__ = ["AGREES", "DISAGREES", "INCONCLUSIVE", "NOT_RUN", "REFUSED", "Claim", "analyse", "best_predictors", "claim_table",
           "correlate", "correlations", "gain", "paper_claims", "per_arm_table", "per_seed_series", "spearman",
           "verdict", "would_decide"]
