"""Seed derivation: the one place where the package turns a seed and a key into another seed.

Two hashes, each used where its property matters, both stable across processes and platforms:

- SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014): the
  finalizer `finalize64` is a bijection on 64-bit words, and ``finalize64(z + GOLDEN)`` is one
  SplitMix64 step. The density audit keys each augmentation draw on (seed, image, draw) with it
  (`draw_seeds`), and the corruption kernels' counter-based generator
  (`pytest_psa.measure.robustness.corruptions.rng`) runs the same finalizer as int64 torch ops on
  CPU or CUDA, with these constants; `text_key` gives its 64-bit key of a text (blake2b, since
  Python's ``hash()`` is salted per process).
- NumPy's `SeedSequence` (`sequence_seed`): an independent 63-bit seed per metric of a flatness
  measurement, so that selecting metrics never shifts another metric's draws.

NumPy only, no torch: this module sits in the foundation layer.
"""

from __future__ import annotations

import hashlib

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: SplitMix64's increment
M1 = 0xBF58476D1CE4E5B9  # the finalizer's multipliers and shifts (Stafford's "Mix13")
M2 = 0x94D049BB133111EB
SHIFTS = (30, 27, 31)

_GOLDEN_U64 = np.uint64(GOLDEN)
_M1_U64 = np.uint64(M1)
_M2_U64 = np.uint64(M2)


def to_int64(value: int) -> int:
    """A 64-bit unsigned word as the signed int64 that torch and numpy int64 store."""
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def finalize64(value: int) -> int:
    """The SplitMix64 finalizer of one word (any Python int, taken mod 2**64), unsigned."""
    z = value & MASK64
    z = ((z ^ (z >> SHIFTS[0])) * M1) & MASK64
    z = ((z ^ (z >> SHIFTS[1])) * M2) & MASK64
    return z ^ (z >> SHIFTS[2])


def finalize64_array(z: np.ndarray) -> np.ndarray:
    """`finalize64` elementwise on a uint64 array (wrapping arithmetic), out of place."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(SHIFTS[0]))) * _M1_U64
        z = (z ^ (z >> np.uint64(SHIFTS[1]))) * _M2_U64
    out: np.ndarray = z ^ (z >> np.uint64(SHIFTS[2]))
    return out


def splitmix64_array(z: np.ndarray) -> np.ndarray:
    """One SplitMix64 step elementwise: ``finalize64(z + GOLDEN)`` on a uint64 array."""
    with np.errstate(over="ignore"):
        return finalize64_array((np.asarray(z, dtype=np.uint64) + _GOLDEN_U64).astype(np.uint64))


def draw_seeds(seed: int, positions: np.ndarray, draws: int) -> np.ndarray:
    """A (len(positions), draws) int64 table of 63-bit seeds, a SplitMix64 hash of (seed, position, draw).

    Row i depends only on (seed, positions[i]): which other positions are in the table, and in what
    order, never changes it.
    """
    with np.errstate(over="ignore"):
        base = splitmix64_array(np.full(1, seed, dtype=np.uint64))
        per_image = splitmix64_array(base ^ (np.asarray(positions).astype(np.uint64) * _GOLDEN_U64))
        table = splitmix64_array(per_image[:, None] ^ (np.arange(1, draws + 1, dtype=np.uint64)[None, :] * _GOLDEN_U64))
    seeds: np.ndarray = (table >> np.uint64(1)).astype(np.int64)
    return seeds


def text_key(text: str) -> int:
    """A stable signed 64-bit key of a text: the first 8 bytes of its blake2b digest, little-endian."""
    return to_int64(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little"))


def sequence_seed(seed: int, *key: int) -> int:
    """An independent 63-bit seed for ``(seed, *key)`` from NumPy's `SeedSequence`."""
    state = np.random.SeedSequence([seed, *key]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


__all__ = ["GOLDEN", "M1", "M2", "MASK64", "SHIFTS", "draw_seeds", "finalize64", "finalize64_array",
           "sequence_seed", "splitmix64_array", "text_key", "to_int64"]
