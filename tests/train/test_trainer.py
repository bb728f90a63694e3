"""The trainer on the synthetic set: learning, determinism, budget, workers, records, user models."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
from torchvision.transforms import v2

from pytest_psa.errors import PsaUsageError, TimeBudgetExceeded
from pytest_psa.train import TrainingRecord, train
from pytest_psa.train.trainer import channel_stats, evaluate, frozen_bn_stats, resolve_autocast
from pytest_psa.train.presets import resolve_preset


def _weights(model):
    return [t.detach().clone() for t in model.state_dict().values()]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.slow
def test_smoke_training_learns(tiny_train, tiny_test):
    # 1,000 images x 5 epochs (50 steps, ~1 s). Measured over seeds 0-5, fp32 and bf16:
    # test accuracy 0.950-0.996, final loss 0.075-0.231; chance is 0.10 and ln(10) = 2.30.
    trained = train("small_cnn", tiny_train, None, test_data=tiny_test, epochs=5, batch_size=100,
                    train_eval_n=None, progress=False, seed=0)
    rec = trained.record
    assert rec.test_accuracy >= 0.85, rec.summary()
    assert rec.train_accuracy >= 0.85 and rec.final_loss < 0.6
    assert rec.steps == 50 and rec.n_train == 1000 and rec.epochs == 5 and rec.batch_size == 100
    assert rec.device == "cpu" and rec.deterministic and rec.cache == "off"
    assert rec.num_params == 98_970
    assert rec.wall_s >= rec.train_s > 0 and rec.images_per_s > 0
    assert rec.data["fingerprint"] == tiny_train.fingerprint()
    assert rec.augmentation == "none" and len(rec.augmentation_identity) == 64
    assert not trained.model.training
    model, record = trained  # unpacks
    assert record is rec


def test_same_seed_same_weights_other_seed_differs(tiny_train, quick):
    a = _weights(train("small_cnn", tiny_train, None, seed=7, **quick).model)
    b = _weights(train("small_cnn", tiny_train, None, seed=7, **quick).model)
    c = _weights(train("small_cnn", tiny_train, None, seed=8, **quick).model)
    assert _same(a, b)
    assert not _same(a, c)


def test_global_rng_untouched(tiny_train, quick):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    train("small_cnn", tiny_train, v2.RandomHorizontalFlip(), workers=0, **quick)
    assert torch.equal(torch.get_rng_state(), before)


def test_augmented_training_independent_of_workers(tiny_train, quick):
    # per-image draws are seeded from the training seed, so worker processes change nothing
    # (with the thread count fixed, here by the autouse one_thread fixture: float reductions
    # differ between 1 and 2 threads)
    aug = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomCrop(32, padding=4)])
    inline = train("small_cnn", tiny_train, aug, workers=0, **quick)
    pooled = train("small_cnn", tiny_train, aug, workers=1, **quick)
    assert inline.record.workers == 0 and pooled.record.workers == 1
    assert _same(_weights(inline.model), _weights(pooled.model))
    plain = train("small_cnn", tiny_train, None, **quick)
    assert not _same(_weights(plain.model), _weights(inline.model))  # the augmentation was applied
    assert plain.record.workers == 0


def test_unpicklable_augmentation_runs_in_workers(tiny_train, quick):
    trained = train("small_cnn", tiny_train, lambda x: x.flip(-1), workers=1, **quick)
    assert trained.record.workers == 1 and math.isfinite(trained.record.final_loss)


def test_microbatched_augmentation(tiny_train, quick):
    trained = train("small_cnn", tiny_train, v2.RandomHorizontalFlip(), workers=0, aug_microbatch=8, **quick)
    assert trained.record.extra == {"aug_microbatch": 8}


def test_budget_exceeded_raises_clearly(tiny_train):
    start = time.perf_counter()
    with pytest.raises(TimeBudgetExceeded) as err:
        train("small_cnn", tiny_train, None, epochs=50, batch_size=100, budget_s=0.2, progress=False)
    assert time.perf_counter() - start < 10, "the budget must stop training early, not at the end"
    msg = str(err.value)
    assert "time budget of 0.2 s" in msg and "small_cnn" in msg
    assert "step" in msg and "/500" in msg and "epoch" in msg
    assert "budget_s" in msg and "smaller preset" in msg
    assert isinstance(err.value, TimeoutError)


def test_budget_exceeded_with_workers_leaves_no_processes(tiny_train):
    import multiprocessing

    with pytest.raises(TimeBudgetExceeded):
        train("small_cnn", tiny_train, v2.RandomHorizontalFlip(), epochs=50, batch_size=100, budget_s=0.3,
              workers=1, progress=False)
    for p in multiprocessing.active_children():  # joins finished ones; none may still run
        p.join(timeout=5)
    assert multiprocessing.active_children() == []


def test_budget_must_be_positive(tiny_train, quick):
    with pytest.raises(PsaUsageError, match="budget_s"):
        train("small_cnn", tiny_train, None, budget_s=0, **quick)


class TinyNet(torch.nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(16)
        self.head = torch.nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).amax((2, 3)))


@pytest.mark.slow
def test_user_model_factory(tiny_train, tiny_test):
    trained = train(TinyNet, tiny_train, None, test_data=tiny_test, epochs=5, batch_size=100,
                    train_eval_n=0, progress=False)
    assert isinstance(trained.model, TinyNet)
    assert trained.record.model.endswith("TinyNet") and trained.record.num_params == 650
    assert trained.record.test_accuracy > 0.2  # a 650-parameter net; chance is 0.1
    with pytest.raises(PsaUsageError, match="did not return an nn.Module"):
        train(lambda n: "not a model", tiny_train, None, progress=False)
    with pytest.raises(PsaUsageError, match="not a model instance"):
        train(TinyNet(10), tiny_train, None, progress=False)


@pytest.mark.parametrize("optimizer", ["sam", "asam"])
@pytest.mark.slow
def test_sam_training(tiny_train, tiny_test, optimizer):
    # SAM fits more slowly than SGD at tiny budgets (5 epochs: 0.58-0.80), so 8 epochs here;
    # measured over seeds 0-3, fp32 and bf16: SAM 0.976-0.998, ASAM 0.974-0.998 test accuracy
    trained = train("small_cnn", tiny_train, None, test_data=tiny_test, epochs=8, batch_size=100,
                    train_eval_n=0, progress=False, optimizer=optimizer)
    assert trained.record.optimizer == optimizer
    assert trained.record.autocast in ("off", "bf16")
    assert trained.record.test_accuracy >= 0.85, trained.record.summary()


def test_record_round_trips_through_json(tiny_train, tiny_test, quick):
    rec = train("small_cnn", tiny_train, None, test_data=tiny_test, **quick).record
    d = json.loads(json.dumps(rec.to_dict()))
    assert TrainingRecord.from_dict(d) == rec
    assert set(d["versions"]) == {"torch", "torchvision", "python", "pytest_psa"}
    assert d["preset"] == "smoke" and d["preset_fields"]["epochs"] == 1
    assert d["test_accuracy"] is not None and d["test_data"]["n"] == len(tiny_test)
    assert "test acc" in rec.summary()
    future = dict(d, new_field=1)
    assert TrainingRecord.from_dict(future).extra == {"new_field": 1}


def test_progress_bar_silent_when_not_a_tty(tiny_train, quick, capsys):
    train("small_cnn", tiny_train, None, **dict(quick, progress=True))
    assert capsys.readouterr().err == ""


def test_usage_errors(tiny_train, quick):
    with pytest.raises(PsaUsageError, match="unknown optimizer"):
        train("small_cnn", tiny_train, None, optimizer="adam", **quick)
    with pytest.raises(PsaUsageError, match="unknown preset field"):
        train("small_cnn", tiny_train, None, epoch=3, progress=False)
    with pytest.raises(PsaUsageError, match="unknown model"):
        train("resnet1000", tiny_train, None, **quick)
    with pytest.raises(PsaUsageError, match="ImageData"):
        train("small_cnn", tiny_train.images, None, **quick)
    if not torch.cuda.is_available():
        with pytest.raises(PsaUsageError, match="CUDA"):
            train("small_cnn", tiny_train, None, device="cuda", **quick)
        with pytest.raises(PsaUsageError, match="preset 'fast' needs a CUDA GPU"):
            train(None, tiny_train, None, preset="fast", progress=False)


def test_n_train_takes_a_balanced_subset(tiny_train, quick):
    rec = train("small_cnn", tiny_train, None, **dict(quick, n_train=200)).record
    assert rec.n_train == 200 and rec.data["fingerprint"] == tiny_train.subset(200).fingerprint()


def test_autocast_resolution():
    cpu = torch.device("cpu")
    assert resolve_autocast(cpu, resolve_preset("smoke", autocast="off")) is None
    assert resolve_autocast(cpu, resolve_preset("smoke", autocast="bf16")) is torch.bfloat16
    assert resolve_autocast(cpu, resolve_preset("smoke", autocast="fp16")) is None  # fp16 is CUDA-only


def test_frozen_bn_stats_keeps_running_statistics():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    bn = net[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    with frozen_bn_stats(net):
        net(torch.rand(8, 3, 8, 8))
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2] and bn.momentum == 0.1
    net(torch.rand(8, 3, 8, 8))
    assert not torch.equal(bn.running_mean, before[0])


def test_channel_stats_and_evaluate(tiny_test):
    mean, std = channel_stats(tiny_test.images)
    x = tiny_test.float_images()
    assert mean == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-5)
    assert std == pytest.approx(x.std((0, 2, 3), unbiased=False).tolist(), abs=1e-5)

    class Const(torch.nn.Module):  # always predicts class 0
        def forward(self, x):
            return torch.zeros(len(x), 10).index_fill_(1, torch.tensor([0]), 1.0)

    acc, loss = evaluate(Const(), tiny_test, device="cpu", batch_size=64)
    assert acc == pytest.approx(float((tiny_test.labels == 0).float().mean()))
    p0 = float((tiny_test.labels == 0).float().mean())
    expected = p0 * -math.log(math.e / (math.e + 9)) + (1 - p0) * -math.log(1 / (math.e + 9))
    assert loss == pytest.approx(expected, rel=1e-5)
