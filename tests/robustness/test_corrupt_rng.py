"""CounterRNG: batch invariance, stream independence and distribution checks.

Statistical checks use fixed keys, so they are deterministic; the stated alpha is the chance that a
correct generator would fail such a check for a key picked at random. Each check here uses
alpha = 1e-4 (two-sided z = 3.89) unless it says otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pytest_psa.measure.robustness.corruptions.rng import CounterRNG, mix64, mix64_int

ALPHA = 1e-4
Z = stats.norm.isf(ALPHA / 2)  # 3.89


def _splitmix64_reference(z: int) -> int:
    """The published SplitMix64 finalizer (Steele, Lea & Flood 2014), unsigned."""
    m = (1 << 64) - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_mix64_matches_the_published_finalizer_on_int64_tensors():
    # torch int64 multiplication must wrap and the masked shifts must act as logical shifts.
    values = [0, 1, 2, 12345, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 0x9E3779B97F4A7C15, 0xDEADBEEF12345678]
    signed = [v - (1 << 64) if v >= 1 << 63 else v for v in values]
    got = mix64(torch.tensor(signed, dtype=torch.int64)).tolist()
    want = [_splitmix64_reference(v) for v in values]
    assert [g & ((1 << 64) - 1) for g in got] == want
    assert [mix64_int(v) & ((1 << 64) - 1) for v in values] == want


def test_golden_values_pin_the_stream_layout():
    # These numbers define every corrupted image; if they change, corrupted data sets change too.
    rng = CounterRNG(0, torch.tensor([0, 7]), "gaussian_noise", 1)
    got = rng.randint(0, 1 << 30, (3,), stream=0).tolist()
    again = CounterRNG(0, torch.tensor([0, 7]), "gaussian_noise", 1).randint(0, 1 << 30, (3,), stream=0)
    assert again.tolist() == got
    assert got == [[202821687, 47802993, 829081579], [964092626, 127513696, 455687653]]


@pytest.mark.parametrize("open_low", [False, True])
def test_24_bit_uniforms_are_the_word_bits_times_two_to_the_minus_24(open_low):
    """Word k of a row gives element k (bits 40..63) and element half + k (bits 8..31) as
    (bits + open_low) * 2**-24, exactly, whatever ops make them (checked from the raw words)."""
    rng = CounterRNG(4, torch.tensor([3, 11, 12]), "fog", 2)
    count = 2 * 37
    half = count // 2
    rows = torch.arange(3).repeat_interleave(half)
    words = rng._words_at(rows, torch.arange(half).repeat(3), stream=6).reshape(3, half)
    offset = int(open_low)
    first = ((words >> 40) & 0xFFFFFF).add(offset).double() * 2.0**-24
    second = ((words >> 8) & 0xFFFFFF).add(offset).double() * 2.0**-24
    if open_low:
        got_first, got_second = rng._uniform24_halves(half, 6, open_low=True)
    else:
        got = rng.uniform((count,), stream=6)
        got_first, got_second = got[:, :half], got[:, half:]
    assert got_first.dtype == torch.float32
    assert torch.equal(got_first.double(), first) and torch.equal(got_second.double(), second)
    assert bool((first > 0).all()) if open_low else bool((first < 1).all())


@pytest.mark.parametrize("method", ["uniform", "normal", "randint", "uniform64", "poisson"])
def test_a_sample_gets_the_same_numbers_alone_in_a_batch_reversed_or_mixed(method):
    shape = (3, 5, 7)  # odd element count exercises the paired (two per word) layout

    def draw(indices: list[int]) -> torch.Tensor:
        rng = CounterRNG(11, torch.tensor(indices), "shot_noise", 3)
        if method == "uniform":
            return rng.uniform(shape, stream=2)
        if method == "normal":
            return rng.normal(shape, stream=2)
        if method == "randint":
            return rng.randint(-3, 9, shape, stream=2)
        if method == "uniform64":
            return rng.uniform64(shape, stream=2)
        rate = torch.linspace(0.0, 40.0, math.prod(shape), dtype=torch.float64).reshape(shape)
        return rng.poisson(rate.expand(len(indices), *shape), stream=2)

    alone = draw([5])[0]
    batch7 = draw(list(range(7)))
    assert torch.equal(batch7[5], alone)
    reverse = draw(list(range(6, -1, -1)))
    assert torch.equal(reverse[1], alone)
    mixed = draw([1000, 5, 3, 99999])
    assert torch.equal(mixed[1], alone)
    assert torch.equal(mixed[2], batch7[3])
    # different samples differ
    assert not torch.equal(batch7[4], alone)


def test_large_rows_are_made_in_column_chunks_with_the_same_numbers():
    # 224 px images exceed one CPU chunk per row; a row must not depend on the chunking.
    shape = (3, 224, 224)
    both = CounterRNG(1, torch.tensor([4, 9]), "snow", 2).uniform(shape, stream=1)
    one = CounterRNG(1, torch.tensor([9]), "snow", 2).uniform(shape, stream=1)
    assert torch.equal(both[1], one[0])
    # ...and the layout is still uniform: half the words' bits fill the first half, half the second.
    flat = both.reshape(2, -1)
    half = flat.shape[1] // 2
    assert abs(float(flat[:, :half].mean()) - 0.5) < Z * math.sqrt(1 / 12 / (2 * half))
    assert abs(float(flat[:, half:].mean()) - 0.5) < Z * math.sqrt(1 / 12 / (2 * half))


KEYS = {
    "base": (0, 0, "gaussian_noise", 1, 0),
    "seed": (1, 0, "gaussian_noise", 1, 0),
    "index": (0, 1, "gaussian_noise", 1, 0),
    "corruption": (0, 0, "shot_noise", 1, 0),
    "severity": (0, 0, "gaussian_noise", 2, 0),
    "stream": (0, 0, "gaussian_noise", 1, 1),
}
N_DRAWS = 1 << 16


def _uniform(key: tuple) -> np.ndarray:
    seed, index, name, severity, stream = key
    rng = CounterRNG(seed, torch.tensor([index]), name, severity)
    return rng.uniform((N_DRAWS,), stream=stream)[0].double().numpy()


@pytest.mark.parametrize("changed", [k for k in KEYS if k != "base"])
def test_changing_any_key_part_gives_an_uncorrelated_uniform_stream(changed):
    base, other = _uniform(KEYS["base"]), _uniform(KEYS[changed])
    # Under independence Pearson r ~ N(0, 1/n); also compare lagged by one (a shifted copy would show).
    for a, b in ((base, other), (base[1:], other[:-1]), (base[:-1], other[1:])):
        r = float(np.corrcoef(a, b)[0, 1])
        assert abs(r) < Z / math.sqrt(a.size), (changed, r)
    assert stats.kstest(other, "uniform").pvalue > ALPHA


def test_uniform_normal_and_randint_have_their_laws():
    rng = CounterRNG(3, torch.arange(16), "impulse_noise", 4)
    u = rng.uniform((4096,), stream=0).reshape(-1).double().numpy()
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > ALPHA
    z = rng.normal((4096,), stream=1).reshape(-1).double().numpy()
    assert stats.kstest(z, "norm").pvalue > ALPHA
    assert np.abs(z).max() <= 5.78  # Box-Muller on 24-bit uniforms
    k = rng.randint(-2, 5, (4096,), stream=2).reshape(-1).numpy()
    assert k.min() == -2 and k.max() == 4
    counts = np.bincount(k + 2, minlength=7)
    assert stats.chisquare(counts).pvalue > ALPHA
    u64 = rng.uniform64((4096,), stream=3).reshape(-1).numpy()
    assert stats.kstest(u64, "uniform").pvalue > ALPHA


@pytest.mark.parametrize("rate", [0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0])
def test_poisson_mean_and_variance_match_the_rate(rate):
    n = 20_000
    rng = CounterRNG(5, torch.arange(4), "shot_noise", 1)
    draws = rng.poisson(torch.full((4, n // 4), rate, dtype=torch.float64)).reshape(-1).numpy()
    assert np.all(draws == np.round(draws)) and draws.min() >= 0
    # mean: CLT, Var(mean) = rate / n
    assert abs(draws.mean() - rate) < Z * math.sqrt(rate / n)
    # variance: Var(s^2) ~ (mu4 - sigma^4) / n with mu4 = rate (1 + 3 rate) for a Poisson
    var_of_var = (rate * (1 + 3 * rate) - rate**2) / n
    assert abs(draws.var(ddof=1) - rate) < Z * math.sqrt(var_of_var)


@pytest.mark.parametrize("rate", [0.5, 5.0, 60.0])
def test_poisson_pmf_goodness_of_fit(rate):
    n = 40_000
    rng = CounterRNG(6, torch.arange(8), "shot_noise", 2)
    draws = rng.poisson(torch.full((8, n // 8), rate, dtype=torch.float64)).reshape(-1).numpy().astype(int)
    # pool the tails so every expected count is >= 20
    ks = np.arange(draws.max() + 1)
    expected = stats.poisson.pmf(ks, rate) * n
    lo = int(np.argmax(expected >= 20))
    hi = int(len(ks) - np.argmax(expected[::-1] >= 20))
    observed = np.concatenate([[np.sum(draws < lo + 1)], np.bincount(draws, minlength=len(ks))[lo + 1 : hi - 1],
                               [np.sum(draws >= hi - 1)]])
    exp = np.concatenate([[stats.poisson.cdf(lo, rate)], stats.poisson.pmf(np.arange(lo + 1, hi - 1), rate),
                          [stats.poisson.sf(hi - 2, rate)]]) * n
    assert observed.sum() == n
    assert stats.chisquare(observed, exp).pvalue > ALPHA


def test_poisson_table_path_equals_the_direct_path():
    # Images from uint8 take a CDF-table path; it must give the same counts as the per-element path.
    levels = torch.arange(256, dtype=torch.float64) / 255.0 * 500.0
    codes = torch.randint(0, 256, (3, 700), generator=torch.Generator().manual_seed(0))
    a = CounterRNG(2, torch.tensor([8, 1, 5]), "shot_noise", 1).poisson_levels(levels, codes)
    b = CounterRNG(2, torch.tensor([8, 1, 5]), "shot_noise", 1).poisson(levels[codes])
    assert torch.equal(a, b)
    assert torch.equal(torch.zeros(1, 3, dtype=torch.float64),
                       CounterRNG(0, [0], "x", 1).poisson(torch.zeros(1, 3, dtype=torch.float64)))



@pytest.mark.parametrize("photons", [3.0, 60.0, 500.0])
def test_poisson_table_path_equals_the_direct_path_in_every_bucket_kind(photons):
    # 40,000 draws per case: enough that draws land in the guide table's ambiguous buckets (the tails'
    # first and last, bisected after the pass) as well as in the one-comparison ones, at rates from
    # 0.01 (grey level 1 at 3 photons) to 500; counts across chunk boundaries (rows of 20,000 words).
    levels = torch.arange(256, dtype=torch.float64) / 255.0 * photons
    codes = torch.randint(0, 256, (2, 20_000), generator=torch.Generator().manual_seed(int(photons)))
    rng = CounterRNG(3, torch.tensor([4, 9]), "shot_noise", 2)
    table = rng.poisson_levels_int(levels, codes, stream=1)
    assert table.dtype == torch.int32
    assert torch.equal(table.to(torch.float64), rng.poisson(levels[codes], stream=1))
    assert torch.equal(table[1:], CounterRNG(3, torch.tensor([9]), "shot_noise", 2).poisson_levels_int(
        levels, codes[1:], stream=1))

def test_poisson_rejects_a_rate_of_the_wrong_batch_size():
    with pytest.raises(ValueError, match="N=2"):
        CounterRNG(0, torch.arange(2), "shot_noise", 1).poisson(torch.ones(3, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_numbers():
    cpu = CounterRNG(0, torch.arange(5), "gaussian_noise", 2)
    gpu = CounterRNG(0, torch.arange(5), "gaussian_noise", 2, device="cuda")
    assert torch.equal(cpu.uniform((3, 32, 32)), gpu.uniform((3, 32, 32)).cpu())
    assert torch.equal(cpu.randint(0, 7, (100,)), gpu.randint(0, 7, (100,)).cpu())
    levels = torch.arange(256, dtype=torch.float64) / 255 * 100
    codes = torch.randint(0, 256, (5, 3000))
    assert torch.equal(cpu.poisson_levels(levels, codes), gpu.poisson_levels(levels, codes.cuda()).cpu())
    assert torch.allclose(cpu.normal((500,)), gpu.normal((500,)).cpu(), atol=1e-5)
