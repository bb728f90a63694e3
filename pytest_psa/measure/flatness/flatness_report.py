"""`FlatnessReport`: every metric of one measurement, with the clean loss, norms and settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from pytest_psa.measure.flatness.metric_values import MetricResult, plain


@dataclass(frozen=True, kw_only=True)
class FlatnessReport:
    """Per-metric results (`results`, raw; `invariant`, filter-normalized when asked for), the clean
    loss L0 and accuracy on the measured data, weight norms of the perturbed tensors, seed, device,
    timing and the full configuration. Index it by metric name: ``report["lpf"].value``."""

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

    def __getitem__(self, metric: str) -> MetricResult:
        return self.results[metric]

    def __contains__(self, metric: object) -> bool:
        return metric in self.results

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.results)

    def to_dict(self) -> dict[str, Any]:
        return cast("dict[str, Any]", plain({  # plain() is typed Any; it maps a dict to a dict
            "results": {k: r.to_dict() for k, r in self.results.items()},
            "invariant": {k: r.to_dict() for k, r in self.invariant.items()},
            "loss0": self.loss0, "accuracy": self.accuracy, "n_images": self.n_images,
            "weight_norms": dict(self.weight_norms), "weight_norm": self.weight_norm,
            "seed": self.seed, "device": self.device, "seconds": self.seconds,
            "config": {k: (v if isinstance(v, (int, float, str, bool, type(None), tuple, list)) else repr(v))
                       for k, v in self.config.items()},
            "versions": dict(self.versions),
        }))

    def table(self) -> str:
        """A small text table: metric, value +- se, unit, seconds."""
        acc = "n/a" if self.accuracy is None else f"{self.accuracy:.4f}"
        lines = [f"L0 = {self.loss0:.6g}, accuracy = {acc}, n = {self.n_images}, "
                 f"||w|| = {self.weight_norm:.4g}, seed = {self.seed}, device = {self.device}"]
        rows = [(k, r) for k, r in self.results.items()] + [(k + " [filter]", r) for k, r in self.invariant.items()]
        width = max((len(k) for k, _ in rows), default=6)
        for name, r in rows:
            se = "" if r.se is None else f" +- {r.se:.3g}"
            lines.append(f"{name:<{width}}  {r.value:>12.6g}{se:<14}  {r.unit}  ({r.seconds:.2f} s)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
