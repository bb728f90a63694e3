"""The built-in models and `build_model`, which turns a model spec into an `nn.Module`.

Every built-in model takes images in [0, 1] and normalizes them per channel itself (the
mean/std are buffers, so they travel with the weights), and exposes its penultimate
features via ``features(x)`` for feature-space distances.

- ``small_cnn``: the 99k-parameter CNN with early max-pooling measured in
  the ``cnn_w16-32-64-128-ep`` network of the CPU measurements, the CPU smoke model;
- ``resnet9``: the fast-CIFAR-recipe ResNet (Page, DAWNBench), the GPU ``fast`` model;
- ``resnet18``: the CIFAR ResNet-18 (3x3 stem; an ImageNet stem for images above 64 px);
- ``wrn40_2``: WideResNet-40-2 (Zagoruyko & Komodakis), the seed paper's CIFAR model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Union, cast

import torch
from torch import nn

from pytest_psa.errors import PsaUsageError

ModelFactory = Callable[[int], nn.Module]
ModelSpec = Union[str, ModelFactory]

# bump when a built-in architecture's forward() changes, so cached weights are not reused
ARCHITECTURE_VERSION = 1


class Normalize(nn.Module):
    """Per-channel (x - mean) / std with the statistics stored as buffers."""

    mean: torch.Tensor  # registered as buffers below; declared so that they read as tensors, not Module | Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _Classifier(nn.Module):
    """Shared shape: normalize -> body -> pooled features -> linear head."""

    norm: Normalize
    head: nn.Linear

    def body(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (after global pooling, before the linear head), shape (N, D)."""
        return self.body(self.norm(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.head(self.features(x)))  # torch types nn.Module.__call__ as returning Any


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


# -- small CNN ---------------------------------------------------------------------------------
class SmallCNN(_Classifier):
    """conv-BN-ReLU blocks with max-pooling after each of the first three, global max pool, linear.

    Pooling early keeps the expensive convolutions on small maps: ~3,800 img/s training on
    2 CPU cores in fp32 (measured), 98,970 parameters at the default widths.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64, 128),
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.norm = Normalize(mean or [0.5] * in_channels, std or [0.25] * in_channels)
        layers: list[nn.Module] = []
        cin = in_channels
        for i, w in enumerate(widths):
            layers += _conv_bn(cin, w)
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.trunk(x), dim=(2, 3))


# -- ResNet-9 (fast CIFAR recipe) --------------------------------------------------------------
class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.f = nn.Sequential(*_conv_bn(c, c), *_conv_bn(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + cast(torch.Tensor, self.f(x))  # torch types nn.Module.__call__ as returning Any


class ResNet9(_Classifier):
    """Page's DAWNBench ResNet-9: prep, 3 pooled stages with 2 residual blocks, max pool, scaled head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.norm = Normalize(mean or [0.5] * in_channels, std or [0.25] * in_channels)
        self.trunk = nn.Sequential(
            *_conv_bn(in_channels, 64),
            *_conv_bn(64, 128), nn.MaxPool2d(2), _Residual(128),
            *_conv_bn(128, 256), nn.MaxPool2d(2),
            *_conv_bn(256, 512), nn.MaxPool2d(2), _Residual(512),
        )
        self.head = nn.Linear(512, num_classes, bias=False)
        self.scale = 0.125  # the recipe's logit scale: a large lr then trains the head stably

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.head(self.features(x))) * self.scale  # nn.Module.__call__ is typed Any

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return torch.amax(self.trunk(x), dim=(2, 3))


