"""The seed paper's augmentation zoo (pytest_psa.augment.zoo): contract, determinism, names, the
redraw wrapper's costs and errors, and the proximal density shape on the synthetic set.

Density bounds: one-sided 95 % bounds (`DensityResult.interval(..., alpha=0.05, side=...)`, images
as the unit) at the tool's PSA γ = 0.05 (normalized l2). With N = 500 images and no draw within γ
the upper bound is 0.008, so "upper bound < 0.01" can fail: it needs (almost) no proximal draw.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import torch

import pytest_psa
from pytest_psa.augment import as_augmentation, resolve_augmentation
from pytest_psa.augment.known import KNOWN_AUGMENTATIONS
from pytest_psa.augment.zoo import (
    PIXEL_DISTANCES,
    DeepAugmentStandin,
    PixMix,
    RandConvStandin,
    chain,
    compose,
    without_proximal,
)
from pytest_psa.augment.zoo._ops import AUGMENTATIONS_ALL
from pytest_psa.augment.zoo.fractals import mixing_picture
from pytest_psa.errors import AugmentationContractError, PsaUsageError
from pytest_psa.measure.density.distances import get_distance

ZOO = ["pixmix", "deepaugment-standin", "styleaug-standin-randconv", "augmix-without-proximal",
       "deepaugment-standin|augmix", "styleaug-standin-randconv|augmix", "deepaugment-standin|styleaug-standin-randconv"]
EMPTY = ["deepaugment-standin", "styleaug-standin-randconv"]  # the stand-ins: nothing near the original
GAMMA = 0.05  # the tool's PSA gamma (results.density.DEFAULT_GAMMA)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return pytest_psa.synthetic("test", 12).images.float().div(255)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_member_keeps_the_contract_and_is_deterministic(name: str, images: torch.Tensor) -> None:
    aug = resolve_augmentation(name)
    assert aug.name == name
    aug.check_determinism(tuple(images.shape[1:]))  # the audit's own probe self-check
    seeds = list(range(100, 100 + len(images)))
    out = aug.apply(images, seeds)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 and bool(torch.isfinite(out).all())
    assert torch.equal(out, aug.apply(images, seeds))  # same seeds, same draws
    other = aug.apply(images, [s + 7 for s in seeds])
    assert not torch.equal(out, other)  # other seeds, other draws
    # a draw depends on (image, seed) only: alone or in a batch
    assert torch.equal(aug.apply(images[3:4], seeds[3:4])[0], out[3])


@pytest.mark.parametrize("obj", [PixMix(all_ops=True), DeepAugmentStandin(), RandConvStandin(mix=True)], ids=repr)
def test_zoo_objects_work_at_other_sizes_and_channel_counts(obj: Any) -> None:
    aug = as_augmentation(obj)
    for shape in ((3, 48, 40), (1, 24, 24)):
        x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(1))
        out = aug.apply(x, [1, 2, 3, 4])
        assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1


def test_draws_leave_the_global_generators_as_they_were(images: torch.Tensor) -> None:
    torch.manual_seed(5)
    before = torch.get_rng_state()
    resolve_augmentation("deepaugment-standin|augmix").apply(images, list(range(len(images))))
    assert torch.equal(torch.get_rng_state(), before)


def test_reprs_show_the_parameters() -> None:
    assert repr(PixMix()) == "PixMix(k=4, beta=3, severity=3, all_ops=False, n_pictures=128, pictures_seed=0)"
    assert "weight_noise=0.5" in repr(DeepAugmentStandin()) and "net_seed=0" in repr(DeepAugmentStandin())
    assert repr(RandConvStandin()) == "RandConvStandin(kernel_sizes=(1, 3, 5, 7), mix=False)"
    wp = without_proximal(resolve_augmentation("augmix"), 0.05)
    assert repr(wp) == "WithoutProximal(augmix, delta=0.05, distance='l2', max_redraws=100)"
    assert wp.name == "augmix-without-proximal"
    a, b = resolve_augmentation("cropflip"), resolve_augmentation("augmix")
    assert compose(a, b).name == "cropflip|augmix" and compose(a, b, p=0.2).name == "cropflip|augmix(p=0.2)"
    assert chain(a, b).name == "cropflip>augmix" and repr(chain(a, b)) == "Chain(cropflip, augmix)"


def test_pixmix_uses_the_published_operations_and_defaults() -> None:
    p = PixMix()
    assert (p.k, p.beta, p.severity, p.all_ops) == (4, 3.0, 3.0, False)
    names = [op.__name__ for op in AUGMENTATIONS_ALL]
    assert names == ["autocontrast", "equalize", "posterize", "rotate", "solarize", "shear_x", "shear_y",
                     "translate_x", "translate_y", "color", "contrast", "brightness", "sharpness"]


def test_pixmix_rounds_follow_k() -> None:
    """k = 0 leaves at most one base operation: the image itself half of the time."""
    x = pytest_psa.synthetic("test", 1).images.float().div(255)
    plain = as_augmentation(PixMix(k=0))
    out = plain.apply(x.expand(200, -1, -1, -1), list(range(200)))
    same = (out - x).flatten(1).abs().amax(1) == 0
    assert 0.35 < float(same.float().mean()) < 0.75  # 1/2 plus ops that happen to be no-ops here


def test_mixing_pictures_are_deterministic_structured_and_any_size() -> None:
    a, b = mixing_picture(0, 3, 36, 36), mixing_picture(0, 3, 36, 36)
    assert (a == b).all() and a.shape == (3, 36, 36) and a.min() >= 0 and a.max() <= 1
    assert not (mixing_picture(1, 3, 36, 36) == a).all()
    assert mixing_picture(0, 0, 100, 60).shape == (3, 100, 60)
    for i in range(8):  # every kind has structure: not a flat picture
        assert mixing_picture(0, i, 36, 36).std() > 0.02


def test_zoo_pickles_for_dataloader_workers(images: torch.Tensor) -> None:
    for name in ZOO:
        aug = resolve_augmentation(name)
        twin = pickle.loads(pickle.dumps(aug))
        assert torch.equal(aug.apply(images[:2], [1, 2]), twin.apply(images[:2], [1, 2]))


# -- without_proximal ----------------------------------------------------------------------------
def test_without_proximal_pixel_distances_are_the_measure_layers() -> None:
    """The wrapper's own copies of the pixel distances (the augment layer may not import measure)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(5, 3, 16, 16, generator=g), torch.rand(5, 3, 16, 16, generator=g)
    for name, fn in PIXEL_DISTANCES.items():
        assert torch.allclose(fn(x, y), get_distance(name).fn(x, y), rtol=1e-6, atol=0), name


