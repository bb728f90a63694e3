"""Affinity and Diversity (Gontijo-Lopes et al. 2020, "Affinity and Diversity: Quantifying Mechanisms
of Data Augmentation", arXiv 2002.08973): two rival predictors of what an augmentation buys.

- **affinity** = accuracy of a model trained *without* the augmentation (ERM) on augmented validation
  images / its accuracy on the same images clean. 1 means the augmented images look in-distribution to
  the clean model; lower means the augmentation moves images off the clean data's manifold.
  (The paper reports the difference; the ratio is what the issue asks for and is scale-free.)
- **diversity** = the final training loss of the model trained *with* the augmentation / ERM's final
  training loss, both on the batches each model trained on (the augmented model's are augmented): a
  harder-to-fit augmented distribution is a more diverse one.

Both are computed from models a run already trained; nothing here trains. Intervals: affinity by the
delta method over images (paired: the same images clean and augmented), seeds as groups
(`error_stats.ratio_of_means`); diversity by a t interval on the per-seed log ratios.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
import numpy as np
import torch
from scipy import special

from pytest_psa._seeding import draw_seeds
from pytest_psa.augment.adapters import Augmentation
from pytest_psa.data.image_data import ImageData
from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.robustness.error_stats import Estimate, ratio_of_means

AFFINITY_CONVENTION = ("affinity = accuracy of the ERM model on augmented test images / its accuracy on the same "
                       "images clean (one augmentation draw per image, seeded per image); Gontijo-Lopes et al. 2020, "
                       "as a ratio; interval: delta method over images, seeds as groups")
DIVERSITY_CONVENTION = ("diversity = final training loss of the augmented model / ERM's (mean cross-entropy in nats "
                        "of the last training epoch, on the batches each trained on), per seed; Gontijo-Lopes et al. "
                        "2020; interval: t on the per-seed log ratios, shown as ratios")


def correct_clean_and_augmented(model: torch.nn.Module, augmentation: Augmentation, data: ImageData, *,
                                seed: int = 0, batch_size: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """Per image: (correct on the clean image, correct on one augmented draw of it), as 0/1 floats.

    Draw i is seeded from (seed, image position, 0), the density audit's seed table, so the augmented
    images do not depend on the batch size. The model is evaluated in eval mode on its own device."""
    positions = data.indices.numpy() if data.indices is not None else np.arange(len(data))
    seeds = draw_seeds(int(seed), positions, 1)[:, 0]
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    clean = np.empty(len(data), dtype=np.float64)
    augmented = np.empty(len(data), dtype=np.float64)
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                stop = min(start + batch_size, len(data))
                x = data.float_images(slice(start, stop))
                y = data.labels[start:stop].to(dev)
                xa = augmentation.apply(x, seeds[start:stop])
                for out, images in ((clean, x), (augmented, xa)):
                    pred = model(images.to(dev).contiguous(memory_format=torch.channels_last)).argmax(1)
                    out[start:stop] = (pred == y).double().cpu().numpy()
    finally:
        model.train(was_training)
    return clean, augmented


def affinity(models: Sequence[torch.nn.Module], augmentation: Augmentation, data: ImageData, *,
             seed: int = 0, alpha: float = 0.05) -> tuple[Estimate, list[float]]:
    """Affinity of `augmentation` to clean models `models` (one per training seed) on `data`:
    (the mean over seeds of accuracy(augmented) / accuracy(clean), with its delta-method interval;
    the per-seed ratios). See `AFFINITY_CONVENTION`."""
    if not models:
        raise PsaUsageError("affinity() needs at least one ERM model", fix="pass the ERM models of each seed")
    pairs = [correct_clean_and_augmented(m, augmentation, data, seed=seed) for m in models]
    clean = np.stack([c for c, _ in pairs])
    augmented = np.stack([a for _, a in pairs])
    per, mean, dropped = ratio_of_means(augmented, clean, alpha, unit="ratio")
    if dropped:
        raise PsaUsageError("affinity is undefined: an ERM model got every clean image wrong",
                            observed=f"seeds at positions {dropped}", fix="train the ERM models further")
    mean = Estimate(mean.estimate, mean.low, mean.high, "higher", "ratio", mean.confidence,
                    "delta (images; seeds as groups)", mean.n)
    return mean, [float(p.estimate) for p in per]


def diversity(augmented_losses: Sequence[float], erm_losses: Sequence[float], *,
              alpha: float = 0.05) -> tuple[Estimate, list[float]]:
    """Diversity: the geometric mean over seeds of final training loss (augmented) / (ERM), paired by
    seed, with a two-sided (1 - alpha) t interval on the log ratios (none with one seed); and the
    per-seed ratios. See `DIVERSITY_CONVENTION`."""
    a, e = np.asarray(augmented_losses, np.float64), np.asarray(erm_losses, np.float64)
    if a.shape != e.shape or a.size == 0:
        raise PsaUsageError("diversity() needs one augmented and one ERM training loss per seed",
                            observed=f"{a.size} augmented, {e.size} ERM")
    if np.any(a <= 0) or np.any(e <= 0):
        raise PsaUsageError("diversity is a ratio of training losses, which must be positive",
                            observed=f"augmented {a.tolist()}, ERM {e.tolist()}")
    d = np.log(a / e)
    k = d.size
    est = float(np.exp(d.mean()))
    low: float | None = None
    high: float | None = None
    if k >= 2:
        half = float(special.stdtrit(k - 1, 1 - alpha / 2)) * float(d.std(ddof=1)) / math.sqrt(k)
        low, high = float(np.exp(d.mean() - half)), float(np.exp(d.mean() + half))
    return (Estimate(est, low, high, "higher", "ratio", 1 - alpha, "t on per-seed log ratios", k),
            [float(v) for v in a / e])


__all__ = ["AFFINITY_CONVENTION", "DIVERSITY_CONVENTION", "affinity", "correct_clean_and_augmented", "diversity"]

