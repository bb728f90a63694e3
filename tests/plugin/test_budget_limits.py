"""Time budgets: per test (``@pytest.mark.psa(budget_s=...)``) and per session (``--psa-time-budget``).

Overruns are caught cooperatively at measurement step boundaries (training steps, flatness loss
evaluations, waiting for another worker's training) and fail the test with `TimeBudgetExceeded`
naming the budget, the time spent, the step and the fix. The inner tests sleep past their budget
before measuring, so whether a budget has run out never depends on the machine's speed.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pytest_psa._time_budget import check_budget, remaining, time_budget
from pytest_psa.errors import PsaUsageError, TimeBudgetExceeded

# the hypothesis plugin alone costs ~1.7 s of CPU per in-process run; these runs do not use it
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")

TINY_TRAINING = """
import time
import pytest
from pytest_psa.data.synthetic import synthetic
from pytest_psa.train.trainer import train


def tiny_training():
    # one step of the small CNN on 256 synthetic images, no worker processes, no extra evaluation
    return train(data=synthetic("train", n=256), epochs=1, n_train=256, workers=0, train_eval_n=0,
                 progress=False)
"""


def test_check_budget_is_a_no_op_without_a_budget() -> None:
    assert remaining() is None
    check_budget("anything")


def test_an_overrun_names_budget_elapsed_time_step_and_fix() -> None:
    with time_budget(2.0, what="the audit budget", fix="raise it", started=time.perf_counter() - 3.0):
        assert remaining() < 0
        with pytest.raises(TimeBudgetExceeded) as exc:
            check_budget(lambda: "draw 3/8 of images 0-255")
    msg = str(exc.value)
    assert "the audit budget ran out during draw 3/8 of images 0-255" in msg
    # the elapsed time is read when the check runs: at least the 3 s set up, a little more on a busy machine
    elapsed = re.search(r"observed: (\d+\.\d) s elapsed of a 2 s budget", msg)
    assert elapsed is not None and 3.0 <= float(elapsed.group(1)) < 10.0, msg
    assert "fix: raise it" in msg
    assert remaining() is None


def test_budgets_nest_and_the_earlier_deadline_decides() -> None:
    with time_budget(3600, what="session"):
        with time_budget(1.0, what="inner", started=time.perf_counter() - 2.0):
            with pytest.raises(TimeBudgetExceeded, match="inner ran out"):
                check_budget("step")
        check_budget("step")  # the inner budget is gone, the outer one is not exhausted
        assert 3500 < remaining() <= 3600


@pytest.mark.parametrize("bad", [0, -1.0, True, "10"])
def test_a_budget_must_be_positive_seconds(bad: object) -> None:
    with pytest.raises(PsaUsageError, match="must be a number of seconds > 0"):
        with time_budget(bad):  # type: ignore[arg-type]
            pass


def test_waiting_for_another_workers_training_honours_the_budget(tmp_path: Path) -> None:
    from filelock import FileLock

    from pytest_psa.data.synthetic import synthetic
    from pytest_psa.train.model_cache import ModelCache

    cache = ModelCache(tmp_path)
    data = synthetic("train", n=64)
    key = cache.key(None, data, epochs=1, n_train=64)
    cache.dir.mkdir(parents=True)
    with FileLock(str(cache.dir / f"{key}.lock")):  # "another worker" is training this entry
        with time_budget(0.2, what="the test budget"), pytest.raises(TimeBudgetExceeded) as exc:
            cache.get_or_train(None, data, epochs=1, n_train=64, progress=False)
    assert f"waiting for another process to finish training model cache entry {key[:16]}" in str(exc.value)
    assert cache.trainings() == []


@pytest.mark.slow
def test_per_test_budgets_fail_overruns_and_pass_the_rest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(g2_budget_helpers=TINY_TRAINING)
    pytester.makepyfile(test_budgets="""
        import time
        import pytest
        from g2_budget_helpers import tiny_training


        @pytest.mark.psa(budget_s=0.2)
        def test_training_overruns():
            time.sleep(0.3)
            tiny_training()


        @pytest.mark.psa(budget_s=0.2)
        def test_flatness_overruns():
            import torch
            from pytest_psa.measure.flatness.measure import measure_flatness
            model = torch.nn.Linear(4, 3)
            time.sleep(0.3)
            measure_flatness(model, (torch.randn(8, 4), torch.randint(0, 3, (8,))), metrics="lpf", seed=0)


        @pytest.mark.psa(budget_s=0.2)
        def test_density_overruns(psa):
            from torchvision.transforms import v2
            time.sleep(0.3)
            psa.density(v2.RandomHorizontalFlip(), n_images=20, draws=2)


        @pytest.mark.psa(budget_s=0.1)
        def test_own_code_overruns():
            time.sleep(0.3)


        @pytest.mark.psa(budget_s=120)
        def test_generous_budget():
            tiny_training()


        @pytest.mark.psa(budget_s=0.2)
        def test_fast_enough():
            pass
    """)
    result = pytester.runpytest(*QUIET, "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=4)
    out = result.stdout.str()
    assert "the time budget of test_budgets.py::test_training_overruns (@pytest.mark.psa(budget_s=0.2)) ran out " \
           "during training of small_cnn + none [smoke] (step 1/1)" in out
    assert "ran out during a loss evaluation of a flatness measurement" in out
    assert "ran out during the density audit of RandomHorizontalFlip(p=0.5): draw 1/2 of images 0-19" in out
    assert "test_own_code_overruns (@pytest.mark.psa(budget_s=0.1)) ran out by the end of the test" in out
    assert "fix: raise budget_s in the psa marker, or measure less: lower n_images or draws" in out
    assert " s elapsed of a 0.2 s budget" in out


def test_the_session_budget_fails_psa_measurements_past_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(g2_budget_helpers=TINY_TRAINING)
    pytester.makeini("[pytest]\npsa_time_budget = 0.4\n")  # the ini twin of --psa-time-budget
    pytester.makepyfile(test_session="""
        import time
        from g2_budget_helpers import tiny_training


        def test_first_takes_the_time():
            time.sleep(0.5)  # not a psa measurement: never failed by the session budget


        def test_then_a_measurement():
            tiny_training()
    """)
    result = pytester.runpytest(*QUIET, "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*TimeBudgetExceeded: the session time budget (--psa-time-budget=0.4) ran out during training of*",
        "*fix: raise --psa-time-budget (ini psa_time_budget), or measure less*",
    ])


def test_bad_budget_values_fail_the_test_or_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.psa(budget_s=0)
        def test_x():
            pass
    """)
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(errors=1)  # a bad marker fails its own test
    result.stdout.fnmatch_lines(["*budget_s=0 must be a number of seconds > 0*"])
    result = pytester.runpytest(*QUIET, "--psa-time-budget=-5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*expected a number of seconds > 0, got '-5'*"])
