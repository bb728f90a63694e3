"""`pytest_psa._seeding` is the one seed-derivation module, and moving the three seed hashes there
(the density audit's draw table, the corruptions' counter-based keys, the flatness metric seeds)
changed no bit. The expected values were computed with the code before the move."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from pytest_psa import _seeding
from pytest_psa.audits.density import draw_seeds
from pytest_psa.measure.flatness._noise import derive_seed
from pytest_psa.measure.robustness.corruptions import rng as R


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_density_draw_seeds_are_unchanged() -> None:
    assert _sha(draw_seeds(3, np.arange(100), 8)) == "7ba7a064d361db50becb57753be13046325e3d4c07bdcb897f4503f1c1aacfb1"
    assert _sha(draw_seeds(0, np.array([0, 5, 49999, 2**40]), 3)) == (
        "b2983bad2fb892dbe07d71bc9a31ef3e1f2c5a08422ea51ad20119160fe9c5a6")
    assert _sha(draw_seeds(2**63 + 17, np.arange(10), 2)) == (
        "8320695e6c3e0308aff444e0449683e66f00c51d0a23459caf91d0ad0edf4ac6")
    assert draw_seeds(3, np.arange(3), 2).tolist() == [
        [5122342146692982882, 2891059245400126493],
        [1677107664615713915, 1272900849348314458],
        [448789738272653078, 132795686177495130],
    ]
    assert draw_seeds is _seeding.draw_seeds


# (seed, corruption, severity) -> sha256 of: sample keys, uniform, normal, randint, uniform64, chunked uniform
_CORRUPTION_STREAMS = {
    (0, "gaussian_noise", 3): (
        "400766cf8f96bd56800917b72952c01064d778cbe8de37cc842df1e6eb8b4bcd",
        "4b2f8f30eab842ab23c99d51254ebe909eae7cd6ab65930e849d1475ba98d8bd",
        "3e74a0cc199c8a900bf543cf1072ade144a7fa704d131bdb87225ef80088bf7b",
        "a6463f584ac9e8f900a2eb28dbad2cb25d9af6de7330a135fa67bd635dd71719",
        "5ae441be583605aca90d24af004894f95151ea029c8d68042e0fc0e6da8e5b78",
        "e5e6a99da0156e5e5159c1e636b0369b970ef431f1e0e02484b54744b492ffb3",
    ),
    (7, "shot_noise", 5): (
        "9b0645a56acfbfc38db00c300deea70e30c777b3c3746e323b94ba964e9cf447",
        "33ab63f91144c7b3c08e2d96733fbf4613f8fee94e3bf1dc84b194fd1491b599",
        "a25f200d635b6e76a0ed7e3f704a348c5a26c2096da62744c73f291bbf99daa5",
        "257a52a6920025666266cf67a5baff79c9e9cf20301466a299cbfbd25e62f944",
        "ed47db83bf9f7b87e8a41735008d85c227b67ddba25fc111d429ccd181d0f267",
        "282685614df9a368898f770f1b2e44f3293d144d4fc24a9bc919497e455e85ef",
    ),
    (123456789, "spatter", 1): (
        "768ee2563dfa94228a299d91ebeee2da451ab67d0abdce4284de8d66d02d001d",
        "66f9cac6e79c450f9e96a3558cbb9019df0351f6cd6a6df5faf3a18c2c17f4dd",
        "e5d4336757a367e7964f7bc12da9d15aa5ec03b8ca6ff203ed2e362e5c5a26f7",
        "1735df09cdb60fded8ea0ae3fa666b1e5c3fd6761dbb269c0967bab1cd8d0d21",
        "1e2a0a411b013438599141fab7d9f68bd772aae733b9e0e811ea237a1809d537",
        "9977796142ed1ef133bd26b413270847418b1c25695ee5d68216843da10518c2",
    ),
}


@pytest.mark.parametrize("key", list(_CORRUPTION_STREAMS), ids=lambda k: f"{k[1]}-{k[0]}")
def test_corruption_key_streams_are_unchanged(key: tuple[int, str, int]) -> None:
    gen = R.CounterRNG(key[0], torch.tensor([0, 1, 17, 49999, 2**40]), key[1], key[2])
    got = (
        _sha(gen._keys.numpy()),
        _sha(gen.uniform((3, 7), stream=2).numpy()),
        _sha(gen.normal((5,), stream=1).numpy()),
        _sha(gen.randint(-3, 11, (4, 4), stream=4).numpy()),
        _sha(gen.uniform64((9,), stream=0).numpy()),
        _sha(gen.uniform((40000,), stream=3).numpy()),  # longer than a CPU chunk: the per-row path
    )
    assert got == _CORRUPTION_STREAMS[key]


def test_corruption_mixers_are_unchanged() -> None:
    assert [R.mix64_int(v) for v in (0, 1, 2**63, 2**64 - 1, 0x5EED0000 + 3)] == [
        0, 6238072747940578789, 2720858781877447050, -5417735806833148549, -6270415094632975975]
    assert [R._name_key(0, "gaussian_noise", 3), R._name_key(9, "fog", 1)] == [
        -1820581061019309864, -6329885377165842495]
    words = torch.arange(-50, 50, dtype=torch.int64) * R._GOLDEN
    assert _sha(R.mix64(words).numpy()) == "a91d29b62549a0c4f09630b7c2db9c3403d040950da83ab08e1c299680ff2722"


def test_the_torch_finalizer_is_the_numpy_one() -> None:
    words = np.random.default_rng(0).integers(0, 2**64, size=4096, dtype=np.uint64)
    via_torch = R.mix64(torch.from_numpy(words.view(np.int64).copy())).numpy().view(np.uint64)
    assert np.array_equal(via_torch, _seeding.finalize64_array(words))
    assert [_seeding.finalize64(int(w)) for w in words[:64]] == _seeding.finalize64_array(words[:64]).tolist()


def test_flatness_metric_seeds_are_unchanged() -> None:
    assert [derive_seed(0, 1, 2), derive_seed(5, 0, 0), derive_seed(2**40, 3, 1), derive_seed(1)] == [
        1535930435702422785, 6315739163131927091, 2291050255947190326, 3717377837946358015]


def test_the_seeding_module_does_not_import_torch() -> None:
    code = "import sys, pytest_psa._seeding; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
