"""Counter-based random numbers for corruptions.

Every number is a pure function of (seed, sample index, corruption, severity, stream, element position):
a SplitMix64 finalizer applied to ``key(sample, stream) + position * golden``. Nothing depends on the
batch a sample sits in, its place in that batch or the worker that computes it, so corrupting image 17
alone, in a batch of 7 or in reverse order gives the same pixels (what imagecorruptions PR #27 and the
"use the released files" advice of hendrycks/robustness both ask for).

All arithmetic is int64 torch ops (multiplication wraps; ``>>`` is arithmetic on int64, so every shift
is masked to make it logical), which runs on CPU and CUDA alike. On CPU the words are made in chunks that
fit in cache, so the ~12 elementwise passes of the finalizer stay compute-bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple, cast

import torch

from pytest_psa import _seeding
from pytest_psa._seeding import to_int64 as _signed

__all__ = ["CounterRNG", "mix64"]

# the package's SplitMix64 constants (pytest_psa._seeding), as the int64 values torch stores
_GOLDEN = _signed(_seeding.GOLDEN)
_M1 = _signed(_seeding.M1)
_M2 = _signed(_seeding.M2)
_S1, _S2, _S3 = _seeding.SHIFTS
_CPU_CHUNK = 1 << 15  # words per chunk: 256 KiB of int64 state, stays in L2
_CUDA_CHUNK = 1 << 26


def _mix_inplace(z: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finalizer (`pytest_psa._seeding.finalize64`), in place on an int64 tensor
    (``tmp``: scratch of the same shape); each shift is masked to be logical."""
    torch.bitwise_right_shift(z, _S1, out=tmp).bitwise_and_((1 << (64 - _S1)) - 1)
    z.bitwise_xor_(tmp).mul_(_M1)
    torch.bitwise_right_shift(z, _S2, out=tmp).bitwise_and_((1 << (64 - _S2)) - 1)
    z.bitwise_xor_(tmp).mul_(_M2)
    torch.bitwise_right_shift(z, _S3, out=tmp).bitwise_and_((1 << (64 - _S3)) - 1)
    return z.bitwise_xor_(tmp)


def _to_unit(bits: torch.Tensor, offset: float, out: torch.Tensor) -> None:
    """``out[...] = (bits + offset) * 2**-24`` for int64 ``bits`` in [0, 2**24) and offset 0 or 1, as
    one multiply written straight into ``out`` (a float32 view). Every value is an exact float32
    (k * 2**-24 with k <= 2**24), so this equals the cast, add and multiply it replaces, bit for bit."""
    if offset:
        bits.add_(int(offset))
    torch.mul(bits, 2.0**-24, out=out)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finalizer of an int64 tensor (a bijection on 64-bit words), out of place."""
    z = z.clone()
    return _mix_inplace(z, torch.empty_like(z))


def mix64_int(value: int) -> int:
    """The same finalizer on one Python int, as a signed int64 value (keys, known-answer tests)."""
    return _signed(_seeding.finalize64(value))


def _name_key(seed: int, corruption: str, severity: int) -> int:
    """A stable 64-bit key of (seed, corruption, severity); Python's hash() is salted per process."""
    return _seeding.text_key(f"pytest-psa/corruption|{int(seed)}|{corruption}|{int(severity)}")


Writer = Callable[[torch.Tensor, slice, int, int], None]


