"""Seeds and noise draws. Every draw comes from an explicit generator; global RNG is never used.

Noise is drawn on the CPU and then moved, so a seed gives the same perturbations on any device.
"""

from __future__ import annotations

import torch

from pytest_psa._seeding import sequence_seed


def derive_seed(seed: int, *key: int) -> int:
    """An independent 63-bit seed for one metric, so selecting metrics never shifts another's draws."""
    return sequence_seed(seed, *key)


def generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def gaussian(n: int, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(n, generator=gen, dtype=torch.float32).to(device=like.device, dtype=like.dtype)


def rademacher(n: int, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    signs = torch.randint(0, 2, (n,), generator=gen, dtype=torch.int8).to(like.device)
    return (signs * 2 - 1).to(like.dtype)


def uniform_pm1(n: int, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform on [-1, 1]."""
    return (torch.rand(n, generator=gen, dtype=torch.float32) * 2 - 1).to(device=like.device, dtype=like.dtype)
