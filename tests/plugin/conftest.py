# In-process pytester runs restore sys.modules afterwards; torch cannot be imported twice in one
# process, so load the heavy modules here, before any inline run snapshots sys.modules.
import scipy.stats  # noqa: F401
import torch  # noqa: F401
import torchvision.transforms.v2  # noqa: F401

import pytest_psa.augment.adapters  # noqa: F401
import pytest_psa.audits.density  # noqa: F401

# Same reason, and pytest re-compiles dropped modules on every inline run when bytecode is not written
# (PYTHONDONTWRITEBYTECODE=1): importing them once here makes each inline run several times faster.
import hypothesis  # noqa: F401,E402

import pytest_psa.report.baseline  # noqa: F401,E402
import pytest_psa.report.terminal  # noqa: F401,E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _registries_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """An inline pytester session registers its conftest's hook distances and data sources in this
    process; without a restore they would show up in the next run's "valid: ..." lists."""
    from pytest_psa.data import sources
    from pytest_psa.measure.density import distances

    monkeypatch.setattr(distances, "_REGISTRY", dict(distances._REGISTRY))
    monkeypatch.setattr(sources, "_SOURCES", dict(sources._SOURCES))
