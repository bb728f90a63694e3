"""Robustness metrics on per-image outcomes, each with a confidence interval (images are the unit).

Inputs are per-image arrays; a value is 1 when the image is misclassified (or its prediction
flipped), 0 when not, or the fraction over training seeds when several models are averaged:

- corruption errors ``errors[c, s, i]``: corruption c, severity s, image i;
- flip rates ``rates[p, i]``: perturbation p, sequence (video) of image i.

Definitions (hendrycks/robustness and RobustBench, see docs/robustness.md):

- E_{c,s}: error under corruption c at severity s; CE_c = mean_s E_{c,s} (unnormalized);
- mCE (CIFAR convention) = mean over all (c, s) of E_{c,s};
- CE ratio to a baseline b: R_c = Σ_s E_{c,s} / Σ_s E^b_{c,s}; "mce_ratio" = mean_c R_c (this tool's
  ratio; it was called "rel_mce", a name that collided with the next one);
- Hendrycks & Dietterich's relative CE (ICLR 2019, with the baseline b in place of AlexNet):
  RelCE_c = Σ_s (E_{c,s} − E_clean) / Σ_s (E^b_{c,s} − E^b_clean), the degradation under corruption
  beyond each model's own clean error; "hd_relative_mce" = mean_c RelCE_c;
- AlexNet-normalized CE: CE^N_c = Σ_s E_{c,s} / Σ_s E^ref_{c,s} with a fixed reference table;
- flip probability of a sequence x_0..x_T: mean_t 1[f(x_t) != f(x_ref)], ref = 0 for noise
  perturbations and t - 1 otherwise (difficulty 1); mFP = mean over perturbations.

Interval methods: 0/1 values get the exact Clopper-Pearson interval; other bounded values the
betting confidence sequence of `pytest_psa._stats.mean_bounds` (valid for any distribution on a
known range); ratios of paired means the delta method over images (a normal approximation,
labelled as such: it is the one approximate interval here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from pytest_psa._stats import mean_bounds
from pytest_psa._validation import check_alpha

Better = Literal["lower", "higher"]


@dataclass(frozen=True)
class Estimate:
    """A number with its two-sided (`confidence`) interval, how it was computed and over how many units."""

    estimate: float
    low: float | None
    high: float | None
    better: Better
    unit: str
    confidence: float
    method: str  # clopper-pearson | betting | delta | none
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"estimate": _num(self.estimate), "low": _num(self.low), "high": _num(self.high),
                "better": self.better, "unit": self.unit, "confidence": self.confidence,
                "method": self.method, "n": self.n}

    def text(self, digits: int = 4) -> str:
        """``0.1234 [0.1100, 0.1370]`` (the interval omitted when there is none)."""
        if self.estimate is None or not math.isfinite(self.estimate):
            return "n/a"
        if self.low is None or self.high is None:
            return f"{self.estimate:.{digits}f}"
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _check_alpha(alpha: float) -> None:
    check_alpha(alpha)


# -- intervals ------------------------------------------------------------------------------------
def clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) binomial interval for k successes in n trials."""
    from scipy.stats import beta

    _check_alpha(alpha)
    if n <= 0:
        return 0.0, 1.0
    low = 0.0 if k <= 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k >= n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def bounded_mean(x: np.ndarray, lo: float, hi: float, alpha: float, *, better: Better = "lower",
                 unit: str = "fraction") -> Estimate:
    """Mean of i.i.d. values known to lie in [lo, hi], with a betting interval (two-sided 1 - alpha)."""
    _check_alpha(alpha)
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        return Estimate(float("nan"), None, None, better, unit, 1 - alpha, "none", 0)
    span = hi - lo
    if span <= 0:
        return Estimate(float(x.mean()), float(x.mean()), float(x.mean()), better, unit, 1 - alpha, "betting", x.size)
    low, high = mean_bounds((x - lo) / span, alpha)
    est = float(x.mean())
    return Estimate(est, min(lo + span * low, est), max(lo + span * high, est), better, unit, 1 - alpha,
                    "betting", int(x.size))


def proportion(x: np.ndarray, alpha: float, *, better: Better = "lower", unit: str = "fraction") -> Estimate:
    """Mean of per-image values in [0, 1]: Clopper-Pearson when they are all 0/1, else betting."""
    _check_alpha(alpha)
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size and np.all((x == 0) | (x == 1)):
        k, n = int(x.sum()), int(x.size)
        low, high = clopper_pearson(k, n, alpha)
        return Estimate(k / n, low, high, better, unit, 1 - alpha, "clopper-pearson", n)
    return bounded_mean(x, 0.0, 1.0, alpha, better=better, unit=unit)


