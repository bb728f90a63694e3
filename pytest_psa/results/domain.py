"""`DomainResult`: leave-one-domain-out accuracy of an augmented model and its baseline (ERM).

Protocol (DomainBed's, Gulrajani & Lopez-Paz 2021): for each held-out domain, both models are
trained on all the other domains and evaluated on the held-out one; the headline is the unweighted
average over held-out domains. Beside it: in-domain accuracy (the same models on held-in test
images of their training domains, never trained on), so the domain gap shows.

Conventions, in the names: ``accuracy_*`` is a fraction correct (higher is better);
``heldout`` is on the left-out domain, ``indomain`` on held-in test images of the training domains;
``delta_*`` is audited − baseline, paired over the same images; ``[<domain>]`` one held-out domain,
``_avg`` the unweighted mean over held-out domains; ``erm_*`` the baseline's value.

Intervals (two-sided, 1 − alpha): images are the unit. One seed: each image is right or wrong,
Clopper–Pearson. Several seeds: each image's fraction of seeds that got it right, a betting interval
(`measure.robustness.error_stats.proportion`); the paired difference uses each image's difference of
those fractions (betting, values in [−1, 1]). An average over m domains takes each domain's bounds at
alpha / m and averages them (a Bonferroni union: valid whatever the domains' dependence). The
spread over training seeds is reported beside it (``seed_spread``: per-seed averages, and a t
interval of the paired difference's mean over seeds when there are two or more).

Budgets (`assert_budget`) are floors: ``min_domain_accuracy`` on ``accuracy_heldout_avg``, and
``vs_erm`` on ``delta_accuracy_heldout_avg`` written in the budget unit language (``"-1pp"``: at most
one percentage point below the baseline). The verdict uses the one-sided upper bound at alpha / m
(m budgets): fail when it is below the floor, inconclusive when only the estimate is, else pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from pytest_psa._specs.budgets import accuracy_floor, format_value
from pytest_psa._validation import check_alpha
from pytest_psa.errors import PSAViolation, PsaUsageError
from pytest_psa.measure.robustness.error_stats import Estimate, bounded_mean, proportion
from pytest_psa.results.checks import Checked, pick

PROTOCOL: Final = ("DomainBed leave-one-domain-out (Gulrajani & Lopez-Paz 2021): for each held-out domain, train "
                   "on all the other domains and evaluate on the held-out one; report the unweighted average "
                   "over held-out domains")
DEFAULT_ALPHA: Final = 0.05
ROLES: Final = ("augmented", "erm")


@dataclass(frozen=True)
class HeldOutDomain:
    """One leave-one-out run: per role, per-image correctness (seeds x images, 0/1) on the held-out
    domain and on held-in test images of the training domains, and the training records."""

    domain: str
    train_domains: tuple[str, ...]
    heldout: Mapping[str, np.ndarray]    # role -> [k seeds, N held-out images]
    indomain: Mapping[str, np.ndarray]   # role -> [k seeds, M held-in test images]
    training: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    sanity: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DomainBudgetVerdict:
    """One floor: ``min_domain_accuracy`` or ``vs_erm[accuracy]``, decided on the one-sided upper bound."""

    name: str
    metric: str
    budget: float
    estimate: float
    low: float | None
    high: float | None
    alpha: float
    outcome: str
    unit: str = "fraction"

    @property
    def limit_text(self) -> str:
        return format_value(self.budget, self.unit, exact=True)

    def line(self) -> str:
        return (f"{self.name} = {format_value(self.estimate, self.unit)} ≥ {self.limit_text}: {self.outcome} "
                f"(upper bound {format_value(self.high, self.unit)} at alpha {self.alpha:g})")

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "metric": self.metric, "budget": self.budget, "limit": self.budget,
                "unit": self.unit, "limit_text": self.limit_text, "estimate": self.estimate, "low": self.low,
                "high": self.high, "alpha": self.alpha, "outcome": self.outcome, "bound": "floor"}


@dataclass(frozen=True)
class DomainResult(Checked):
    """Leave-one-domain-out accuracies of `augmentation` and `baseline`, per held-out domain and averaged."""

    augmentation: str
    baseline: str
    outcomes: tuple[HeldOutDomain, ...]
    seeds: tuple[int, ...]
    data: dict[str, Any]
    settings: dict[str, Any]
    alpha: float = DEFAULT_ALPHA
    assert_defaults: Mapping[str, Any] = field(default_factory=dict)
    repro: str = ""
    audit_kind = "domain"

    def __post_init__(self) -> None:
        check_alpha(self.alpha, 0.5)
        if not self.outcomes:
            raise PsaUsageError("a domain result needs at least one held-out domain", fix="hold out one or more")

    @property
    def subject(self) -> str:
        return self.augmentation

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(o.domain for o in self.outcomes)

    # -- numbers ---------------------------------------------------------------------------------
    def per_domain(self, alpha: float | None = None) -> dict[str, dict[str, Estimate]]:
        """Per held-out domain: accuracy_heldout, erm_accuracy_heldout, delta_accuracy_heldout,
        accuracy_indomain, erm_accuracy_indomain (each with its two-sided 1 − alpha interval)."""
        a = self.alpha if alpha is None else alpha
        check_alpha(a, 1.0)
        out = {}
        for o in self.outcomes:
            aug, erm = o.heldout["augmented"].mean(0), o.heldout["erm"].mean(0)
            out[o.domain] = {
                "accuracy_heldout": proportion(aug, a, better="higher"),
                "erm_accuracy_heldout": proportion(erm, a, better="higher"),
                "delta_accuracy_heldout": bounded_mean(aug - erm, -1.0, 1.0, a, better="higher"),
                "accuracy_indomain": proportion(o.indomain["augmented"].mean(0), a, better="higher"),
                "erm_accuracy_indomain": proportion(o.indomain["erm"].mean(0), a, better="higher"),
            }
        return out

    def metrics(self, alpha: float | None = None) -> dict[str, Estimate]:
        """The headline metrics: per domain ``<name>[<domain>]`` at 1 − alpha, and ``<name>_avg``, the
        unweighted mean over held-out domains, whose bounds average the domains' bounds at alpha / m."""
        a = self.alpha if alpha is None else alpha
        m = len(self.outcomes)
        per, wide = self.per_domain(a), self.per_domain(a / m)
        out: dict[str, Estimate] = {}
        for name in ("accuracy_heldout", "erm_accuracy_heldout", "delta_accuracy_heldout",
                     "accuracy_indomain", "erm_accuracy_indomain"):
            ests = [wide[d][name] for d in self.domains]
            out[f"{name}_avg"] = _average(ests, a, m)
        for d in self.domains:
            for name, e in per[d].items():
                out[f"{name}[{d}]"] = e
        return out

    def headline(self) -> dict[str, dict[str, Any]]:
        return {k: v.to_dict() for k, v in self.metrics().items()}

    def seed_spread(self) -> dict[str, Any]:
        """Per training seed: the average over held-out domains of each role's held-out accuracy and of
        their difference; with two or more seeds, a t interval (1 − alpha) of the difference's mean."""
        aug = np.mean([o.heldout["augmented"].mean(1) for o in self.outcomes], axis=0)
        erm = np.mean([o.heldout["erm"].mean(1) for o in self.outcomes], axis=0)
        delta = aug - erm
        out: dict[str, Any] = {"seeds": list(self.seeds), "accuracy_heldout_avg": aug.tolist(),
                               "erm_accuracy_heldout_avg": erm.tolist(), "delta_accuracy_heldout_avg": delta.tolist(),
                               "delta_t_interval": None}
        k = len(delta)
        if k >= 2:
            from scipy.stats import t

            half = float(t.ppf(1 - self.alpha / 2, k - 1) * delta.std(ddof=1) / math.sqrt(k))
            out["delta_t_interval"] = {"estimate": float(delta.mean()), "low": float(delta.mean()) - half,
                                       "high": float(delta.mean()) + half, "confidence": 1 - self.alpha,
                                       "unit": "seeds"}
        return out

    # -- the check -------------------------------------------------------------------------------
    def assert_budget(self, *, min_domain_accuracy: float | None = None, vs_erm: Any = None,
                      alpha: float | None = None) -> DomainResult:
        """Check floors on the average held-out accuracy (`min_domain_accuracy`, a fraction: 0.6 is 60 %)
        and on its paired difference to the baseline (`vs_erm`, e.g. ``"-1pp"``). Raises `PSAViolation`
        on a failure; an inconclusive verdict passes (see the module docstring)."""
        __tracebackhide__ = True
        d = self.assert_defaults
        floor = pick(min_domain_accuracy, d.get("min_domain_accuracy"))
        vs = pick(vs_erm, d.get("vs_erm"))
        a = float(pick(alpha, d.get("alpha"), self.alpha))
        check_alpha(a, 0.5)
        targets: list[tuple[str, str, float, str]] = []
        if floor is not None:
            targets.append(("min_domain_accuracy", "accuracy_heldout_avg", min_accuracy_limit(floor), "fraction"))
        if vs is not None:
            targets.append(("vs_erm[accuracy]", "delta_accuracy_heldout_avg", vs_erm_limit(vs), "pp"))
        if not targets:
            raise PsaUsageError("assert_budget() got no budget to check",
                                fix="give min_domain_accuracy=0.6 and/or vs_erm='-1pp' (or set min_domain_accuracy "
                                    "/ domain_vs_erm on the psa marker)")
        each = a / len(targets)
        metrics = self.metrics(2 * each)  # two-sided at 2·each: each side one-sided at `each`
        verdicts = []
        for name, metric, limit, unit in targets:
            e = metrics[metric]
            outcome = ("fail" if e.high is not None and e.high < limit else
                       "inconclusive" if e.estimate < limit else "pass")
            verdicts.append(DomainBudgetVerdict(name, metric, limit, float(e.estimate), e.low, e.high, each,
                                                outcome, "fraction" if unit == "fraction" else "pp"))
        self._log_verdicts(verdicts)
        failed = [v for v in verdicts if v.outcome == "fail"]
        if failed:
            raise PSAViolation("\n".join(
                [f"domain generalization of {self.augmentation} (vs {self.baseline}) below its floor:"]
                + [f"  {v.line()}" for v in verdicts] + ["", self.table()]
                + ([f"reproduce: {self.repro}"] if self.repro else [])))
        return self

    # -- output ----------------------------------------------------------------------------------
    def table(self) -> str:
        """One row per held-out domain and the average: held-out accuracy of each side, the paired
        difference, and in-domain accuracy, with 1 − alpha intervals."""
        m = self.metrics()
        rows = [("held out", "trained on", f"{self.augmentation} held-out", f"{self.baseline} held-out",
                 "delta", f"{self.augmentation} in-domain", f"{self.baseline} in-domain")]
        for o in self.outcomes:
            k = f"[{o.domain}]"
            rows.append((o.domain, "+".join(o.train_domains), _pct(m["accuracy_heldout" + k]),
                         _pct(m["erm_accuracy_heldout" + k]), _pp(m["delta_accuracy_heldout" + k]),
                         _pct(m["accuracy_indomain" + k]), _pct(m["erm_accuracy_indomain" + k])))
        rows.append(("average", "", _pct(m["accuracy_heldout_avg"]), _pct(m["erm_accuracy_heldout_avg"]),
                     _pp(m["delta_accuracy_heldout_avg"]), _pct(m["accuracy_indomain_avg"]),
                     _pct(m["erm_accuracy_indomain_avg"])))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def to_dict(self) -> dict[str, Any]:
        per = self.per_domain()
        return {
            "kind": "domain", "augmentation": self.augmentation, "baseline": self.baseline, "protocol": PROTOCOL,
            "seeds": list(self.seeds), "alpha": self.alpha, "domains": list(self.domains),
            "metrics": self.headline(),
            "per_domain": [{"domain": o.domain, "train_domains": list(o.train_domains),
                            "n_heldout": int(o.heldout["erm"].shape[1]), "n_indomain": int(o.indomain["erm"].shape[1]),
                            **{k: v.to_dict() for k, v in per[o.domain].items()},
                            "training": {r: list(o.training.get(r, [])) for r in ROLES}, "sanity": o.sanity}
                           for o in self.outcomes],
            "seed_spread": self.seed_spread(), "data": self.data, "settings": self.settings, "repro": self.repro,
        }


