"""An augmentation that breaks the image contract inside a DataLoader worker surfaces as the same
`AugmentationContractError` the density audit raises (its property and fix), not as torch's
RuntimeError carrying the worker's traceback as text."""

from __future__ import annotations

import pytest
import torch

import pytest_psa
from pytest_psa.data.synthetic import synthetic
from pytest_psa.errors import AugmentationContractError
from pytest_psa.train.trainer import train


def times255(x: torch.Tensor) -> torch.Tensor:
    return x * 255.0  # the 0-255 scale: a contract error the density audit names


def _density_error() -> AugmentationContractError:
    with pytest.raises(AugmentationContractError) as info:
        pytest_psa.density(pytest_psa.tensor_augmentation(times255, name="times255"), n_images=4, draws=1)
    return info.value


def test_a_worker_side_contract_error_is_the_density_audits_error() -> None:
    aug = pytest_psa.tensor_augmentation(times255, name="times255")
    with pytest.raises(AugmentationContractError) as info:
        # 2 worker processes: the failing batch is augmented in a worker, not in this process
        train(None, synthetic("train", n=400), aug, epochs=1, n_train=400, batch_size=50, workers=2,
              train_eval_n=0, progress=False)
    err, expected = info.value, _density_error()
    assert (err.property, err.fix, err.augmentation) == (expected.property, expected.fix, expected.augmentation)
    assert "DataLoader worker" not in str(err) and "Traceback" not in str(err)
    assert err.__cause__ is None and err.__suppress_context__


def test_the_workers_have_exited_when_the_error_arrives() -> None:
    """Workers are shut down before the error is raised, not when the garbage collector reaches the
    DataLoader: then its queues were closed first and each worker waited out torch's 5 s timeout
    (10 s per failed training with 2 workers, measured) before it was killed."""
    import multiprocessing

    aug = pytest_psa.tensor_augmentation(times255, name="times255")
    with pytest.raises(AugmentationContractError) as info:
        train(None, synthetic("train", n=400), aug, epochs=1, n_train=400, batch_size=50, workers=2,
              train_eval_n=0, progress=False)
    assert info.value.__traceback__ is not None  # the error (and its frames) is still held here
    assert multiprocessing.active_children() == []


def test_the_report_shows_the_error_and_no_worker_traceback(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_worker="""
        import pytest_psa
        from pytest_psa.data.synthetic import synthetic
        from pytest_psa.train.trainer import train

        def times255(x):
            return x * 255.0

        def test_train_with_workers():
            train(None, synthetic("train", n=400), pytest_psa.tensor_augmentation(times255, name="times255"),
                  epochs=1, n_train=400, batch_size=50, workers=2, train_eval_n=0, progress=False)
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "AugmentationContractError: augmentation times255: value range" in out
    assert "fix: pixel values look like the 0-255 scale" in out
    for worker_trace in ("Original Traceback", "DataLoader worker process", "_worker_loop", "RuntimeError"):
        assert worker_trace not in out
    assert "pytest_psa/" not in out  # no library frame: the user's line and the message


def test_too_few_steps_for_the_one_cycle_schedule_is_a_usage_error() -> None:
    from pytest_psa.errors import PsaUsageError

    # 200 images / 50 per batch x 1 epoch = 4 steps: a warm-up of 0.25 x 4 = 1 step (torch divides by zero)
    with pytest.raises(PsaUsageError, match="4 optimization steps give the one-cycle schedule a warm-up of exactly one step"):
        train(None, synthetic("train", n=200), None, epochs=1, n_train=200, batch_size=50, workers=0,
              train_eval_n=0, progress=False)
