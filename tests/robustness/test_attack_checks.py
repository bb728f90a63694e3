"""The attack harness's self-checks fire on deliberately broken models, and bad input is refused clearly.

The models here are untrained (seeded) small CNNs labelled with their own clean predictions, so every
image is clean-correct and gets attacked; no training is needed to break them.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pytest_psa.errors import PsaError, PsaUsageError
from pytest_psa.measure.robustness.attacks import AttackSelfCheckError, attack, run_attack


def _net(seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                        nn.Flatten(), nn.Linear(128, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net.eval()


def _images(n: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, 3, 16, 16), generator=torch.Generator().manual_seed(seed))


def _labelled(model: nn.Module, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    x = _images(n)
    with torch.no_grad():
        return x, model(x).argmax(1)


class _Wrap(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner


class CountsCalls(_Wrap):
    """Writes to a buffer in forward (a cache/counter): outputs stay the same, state does not."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__(inner)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


class Softmaxed(_Wrap):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).softmax(1)


class Noisy(_Wrap):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) + 0.05 * torch.randn(len(x), 10)


class BatchCentred(_Wrap):
    """Uses batch statistics in eval mode: a sample's logits depend on the other samples."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x - x.mean(0, keepdim=True))


class NanOffGrid(_Wrap):
    """Finite on 8-bit images, NaN as soon as a pixel leaves the 1/255 grid (i.e. inside the ε-ball)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        off = ((x * 255) - (x * 255).round()).abs().flatten(1).amax(1) > 1e-3
        out = self.inner(x)
        return torch.where(off[:, None], torch.full_like(out, float("nan")), out)