def test_without_proximal_redraws_are_counted_and_deterministic(images: torch.Tensor) -> None:
    inner = resolve_augmentation("augmix")
    wp = without_proximal(inner, 0.05)
    aug = as_augmentation(wp)
    seeds = list(range(len(images)))
    out = aug.apply(images, seeds)
    d = PIXEL_DISTANCES["l2"](images, out)
    assert bool((d > 0.05).all())
    assert wp.stats.draws == len(images) and wp.redraws == wp.stats.redraws > 0  # AugMix is mostly proximal
    assert wp.stats.most >= 1 and wp.stats.rate == wp.redraws / len(images)
    wp.stats.reset()
    assert torch.equal(aug.apply(images, seeds), out) and wp.stats.draws == len(images)
    # a first draw that is already far is kept: no redraw at a tiny delta
    far = without_proximal(inner, 1e-6)
    as_augmentation(far).apply(images, seeds)
    assert far.stats.draws == len(images) and far.redraws == 0


def test_without_proximal_gives_up_with_delta_named() -> None:
    flat = torch.full((1, 3, 16, 16), 0.5)  # AugMix leaves a constant image (almost) unchanged
    aug = as_augmentation(without_proximal(resolve_augmentation("augmix"), 0.3, max_redraws=5))
    with pytest.raises(AugmentationContractError, match=r"6 draws of augmix in a row landed within delta=0.3") as info:
        aug.apply(flat, [0])
    assert "lower delta below 0.3" in str(info.value)


