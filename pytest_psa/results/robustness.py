"""`RobustnessResult`: corruption, perturbation and adversarial errors of a model (vs a baseline), and budgets.

Every number is computed from per-image outcomes kept in `Samples`, so intervals at any alpha and
paired comparisons with the baseline (the same images, the same corruptions) are exact
re-computations, not approximations of a summary. Formatting lives in `robustness_tables.py`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_psa._specs.budgets import format_value
from pytest_psa._specs.names import DEPRECATED_VS_ERM_KEYS, deprecated_key_message
from pytest_psa.errors import PsaUsageError, PSAViolation, PsaWarning
from pytest_psa.results.checks import Checked, pick
from pytest_psa.measure.robustness import error_stats as M
from pytest_psa.measure.robustness.error_stats import Estimate

DEFAULT_ALPHA = 0.05  # reported intervals are 95 %
DEFAULT_BUDGET_ALPHA = 1e-3  # a budget check fails wrongly with probability at most this (like --psa-alpha)


@dataclass(frozen=True, eq=False)
class Samples:
    """Per-image outcomes of one role (audited model or baseline), averaged over its training seeds.

    `corruption` [C, S, N] and `clean` [N] are error indicators (fractions of seeds when k > 1);
    `flips` [P, Np] flip rates per sequence; `adversarial[label]` [Na] 1 where the attack won
    (or the image was misclassified clean), i.e. the adversarial error.
    """

    clean: np.ndarray
    corruption: np.ndarray
    flips: np.ndarray
    adversarial: dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class RobustnessResult(Checked):
    """What `pytest_psa.robustness` measured; see docs/robustness.md for every definition.

    `subject` is the audited model or augmentation, `baseline` what it is compared with ("erm",
    another augmentation, a given model, or None). Headline numbers: `metrics()`; tables:
    `table()`, `to_frame_records()`, `to_csv()`; the assertion: `assert_budget()`.
    """

    subject: str
    kind: str  # "augmentation" or "model"
    baseline: str | None
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    perturbations: tuple[str, ...]
    attacks: tuple[Any, ...]  # AttackSpec
    samples: Samples = field(repr=False)
    baseline_samples: Samples | None = field(repr=False)
    data: dict[str, Any]
    n_images: int
    n_attack_images: int
    n_perturbation_images: int
    seed: int
    seeds: tuple[int, ...]
    preset: str | None
    device: str
    settings: dict[str, Any]
    attack_runs: dict[str, dict[str, list[dict[str, Any]]]]  # role -> attack label -> per-seed run info
    per_seed: dict[str, list[dict[str, Any]]]
    training: dict[str, list[dict[str, Any]]]
    cache: dict[str, str]
    timing: dict[str, float]
    reference: np.ndarray | None = field(default=None, repr=False)  # [C, S] reference errors (AlexNet)
    notes: tuple[str, ...] = ()
    alpha: float = DEFAULT_ALPHA
    repro: str = ""
    assert_defaults: Mapping[str, Any] = field(default_factory=dict)  # budgets, e.g. a marker's (`with_defaults`)
    audit_kind = "robustness"

    # -- numbers -----------------------------------------------------------------------------
    @property
    def cache_hit(self) -> bool:
        """True when nothing was trained or evaluated: every model and evaluation came from the cache."""
        return bool(self.cache) and all(v == "hit" for v in self.cache.values())

    def errors(self, alpha: float | None = None, *, baseline: bool = False) -> list[list[Estimate]]:
        """E_{c,s} with intervals, [corruption][severity], for the audited model (or the baseline)."""
        s = self._role(baseline)
        return M.error_table(s.corruption, self._a(alpha)) if self.corruptions else []

    def corruption_errors(self, alpha: float | None = None, *, baseline: bool = False) -> dict[str, Estimate]:
        """CE_c (mean error over severities, unnormalized) per corruption."""
        s = self._role(baseline)
        return dict(zip(self.corruptions, M.corruption_errors(s.corruption, self._a(alpha)))) if self.corruptions else {}

    def relative_corruption_errors(self, alpha: float | None = None) -> dict[str, Estimate]:
        """CE ratio R_c = Σ_s E_{c,s} / Σ_s E^baseline_{c,s} per corruption, the terms of ``mce_ratio``
        (empty without a baseline). Not Hendrycks & Dietterich's relative CE: `hd_relative_corruption_errors`."""
        if self.baseline_samples is None or not self.corruptions:
            return {}
        per, _, _ = M.relative_corruption_errors(self.samples.corruption, self.baseline_samples.corruption, self._a(alpha))
        return dict(zip(self.corruptions, per))

    def hd_relative_corruption_errors(self, alpha: float | None = None) -> dict[str, Estimate]:
        """Hendrycks & Dietterich's relative CE, Σ_s (E_{c,s} − E_clean) / Σ_s (E^b_{c,s} − E^b_clean), per
        corruption: the terms of ``hd_relative_mce`` (empty without a baseline; NaN where the baseline's
        corrupted error does not exceed its clean error)."""
        b = self.baseline_samples
        if b is None or not self.corruptions:
            return {}
        per, _, _ = M.hd_relative_corruption_errors(self.samples.corruption, self.samples.clean, b.corruption, b.clean,
                                                    self._a(alpha))
        return dict(zip(self.corruptions, per))

    def normalized_corruption_errors(self, alpha: float | None = None) -> dict[str, Estimate]:
        """AlexNet-normalized CE_c (empty without a reference table)."""
        if self.reference is None or not self.corruptions:
            return {}
        per, _ = M.normalized_corruption_errors(self.samples.corruption, self.reference, self._a(alpha))
        return dict(zip(self.corruptions, per))

    def flip_probabilities(self, alpha: float | None = None, *, baseline: bool = False) -> dict[str, Estimate]:
        """FP per perturbation."""
        if not self.perturbations:
            return {}
        per, _ = M.mean_flip_probability(self._role(baseline).flips, self._a(alpha))
        return dict(zip(self.perturbations, per))

    def metrics(self, alpha: float | None = None) -> dict[str, Estimate]:
        """The headline numbers by name (what to_dict()["metrics"] holds), intervals at 1 - alpha."""
        a = self._a(alpha)
        return dict(self._default_metrics) if a == self.alpha else _headline(self, a)

    @functools.cached_property
    def _default_metrics(self) -> dict[str, Estimate]:
        return _headline(self, self.alpha)

    def baseline_metrics(self, alpha: float | None = None) -> dict[str, Estimate]:
        """The baseline's own numbers (clean_error, mce, mfp, adv_error(...)); empty without a baseline."""
        if self.baseline_samples is None:
            return {}
        return _numbers(self, self.baseline_samples, self._a(alpha))

    def __getitem__(self, name: str) -> Estimate:
        m = self.metrics()
        if name in DEPRECATED_VS_ERM_KEYS and name not in m:
            warnings.warn(PsaWarning(deprecated_key_message(name)), stacklevel=2)
            name = DEPRECATED_VS_ERM_KEYS[name]
        if name not in m:
            raise KeyError(f"{name!r} was not measured; measured: {', '.join(m)}")
        return m[name]

    def _a(self, alpha: float | None) -> float:
        a = self.alpha if alpha is None else alpha
        M._check_alpha(a)
        return a

    def _role(self, baseline: bool) -> Samples:
        if not baseline:
            return self.samples
        if self.baseline_samples is None:
            raise PsaUsageError("this result has no baseline", fix="compare an augmentation with ERM, or pass baseline=")
        return self.baseline_samples

    # -- assertion ---------------------------------------------------------------------------
    def assert_budget(self, *, max_mce: float | None = None, max_adv_error: float | dict[str, float] | None = None,
                      max_clean_error: float | None = None, max_mfp: float | None = None,
                      vs_erm: float | str | dict[str, float | str] | None = None,
                      alpha: float | None = None) -> RobustnessResult:
        """Assert robustness budgets; fails (PSAViolation) only when the data show a budget is exceeded.

        - ``max_mce``, ``max_clean_error``, ``max_mfp``: ceilings on mCE, clean error, mFP, as
          fractions (0.3 is printed 30.0%);
        - ``max_adv_error``: a ceiling for every attack, or ``{"linf,8/255": 1.0, "l2,0.25": 0.9}``;
        - ``vs_erm``: against the baseline, each limit spelled with its unit (pytest_psa/_specs/budgets.py):
          ``{"mce": "+0.5pp"}`` means mCE − mCE_baseline ≤ 0.5 percentage points (keys mce,
          clean_error, mfp, adv_error or adv_error(label)); ``{"mce": "x1.02"}`` (or
          ``{"mce_ratio": "x1.02"}``) means the CE ratio ``mce_ratio`` (mean_c Σ_s E/Σ_s E_baseline)
          ≤ 1.02; ``{"hd_relative_mce": "x0.9"}`` (Hendrycks & Dietterich's relative mCE, clean
          error subtracted) and ``{"rel_mfp": "x1.0"}`` are ratio ceilings too. ``vs_erm="x1.02"``
          bounds mce_ratio, ``vs_erm="+0.5pp"`` the mCE difference. ``"+2%"`` is refused (it could
          mean either). A bare number keeps its old meaning (a difference in fractions for the
          difference keys, a ratio for the ratio keys and for ``vs_erm=1.0``), with a PsaWarning
          naming the explicit spelling. The old key ``"rel_mce"`` still means ``mce_ratio``, with a
          PsaWarning.

        Each budget fails when the one-sided (1 - alpha/m) lower confidence bound of its number is
        above it (m = number of budgets checked, Bonferroni), so a model within every budget fails
        with probability at most alpha. An estimate above a budget that the data do not show passes
        with a PsaWarning (inconclusive). Returns self so calls chain.
        """
        __tracebackhide__ = True
        from pytest_psa.results.robustness_budgets import evaluate_budgets

        d = self.assert_defaults
        budgets = {
            "max_mce": pick(max_mce, d.get("max_mce")), "max_adv_error": pick(max_adv_error, d.get("max_adv_error")),
            "max_clean_error": pick(max_clean_error, d.get("max_clean_error")), "max_mfp": pick(max_mfp, d.get("max_mfp")),
            "vs_erm": pick(vs_erm, d.get("vs_erm")),
        }
        a = pick(alpha, d.get("alpha"), DEFAULT_BUDGET_ALPHA)
        verdicts = evaluate_budgets(self, budgets, a)
        self._log_verdicts(verdicts)
        failed = [v for v in verdicts if v.outcome == "fail"]
        if failed:
            from pytest_psa.results.robustness_tables import failure_message

            raise PSAViolation(failure_message(self, verdicts), result=self)
        for v in verdicts:
            if v.outcome == "inconclusive":
                warnings.warn(PsaWarning(
                    f"{self.subject}: {v.line()}: the estimate is above the budget but within noise (lower bound "
                    f"{format_value(v.low, v.unit)} at alpha={v.alpha:.3g}); the check passes without evidence either way. "
                    f"Evaluate more images (n_images) to decide."), stacklevel=2)
        return self

    # -- reporting ---------------------------------------------------------------------------
    def table(self) -> str:
        """Per-corruption errors (audited and baseline), flip rates and attacks, as text."""
        from pytest_psa.results.robustness_tables import result_table

        return result_table(self)

    def __str__(self) -> str:
        return self.table()

    def to_frame_records(self) -> list[dict[str, Any]]:
        """Tidy rows (model, corruption, severity, accuracy, error, low, high, n), RobustBench's layout."""
        from pytest_psa.results.robustness_tables import frame_records

        return frame_records(self)

    def to_csv(self, path: Any) -> Any:
        """Write RobustBench's ``unaggregated_results.csv`` layout (header rows corruption, severity;
        one row of accuracies per model); returns the path."""
        from pytest_psa.results.robustness_tables import write_csv

        return write_csv(self, path)

    def headline(self) -> dict[str, dict[str, Any]]:
        """The headline metrics as records (what ``to_dict()["metrics"]`` holds)."""
        return {k: v.to_dict() for k, v in self.metrics().items()}

    def to_dict(self) -> dict[str, Any]:
        from pytest_psa.results.robustness_tables import result_dict

        return result_dict(self)


