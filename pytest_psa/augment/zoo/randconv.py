"""A StyleAug stand-in: RandConv (Xu et al., ICLR 2021), a random convolution per draw.

StyleAug (Jackson et al. 2019) restyles images with a pretrained style-transfer network (not
shipped). RandConv randomizes local texture and colour the same way without one, and is what this
stand-in ("styleaug-standin-randconv") draws, per image, from torch's generator:

- a kernel size k uniformly from `kernel_sizes` (default {1, 3, 5, 7});
- a C x C x k x k kernel with weights ~ N(0, 1/(k²·C_in)), no bias, zero padding to the same size;
- with ``mix=True`` (RandConv's "mix" variant) the output is blended with the input by
  α ~ U(0, 1): α·x + (1 − α)·conv(x); the default ``mix=False`` is the plain variant.

The convolved image has no fixed range: it is matched to the input's per-image mean and standard
deviation (over all pixels and channels) and clipped to [0, 1], so it keeps the image's brightness
and contrast while its colours and textures are redrawn. The blended variant puts draws near the
original whenever α is close to 1, so it is not PSA-violating; the plain one is, as the seed paper
reports for StyleAug on CIFAR.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as nnf

from pytest_psa.augment.zoo._draw import choice, uniform
from pytest_psa.errors import PsaUsageError


class RandConvStandin:
    """RandConv on one float (C, H, W) image in [0, 1] (see the module docstring)."""

    def __init__(self, *, kernel_sizes: Sequence[int] = (1, 3, 5, 7), mix: bool = False) -> None:
        sizes = tuple(int(k) for k in kernel_sizes)
        if not sizes or any(k < 1 or k % 2 == 0 for k in sizes):
            raise PsaUsageError(f"RandConv kernel sizes must be odd and positive, got {tuple(kernel_sizes)}",
                                fix="use the published set: kernel_sizes=(1, 3, 5, 7)")
        self.kernel_sizes = sizes
        self.mix = bool(mix)

    @property
    def name(self) -> str:
        return "styleaug-standin-randconv" + ("-mix" if self.mix else "")

    def __repr__(self) -> str:
        return f"RandConvStandin(kernel_sizes={self.kernel_sizes}, mix={self.mix})"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(torch.float32)
        c = x.shape[0]
        k = choice(self.kernel_sizes)
        weight = torch.randn(c, c, k, k) * (1.0 / (k * k * c)) ** 0.5
        out = nnf.conv2d(x[None], weight, padding=k // 2)[0]
        out = (out - out.mean()) / out.std().clamp(min=1e-6) * x.std() + x.mean()
        if self.mix:
            alpha = uniform()
            out = alpha * x + (1.0 - alpha) * out
        return out.clamp_(0.0, 1.0)