def test_without_proximal_and_compose_refuse_bad_arguments() -> None:
    inner = resolve_augmentation("augmix")
    with pytest.raises(PsaUsageError, match="delta must be > 0"):
        without_proximal(inner, 0)
    with pytest.raises(PsaUsageError, match="cannot use the distance 'feature'"):
        without_proximal(inner, 0.1, distance="feature")
    with pytest.raises(PsaUsageError, match="resolve_augmentation"):
        compose("augmix", inner)
    with pytest.raises(PsaUsageError, match=r"p must be in \[0, 1\]"):
        compose(inner, inner, p=1.5)
    with pytest.raises(PsaUsageError, match="at least two"):
        chain(inner)


def test_without_proximal_takes_a_callable_distance(images: torch.Tensor) -> None:
    wp = without_proximal(resolve_augmentation("augmix"), 4 / 255, distance=PIXEL_DISTANCES["linf"])
    out = as_augmentation(wp).apply(images[:4], [0, 1, 2, 3])
    assert bool((PIXEL_DISTANCES["linf"](images[:4], out) > 4 / 255).all())


# -- density on the synthetic set ----------------------------------------------------------------
@pytest.mark.parametrize("name", EMPTY)
def test_stand_ins_leave_the_proximal_region_empty(name: str) -> None:
    r = pytest_psa.density(name, n_images=500, draws=1)  # the bound counts images: one draw each suffices
    upper = r.interval(GAMMA, alpha=0.05, side="upper").high
    assert upper < 0.01, f"{name}: F({GAMMA}) = {r.F(GAMMA):.4f}, upper bound {upper:.4f}"
    assert r.F(0.2) > 0  # not empty everywhere: the draws are images, just not near ones


def test_augmix_without_proximal_has_no_draw_within_delta_and_keeps_the_rest() -> None:
    r = pytest_psa.density("augmix-without-proximal", n_images=60, draws=2)
    assert r.F(GAMMA) == 0.0 and float(r.distances.min()) > GAMMA
    plain = pytest_psa.density("augmix", n_images=60, draws=2)
    assert plain.F(GAMMA) > 0.3  # what was removed: AugMix is dense near the original
    assert r.F(0.2) > 0.5  # what was kept


@pytest.mark.parametrize("name", ["pixmix", "deepaugment-standin|augmix", "styleaug-standin-randconv|augmix"])
def test_pixmix_and_the_pairings_with_augmix_have_proximal_mass(name: str) -> None:
    r = pytest_psa.density(name, n_images=100, draws=2)
    assert r.interval(GAMMA, alpha=0.05, side="lower").low > 0, f"{name}: F({GAMMA}) = {r.F(GAMMA):.4f}"


def test_pairing_the_two_stand_ins_leaves_the_gap() -> None:
    r = pytest_psa.density("deepaugment-standin|styleaug-standin-randconv", n_images=100, draws=2)
    assert r.F(GAMMA) == 0.0


# -- the front doors: psa list, psa audit, the fixture -------------------------------------------
def test_psa_list_shows_the_zoo(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_psa.cli import EXIT_OK, main

    assert main(["list"]) == EXIT_OK
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert set(ZOO) <= listed and set(ZOO) <= set(KNOWN_AUGMENTATIONS)
    assert {"fgsm_at", "sam", "converged"} <= listed  # the training regimes, with how to ask for them


def test_psa_audit_accepts_zoo_names(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_psa.cli import EXIT_OK, main

    code = main(["audit", "pixmix", "deepaugment-standin|augmix", "--no-flatness", "--no-robustness",
                 "--n-images", "10", "--draws", "1", "-q"])
    out = capsys.readouterr().out
    assert code == EXIT_OK and "pixmix" in out and "deepaugment-standin|augmix" in out


def test_the_psa_fixture_takes_zoo_names(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.psa(n_images=20, draws=1)
        def test_zoo(psa):
            r = psa.density("styleaug-standin-randconv")
            assert r.augmentation == "styleaug-standin-randconv" and r.F(0.05) == 0.0
            assert psa.density("pixmix").F(0.05) > 0
    """)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_randconv_mix_variant_lands_near_the_image() -> None:
    """The blended RandConv (α near 1 keeps the image) is not PSA-violating: the bound above can tell."""
    r = pytest_psa.density(RandConvStandin(mix=True), n_images=100, draws=2)
    assert r.interval(GAMMA, alpha=0.05, side="lower").low > 0