class CounterRNG:
    """Random numbers for a batch of samples, keyed by (seed, global sample index, corruption, severity).

    Every method returns ``[N, *shape]``; row ``i`` depends only on ``indices[i]``, the key, the shape
    and the stream, never on the other rows. Each distinct use inside one kernel takes its own ``stream``.
    """

    def __init__(
        self,
        seed: int,
        indices: torch.Tensor,
        corruption: str,
        severity: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.seed = int(seed)
        self.corruption = str(corruption)
        self.severity = int(severity)
        self.device = torch.device(device)
        self.indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).to(self.device)
        self.n = int(self.indices.numel())
        base = _name_key(self.seed, self.corruption, self.severity)
        # key_i = mix(mix(index_i) + base): distinct indices or keys give unrelated sample keys.
        self._keys = mix64(mix64(self.indices).add_(base))

    def __repr__(self) -> str:
        return (
            f"CounterRNG(seed={self.seed}, n={self.n}, corruption={self.corruption!r}, "
            f"severity={self.severity}, device={self.device})"
        )

    # -- raw 64-bit words ---------------------------------------------------------------------------

    def _fill(self, count: int, stream: int, write: Writer) -> None:
        """Hash ``count`` counters per sample; hand each block of words to ``write(z, rows, c0, c1)``.

        ``z`` is int64 [rows, c1 - c0] holding words ``c0..c1`` of samples ``rows``; no [N, count] int64
        array is ever materialised on CPU.
        """
        if count == 0 or self.n == 0:
            return
        keys = mix64(self._keys ^ mix64_int(0x5EED0000 + int(stream)))
        positions = torch.arange(count, dtype=torch.int64, device=self.device).mul_(_GOLDEN)
        chunk = _CUDA_CHUNK if self.device.type == "cuda" else _CPU_CHUNK
        if count >= chunk:
            for row in range(self.n):
                for c0 in range(0, count, chunk):
                    c1 = min(count, c0 + chunk)
                    z = positions[c0:c1].unsqueeze(0) + keys[row : row + 1, None]
                    write(_mix_inplace(z, torch.empty_like(z)), slice(row, row + 1), c0, c1)
        else:
            step = max(1, chunk // count)
            for r0 in range(0, self.n, step):
                rows = slice(r0, min(self.n, r0 + step))
                z = keys[rows, None] + positions.unsqueeze(0)
                write(_mix_inplace(z, torch.empty_like(z)), rows, 0, count)

    def _words_at(self, rows: torch.Tensor, positions: torch.Tensor, stream: int) -> torch.Tensor:
        """The words :meth:`_fill` makes for (sample row, position) pairs, for a few scattered elements."""
        keys = mix64(self._keys ^ mix64_int(0x5EED0000 + int(stream)))
        z = keys.index_select(0, rows) + positions.to(torch.int64) * _GOLDEN
        return _mix_inplace(z, torch.empty_like(z))

    @staticmethod
    def _numel(shape: tuple[int, ...]) -> int:
        return int(math.prod(int(s) for s in shape))

    def _uniform24_halves(self, half: int, stream: int, *, open_low: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Two contiguous [N, half] float32 tensors of 24-bit uniforms from ``half`` words per row.

        Word ``k`` gives element ``k`` of the first (bits 40..63) and of the second (bits 8..31).
        ``open_low`` gives (0, 1] (for logarithms) instead of [0, 1).
        """
        first = torch.empty((self.n, half), dtype=torch.float32, device=self.device)
        second = torch.empty((self.n, half), dtype=torch.float32, device=self.device)
        offset = 1.0 if open_low else 0.0

        def write(z: torch.Tensor, rows: slice, c0: int, c1: int) -> None:
            hi = torch.bitwise_right_shift(z, 40).bitwise_and_(0xFFFFFF)
            _to_unit(hi, offset, first[rows, c0:c1])
            lo = torch.bitwise_right_shift(z, 8, out=hi).bitwise_and_(0xFFFFFF)
            _to_unit(lo, offset, second[rows, c0:c1])

        self._fill(half, stream, write)
        return first, second

    def _uniform24(self, count: int, stream: int, *, open_low: bool) -> torch.Tensor:
        """[N, count] float32 uniforms laid out as the halves above, written in place (no concat)."""
        half = (count + 1) // 2
        out = torch.empty((self.n, 2 * half), dtype=torch.float32, device=self.device)
        offset = 1.0 if open_low else 0.0

        def write(z: torch.Tensor, rows: slice, c0: int, c1: int) -> None:
            hi = torch.bitwise_right_shift(z, 40).bitwise_and_(0xFFFFFF)
            _to_unit(hi, offset, out[rows, c0:c1])
            lo = torch.bitwise_right_shift(z, 8, out=hi).bitwise_and_(0xFFFFFF)
            _to_unit(lo, offset, out[rows, half + c0 : half + c1])

        self._fill(half, stream, write)
        return out[:, :count]

    # -- distributions --------------------------------------------------------------------------------

    def uniform(self, shape: tuple[int, ...], stream: int = 0) -> torch.Tensor:
        """[N, *shape] float32 uniform on [0, 1) (24-bit resolution)."""
        shape = tuple(int(s) for s in shape)
        return self._uniform24(self._numel(shape), stream, open_low=False).reshape(self.n, *shape)

    def normal(self, shape: tuple[int, ...], stream: int = 0) -> torch.Tensor:
        """[N, *shape] float32 standard normal (Box-Muller on 24-bit uniforms, so |z| <= 5.77)."""
        shape = tuple(int(s) for s in shape)
        count = self._numel(shape)
        pairs = (count + 1) // 2
        radius, angle = self._uniform24_halves(pairs, stream, open_low=True)
        radius.log_().mul_(-2.0).sqrt_()
        angle.mul_(2.0 * math.pi)
        out = torch.empty((self.n, 2 * pairs), dtype=torch.float32, device=self.device)
        torch.mul(radius, torch.cos(angle), out=out[:, :pairs])
        torch.mul(radius, angle.sin_(), out=out[:, pairs:])
        return out[:, :count].reshape(self.n, *shape)

    def randint(self, low: int, high: int, shape: tuple[int, ...], stream: int = 0) -> torch.Tensor:
        """[N, *shape] int64 uniform on [low, high) (modulo bias below (high - low) / 2**63)."""
        low, high = int(low), int(high)
        if high <= low:
            raise ValueError(f"randint needs low < high, got [{low}, {high})")
        shape = tuple(int(s) for s in shape)
        count = self._numel(shape)
        out = torch.empty((self.n, count), dtype=torch.int64, device=self.device)

        def write(z: torch.Tensor, rows: slice, c0: int, c1: int) -> None:
            bits = torch.bitwise_right_shift(z, 1).bitwise_and_((1 << 63) - 1)
            out[rows, c0:c1] = bits.remainder_(high - low).add_(low)

        self._fill(count, stream, write)
        return out.reshape(self.n, *shape)

    def uniform64(self, shape: tuple[int, ...], stream: int = 0) -> torch.Tensor:
        """[N, *shape] float64 uniform on [0, 1) with 53-bit resolution (one word per element)."""
        shape = tuple(int(s) for s in shape)
        count = self._numel(shape)
        out = torch.empty((self.n, count), dtype=torch.float64, device=self.device)

        def write(z: torch.Tensor, rows: slice, c0: int, c1: int) -> None:
            bits = torch.bitwise_right_shift(z, 11).bitwise_and_((1 << 53) - 1)
            out[rows, c0:c1] = bits.to(torch.float64).mul_(2.0**-53)

        self._fill(count, stream, write)
        return out.reshape(self.n, *shape)

    def poisson(self, rate: torch.Tensor, stream: int = 0) -> torch.Tensor:
        """Exact Poisson draws for rates ``[N, ...]`` (float >= 0), as float64 counts.

        Inversion of a 53-bit uniform u: the smallest k with P(X <= k) >= u, the CDF being the
        regularized upper incomplete gamma Q(k + 1, rate) in float64 (exact up to float64 rounding;
        no normal approximation). Rates that sit on few distinct values go through a CDF table; see
        :meth:`poisson_levels`, which gives bit-identical draws.
        """
        rate = torch.as_tensor(rate, device=self.device)
        self._check_rows(rate, "rate")
        u = self.uniform64(tuple(rate.shape[1:]), stream)
        return _poisson_direct(rate.to(torch.float64), u)

    def poisson_levels(self, levels: torch.Tensor, codes: torch.Tensor, stream: int = 0) -> torch.Tensor:
        """``poisson(levels[codes], stream)``, bit for bit, fast when there are few levels.

        ``levels``: float rates [K]; ``codes``: integer [N, ...] indices into it (e.g. the 256 grey values
        of images that came from uint8). One CDF table per level replaces per-element gamma functions.
        """
        return self.poisson_levels_int(levels, codes, stream).to(torch.float64)

    def poisson_levels_int(self, levels: torch.Tensor, codes: torch.Tensor, stream: int = 0) -> torch.Tensor:
        """:meth:`poisson_levels` as int32 counts (a caller can map counts through a small table).

        The same 53-bit uniforms as :meth:`uniform64`, compared as integers (``cdf < u`` exactly when
        ``floor(cdf * 2^53) < u * 2^53``) while the words are hashed, chunk by chunk in cache; see
        :func:`_cdf_table` for the search.
        """
        codes = torch.as_tensor(codes, device=self.device)
        self._check_rows(codes, "codes")
        table = _cdf_table(levels.to(device=self.device, dtype=torch.float64))
        buckets = 1 << table.bits
        if levels.numel() * (buckets + 1) >= 2**31:
            raise ValueError("too many Poisson levels for the table path")
        count = self._numel(tuple(codes.shape[1:]))
        first_entry = torch.mul(codes.reshape(self.n, count).to(torch.int64), buckets + 1)
        out = torch.empty((self.n, count), dtype=torch.int32, device=self.device)
        shift = 53 - table.bits
        low_mask = (1 << shift) - 1
        k_mask = (1 << (table.bits + 1)) - 1

        def write(z: torch.Tensor, rows: slice, c0: int, c1: int) -> None:
            u53 = torch.bitwise_right_shift(z, 11, out=z).bitwise_and_((1 << 53) - 1)
            entry = torch.bitwise_right_shift(u53, shift).add_(first_entry[rows, c0:c1]).reshape(-1)
            word = table.packed.index_select(0, entry).view_as(u53)
            below = torch.bitwise_right_shift(word, table.bits + 1) < u53.bitwise_and_(low_mask)
            torch.add(word.bitwise_and_(k_mask), below, out=out[rows, c0:c1])

        self._fill(count, stream, write)
        pending = (out.reshape(-1) >= table.width).nonzero().squeeze(1)
        if pending.numel():  # draws in ambiguous buckets (~2 / B of them): bisect within the bucket
            rows, positions = pending // count, pending % count
            u53 = torch.bitwise_right_shift(self._words_at(rows, positions, stream), 11).bitwise_and_((1 << 53) - 1)
            entry = torch.bitwise_right_shift(u53, shift).add_(first_entry.reshape(-1).index_select(0, pending))
            out.view(-1)[pending] = _bisect(table, entry, u53)
        return out.reshape(codes.shape)

    def _check_rows(self, tensor: torch.Tensor, what: str) -> None:
        if tensor.dim() == 0 or tensor.shape[0] != self.n:
            raise ValueError(f"poisson {what} must have shape [N={self.n}, ...], got {tuple(tensor.shape)}")


# -- exact Poisson by inversion ----------------------------------------------------------------------


def _poisson_cdf(k: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """P(X <= k) for X ~ Poisson(rate): Q(k + 1, rate), elementwise in float64 (1 where rate == 0)."""
    return torch.where(rate > 0, torch.special.gammaincc(k + 1.0, rate.clamp(min=1e-300)), 1.0)


def _normal_guess(rate: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """A starting k near the u-quantile (Cornish-Fisher), clamped to >= 0; only speed depends on it."""
    z = cast(torch.Tensor, torch.special.ndtri(u.clamp(1e-300, 1 - 2**-53)))  # torch.special is untyped
    guess = rate + rate.sqrt() * z + (z * z - 1.0) / 6.0
    return guess.floor_().clamp_(min=0.0)


def _poisson_direct(rate: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Smallest k with CDF(k) >= u, each CDF value from the incomplete gamma function (~120 ns each on
    CPU, about two per element: images off the 8-bit grid are ~30x slower than the table path)."""
    shape = u.shape
    rate, u = rate.reshape(-1), u.reshape(-1)
    k = _normal_guess(rate, u)
    # Walk down while the previous value already covers u, then up while k does not; each pass
    # evaluates the CDF only where the walk is still going.
    idx = torch.arange(u.numel(), device=u.device)
    while idx.numel():
        idx = idx[k[idx] > 0]
        if not idx.numel():
            break
        idx = idx[_poisson_cdf(k[idx] - 1.0, rate[idx]) >= u[idx]]
        k[idx] -= 1.0
    idx = torch.arange(u.numel(), device=u.device)
    while idx.numel():
        idx = idx[_poisson_cdf(k[idx], rate[idx]) < u[idx]]
        k[idx] += 1.0
    return k.reshape(shape)


class _Table(NamedTuple):
    """Inversion tables for K Poisson rates, flat, row r of a [K, ...] table at r * (its width)."""

    cdf: torch.Tensor  # int64 [K * L]: floor(CDF(k) * 2^53) for k < L (cdf < u iff this < u * 2^53)
    guide: torch.Tensor  # int32 [K * (B + 1)]: smallest k with CDF(k) >= m / B, m = 0..B
    packed: torch.Tensor  # int64 [K * (B + 1)]: min(cdf[guide[m]] - m 2^(53-bits), 2^(53-bits)) << (bits + 1)
    # | guide[m], or the sentinel 2^(bits+1) - 2 (>= L) where bucket m holds two or more CDF jumps
    width: int  # L
    bits: int  # B = 2^bits


_TABLES: dict[tuple[str, int, bytes], _Table] = {}


def _cdf_table(levels: torch.Tensor) -> _Table:
    """The inversion tables for these rates, cached: a kernel applied chunk by chunk reuses one table
    instead of re-evaluating K * L incomplete gamma functions.

    A 53-bit uniform u's bucket floor(u B) (B the power of two >= L, so the bucket is u's top bits and
    m / B is exact) brackets the answer: it lies in [guide[m], guide[m + 1]]. Where that range holds at
    most one CDF jump, ``guide[m] + (cdf[guide[m]] < u)`` is the answer, computed from one packed word
    per bucket (the threshold relative to the bucket's start, compared with u's low bits, and the guide);
    the others (the tails' first and last buckets, ~2 / B of the draws) give a sentinel >= L and are
    bisected.
    """
    key = (str(levels.device), levels.numel(), levels.cpu().numpy().tobytes())
    cached = _TABLES.get(key)  # one lookup: another thread may clear the dict in between
    if cached is not None:
        return cached
    top = float(levels.max()) if levels.numel() else 0.0
    width = int(math.ceil(top + 14.0 * math.sqrt(top) + 40.0))
    ks = torch.arange(width, dtype=torch.float64, device=levels.device)
    cdf = _poisson_cdf(ks.unsqueeze(0), levels.unsqueeze(1))  # [K, L]
    cdf[:, -1] = 1.0  # the tail beyond L has mass < 1e-40 for these widths
    bits = max(1, (width - 1).bit_length())
    buckets = 1 << bits
    marks = torch.arange(buckets + 1, dtype=torch.float64, device=levels.device) / buckets
    guide = torch.searchsorted(cdf, marks.expand(levels.numel(), buckets + 1).contiguous())
    guide = guide.clamp_(max=width - 1)
    cdf53 = cdf.mul(2.0**53).floor_().to(torch.int64)  # exact: cdf <= 1
    span = 1 << (53 - bits)
    start = torch.arange(buckets + 1, dtype=torch.int64, device=levels.device) * span
    offset = (cdf53.gather(1, guide) - start).clamp_(0, span)  # >= span: never below u's low bits
    packed = offset.bitwise_left_shift(bits + 1).bitwise_or_(guide)  # < 2^(55): no sign bit
    packed[:, :-1].masked_fill_((guide[:, 1:] - guide[:, :-1]) >= 2, (1 << (bits + 1)) - 2)
    entry = _Table(cdf53.reshape(-1), guide.to(torch.int32).reshape(-1), packed.reshape(-1), width, bits)
    if len(_TABLES) > 64:
        _TABLES.clear()
    _TABLES[key] = entry
    return entry


def _bisect(table: _Table, entry: torch.Tensor, u53: torch.Tensor) -> torch.Tensor:
    """Smallest k with cdf[row, k] >= u within [guide[m], guide[m + 1]] (1-D; ``entry`` = row * (B + 1) + m)."""
    buckets = 1 << table.bits
    base = (entry // (buckets + 1)) * table.width
    lo = table.guide.index_select(0, entry).to(torch.int64)
    hi = table.guide.index_select(0, entry + 1).to(torch.int64)
    while bool((lo < hi).any()):  # invariant: the answer lies in [lo, hi]
        mid = (lo + hi) // 2
        below = table.cdf.index_select(0, base + mid) < u53
        lo = torch.where(below, mid + 1, lo)
        hi = torch.where(below, hi, mid)
    return lo.to(torch.int32)