def min_accuracy_limit(value: Any) -> float:
    """`min_domain_accuracy` as a fraction in [0, 1] (0.6 is 60 %)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= float(value) <= 1:
        raise PsaUsageError("min_domain_accuracy must be a fraction in [0, 1] (0.6 is 60 %)", observed=value,
                            fix="e.g. min_domain_accuracy=0.6")
    return float(value)


def vs_erm_limit(value: Any) -> float:
    """A domain `vs_erm` floor as a fraction (``"-1pp"`` is -0.01): `_specs.budgets.accuracy_floor`."""
    return accuracy_floor(value)


def _average(ests: list[Estimate], alpha: float, m: int) -> Estimate:
    est = float(np.mean([e.estimate for e in ests]))
    lows, highs = [e.low for e in ests], [e.high for e in ests]
    low = float(np.mean(lows)) if all(x is not None for x in lows) else None  # type: ignore[arg-type]
    high = float(np.mean(highs)) if all(x is not None for x in highs) else None  # type: ignore[arg-type]
    method = f"mean over {m} domains of per-domain bounds at alpha/{m} ({ests[0].method})"
    return Estimate(est, low, high, "higher", "fraction", 1 - alpha, method, int(sum(e.n for e in ests)))


def _pct(e: Estimate) -> str:
    if e.low is None or e.high is None:
        return f"{100 * e.estimate:.1f}%"
    return f"{100 * e.estimate:.1f}% [{100 * e.low:.1f}, {100 * e.high:.1f}]"


def _pp(e: Estimate) -> str:
    if e.low is None or e.high is None:
        return f"{100 * e.estimate:+.1f}pp"
    return f"{100 * e.estimate:+.1f}pp [{100 * e.low:+.1f}, {100 * e.high:+.1f}]"


__all__ = ["DEFAULT_ALPHA", "PROTOCOL", "DomainBudgetVerdict", "DomainResult", "HeldOutDomain", "min_accuracy_limit",
           "vs_erm_limit"]
