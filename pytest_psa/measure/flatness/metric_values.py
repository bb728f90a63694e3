"""Small frozen results: a value, its standard error and the exact configuration behind it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, cast

from pytest_psa._storage import json_safe

plain = json_safe  # JSON-ready copy: tuples become lists, non-finite floats None (the package's one sanitiser)


@dataclass(frozen=True, kw_only=True)
class Setup:
    """What was perturbed and how; shared by the metrics of one measurement."""

    params: tuple[str, ...]  # names of the perturbed parameter tensors (buffers are never perturbed)
    n_params: int
    normalization: str  # "none" (raw), "filter" (Li et al.'s geometry) or "bisla" (Bisla et al.'s), see scaling.py
    loss: str
    n_images: int
    chunk_size: int
    device: str
    dtype: str
    bn_policy: str = "eval"  # BatchNorm uses its frozen running statistics; dropout is off


@dataclass(frozen=True, kw_only=True)
class MetricResult:
    """One metric's value with its standard error (None where the value is not a sample mean)."""

    metric: str
    value: float
    se: float | None
    unit: str
    seed: int  # this metric's own seed, derived from the measurement's seed
    seconds: float
    setup: Setup

    def interval(self, alpha: float = 1e-3) -> tuple[float, float] | None:
        """Two-sided normal interval value +- z(1 - alpha/2) se, or None without an se."""
        if self.se is None:
            return None
        z = NormalDist().inv_cdf(1 - alpha / 2)
        return self.value - z * self.se, self.value + z * self.se

    def definition(self) -> dict[str, Any]:
        """What the number means (the settings that change it, not those that only refine it): values
        with different definitions are never compared. Subclasses add their own settings."""
        return {"metric": self.metric, "normalization": self.setup.normalization, "loss": self.setup.loss}

    def caveat(self) -> str | None:
        """Why the value may not be what its definition promises (e.g. a search that did not converge), or None."""
        return None

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "definition": self.definition(), "caveat": self.caveat()}
        return cast("dict[str, Any]", plain(out))  # plain() is typed Any; it maps a dict to a dict


@dataclass(frozen=True, kw_only=True)
class PacBayesResult(MetricResult):
    """Largest sigma with E[L(w + u)] - L(w) <= target; `value` = 1/sigma^2 (Jiang et al.'s unit).

    The noise u is sigma * z (isotropic; times the filter scale when normalized) or, for the
    magnitude-aware variant, sqrt(sigma^2 w^2 + mag_eps^2) * z. Larger sigma, smaller value: flatter.
    `convention` names the target: a loss increase (the LPF-SGD repository's) or a 0-1 error
    increase (Jiang et al. 2020's); values under different targets are different numbers.
    """

    sigma: float
    sigma_se: float
    target: float
    target_type: str  # "loss" (increase of the loss) or "accuracy" (0-1 accuracy drop, i.e. error increase)
    convention: str  # the target's name and source, from pac_bayes.TARGET_CONVENTIONS
    magnitude: bool
    mag_eps: float
    n_samples: int  # noise draws per sigma, as antithetic pairs (z, -z) reused for every sigma
    evaluations: int  # sigmas evaluated by the search
    forward_passes: int  # full passes over the data
    bracketed: bool  # False: the crossing lies outside the searched range; sigma is a bound
    rtol: float  # relative tolerance of sigma from the root finder
    slope: float  # local d log(increase) / d log(sigma) used for the standard error
    loss0: float
    accuracy0: float | None

    def definition(self) -> dict[str, Any]:
        out = {**super().definition(), "target": self.target, "target_type": self.target_type,
               "convention": self.convention}
        if self.magnitude:
            out["mag_eps"] = self.mag_eps
        return out

    def caveat(self) -> str | None:
        if self.bracketed:
            return None
        return (f"no sigma in the searched range crosses the target {self.target:g} ({self.convention}): "
                f"sigma = {self.sigma:.3g} is a bound, not the crossing")


@dataclass(frozen=True, kw_only=True)
class LPFResult(MetricResult):
    """Bisla et al.'s low-pass-filter measure: `value` = E[L(w + u)] (the perturbed loss).

    The noise u has per-entry std `sigma` (normalization "none"), sigma times Li et al.'s filter
    scale ("filter"), or sigma (||w_f|| + |b_f|) per unit f, as Bisla et al.'s code gets by adding
    N(0, sigma^2) to filter-normalized weights ("bisla"); `setup.normalization` says which.
    """

    sigma: float
    increase: float  # value - loss0
    increase_se: float
    n_samples: int
    forward_passes: int
    loss0: float

    def definition(self) -> dict[str, Any]:
        return {**super().definition(), "sigma": self.sigma}


@dataclass(frozen=True, kw_only=True)
class EpsSharpnessResult(MetricResult):
    """Keskar et al.'s metric: `value` = 100 (L_max - L0) / (1 + L0) over the box |d_i| <= b_i.

    `se` is None: a maximum found by search is a lower bound, not a sample mean; `restart_values`
    shows how much the restarts disagree.
    """

    eps: float
    box: str  # "eps*(|w|+1)" (Keskar) or "eps*s" (filter-normalized)
    steps: int
    restarts: int
    loss0: float
    loss_max: float
    restart_values: tuple[float, ...]
    gradient_passes: int

    def definition(self) -> dict[str, Any]:
        return {**super().definition(), "eps": self.eps, "box": self.box}


@dataclass(frozen=True, kw_only=True)
class HessianTopResult(MetricResult):
    """Dominant Hessian eigenvalue by power iteration (largest |lambda|, as PyHessian reports).

    `residual` = ||H v - lambda v|| for the final unit vector v: an eigenvalue of H lies within
    it of `value` (a guaranteed bound, unlike the relative change used to stop). `converged` is
    False when `max_iter` iterations ended before the relative change fell below `tol`; `caveat()`
    then says so, and a flatness verdict resting on the value names it.
    """

    residual: float
    iterations: int
    converged: bool
    tol: float
    max_iter: int
    rel_change: float
    hvps: int

    def caveat(self) -> str | None:
        if self.converged:
            return None
        return (f"not converged: stopped after {self.iterations} of max {self.max_iter} power iterations with "
                f"relative change {self.rel_change:.2g} (tol {self.tol:g}); an eigenvalue lies within "
                f"{self.residual:.3g} of {self.value:.4g}")


@dataclass(frozen=True, kw_only=True)
class HessianTraceResult(MetricResult):
    """Hutchinson's estimate of tr(H) with Rademacher probes; `se` = sd / sqrt(n_samples)."""

    n_samples: int
    hvps: int
