"""`DensityResult`: the measured distances of one density audit, and the PSA assertion on them."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from pytest_psa._stats import ProportionInterval, mean_bounds, proportion_interval
from pytest_psa._validation import check_alpha, check_fraction, check_gamma
from pytest_psa.errors import PsaUsageError, PSAViolation, PsaWarning
from pytest_psa.results.checks import Checked, pick

DEFAULT_ALPHA = 1e-3
DEFAULT_GAMMA = 0.05  # normalized L2 0.05 ~ Gaussian noise of sigma 0.05 (measured on CIFAR-10)
DEFAULT_MIN_DENSITY = 0.05  # 500 images at alpha=1e-3 can show F < 0.02; 0.05 leaves margin


@dataclass(frozen=True)
class Verdict:
    """The decision for one γ: "pass", "fail" or "inconclusive", with the interval behind it."""

    gamma: float
    min_density: float
    alpha: float
    interval: ProportionInterval  # one-sided bounds at level alpha on each side
    outcome: str

    def to_dict(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "min_density": self.min_density, "alpha": self.alpha,
                "outcome": self.outcome, **{f"F_{k}": v for k, v in self.interval.to_dict().items()}}


@dataclass(frozen=True, eq=False)
class DensityResult(Checked):
    """Distances d(x_i, A_k(x_i)) for N images × K draws, and what they say about F_N(γ).

    `distances` and `identity` are (N, K) arrays; `identity[i, k]` marks draws that returned
    image i unchanged. With `exclude_identity=True` (here or per call) those draws are left out
    of F, quantiles and intervals: an augmentation that returns x untouched 10 % of the time
    otherwise has F_N(γ) ≥ 0.1 for every γ.

    `distance_info` records the distance's name and parameters (radius, encoder identity, ...);
    `details` holds (N, K) arrays the distance reported per draw, e.g. ``l2_aligned``'s winning
    ``dx``, ``dy`` and ``flip``, summarized by `alignment()`.
    """

    augmentation: str
    distance: str
    distances: np.ndarray
    identity: np.ndarray
    seed: int
    data: dict[str, Any]
    distance_info: dict[str, Any] = field(default_factory=dict)
    gammas: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)
    exclude_identity: bool = False
    image_indices: np.ndarray | None = None
    timing: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    repro: str = ""
    details: dict[str, np.ndarray] = field(default_factory=dict)  # per-draw extras of the distance, (N, K)
    sample_pairs: tuple[dict[str, Any], ...] = ()  # x / A(x) at distance quantiles (results/sample_pairs.py)
    assert_defaults: Mapping[str, Any] = field(default_factory=dict)  # thresholds, e.g. a marker's (`with_defaults`)
    audit_kind = "density"

    @property
    def subject(self) -> str:
        """The audited augmentation by name."""
        return self.augmentation

    @property
    def n_images(self) -> int:
        return int(self.distances.shape[0])

    @property
    def draws(self) -> int:
        return int(self.distances.shape[1])

    @property
    def identity_fraction(self) -> float:
        """Fraction of all draws that returned the image unchanged."""
        return float(self.identity.mean())

    def alignment(self, *, exclude_identity: bool | None = None) -> dict[str, Any] | None:
        """For ``l2_aligned``: shares of draws whose best alignment was a flip, a shift, neither, or at
        the search radius, and the most frequent alignments; None for other distances."""
        if not {"dx", "dy", "flip"} <= set(self.details):
            return None
        from pytest_psa.measure.density.distances_aligned import alignment_summary

        radius = self.distance_info.get("params", {}).get("radius_px")
        return alignment_summary(self.details, self._valid(exclude_identity), tuple(radius) if radius else None)

    def _valid(self, exclude_identity: bool | None) -> np.ndarray:
        exclude = self.exclude_identity if exclude_identity is None else exclude_identity
        return ~self.identity if exclude else np.ones_like(self.identity)

    def _counts(self, gamma: float, exclude_identity: bool | None) -> tuple[np.ndarray, np.ndarray]:
        valid = self._valid(exclude_identity)
        return ((self.distances <= gamma) & valid).sum(1), valid.sum(1)

    def F(self, gamma: float | Sequence[float], *, exclude_identity: bool | None = None) -> Any:
        """The eCDF F_N(γ): fraction of draws with d(x, A(x)) ≤ γ (a float, or an array for many γ).

        With identity draws excluded, it is the mean over images of the fraction of their
        non-identity draws within γ (the pooled fraction when every image keeps as many draws).
        """
        if np.ndim(gamma):
            return np.array([self.F(g, exclude_identity=exclude_identity) for g in np.asarray(gamma)])
        hits, trials = self._counts(float(cast(float, gamma)), exclude_identity)  # ndim 0: one number
        keep = trials > 0  # images are the unit: the mean of per-image fractions
        return float((hits[keep] / trials[keep]).mean()) if keep.any() else float("nan")

    def quantile(self, q: float | Sequence[float], *, exclude_identity: bool | None = None) -> Any:
        """Distance quantile(s) of the draws (q in [0, 1])."""
        values = self.distances[self._valid(exclude_identity)]
        if values.size == 0:
            raise PsaUsageError("no draws left to take a quantile of: every draw was the identity",
                                fix="call with exclude_identity=False")
        out = np.quantile(values, q)
        return float(out) if np.ndim(out) == 0 else out

    def image_coverage(self, gamma: float, *, exclude_identity: bool | None = None) -> float:
        """Fraction of images with at least one draw within γ."""
        hits, trials = self._counts(gamma, exclude_identity)
        return float((hits > 0)[trials > 0].mean())

    def interval(self, gamma: float, alpha: float = 0.05, *, exclude_identity: bool | None = None,
                 side: str = "two-sided") -> ProportionInterval:
        """A (1 − alpha) confidence interval for F(γ), valid with correlated draws (images are the unit)."""
        check_alpha(alpha)
        hits, trials = self._counts(gamma, exclude_identity)
        return proportion_interval(hits, trials, alpha, side)

    # -- assertion ---------------------------------------------------------------------------
    def verdicts(self, gamma: float | Sequence[float], min_density: float, alpha: float = DEFAULT_ALPHA,
                 *, exclude_identity: bool | None = None) -> list[Verdict]:
        """One verdict per γ; alpha is split over the γ values (Bonferroni) so it bounds the whole check."""
        check_gamma(list(np.atleast_1d(gamma).tolist()))
        gammas = [float(g) for g in np.atleast_1d(gamma)]
        check_alpha(alpha)
        check_fraction(min_density, "min_density", open_low=True)
        a = alpha / len(gammas)
        out = []
        for g in gammas:
            hits, trials = self._counts(g, exclude_identity)
            # each side one-sided at level a: the fail rule uses `high`, strict mode `low`
            iv = proportion_interval(hits, trials, a, "upper")
            lo = proportion_interval(hits, trials, a, "lower").low
            iv = ProportionInterval(iv.estimate, lo, iv.high, 1 - a, iv.n_draws, iv.n_units)
            hi = iv.high
            outcome = "fail" if hi < min_density else "pass" if lo >= min_density else "inconclusive"
            out.append(Verdict(g, min_density, a, iv, outcome))
        return out

    def assert_psa(self, gamma: float | Sequence[float] | None = None, min_density: float | None = None,
                   alpha: float | None = None, *, strict: bool | None = None,
                   exclude_identity: bool | None = None) -> DensityResult:
        """Assert the PSA condition F_N(γ) ≥ min_density; returns self so calls chain.

        Default (strict=False): fail only when the data show F(γ) < min_density, i.e. the one-sided
        (1 − alpha) upper bound is below it, so an augmentation that meets the condition fails with
        probability at most alpha. strict=True: pass only when the (1 − alpha) lower bound reaches
        min_density, so one that does not meet it passes with probability at most alpha.
        """
        __tracebackhide__ = True  # pytest shows the test's line, not ours
        d = self.assert_defaults
        gamma = pick(gamma, d.get("gamma"), DEFAULT_GAMMA)
        min_density = pick(min_density, d.get("min_density"), DEFAULT_MIN_DENSITY)
        alpha = pick(alpha, d.get("alpha"), DEFAULT_ALPHA)
        strict = bool(pick(strict, d.get("strict"), False))
        verdicts = self.verdicts(gamma, min_density, alpha, exclude_identity=exclude_identity)
        v0 = verdicts[0]
        power_floor = mean_bounds(np.zeros(v0.interval.n_units), v0.alpha, "upper")[1]
        if not strict and power_floor >= min_density:
            raise PsaUsageError(
                f"this check cannot fail: even with no draw within γ, the upper bound for F from "
                f"{v0.interval.n_units} images is {power_floor:.4f} >= min_density={min_density}",
                fix="audit more images (n_images), raise min_density, or use strict=True",
            )
        self._log_verdicts(verdicts)  # after the guard: a refused check records no verdict
        failed = [v for v in verdicts if v.outcome == "fail" or (strict and v.outcome == "inconclusive")]
        if failed:
            raise PSAViolation(self.failure_message(verdicts, strict=strict, exclude_identity=exclude_identity),
                               result=self)
        unsure = [v for v in verdicts if v.outcome == "inconclusive"]
        if unsure:
            warnings.warn(PsaWarning(
                f"{self.augmentation}: F(γ={unsure[0].gamma:g}) = {unsure[0].interval.estimate:.4f} is not shown to "
                f"reach min_density={min_density} (interval [{unsure[0].interval.low:.4f}, "
                f"{unsure[0].interval.high:.4f}]); the check passes, without evidence either way. "
                f"Audit more images to decide."), stacklevel=2)
        return self

    # -- reporting ---------------------------------------------------------------------------
    def failure_message(self, verdicts: list[Verdict], *, strict: bool = False,
                        exclude_identity: bool | None = None) -> str:
        exclude = self.exclude_identity if exclude_identity is None else exclude_identity
        md, a = verdicts[0].min_density, verdicts[0].alpha * len(verdicts)
        rule = ("the lower confidence bound must reach min_density (strict)" if strict
                else "the upper confidence bound is below min_density")
        lines = [
            f"PSA condition violated: {self.augmentation} on {self.data.get('describe', '?')}",
            f"  F_N(γ) < min_density={md} at alpha={a:g} ({rule})",
            f"  distance {self.distance} | N={self.n_images} images x K={self.draws} draws | seed={self.seed} | "
            f"identity draws {100 * self.identity_fraction:.1f}% ({'excluded' if exclude else 'included'})",
            "",
            f"  {'γ':>8}  {'F_N(γ)':>8}  {'bounds (one-sided, each α/m)':>30}  {'≥ threshold':>11}  "
            f"{'images with a draw ≤ γ':>22}  verdict",
        ]
        for v in verdicts:
            iv = v.interval
            cov = self.image_coverage(v.gamma, exclude_identity=exclude_identity)
            lines.append(f"  {v.gamma:>8.4g}  {iv.estimate:>8.4f}  {f'[{iv.low:.4f}, {iv.high:.4f}]':>30}  "
                         f"{v.min_density:>11.4g}  {cov:>22.3f}  {v.outcome.upper()}")
        lines += ["", f"  quantiles of d: q05={self.quantile(0.05, exclude_identity=exclude):.4f} "
                      f"q50={self.quantile(0.5, exclude_identity=exclude):.4f}"]
        lines += [f"  {line}" for line in self._distance_lines(exclude)]
        if self.repro:
            lines.append(f"  reproduce: {self.repro}")
        return "\n".join(lines)

    def table(self, gammas: Sequence[float] | None = None, alpha: float = 0.05) -> str:
        """A readable eCDF table with (1 − alpha) intervals."""
        rows = [f"{self.augmentation} | {self.data.get('describe', '?')} | {self.distance} | "
                f"N={self.n_images} K={self.draws} seed={self.seed} | identity {100 * self.identity_fraction:.1f}%"]
        for g in gammas or self.gammas:
            iv = self.interval(g, alpha)
            rows.append(f"  F({g:.4g}) = {iv.estimate:.4f}  [{iv.low:.4f}, {iv.high:.4f}]  "
                        f"images covered {self.image_coverage(g):.3f}")
        rows += [f"  {line}" for line in self._distance_lines(None)]
        return "\n".join(rows)

    def _distance_lines(self, exclude_identity: bool | None) -> list[str]:
        """What the distance adds to a report: its encoder, the alignments that won."""
        lines = []
        params = self.distance_info.get("params", {})
        if "encoder" in params or "encoder_class" in params:
            lines.append(f"encoder: {params.get('encoder') or params.get('encoder_class')}, layer "
                         f"{params.get('layer')}, {params.get('normalize')} normalization")
        summary = self.alignment(exclude_identity=exclude_identity)
        if summary is not None:
            from pytest_psa.measure.density.distances_aligned import describe_alignment

            lines.append(describe_alignment(summary))
        return lines

    def headline(self) -> dict[str, dict[str, Any]]:
        """The headline metrics (the `AuditResult` contract's name for `metrics()`)."""
        return self.metrics()

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Headline numbers for reports and baselines: ``F(γ)`` for the reported γ grid and the
        checked γ, each with its two-sided (1 − α) interval at the check's α (docs/baselines.md)."""
        alpha = float(self.assert_defaults.get("alpha", DEFAULT_ALPHA))
        checked = np.atleast_1d(self.assert_defaults.get("gamma", DEFAULT_GAMMA))
        out = {}
        for g in sorted({float(g) for g in (*self.gammas, *checked)}):
            iv = self.interval(g, alpha)
            est = iv.estimate if np.isfinite(iv.estimate) else None
            out[f"F({g:g})"] = {"estimate": est, "low": None if est is None else iv.low,
                                "high": None if est is None else iv.high, "better": "higher", "unit": "fraction",
                                "confidence": 1 - alpha, "n": iv.n_units}
        return out

    def to_dict(self, *, include_distances: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "density", "augmentation": self.augmentation, "distance": self.distance,
            "distance_info": self.distance_info, "data": self.data, "seed": self.seed,
            "n_images": self.n_images, "draws": self.draws, "exclude_identity": self.exclude_identity,
            "identity_fraction": self.identity_fraction, "metrics": self.metrics(),
            "ecdf": [{"gamma": g, **self.interval(g).to_dict(), "image_coverage": self.image_coverage(g)}
                     for g in self.gammas],
            "quantiles": {str(q): self.quantile(q) for q in (0.01, 0.05, 0.1, 0.25, 0.5)}
            if (self._valid(None)).any() else {},
            "ecdf_curve": ecdf_curve(self.distances[self._valid(None)]),
            "timing": self.timing, "environment": self.environment,
        }
        alignment = self.alignment()
        if alignment is not None:
            out["alignment"] = alignment
        if self.sample_pairs:
            out["sample_pairs"] = [dict(p) for p in self.sample_pairs]
        if include_distances:
            out["distances"] = self.distances.tolist()
            out["identity"] = self.identity.tolist()
        return out


def ecdf_curve(values: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    """The pooled eCDF of `values` as `points` (γ, F) pairs at F = 0, 1/(points-1), ..., 1: enough to
    draw the curve (the seed paper's Figure 2) without storing every distance."""
    if values.size == 0:
        return {"gamma": [], "F": []}
    levels = np.linspace(0.0, 1.0, points)
    gammas = np.quantile(values, levels, method="inverted_cdf")
    return {"gamma": [float(f"{g:.6g}") for g in gammas], "F": [round(float(q), 4) for q in levels]}



