"""Distances for the density audit: ``l2`` (RMS on [0, 1]), ``linf``, ``l2_raw``, ``l2_aligned``
(best shift and flip) and ``feature`` (encoder embeddings), plus the registry for users' own."""

from pytest_psa.measure.density.distances import (
    Distance,
    DistanceContext,
    DistanceOutput,
    aligned_distance,
    available_distances,
    feature_distance,
    get_distance,
    register_distance,
)

__all__ = ["Distance", "DistanceContext", "DistanceOutput", "aligned_distance", "available_distances",
           "feature_distance", "get_distance", "register_distance"]
