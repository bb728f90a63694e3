"""`FlatnessReport`: every metric of one measurement, with the clean loss, norms and settings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from pytest_psa.measure.flatness.metric_values import MetricResult, plain


@dataclass(frozen=True, kw_only=True)
class FlatnessReport:
    """Per-metric results (`results`, raw; `invariant`, filter-normalized when asked for), the clean
    loss L0 and accuracy on the measured data, weight norms of the perturbed tensors, seed, device,
    timing and the full configuration. Index it by metric name: ``report["lpf"].value``.
    `cached` says, per metric, whether its value was read from the measurement cache
    (`pytest_psa.audits.measurement_cache`); empty when the report was measured directly."""

    results: dict[str, MetricResult]
    invariant: dict[str, MetricResult] = field(default_factory=dict)
    loss0: float
    accuracy: float | None
    n_images: int
    weight_norms: dict[str, float]
    weight_norm: float  # L2 norm of all perturbed tensors together
    seed: int
    device: str
    seconds: float
    config: dict[str, Any]
    versions: dict[str, str]
    cached: dict[str, bool] = field(default_factory=dict)

    def __getitem__(self, metric: str) -> MetricResult:
        return self.results[metric]

    def __contains__(self, metric: object) -> bool:
        return metric in self.results

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.results)

    def definitions(self, metrics: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """What each reported number means (`MetricResult.definition`: metric, normalization, PAC-Bayes
        target and its convention, LPF sigma, ...), by metric; seeds and precision settings excluded.
        Two reports' values of a metric are comparable only where its definitions agree."""
        names = self.metrics if metrics is None else tuple(metrics)
        return {m: self.results[m].definition() for m in names if m in self.results}

    def caveats(self) -> dict[str, str]:
        """Metric (``"<metric> [<normalization>]"`` for report.invariant) -> why its value is not what its
        definition promises (an unconverged power iteration, an unbracketed sigma); empty when none."""
        out = {k: c for k, r in self.results.items() if (c := r.caveat())}
        out.update({f"{k} [{r.setup.normalization}]": c for k, r in self.invariant.items() if (c := r.caveat())})
        return out

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", plain({  # plain() is typed Any; it maps a dict to a dict
            "results": {k: r.to_dict() for k, r in self.results.items()},
            "invariant": {k: r.to_dict() for k, r in self.invariant.items()},
            "definitions": self.definitions(), "caveats": self.caveats(),
            "loss0": self.loss0, "accuracy": self.accuracy, "n_images": self.n_images,
            "weight_norms": dict(self.weight_norms), "weight_norm": self.weight_norm,
            "seed": self.seed, "device": self.device, "seconds": self.seconds,
            "config": {k: (v if isinstance(v, (int, float, str, bool, type(None), tuple, list)) else repr(v))
                       for k, v in self.config.items()},
            "versions": dict(self.versions), "cached": dict(self.cached),
        }))

    def table(self) -> str:
        """A small text table: metric, value +- se, unit, seconds."""
        acc = "n/a" if self.accuracy is None else f"{self.accuracy:.4f}"
        lines = [f"L0 = {self.loss0:.6g}, accuracy = {acc}, n = {self.n_images}, "
                 f"||w|| = {self.weight_norm:.4g}, seed = {self.seed}, device = {self.device}"]
        rows = [(_label(k, r), r) for k, r in (*self.results.items(), *self.invariant.items())]
        width = max((len(k) for k, _ in rows), default=6)
        for name, r in rows:
            se = "" if r.se is None else f" +- {r.se:.3g}"
            note = "" if r.caveat() is None else "  [see caveat]"
            lines.append(f"{name:<{width}}  {r.value:>12.6g}{se:<14}  {r.unit}  ({r.seconds:.2f} s){note}")
        lines += [f"caveat: {k}: {c}" for k, c in self.caveats().items()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _label(metric: str, r: MetricResult) -> str:
    """The metric's name with what sets its number apart: the normalization, the PAC-Bayes target."""
    tags = [] if r.setup.normalization == "none" else [r.setup.normalization]
    target_type = getattr(r, "target_type", None)
    if target_type is not None:
        tags.append(f"{'error' if target_type == 'accuracy' else 'loss'} +{getattr(r, 'target', 0.0):g}")
    return f"{metric} [{', '.join(tags)}]" if tags else metric


def caveat_lines(metric: str, erm_reports: Sequence[FlatnessReport],
                 augmented_reports: Sequence[FlatnessReport]) -> list[str]:
    """Lines for a verdict on `metric` that name every compared value with a caveat (e.g. a
    hessian_top that did not converge), by role and seed; empty when every value is sound."""
    lines = []
    for role, reports in (("ERM", erm_reports), ("augmented", augmented_reports)):
        for rep in reports:
            caveat = rep.results[metric].caveat() if metric in rep.results else None
            if caveat:
                lines.append(f"  caution: {metric} of the {role} model, seed {rep.seed}: {caveat}; "
                             "the verdict rests on this value")
    return lines