def paired_difference(a: np.ndarray, b: np.ndarray, alpha: float, *, unit: str = "fraction") -> Estimate:
    """mean(a - b) for paired per-image values in [0, 1] (so a - b in [-1, 1]); betting interval."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return bounded_mean(a - b, -1.0, 1.0, alpha, unit=unit)


# -- corruption metrics ---------------------------------------------------------------------------
def error_table(errors: np.ndarray, alpha: float) -> list[list[Estimate]]:
    """E_{c,s} with its interval for every corruption c and severity s (errors: [C, S, N])."""
    return [[proportion(errors[c, s], alpha) for s in range(errors.shape[1])] for c in range(errors.shape[0])]


def corruption_errors(errors: np.ndarray, alpha: float) -> list[Estimate]:
    """CE_c = mean_s E_{c,s}, unnormalized; the interval uses each image's mean error over severities."""
    return [proportion(errors[c].mean(0), alpha) for c in range(errors.shape[0])]


def mean_corruption_error(errors: np.ndarray, alpha: float) -> Estimate:
    """mCE (CIFAR convention): the mean of all C×S errors; images are the unit (per-image mean error)."""
    return proportion(errors.reshape(-1, errors.shape[-1]).mean(0), alpha)


def ratio_of_means(num: np.ndarray, den: np.ndarray, alpha: float, *, unit: str = "ratio",
                   nonnegative: bool = True) -> tuple[list[Estimate], Estimate, list[int]]:
    """Per-group ratios R_k = Σ_i num[k, i] / Σ_i den[k, i] and their unweighted mean, paired over images.

    `num`, `den`: [K, N], the two models' per-image values (e.g. errors summed over severities)
    on the same images. Intervals: delta method (normal) with the per-image influence
    ψ_i = (num_ki - R_k den_ki) / mean(den_k), averaged over groups for the mean ratio.
    Groups whose denominator is zero (or negative) have no ratio; they are returned in the third
    element and left out of the mean. `nonnegative` (ratios of nonnegative values) clips the lower
    bound at 0; pass False when the numerator can be negative.
    """
    _check_alpha(alpha)
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    k, n = num.shape
    z = NormalDist().inv_cdf(1 - alpha / 2)
    per, psi, dropped = [], np.zeros(n), []
    for g in range(k):
        d_mean = den[g].mean()
        if d_mean <= 0:
            dropped.append(g)
            per.append(Estimate(float("nan"), None, None, "lower", unit, 1 - alpha, "none", n))
            continue
        r = num[g].mean() / d_mean
        infl = (num[g] - r * den[g]) / d_mean
        per.append(_delta(r, infl, z, alpha, unit, nonnegative))
        psi += infl
    kept = k - len(dropped)
    if kept == 0:
        return per, Estimate(float("nan"), None, None, "lower", unit, 1 - alpha, "none", n), dropped
    mean_r = float(np.mean([per[g].estimate for g in range(k) if g not in dropped]))
    return per, _delta(mean_r, psi / kept, z, alpha, unit, nonnegative), dropped


def _delta(estimate: float, influence: np.ndarray, z: float, alpha: float, unit: str,
           nonnegative: bool = True) -> Estimate:
    n = influence.size
    if n < 2:
        return Estimate(float(estimate), None, None, "lower", unit, 1 - alpha, "delta", n)
    se = float(influence.std(ddof=1)) / math.sqrt(n)
    low = estimate - z * se
    return Estimate(float(estimate), max(0.0, low) if nonnegative else low, estimate + z * se, "lower", unit,
                    1 - alpha, "delta", n)


def relative_corruption_errors(errors: np.ndarray, baseline: np.ndarray,
                               alpha: float) -> tuple[list[Estimate], Estimate, list[int]]:
    """CE ratios R_c = Σ_s E_{c,s} / Σ_s E^b_{c,s} per corruption and their mean, "mce_ratio"
    (errors, baseline: [C, S, N]). Not Hendrycks & Dietterich's relative CE: see
    `hd_relative_corruption_errors`."""
    return ratio_of_means(errors.sum(1), baseline.sum(1), alpha)


