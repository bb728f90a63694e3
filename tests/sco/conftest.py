"""Shared, session-scoped experiment runs: each is computed once and read by several test files.

Each takes seconds (E2 the longest), so the tests that read them carry ``@pytest.mark.slow``."""

from __future__ import annotations

import pytest

from pytest_psa.sco.experiments import e2_sa_gd, e4_sam


@pytest.fixture(scope="session")
def e2():
    """E2 at the note's grid (n = 6, η = ¼, ρ = 0.1, T = 16…1024), with a 5-point sweep at T = 256."""
    return e2_sa_gd(sweep_points=5, draws=2000, seed=0)


@pytest.fixture(scope="session")
def e4():
    """E4 at the note's grid (n = 6, η = 1/24, r = ½, δ_j = 0.03, T = 16…576)."""
    return e4_sam(seed=0)
