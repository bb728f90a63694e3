"""`flatness(aug)`: train (or load) ERM and augmented models for k seeds and compare their flatness.

The models come from `trained_pair` (the same cache entries as `pytest_psa.robustness` uses).

Both models of a seed are measured on the same fixed, un-augmented subset of the images they
were trained on, in eval mode, with the same measurement seed (common random numbers); the
comparison itself is `pytest_psa.results.flatness.FlatnessComparison`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_psa.audits.trained_pair import BASELINE, SUBJECT, PairSpec, Sanity, seed_list
from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.flatness.flatness_report import FlatnessReport
from pytest_psa.measure.flatness.measure import METRICS
from pytest_psa.results.flatness import (
    DEFAULT_ALPHA,
    DEFAULT_MEASURE_IMAGES,
    DEFAULT_METRICS,
    DEFAULT_SEEDS,
    FlatnessComparison,
    compare_metric,
    compared_value,
)


def flatness(
    augmentation: Any, *, baseline: Any = "erm", seeds: int | Sequence[int] = DEFAULT_SEEDS,
    metrics: Sequence[str] = DEFAULT_METRICS, preset: Any = None, data: Any = None, model: Any = None,
    alpha: float = DEFAULT_ALPHA, n_measure: int = DEFAULT_MEASURE_IMAGES, device: Any = None,
    cache_dir: Any = None, data_root: Any = None, optimizer: str = "sgd", progress: bool = True,
    measure_options: dict[str, Any] | None = None, sanity: Sanity = "error", trainer: Any = None,
    **train_overrides: Any,
) -> FlatnessComparison:
    """Train (or load from the cache) ERM and `augmentation` models for each seed and compare flatness.

    `augmentation` is a transform, a name `psa list` shows ("augmix") or a ``module:attr`` path.
    `seeds` is a count (seeds 0..k-1: `seed_list` with ``first=0``) or explicit seeds; `baseline`
    is "erm" (no augmentation) or another augmentation; `preset` is "smoke" (default), "fast",
    "paper" or a Preset; keyword `train_overrides` replace preset fields (``epochs=2, n_train=2000``).
    `measure_options` go to `measure_flatness` (e.g. ``{"power_iters": 20}``).
    Each model's metric values are cached beside the models (`measurement_cache`: keyed by the
    weights, the measured images, the metric's settings and the seed), so a second audit measures
    nothing it measured before; ``report.cached`` says which values were read back.
    `sanity` "error" refuses (`PsaSanityError`) models that learned nothing or a training set too
    small to measure (`trained_pair.SANITY_RULE`); "warn" measures anyway. Its record: ``settings["sanity"]``.
    `trainer`: the user's training recipe ``fn(job) -> nn.Module`` for both sides (`pytest_psa.train.user_trainer`;
    its identity joins the model cache key), None = the built-in trainer.
    """
    from pytest_psa.audits.evaluation_cache import EvaluationStore
    from pytest_psa.audits.measurement_cache import KIND, measure_cached, prefetch

    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise PsaUsageError(f"unknown flatness metric {unknown[0] if unknown else None!r}",
                            fix=f"choose from {', '.join(METRICS)}")
    seeds_ = seed_list(seeds, first=0)
    if not seeds_:
        raise PsaUsageError("flatness() needs at least one seed", fix="seeds=3 (or a list of seeds)")
    spec = PairSpec.resolve(augmentation, baseline, seeds=seeds_, data=data, data_root=data_root,
                            cache_dir=cache_dir, preset=preset, overrides=train_overrides)
    recipe = spec.preset
    # the images both models were trained on (the preset's fixed subset), un-augmented
    measured = spec.train_data.subset(recipe.n_train, recipe.subset_seed).subset(n_measure, seed=0)
    # per seed ERM then augmented: the order flatness has always trained in
    pair = spec.train(model=model, optimizer=optimizer, device=device, progress=progress,
                      roles=(BASELINE, SUBJECT), order="seed", sanity=sanity, trainer=trainer)

    store = EvaluationStore(cache_dir, kind=KIND)  # beside the models and the robustness evaluations

    def measured_reports(role: str) -> tuple[FlatnessReport, ...]:
        label = "erm" if role == BASELINE else "augmented"
        return tuple(measure_cached(t.model, measured, metrics=list(metrics), seed=s, device=device, store=store,
                                    detail=f"{label} seed {s}", options=measure_options)
                     for t, s in zip(pair.models(role), pair.seeds))

    # a remote executor (--psa-executor=ray): every model's missing values measured at once, then read
    prefetch([(m.model, s) for r in (BASELINE, SUBJECT) for m, s in zip(pair.models(r), pair.seeds)],
             measured, metrics=list(metrics), store=store, device=device, options=measure_options, progress=progress)
    erm_reports, aug_reports = measured_reports(BASELINE), measured_reports(SUBJECT)
    comparisons = {m: compare_metric(m, tuple(compared_value(r, m) for r in erm_reports),
                                     tuple(compared_value(r, m) for r in aug_reports), alpha) for m in metrics}
    return FlatnessComparison(
        augmentation=pair.subject_name, metrics=comparisons, seeds=pair.seeds, erm_reports=erm_reports,
        augmented_reports=aug_reports, training={"erm": pair.records(BASELINE), "augmented": pair.records(SUBJECT)},
        data={**measured.to_dict(), "describe": measured.describe()},
        settings={"preset": recipe.name, "baseline": pair.baseline_name, "alpha": alpha,
                  "n_measure": len(measured), "optimizer": optimizer, "metrics": list(metrics),
                  "definitions": erm_reports[0].definitions(metrics),  # PAC-Bayes target, LPF normalization, ...
                  "sanity": pair.sanity,  # the gate's rule and numbers (trained_pair.SANITY_RULE)
                  # the clean training loss each side reached, and the verdicts' note when they differ
                  "training_loss": pair.training_loss(),
                  "arms": {"erm": spec.baseline_arm.to_dict() if spec.baseline_arm else None,
                           "augmented": spec.subject_arm.to_dict() if spec.subject_arm else None}},
        repro=(f"pytest_psa.flatness(<the augmentation {pair.subject_name}>, seeds={list(pair.seeds)}, "
               f"preset={recipe.name!r})"),
    )


__all__ = ["DEFAULT_METRICS", "DEFAULT_SEEDS", "FlatnessComparison", "flatness"]