class Quantized(_Wrap):
    """round() in forward: the input gradient is exactly zero everywhere (masked gradients)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x * 8).round() / 8)


class SwitchesToTrain(_Wrap):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.train()
        return self.inner(x)


def test_buffer_written_in_forward_fails_and_is_restored():
    model = CountsCalls(_net())
    x, y = _labelled(model.inner)
    with pytest.raises(AttackSelfCheckError, match=r"changed its buffers[\s\S]*calls[\s\S]*fix:"):
        run_attack(model, x, y, steps=3)
    assert int(model.calls) == 0  # restored to its value before the attack


def test_updating_batchnorm_fails_and_restores_running_stats():
    """A norm layer that keeps updating running stats in eval mode: caught (as a buffer change or as
    batch-dependent outputs, whichever shows first), and the stats are put back."""

    class LeakyNorm(nn.BatchNorm2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                            True, 0.1, self.eps)

    model = _net()
    leaky = LeakyNorm(8).eval()
    leaky.load_state_dict(model[1].state_dict())
    model[1] = leaky
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _labelled(_net())
    with pytest.raises(AttackSelfCheckError):
        run_attack(model, x, y, steps=3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_softmax_outputs_fail():
    model = Softmaxed(_net())
    x, y = _labelled(model.inner)
    with pytest.raises(AttackSelfCheckError, match="probabilities"):
        run_attack(model, x, y, steps=2)


def test_random_outputs_fail():
    model = Noisy(_net())
    x, y = _labelled(model.inner)
    torch.default_generator.manual_seed(0)
    with pytest.raises(AttackSelfCheckError, match="randomized or batch-dependent"):
        run_attack(model, x, y, steps=2)


def test_forward_precision_names_the_arithmetic_the_model_computes_in():
    from pytest_psa.measure.robustness.attacks.checks import forward_precision

    x = torch.rand(4, 3, 8, 8)
    assert forward_precision(_net(), x) == ("float32", torch.finfo(torch.float32).eps)
    assert forward_precision(_net().to(torch.bfloat16), x) == ("bfloat16", torch.finfo(torch.bfloat16).eps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert forward_precision(_net(), x) == ("autocast bfloat16", torch.finfo(torch.bfloat16).eps)


def test_rounding_sized_differences_pass_at_tf32_and_noise_still_fails():
    """On CUDA, TF32 convolutions of another batch size differ by ~3e-4 of the largest logit (an H200
    gave 0.0048 at |logit| 15.7, over the float32 tolerance): a false alarm that failed every GPU attack
    on a float32 conv net. The check now scales with the forward's precision; noise of a randomized
    model (Noisy's 0.05) is still far outside it."""
    from pytest_psa.measure.robustness.attacks.checks import check_deterministic

    g = torch.Generator().manual_seed(0)
    a = 15.7 * (2 * torch.rand(64, 10, generator=g) - 1)
    rounding = a * (1 + 3e-4 * (2 * torch.rand(64, 10, generator=g) - 1))
    tf32 = ("tf32 (CUDA float32 with TF32 allowed)", 2.0 ** -10)
    outcomes: list = []
    check_deterministic(a, rounding, outcomes, precision=tf32)
    assert outcomes[-1].passed and "tf32" in outcomes[-1].detail
    with pytest.raises(AttackSelfCheckError, match="for float32 arithmetic"):
        check_deterministic(a, rounding, [])  # the same difference is not float32 rounding
    with pytest.raises(AttackSelfCheckError, match="randomized or batch-dependent"):
        check_deterministic(a, a + 0.05 * 15.7 * torch.randn(64, 10, generator=g), [], precision=tf32)


def test_batch_dependent_outputs_fail():
    model = BatchCentred(_net())
    x, y = _labelled(model)
    with pytest.raises(AttackSelfCheckError, match="batch"):
        run_attack(model, x, y, steps=2)


def test_nan_inside_the_ball_fails():
    model = NanOffGrid(_net())
    x = (_images() * 255).round() / 255
    with torch.no_grad():
        y = model(x).argmax(1)
        assert torch.isfinite(model(x)).all()  # clean images are fine: only the attack finds the NaNs
    with pytest.raises(AttackSelfCheckError, match="NaN or inf logits"):
        run_attack(model, x, y, steps=2)


def test_nan_on_clean_images_fails():
    model = NanOffGrid(_net())
    x, y = _labelled(model.inner)  # off-grid images: NaN on the clean pass already
    with pytest.raises(AttackSelfCheckError, match="NaN or inf logits"):
        run_attack(model, x, y, steps=2)


def test_zero_gradients_fail():
    model = Quantized(_net())
    x, y = _labelled(model)
    with pytest.raises(AttackSelfCheckError, match="gradient masking"):
        run_attack(model, x, y, steps=2)


def test_switching_to_train_mode_fails_and_mode_is_restored():
    model = SwitchesToTrain(_net())
    model.eval()
    x, y = _labelled(model.inner)
    with pytest.raises(AttackSelfCheckError, match="train mode"):
        run_attack(model, x, y, steps=2)
    assert not any(m.training for m in model.modules())


def test_self_check_error_is_an_assertion_and_a_psa_error():
    assert issubclass(AttackSelfCheckError, AssertionError)
    assert issubclass(AttackSelfCheckError, PsaError)


def test_healthy_model_passes_every_check():
    model = _net()
    x, y = _labelled(model)
    res = run_attack(model, x, y, steps=3)
    names = {c.name for c in res.checks}
    assert {"logits, not probabilities", "deterministic outputs", "ε = 0 reproduces clean accuracy",
            "eval mode and buffers", "perturbations within ε, in [0, 1], finite", "fooling images re-verified",
            "gradients not masked"} <= names
    assert all(c.passed for c in res.checks)
    assert res.clean_accuracy == 1.0


# -- input validation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("images", "match"),
    [
        ((torch.rand(4, 3, 8, 8) - 0.5) * 4, r"look normalized \(min -"),
        (torch.rand(4, 3, 8, 8) * 255, "divide uint8-scale images by 255"),
        ((torch.rand(4, 3, 8, 8) * 255).to(torch.uint8), "floating point"),
        (torch.rand(3, 8, 8), r"\(N, C, H, W\)"),
        (torch.full((4, 3, 8, 8), float("nan")), "NaN"),
        ([[0.5]], "torch.Tensor"),
    ],
)
def test_bad_images_are_refused(images, match):
    with pytest.raises(PsaUsageError, match=match):
        attack(_net(), images, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (torch.zeros(4), "integer class indices"),
        (torch.zeros(3, dtype=torch.long), "one label per image"),
        (torch.tensor([0, 1, 2, 10]), "out of range"),
        (torch.tensor([0, 1, 2, -1]), "out of range"),
    ],
)
def test_bad_labels_are_refused(labels, match):
    with pytest.raises(PsaUsageError, match=match):
        attack(_net(), torch.rand(4, 3, 16, 16), labels)


def test_bad_model_outputs_are_refused():
    x, y = torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)
    with pytest.raises(PsaUsageError, match=r"logits of shape \(N, classes\)"):
        attack(lambda t: t.flatten(1).sum(1), x, y)
    with pytest.raises(PsaUsageError, match="non-float"):
        attack(lambda t: _net()(t).argmax(1, keepdim=True).repeat(1, 2), x, y)
    with pytest.raises(PsaUsageError, match="callable"):
        attack("resnet", x, y)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm": "l1"}, "unknown attack norm"),
        ({"method": "fgsm"}, "unknown attack method"),
        ({"eps": -0.1}, "eps must be"),
        ({"eps": 8}, "pixel scale"),
        ({"steps": 0}, "steps must be"),
        ({"step_size": 0.0}, "step_size must be"),
        ({"restarts": 0}, "restarts must be"),
        ({"batch_size": 0}, "batch_size must be"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(PsaUsageError, match=match):
        attack(_net(), torch.rand(4, 3, 16, 16), torch.zeros(4, dtype=torch.long), **kwargs)
