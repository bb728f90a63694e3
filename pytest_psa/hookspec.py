"""Hooks pytest-psa calls, so users extend it from conftest.py instead of forking it."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_psa_distances() -> dict[str, Any] | None:  # None (pluggy drops it): nothing to add
    """Return extra distances as ``{name: fn}``; ``fn(x, y)`` maps two (N, C, H, W) float batches
    in [0, 1] to N non-negative values. Every implementation's result is registered.

    Example (conftest.py)::

        def pytest_psa_distances():
            return {"l1_mean": lambda x, y: (x - y).abs().flatten(1).mean(1)}

    The names are then accepted wherever a distance is: ``@pytest.mark.psa(distance="l1_mean")``,
    ``psa.density(aug, distance="l1_mean")``, ``--psa-distance=l1_mean``.
    """


def pytest_psa_data_sources() -> dict[str, Any] | None:  # None (pluggy drops it): nothing to add
    """Return named data sources as ``{name: factory}``; ``factory(split)`` returns
    ``pytest_psa.ImageData`` (see ``pytest_psa.data.image_data.from_arrays``).

    Example::

        def pytest_psa_data_sources():
            return {"my_faces": lambda split: from_arrays(*load_faces(split), name="my_faces", split=split)}
    """


@pytest.hookspec(firstresult=True)
def pytest_psa_repro_command(nodeid: str, seed: int, config: pytest.Config) -> str | None:
    """Return the one-line command printed under a failing check to reproduce it (first result wins)."""