def hd_relative_corruption_errors(errors: np.ndarray, clean: np.ndarray, baseline: np.ndarray,
                                  baseline_clean: np.ndarray, alpha: float) -> tuple[list[Estimate], Estimate, list[int]]:
    """Hendrycks & Dietterich's relative CE, RelCE_c = Σ_s (E_{c,s} − E_clean) / Σ_s (E^b_{c,s} − E^b_clean),
    per corruption, and their mean, the relative mCE ("hd_relative_mce").

    errors, baseline: [C, S, N]; clean, baseline_clean: [N], on the same images. Each image
    contributes Σ_s (e_{c,s,i} − e_clean,i) to the numerator (and the baseline's to the
    denominator), so the paired delta-method interval of `ratio_of_means` applies as for the CE
    ratio; the ratio can be negative (a model whose corrupted error is below its clean error), so
    its lower bound is not clipped at 0. A corruption on which the baseline's corrupted error does
    not exceed its clean error (Σ_s (E^b_{c,s} − E^b_clean) ≤ 0) has no relative CE: it is returned
    in the third element and left out of the mean. When that sum is small but positive the ratio
    and its interval are large; that is the definition's, not the estimator's.
    """
    errors, baseline = np.asarray(errors, np.float64), np.asarray(baseline, np.float64)
    clean, baseline_clean = np.asarray(clean, np.float64), np.asarray(baseline_clean, np.float64)
    s = errors.shape[1]
    return ratio_of_means(errors.sum(1) - s * clean[None, :], baseline.sum(1) - s * baseline_clean[None, :], alpha,
                          nonnegative=False)


def normalized_corruption_errors(errors: np.ndarray, reference: np.ndarray,
                                 alpha: float) -> tuple[list[Estimate], Estimate]:
    """AlexNet-style CE_c = Σ_s E_{c,s} / Σ_s E^ref_{c,s} with a fixed reference table [C, S] of errors.

    The reference is a constant, so each image's Σ_s e_{c,s,i} / Σ_s E^ref_{c,s} lies in
    [0, S / Σ_s E^ref_{c,s}] and the betting interval applies exactly.
    """
    reference = np.asarray(reference, np.float64)
    sums = reference.sum(1)
    if np.any(sums <= 0):
        from pytest_psa.errors import PsaUsageError

        raise PsaUsageError("the reference table has a corruption with zero total error",
                            observed=reference.tolist(), fix="give reference errors (not accuracies) in (0, 1]")
    s = errors.shape[1]
    per_image = errors.sum(1) / sums[:, None]  # [C, N]
    per = [bounded_mean(per_image[c], 0.0, s / sums[c], alpha, unit="ratio") for c in range(errors.shape[0])]
    mean = bounded_mean(per_image.mean(0), 0.0, float(np.mean(s / sums)), alpha, unit="ratio")
    return per, mean


# -- flip probability -----------------------------------------------------------------------------
def flip_rates(predictions: np.ndarray, reference: Literal["first", "previous"]) -> np.ndarray:
    """Per-sequence flip probability from predictions [N, T+1] (frame 0 first).

    "first" (noise perturbations): mean over t >= 1 of 1[pred_t != pred_0];
    "previous" (all others, difficulty 1): mean over t >= 1 of 1[pred_t != pred_{t-1}].
    """
    p = np.asarray(predictions)
    if p.ndim != 2 or p.shape[1] < 2:
        from pytest_psa.errors import PsaUsageError

        raise PsaUsageError("flip rates need predictions [N, frames] with at least 2 frames",
                            observed=f"shape {p.shape}")
    ref = p[:, :1] if reference == "first" else p[:, :-1]
    return np.asarray((p[:, 1:] != ref).mean(1))  # numpy types the comparison as Any


def reference_rule(perturbation: str) -> Literal["first", "previous"]:
    """The reference's rule: noise sequences are compared with frame 0, the others with the previous frame."""
    return "first" if "noise" in perturbation else "previous"


def mean_flip_probability(rates: np.ndarray, alpha: float) -> tuple[list[Estimate], Estimate]:
    """FP per perturbation and mFP (unweighted mean over perturbations) from rates [P, N]."""
    per = [proportion(rates[p], alpha, unit="rate") for p in range(rates.shape[0])]
    return per, proportion(rates.mean(0), alpha, unit="rate")


__all__ = [
    "Estimate", "bounded_mean", "clopper_pearson", "corruption_errors", "error_table", "flip_rates",
    "hd_relative_corruption_errors", "mean_corruption_error", "mean_flip_probability", "normalized_corruption_errors", "paired_difference",
    "proportion", "ratio_of_means", "reference_rule", "relative_corruption_errors",
]
