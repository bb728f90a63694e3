"""`flatness(aug)`: train (or load) ERM and augmented models for k seeds and compare their flatness.

Both models of a seed are measured on the same fixed, un-augmented subset of the images they
were trained on, in eval mode, with the same measurement seed (common random numbers); the
comparison itself is `pytest_psa.results.flatness.FlatnessComparison`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_psa.errors import PsaUsageError
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
    measure_options: dict[str, Any] | None = None, **train_overrides: Any,
) -> FlatnessComparison:
    """Train (or load from the cache) ERM and `augmentation` models for each seed and compare flatness.

    `seeds` is a count (seeds 0..k-1) or explicit seeds; `baseline` is "erm" (no augmentation) or
    another augmentation; `preset` is "smoke" (default), "fast", "paper" or a Preset; keyword
    `train_overrides` replace preset fields (``epochs=2, n_train=2000``). `measure_options` go to
    `measure_flatness` (e.g. ``{"power_iters": 20}``).
    """
    from pytest_psa.augment.adapters import as_augmentation
    from pytest_psa.data.sources import load_data
    from pytest_psa.measure.flatness.measure import measure_flatness
    from pytest_psa.train import ModelCache, resolve_preset

    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise PsaUsageError(f"unknown flatness metric {unknown[0] if unknown else None!r}",
                            fix=f"choose from {', '.join(METRICS)}")
    seed_list = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seed_list:
        raise PsaUsageError("flatness() needs at least one seed", fix="seeds=3 (or a list of seeds)")
    aug = as_augmentation(augmentation)
    base = None if baseline in ("erm", None) else as_augmentation(baseline)
    train_data = load_data(data, split="train", root=data_root, cache_dir=cache_dir)
    test_data = load_data(data, split="test", root=data_root, cache_dir=cache_dir)
    recipe = resolve_preset(preset or "smoke", **train_overrides)
    # the images both models were trained on (the preset's fixed subset), un-augmented
    measured = train_data.subset(recipe.n_train, recipe.subset_seed).subset(n_measure, seed=0)
    cache = ModelCache(cache_dir)
    erm_reports, aug_reports, records = [], [], {"erm": [], "augmented": []}
    for s in seed_list:
        for label, which, sink in (("erm", base, erm_reports), ("augmented", aug, aug_reports)):
            trained = cache.get_or_train(model, train_data, which, preset=recipe, seed=s, device=device,
                                         optimizer=optimizer, test_data=test_data, progress=progress)
            records[label].append(trained.record.to_dict())
            sink.append(measure_flatness(trained.model, measured, metrics=list(metrics), seed=s, device=device,
                                         **(measure_options or {})))
    comparisons = {m: compare_metric(m, tuple(compared_value(r, m) for r in erm_reports),
                               tuple(compared_value(r, m) for r in aug_reports), alpha) for m in metrics}
    return FlatnessComparison(
        augmentation=aug.name, metrics=comparisons, seeds=seed_list, erm_reports=tuple(erm_reports),
        augmented_reports=tuple(aug_reports), training=records,
        data={**measured.to_dict(), "describe": measured.describe()},
        settings={"preset": recipe.name, "baseline": "erm" if base is None else base.name, "alpha": alpha,
                  "n_measure": len(measured), "optimizer": optimizer, "metrics": list(metrics)},
        repro=f"pytest_psa.flatness(<the augmentation {aug.name}>, seeds={list(seed_list)}, preset={recipe.name!r})",
    )



__all__ = ["DEFAULT_METRICS", "DEFAULT_SEEDS", "FlatnessComparison", "flatness"]
