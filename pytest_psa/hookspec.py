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
def pytest_psa_train(plan: Any) -> Any:
    """Train one model your own way: return the trained ``nn.Module`` (or ``(module, extra_record)``),
    or None to let the built-in trainer train this plan (first result wins).

    `plan` is a ``pytest_psa.train.user_trainer.TrainingJob``: the resolved training (``plan.data``,
    ``plan.augmentation`` under the image contract, ``plan.preset`` fields, ``plan.seed``,
    ``plan.device``) and helpers that keep it reproducible (``build_model()``, ``optimizer(net)``,
    ``scheduler(opt)``, ``batches(views=, clean=, model=)``, ``log_loss(loss)``). The ``psa`` fixture
    trains every model through this hook (both sides of a comparison), under the same seeding,
    time budget, progress bar, evaluation and model cache; the implementations' names and source
    (and a ``@pytest_psa.training_recipe(version=...)``) are part of the cache key, so editing the
    hook retrains. Example (conftest.py)::

        import torch.nn.functional as F

        def pytest_psa_train(plan):
            net = plan.build_model()
            opt = plan.optimizer(net)
            sched = plan.scheduler(opt)
            for x, y in plan.batches(model=net):
                loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
                opt.zero_grad(); loss.backward(); opt.step(); sched.step()
                plan.log_loss(loss)
            return net

    A test can still pass its own ``psa.flatness(aug, trainer=fn)``, or override the ``psa_trainer``
    fixture. See docs/training.md, "Your own training recipe", and examples/augmix_jsd.
    """


@pytest.hookspec(firstresult=True)
def pytest_psa_repro_command(nodeid: str, seed: int, config: pytest.Config) -> str | None:
    """Return the one-line command printed under a failing check to reproduce it (first result wins)."""