# -- ResNet-18 ---------------------------------------------------------------------------------
class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(_Classifier):
    """ResNet-18 with the CIFAR 3x3 stem (stride 1, no max pool); ``imagenet_stem`` for large images."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, imagenet_stem: bool = False,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        self.norm = Normalize(mean or [0.5] * in_channels, std or [0.25] * in_channels)
        if imagenet_stem:
            stem: list[nn.Module] = [nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                     nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        else:
            stem = _conv_bn(in_channels, 64)
        blocks: list[nn.Module] = []
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.trunk = nn.Sequential(*stem, *blocks)
        self.head = nn.Linear(512, num_classes)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mean(self.trunk(x), dim=(2, 3))


# -- WideResNet-40-2 ---------------------------------------------------------------------------
class _WideBlock(nn.Module):
    """Pre-activation wide block (BN-ReLU-conv twice), as in the AugMix reference code."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        y = cast(torch.Tensor, self.conv2(torch.relu(self.bn2(self.conv1(o)))))  # nn.Module.__call__ is typed Any
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(_Classifier):
    """WRN-depth-k; ``wrn40_2`` is depth 40, widen factor 2 (2.2M parameters), no dropout."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, depth: int = 40, widen: int = 2,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise PsaUsageError("WideResNet depth must be 6n + 4", observed=depth, fix="use 16, 28, 40, ...")
        n = (depth - 4) // 6
        self.norm = Normalize(mean or [0.5] * in_channels, std or [0.25] * in_channels)
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
        cin = widths[0]
        for cout, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                layers.append(_WideBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)
        for m in self.modules():  # the reference initialization
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mean(self.trunk(x), dim=(2, 3))


# -- registry ----------------------------------------------------------------------------------
def _small_cnn(num_classes: int, in_channels: int, **kw: Any) -> nn.Module:
    return SmallCNN(num_classes, in_channels, mean=kw.get("mean"), std=kw.get("std"))


def _resnet9(num_classes: int, in_channels: int, **kw: Any) -> nn.Module:
    return ResNet9(num_classes, in_channels, mean=kw.get("mean"), std=kw.get("std"))


def _resnet18(num_classes: int, in_channels: int, **kw: Any) -> nn.Module:
    size = kw.get("image_size") or 32
    return ResNet18(num_classes, in_channels, imagenet_stem=size > 64, mean=kw.get("mean"), std=kw.get("std"))


def _wrn40_2(num_classes: int, in_channels: int, **kw: Any) -> nn.Module:
    return WideResNet(num_classes, in_channels, 40, 2, mean=kw.get("mean"), std=kw.get("std"))


#: name -> builder(num_classes, in_channels, *, mean, std, image_size)
MODELS: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": _small_cnn,
    "resnet9": _resnet9,
    "resnet18": _resnet18,
    "wrn40_2": _wrn40_2,
}


def build_model(spec: ModelSpec, num_classes: int, in_channels: int = 3, *,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                image_size: int | None = None) -> nn.Module:
    """Build a fresh model from a registered name or a user factory ``(num_classes) -> nn.Module``.

    Initialization draws from the global torch RNG; the trainer seeds and restores it around
    this call. `mean`/`std` set the built-in models' input normalization (users' factories
    normalize however they like); `image_size` picks the ResNet-18 stem.
    """
    if isinstance(spec, str):
        builder = MODELS.get(spec)
        if builder is None:
            raise PsaUsageError(
                f"unknown model {spec!r}", observed=spec,
                fix=f"use one of {sorted(MODELS)} or pass a factory callable (num_classes) -> nn.Module",
            )
        return builder(num_classes, in_channels, mean=mean, std=std, image_size=image_size)
    if isinstance(spec, nn.Module):
        raise PsaUsageError(
            "a model spec must be a name or a factory, not a model instance",
            observed=type(spec).__name__,
            fix="pass the class or a function that builds a fresh model, e.g. lambda n: MyNet(n) "
                "(training needs a fresh, seeded initialization)",
        )
    if not callable(spec):
        raise PsaUsageError("a model spec must be a name or a callable", observed=type(spec).__name__,
                            fix=f"use one of {sorted(MODELS)} or a factory (num_classes) -> nn.Module")
    model = spec(num_classes)
    if not isinstance(model, nn.Module):
        raise PsaUsageError(
            "the model factory did not return an nn.Module", observed=type(model).__name__,
            fix="the factory is called as factory(num_classes) and must return a torch.nn.Module",
        )
    return model


def spec_name(spec: ModelSpec) -> str:
    """A readable name for a spec: the registry name, or the factory's qualified name."""
    if isinstance(spec, str):
        return spec
    module = getattr(spec, "__module__", None) or type(spec).__module__
    qual = getattr(spec, "__qualname__", None) or type(spec).__qualname__
    return f"{module}.{qual}"


def factory_source(spec: Callable[..., Any]) -> str | None:
    """The factory's source text when Python can find it (part of the cache key), else None."""
    try:
        return inspect.getsource(spec)
    except (OSError, TypeError):
        return None
