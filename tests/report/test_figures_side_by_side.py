"""Figures people can read side by side (issue 17): one colour per augmentation in every figure,
labels from the augmentation's name (a Compose by its members), data set / preset / seeds in every
title, the PSA verdict drawn on the eCDF; the HTML grid of sample pairs x / A(x); the Markdown summary."""

from __future__ import annotations

import base64
import io
import warnings

import numpy as np
import pytest

from pytest_psa._records import AuditRecord
from pytest_psa.results.density import DensityResult
from pytest_psa.results.flatness import FlatnessComparison, compare_metric
from pytest_psa.results.robustness import RobustnessResult, Samples

pytest.importorskip("matplotlib")
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from pytest_psa.report.plots import (  # noqa: E402
    ColorMap,
    corruption_figure,
    display_name,
    ecdf_figure,
    figures,
    flatness_figure,
)

CROPFLIP = "Compose( RandomCrop(size=(32, 32), padding=4) RandomHorizontalFlip(p=0.5) )"
AUGMIX = "AugMix(interpolation=bilinear, severity=3, mixture_width=3, chain_depth=-1, a..."


def _density(name: str, near: float) -> AuditRecord:
    rng = np.random.default_rng(len(name))
    distances = np.where(rng.random((80, 4)) < near, 0.01, 0.5)
    result = DensityResult(augmentation=name, distance="l2", distances=distances,
                           identity=np.zeros((80, 4), dtype=bool), seed=0, data={"describe": "cifar10/test[80 of 10000]"})
    result = result.with_defaults(gamma=[0.05], min_density=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result.assert_psa()
        except AssertionError:
            pass  # a failed verdict is drawn too
    return AuditRecord(f"t.py::test_{display_name(name)}", result.to_dict(),
                       [v.to_dict() for v in result.verdict_log()], "density")


def _flatness(name: str) -> AuditRecord:
    erm = (1.0, 1.1, 0.9)
    comp = compare_metric("lpf", erm, tuple(e * 0.8 for e in erm), 0.05)
    result = FlatnessComparison(augmentation=name, metrics={"lpf": comp}, seeds=(0, 1, 2), erm_reports=(),
                                augmented_reports=(), training={"erm": [], "augmented": []},
                                data={"describe": "cifar10/train[1000 of 50000]"},
                                settings={"preset": "smoke", "alpha": 0.05})
    return AuditRecord("t.py::test_flat", result.to_dict(), [], "flatness")


def _robustness(name: str, rate: float) -> AuditRecord:
    rng = np.random.default_rng(3)
    n = 200

    def samples(r: float) -> Samples:
        return Samples(clean=(rng.random(n) < r).astype(float), corruption=(rng.random((2, 1, n)) < r + 0.1).astype(float),
                       flips=np.zeros((0, 0)), adversarial={})

    result = RobustnessResult(
        subject=name, kind="augmentation", baseline="erm", corruptions=("gaussian_noise", "contrast"), severities=(3,),
        perturbations=(), attacks=(), samples=samples(rate), baseline_samples=samples(0.3),
        data={"describe": "cifar10/test[200 of 10000]"}, n_images=n, n_attack_images=0, n_perturbation_images=0,
        seed=0, seeds=(0, 1), preset="smoke", device="cpu", settings={}, attack_runs={}, per_seed={}, training={},
        cache={}, timing={})
    return AuditRecord("t.py::test_robust", result.to_dict(), [], "robustness")


def _texts(fig) -> str:  # noqa: ANN001
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def test_labels_come_from_the_name_and_a_compose_from_its_members() -> None:
    assert display_name(CROPFLIP) == "RandomCrop+RandomHorizontalFlip"
    assert display_name("Compose(\n  RandomCrop(size=32),\n  RandomHorizontalFlip(p=0.5)\n)") == \
        "RandomCrop+RandomHorizontalFlip"
    assert display_name("Compose( RandomCrop(size=(32, 32), padding=[4, 4, 4, 4], pad_if_needed=False,...") == \
        "RandomCrop+…"  # a name clipped at 80 characters lost its later members
    assert display_name("RandomChoice(transforms=[RandomCrop(size=32), RandomErasing(p=0.5)], p=None)") == \
        "RandomChoice[RandomCrop|RandomErasing]"
    assert display_name(AUGMIX) == "AugMix"
    assert display_name("my cropflip") == "my cropflip"  # a user's name stays


def test_the_colour_map_is_stable_per_name_and_distinct_within_a_run() -> None:
    colors = ColorMap()
    first = [colors.color(n) for n in ("a", "b", "c")]
    assert len(set(first)) == 3 and ColorMap.BASELINE not in first
    assert [colors.color(n) for n in ("c", "a", "b")] == [first[2], first[0], first[1]]
    other = ColorMap()
    other.register(["a", "b", "c"])
    assert [other.color(n) for n in ("a", "b", "c")] == first  # same first-seen order, same colours


def test_an_augmentation_has_one_colour_in_every_figure_and_every_title_names_data_preset_seeds() -> None:
    recs = [_density(CROPFLIP, 0.5), _density(AUGMIX, 0.1), _flatness(AUGMIX), _flatness(CROPFLIP),
            _robustness(CROPFLIP, 0.2), _robustness(AUGMIX, 0.25)]
    colors = ColorMap()
    made = figures(recs, colors)
    assert set(made) == {"ecdf_l2.png", "flatness.png", "corruptions.png"}
    want = {display_name(n): colors.color(n) for n in (CROPFLIP, AUGMIX)}
    assert want[display_name(CROPFLIP)] != want[display_name(AUGMIX)]

    ecdf_axes = made["ecdf_l2.png"].axes[0]
    for line in ecdf_axes.get_lines():
        label = str(line.get_label()).split(" (N×K")[0]
        if label in want:
            assert to_hex(line.get_color()) == want[label]
    drawn = {str(line.get_label()).split(" (N×K")[0] for line in ecdf_axes.get_lines()}
    assert set(want) <= drawn

    (flat_ax,) = made["flatness.png"].axes
    ticks = [t.get_text().split("\n")[0] for t in flat_ax.get_xticklabels()]
    bars = [p for p in flat_ax.patches if p.get_width() == pytest.approx(0.8)]
    for tick, bar in zip(ticks, bars):
        expected = ColorMap.BASELINE if tick == "ERM" else want[tick]
        assert to_hex(bar.get_facecolor()) == expected, tick

    (corr_ax,) = made["corruptions.png"].axes
    for container in corr_ax.containers:
        label = container.get_label()
        if label in want:
            assert to_hex(container.patches[0].get_facecolor()) == want[label]

    texts = {name: _texts(fig) for name, fig in made.items()}
    assert "Compose" not in "\n".join(texts.values())
    assert "data cifar10/test[80 of 10000] | seed 0" in texts["ecdf_l2.png"]
    assert "data cifar10/train[1000 of 50000] | preset smoke | seeds 0, 1, 2" in texts["flatness.png"]
    assert "data cifar10/test[200 of 10000] | preset smoke | seeds 0, 1" in texts["corruptions.png"]


def test_the_psa_verdict_is_drawn_on_the_ecdf_with_its_outcome() -> None:
    passing, failing = _density(CROPFLIP, 0.6), _density(AUGMIX, 0.05)
    outcomes = [passing.density_verdicts()[0]["outcome"], failing.density_verdicts()[0]["outcome"]]
    assert outcomes == ["pass", "fail"]
    fig = ecdf_figure([passing, failing], ColorMap())
    text = _texts(fig)
    assert "RandomCrop+RandomHorizontalFlip: pass\nF(0.05) ≥ 0.3" in text and "AugMix: fail\nF(0.05) ≥ 0.3" in text
    near = fig.axes[1]
    assert any(list(line.get_xdata()) == [0.05, 0.05] for line in near.get_lines())  # the γ line
    assert flatness_figure([_flatness(AUGMIX)]) is not None and corruption_figure([_robustness(AUGMIX, 0.2)]) is not None


# -- sample pairs in the HTML report -------------------------------------------------------------------
def _check_sample_pairs_and_grid(source) -> None:  # noqa: ANN001
    import torch
    from PIL import Image
    from torchvision.transforms import v2

    from pytest_psa._seeding import draw_seeds
    from pytest_psa.augment.adapters import as_augmentation
    from pytest_psa.report.html import sample_grid_html
    from pytest_psa.results.sample_pairs import sample_pairs

    images = source.take(torch.arange(24))
    aug = as_augmentation(v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]))
    seeds = draw_seeds(0, np.arange(24), 3)
    x = images.float_images()
    distances = np.stack([(aug.apply(x, seeds[:, j]) - x).flatten(1).pow(2).mean(1).sqrt().numpy()
                          for j in range(3)], axis=1)
    pairs = sample_pairs(images, aug, seeds, distances)
    assert [p["quantile"] for p in pairs] == [0.1, 0.5, 0.9]
    assert [p["distance"] for p in pairs] == sorted(p["distance"] for p in pairs)
    for p in pairs:
        assert p["distance"] == pytest.approx(float(np.quantile(distances, p["quantile"], method="inverted_cdf")))
        png_x = np.asarray(Image.open(io.BytesIO(base64.b64decode(p["x"]))))
        assert png_x.shape == (32, 32, 3)
        assert np.array_equal(png_x, images.images[p["image"]].permute(1, 2, 0).numpy())  # x, pixel for pixel
        shown_x = png_x.astype(float) / 255
        shown_ax = np.asarray(Image.open(io.BytesIO(base64.b64decode(p["ax"])))).astype(float) / 255
        # A(x) in the PNG is the draw that was measured: its distance to x is the recorded one
        assert float(np.sqrt(((shown_ax - shown_x) ** 2).mean())) == pytest.approx(p["distance"], abs=2e-3)
    assert sum(len(p["x"]) + len(p["ax"]) for p in pairs) < 30_000  # small enough to keep in the record

    result = DensityResult(augmentation=aug.name, distance="l2", distances=distances,
                           identity=np.zeros_like(distances, dtype=bool), seed=0,
                           data={"describe": images.describe()}, sample_pairs=tuple(pairs))
    record = AuditRecord("t.py::test_cropflip", result.to_dict(), [], "density")
    page = sample_grid_html([record])
    assert page.count('class="psa-samples"') == 1 and page.count("<img") == 6
    assert "RandomCrop+…" in page or "RandomCrop+RandomHorizontalFlip" in page
    for p in pairs:
        assert p["x"] in page and p["ax"] in page and f"q={100 * p['quantile']:.0f}%" in page
    assert sample_grid_html([_density(AUGMIX, 0.1)]) == ""  # no pairs kept, no grid
    pytest.importorskip("pytest_html")
    from pytest_psa.report.html import extras_for

    extras = extras_for([record])
    assert any('class="psa-samples"' in str(e.get("content", "")) for e in extras)


def test_sample_pairs_are_the_measured_draws_and_the_html_shows_their_grid() -> None:
    from pytest_psa.data.sources import load_data

    _check_sample_pairs_and_grid(load_data("synthetic", n=24))


@pytest.mark.slow
@pytest.mark.cifar
def test_sample_pairs_on_cifar10(cifar10) -> None:  # noqa: ANN001
    _check_sample_pairs_and_grid(cifar10)