def _headline(r: RobustnessResult, a: float) -> dict[str, Estimate]:
    """Every headline number of the audited model at interval level 1 - a, and with a baseline its own
    numbers (``baseline_*``) and the comparisons: the ratios ``mce_ratio``, ``hd_relative_mce`` and
    ``rel_mfp``, and ``delta_*`` paired differences (audited - baseline)."""
    s, b = r.samples, r.baseline_samples
    out = _numbers(r, s, a)
    if b is None:
        return out
    flat = lambda x: x.reshape(-1, x.shape[-1]).mean(0)  # noqa: E731  per-image mean over (c, s)
    if r.corruptions:
        out["mce_ratio"] = M.relative_corruption_errors(s.corruption, b.corruption, a)[1]
        out["hd_relative_mce"] = M.hd_relative_corruption_errors(s.corruption, s.clean, b.corruption, b.clean, a)[1]
    if r.perturbations:
        out["rel_mfp"] = M.ratio_of_means(s.flips, b.flips, a, unit="ratio")[1]
    out["delta_clean_error"] = M.paired_difference(s.clean, b.clean, a)
    if r.corruptions:
        out["delta_mce"] = M.paired_difference(flat(s.corruption), flat(b.corruption), a)
    if r.perturbations:
        out["delta_mfp"] = M.paired_difference(s.flips.mean(0), b.flips.mean(0), a, unit="rate")
    for label, err in s.adversarial.items():
        out[f"delta_adv_error({label})"] = M.paired_difference(err, b.adversarial[label], a)
    out.update({f"baseline_{k}": v for k, v in _numbers(r, b, a).items()})
    return out


def _numbers(r: RobustnessResult, s: Samples, a: float) -> dict[str, Estimate]:
    """clean_error, mce (+ mce_alexnet), mfp and adv_error(label) of one role."""
    out: dict[str, Estimate] = {"clean_error": M.proportion(s.clean, a)}
    if r.corruptions:
        out["mce"] = M.mean_corruption_error(s.corruption, a)
        if r.reference is not None:
            out["mce_alexnet"] = M.normalized_corruption_errors(s.corruption, r.reference, a)[1]
    if r.perturbations:
        out["mfp"] = M.mean_flip_probability(s.flips, a)[1]
    for label, err in s.adversarial.items():
        out[f"adv_error({label})"] = M.proportion(err, a)
    return out


__all__ = ["DEFAULT_ALPHA", "DEFAULT_BUDGET_ALPHA", "RobustnessResult", "Samples"]
