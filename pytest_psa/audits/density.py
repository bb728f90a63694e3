"""The density audit: draw K augmentations of N images and measure d(x, A(x)).

Every draw A_k(x_i) is seeded from (seed, i, k), where i is the image's position in its full
split, so for per-image augmentations the distances do not depend on chunking, draw order or
which other images were audited. (A batched module gets one seed per chunk call, so its draws
depend on the chunk it was in.) The work is batched: distances for a chunk of images are computed in one tensor op,
so the audit costs little more than applying the augmentation itself.

The distance is bound to the audited data first (`Distance.bind`: the feature distance finds its
encoder), then each chunk of clean images is prepared once (`Distance.reference`: encoded, for the
feature distance) and compared with each draw (`Distance.measure`), whose per-image details (the
winning alignment of ``l2_aligned``) are kept as (N, K) arrays in `DensityResult.details`.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np
import torch

from pytest_psa._seeding import draw_seeds as draw_seeds  # the (seed, image, draw) seed table, re-exported
from pytest_psa._time_budget import check_budget
from pytest_psa._threads import single_thread
from pytest_psa._timings import stage
from pytest_psa.augment.adapters import Augmentation
from pytest_psa.augment.known import resolve_augmentation
from pytest_psa.augment.seeding import torchvision_only
from pytest_psa.data.sources import load_data
from pytest_psa.measure.density.distances import ZERO_ON_EQUAL, Distance, DistanceContext, get_distance
from pytest_psa.results.sample_pairs import sample_pairs
from pytest_psa.results.density import DensityResult
from pytest_psa._progress import progress
from pytest_psa.errors import PsaUsageError

DEFAULT_N_IMAGES = 500  # measured on 2 CPU cores: 500 images x 8 draws, 0.6-3.5 s for TA..AugMix
DEFAULT_DRAWS = 8


def density(
    augmentation: Any,
    *,
    data: Any = None,
    n_images: int = DEFAULT_N_IMAGES,
    draws: int = DEFAULT_DRAWS,
    distance: str | Distance | Any = "l2",
    seed: int | None = None,
    exclude_identity: bool = False,
    split: str = "test",
    data_root: Any = None,
    cache_dir: Any = None,
    allow_download: bool = False,
    chunk_size: int = 256,
) -> DensityResult:
    """Audit the proximal density of `augmentation` (see `DensityResult` for what comes back).

    `augmentation` is anything `as_augmentation` takes, a known name ("augmix") or a ``module:attr``
    path. Before any draw it must pass the determinism self-check (`Augmentation.check_determinism`):
    the same probe images and seeds must give the same outputs twice, or the audit could not be
    repeated; `AugmentationContractError` names the cause and the fix otherwise.
    `data` is anything `pytest_psa.load_data` accepts (default: the embedded synthetic set);
    `n_images` images are picked from its `split` with `seed` (class-balanced), each augmented
    `draws` times. `seed=None` means 0: every run is reproducible unless a seed is chosen.
    """
    __tracebackhide__ = True
    if int(n_images) < 1 or int(draws) < 1:
        raise PsaUsageError(f"n_images and draws must be >= 1, got n_images={n_images}, draws={draws}")
    if int(chunk_size) < 1:
        raise PsaUsageError(f"chunk_size must be >= 1, got {chunk_size}")
    seed = 0 if seed is None else int(seed)
    with stage("density", detail=_label(augmentation)):
        return _density(augmentation, data, int(n_images), int(draws), distance, seed, exclude_identity, split,
                        data_root, cache_dir, allow_download, int(chunk_size))


def _label(augmentation: Any) -> str:
    return augmentation if isinstance(augmentation, str) else getattr(augmentation, "name", type(augmentation).__name__)


def _density(augmentation: Any, data: Any, n_images: int, draws: int, distance: Any, seed: int,
             exclude_identity: bool, split: str, data_root: Any, cache_dir: Any, allow_download: bool,
             chunk_size: int) -> DensityResult:
    __tracebackhide__ = True
    started = time.perf_counter()
    # an object is checked before any data is loaded; a name needs the image size first
    aug = None if isinstance(augmentation, str) else resolve_augmentation(augmentation)
    dist = get_distance(distance)
    images = load_data(data, split=split, root=data_root, cache_dir=cache_dir, allow_download=allow_download,
                       n=int(n_images), seed=seed)
    if aug is None:
        aug = resolve_augmentation(augmentation, image_size=max(images.image_size))
    positions = images.indices.numpy() if images.indices is not None else np.arange(len(images))
    seeds = draw_seeds(seed, positions, int(draws))
    probing = time.perf_counter()
    aug.check_determinism(tuple(images.images.shape[1:]))  # the probe; cached per augmentation and shape
    aug.reset_observed()  # the output range this audit sees goes into the result
    loaded = time.perf_counter()
    # a distance that depends on the data (an encoder to find or train, a radius for the image size)
    dist = dist.bind(DistanceContext(images=images, data=data, split=split, data_root=data_root,
                                     cache_dir=cache_dir, allow_download=allow_download))
    bound = time.perf_counter()

    n, k = len(images), int(draws)
    # a pixel distance already tells which draws changed the image: only its zeros need the exact test
    pixelwise = (any(dist.fn is f for f in ZERO_ON_EQUAL)  # `is`: a user's fn may be unhashable
                 and dist.encode is None and dist.prepare is None)
    # torchvision's own transforms measured with a pixel distance: draws in inference mode, without the
    # autograd dispatch of every op (~8 % of a crop+flip draw); the same kernels, so the same values.
    # Not for user code (it may need autograd, as an adversarial augmentation does) or other distances.
    inference = pixelwise and aug.kind != "batched" and (aug.fn is None or torchvision_only(aug.fn))
    distances = np.empty((n, k), dtype=np.float64)
    identity = np.empty((n, k), dtype=bool)
    details: dict[str, np.ndarray] = {}  # per-draw extras of the distance, e.g. the winning alignment
    augment_s = 0.0
    bar = progress(desc=f"psa density {aug.name[:40]}", total=n * k, unit="draw")
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        x = images.float_images(slice(start, stop))
        with single_thread():
            reference = dist.reference(x)  # once per chunk: a feature distance encodes x here
        for j in range(k):
            t0 = time.perf_counter()
            with torch.inference_mode(inference):
                y = aug.apply(x, seeds[start:stop, j])
            augment_s += time.perf_counter() - t0
            check_budget(lambda: f"the density audit of {aug.name}: draw {j + 1}/{k} of images {start}-{stop - 1}")
            bar.update(stop - start)
            with single_thread(), torch.inference_mode(inference):
                out = dist.measure(reference, y)
                distances[start:stop, j] = out.values.double().numpy()
                identity[start:stop, j] = _unchanged(x, y, out.values if pixelwise else None)
                for key, tensor in out.details.items():
                    value = tensor.numpy()
                    details.setdefault(key, np.zeros((n, k), dtype=value.dtype))[start:stop, j] = value
    bar.close()
    if not np.isfinite(distances).all() or (distances < 0).any():
        raise PsaUsageError(f"distance {dist.name!r} returned negative or non-finite values",
                            fix="a distance must be finite and >= 0")
    finished = time.perf_counter()
    observed = _observed(aug)  # before the sample pairs redraw three of the measured draws
    pairs = sample_pairs(images, aug, seeds, distances)  # for the HTML report's grid
    asked = repr(distance) if isinstance(distance, str) else f"<distance {dist.name}>"
    return DensityResult(
        augmentation=aug.name, distance=dist.name, distances=distances, identity=identity, seed=seed,
        data={**images.to_dict(), "describe": images.describe()}, distance_info=dist.to_dict(),
        gammas=dist.gammas, exclude_identity=exclude_identity, image_indices=positions,
        timing={"total_s": finished - started, "load_s": probing - started, "probe_s": loaded - probing,
                "distance_setup_s": bound - loaded,
                "augment_s": augment_s, "measure_s": finished - bound - augment_s,
                "draws_per_s": n * k / max(finished - bound, 1e-9)},
        environment={**environment(), "augmentation_range": observed}, details=details,
        sample_pairs=tuple(pairs),
        repro=(f"pytest_psa.density(<the augmentation {aug.name}>, data={images.name!r}, split={images.split!r}, "
               f"n_images={n}, draws={k}, distance={asked}, seed={seed})"),
    )


def _unchanged(x: torch.Tensor, y: torch.Tensor, pixel_distance: torch.Tensor | None) -> np.ndarray:
    """Which draws returned their image exactly: max |y - x| == 0 per image.

    With the values of a `ZERO_ON_EQUAL` distance, only draws at distance 0 are tested (d(x, x) == 0,
    so d > 0 means changed); a zero can still hide a change (l2 squares a difference below 1e-23 to 0).
    This saves a pass over the batch per draw (~2 % of a crop+flip audit).
    """
    if pixel_distance is None:
        # x - y == 0 exactly iff x == y (finite floats, checked): half the cost of (x != y).any
        return ((y - x).flatten(1).abs_().amax(1) == 0).numpy()
    same = pixel_distance == 0
    rows = same.nonzero().flatten()
    if len(rows):
        same[rows] = (y[rows] - x[rows]).flatten(1).abs_().amax(1) == 0
    return same.numpy()


def _observed(aug: Augmentation) -> dict[str, Any]:
    """The audited outputs' smallest and largest value, and how many were kept outside [0, 1]."""
    low, high = aug.observed_range or (None, None)
    return {"min": low, "max": high, "outside_unit_interval": aug.excursion_images, "outputs": aug.checked_images}


def environment() -> dict[str, Any]:
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "device": "cpu", "threads": torch.get_num_threads()}
