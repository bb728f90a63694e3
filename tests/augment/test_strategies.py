"""`pytest_psa.strategies.images` and `pytest_psa.check_contract`: property tests of an augmentation's contract.

The strategies must reach every form and every edge case; `check_contract` must pass a correct
augmentation on all of them and catch each way a real augmentation breaks the contract.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms import v2

import pytest_psa
from pytest_psa import AugmentationContractError, PsaUsageError, check_contract
from pytest_psa.strategies import EDGE_CASES, LARGE, TINY, images, render

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- what the strategies draw ------------------------------------------------------------------
@pytest.mark.parametrize(("dtype", "kind"), [("float", torch.Tensor), ("uint8", torch.Tensor),
                                              ("pil", Image.Image), ("numpy", np.ndarray)])
@FAST
@given(data=st.data())
def test_each_dtype_draws_what_its_adapter_receives(dtype, kind, data) -> None:
    img = data.draw(images(dtype=dtype))
    assert isinstance(img, kind)
    if dtype == "float":
        assert img.dtype == torch.float32 and img.ndim == 3 and img.shape[0] in (1, 3)
        assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    elif dtype == "uint8":
        assert img.dtype == torch.uint8 and img.ndim == 3 and img.shape[0] in (1, 3)
    elif dtype == "pil":
        assert img.mode in ("L", "RGB")
    else:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] in (1, 3)


def _is(kind: str, img: torch.Tensor) -> bool:
    """Recognise an edge case from the pixels alone (float CHW)."""
    flat = img.flatten(1)
    if kind == "constant_0":
        return bool((img == 0).all())
    if kind == "constant_1":
        return bool((img == 1).all())
    if kind == "saturated":  # every channel constant at 0 or 1, colour images not grey
        per = flat[:, 0]
        return (img.shape[0] == 3 and bool((flat == per[:, None]).all()) and set(per.tolist()) == {0.0, 1.0})
    if kind == "checkerboard":
        return (min(img.shape[1:]) >= 2 and set(img.unique().tolist()) == {0.0, 1.0}
                and bool((img[:, 0, 0] != img[:, 0, 1]).all() | (img[:, 0, 0] != img[:, 1, 0]).all())
                and not bool((img == img[:, :1, :1]).all()))
    if kind == "bright_pixel":
        return int((img.amax(0) == 1).sum()) == 1 and int((img.amax(0) == 0).sum()) == img.shape[1] * img.shape[2] - 1
    if kind == "tiny":
        return tuple(img.shape[1:]) == (TINY, TINY)
    if kind == "large":
        return tuple(img.shape[1:]) == (LARGE, LARGE)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", EDGE_CASES)
def test_every_edge_case_is_drawn(kind) -> None:
    # find() searches the strategy's own distribution: an edge case it never draws is not found
    found = find(images(channels=3), lambda img: _is(kind, img),
                 settings=settings(max_examples=2000, database=None, deadline=None))
    assert _is(kind, found)


def test_edge_cases_get_a_fair_share_and_large_stays_rare() -> None:
    strategy = images(channels=3)
    counts = {k: 0 for k in EDGE_CASES}
    seen = []

    @settings(max_examples=300, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(img) -> None:
        seen.append(img)

    collect()
    for img, kind in itertools.product(seen, EDGE_CASES):
        counts[kind] += _is(kind, img)
    share = sum(counts.values()) / len(seen)
    assert 0.15 < share < 0.7, counts
    assert counts["large"] < 0.1 * len(seen), counts


def test_edge_cases_can_be_switched_off_and_fixed_sizes_are_kept() -> None:
    @settings(max_examples=60, database=None, deadline=None)
    @given(images(size=(12, 20), edge_cases=False, channels=1))
    def check(img) -> None:
        assert tuple(img.shape) == (1, 12, 20)
        assert not _is("constant_0", img) and not _is("constant_1", img)

    check()

    @settings(max_examples=60, database=None, deadline=None)
    @given(images(size=16))
    def fixed(img):  # edge-case content is still drawn, but tiny/large never override a fixed size
        assert tuple(img.shape[1:]) == (16, 16)

    fixed()


def test_render_is_deterministic_and_in_range() -> None:
    for kind in ("noise", "gradient", "blocks", "blobs", *EDGE_CASES):
        a, b = render(kind, 10, 14, 3, seed=5), render(kind, 10, 14, 3, seed=5)
        assert np.array_equal(a, b) and a.min() >= 0.0 and a.max() <= 1.0 and a.shape[2] == 3


@pytest.mark.parametrize("bad", [dict(dtype="half"), dict(channels=4), dict(channels=()), dict(size=0),
                                 dict(size=(3, 4, 5))])
def test_bad_arguments_are_usage_errors(bad) -> None:
    with pytest.raises(PsaUsageError):
        images(**bad)


def test_importing_the_package_does_not_import_hypothesis() -> None:
    code = "import pytest_psa, sys; print('hypothesis' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# -- check_contract ----------------------------------------------------------------------------
def good_tensor(x: torch.Tensor) -> torch.Tensor:
    noise = 0.05 * torch.randn(x.shape)
    return (x.flip(-1) + noise).clamp(0, 1)


@FAST
@given(images())
def test_a_correct_tensor_augmentation_passes_on_every_image(image) -> None:
    out = check_contract(good_tensor, image, seed=3)
    assert out.shape == image.shape and out.dtype == torch.float32


@FAST
@given(images(dtype="pil"))
def test_a_correct_pil_callable_passes(image) -> None:
    check_contract(lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), image)


@FAST
@given(images(dtype="numpy"))
def test_a_correct_numpy_callable_passes(image) -> None:
    check_contract(lambda a: np.ascontiguousarray(a[::-1]), image)


@FAST
@given(images(dtype="uint8", size=st.integers(8, 40)))
def test_a_torchvision_v2_transform_passes(image) -> None:
    check_contract(v2.Compose([v2.RandomHorizontalFlip(), v2.ColorJitter(0.4, 0.4, 0.4)]), image)


def test_the_output_is_the_seeded_draw() -> None:
    x = torch.from_numpy(render("noise", 16, 16, 3, seed=1).transpose(2, 0, 1).astype(np.float32))
    a = check_contract(good_tensor, x, seed=1)
    b = check_contract(good_tensor, x, seed=2)
    assert torch.equal(a, check_contract(good_tensor, x, seed=1)) and not torch.equal(a, b)


def _fails(aug, prop: str, image=None) -> AugmentationContractError:
    image = torch.full((3, 16, 16), 0.5) if image is None else image
    with pytest.raises(AugmentationContractError) as info:
        check_contract(aug, image)
    assert info.value.property == prop, str(info.value)
    assert "fix" in str(info.value).lower() or info.value.fix
    return info.value


def test_catches_a_wrong_shape() -> None:
    _fails(lambda x: x[:, 1:, 1:], "shape")


def test_catches_nan_from_normalizing_a_constant_image() -> None:
    # a per-image standardization divides by std 0 on a constant image: an edge case finds it
    def standardize(x: torch.Tensor) -> torch.Tensor:
        return ((x - x.mean()) / x.std()).sigmoid()

    check_contract(standardize, torch.rand(3, 8, 8))
    _fails(standardize, "finiteness", torch.zeros(3, 8, 8))


def test_catches_values_off_the_pixel_scale() -> None:
    _fails(lambda x: x * 255.0, "value range")


def test_catches_a_nondeterministic_augmentation() -> None:
    calls = itertools.count()

    def drifting(x: torch.Tensor) -> torch.Tensor:  # state kept between calls: same seed, other output
        return (x + 0.01 * next(calls)).clamp(0, 1)

    err = _fails(drifting, "determinism")
    assert "same" in str(err) and "seed" in str(err) and "counter" in str(err)  # cause and fix named


def test_catches_a_generator_the_audit_cannot_seed() -> None:
    rng = np.random.default_rng()  # unseeded, private: the audit cannot replay its draws

    def private(x: torch.Tensor) -> torch.Tensor:
        return (x + float(rng.uniform(-0.1, 0.1))).clamp(0, 1)

    _fails(private, "determinism")


def test_hypothesis_finds_the_edge_case_that_breaks_an_augmentation() -> None:
    def standardize(x: torch.Tensor) -> torch.Tensor:
        return ((x - x.mean()) / x.std()).sigmoid()

    @settings(max_examples=200, database=None, deadline=None)
    @given(images())
    def prop(image) -> None:
        check_contract(standardize, image)

    with pytest.raises(AugmentationContractError) as info:
        prop()
    assert info.value.property == "finiteness"


@pytest.mark.parametrize("image", [torch.rand(2, 3, 8, 8), torch.rand(3, 8, 8) * 255, torch.zeros(3, 8, 8,
                                   dtype=torch.int64), "image.png", Image.new("CMYK", (8, 8))])
def test_bad_images_are_usage_errors(image) -> None:
    with pytest.raises(PsaUsageError):
        check_contract(good_tensor, image)


def test_exported_lazily_from_the_package() -> None:
    assert pytest_psa.check_contract is check_contract and "check_contract" in pytest_psa.__all__


def test_a_two_line_property_test_in_a_users_repository(pytester) -> None:
    pytester.makepyfile(test_my_aug="""
        import torch
        from hypothesis import given, settings
        from pytest_psa import check_contract
        from pytest_psa.strategies import images


        def my_flip(x):
            return x.flip(-1)


        @given(images())
        def test_my_flip_keeps_the_contract(image) -> None:
            check_contract(my_flip, image)


        def brightness_255(x):
            return x * 255


        @settings(database=None)
        @given(images())
        def test_broken_augmentation_is_caught(image) -> None:
            check_contract(brightness_255, image)
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*AugmentationContractError*value range*"])
