"""corrupt(): shapes, dtypes, devices, tables per resolution, compat, identity severity and errors."""

from __future__ import annotations

import pytest
import torch

import pytest_psa
from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.robustness.corruptions import (
    BENCHMARK,
    RESOLUTIONS,
    VALIDATION,
    available_corruptions,
    corrupt,
    get_corruption,
)
from pytest_psa.measure.robustness.corruptions.registry import CORRUPTIONS


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return pytest_psa.load_data("synthetic", split="test").float_images()[:6]


def test_public_names_are_exported_lazily():
    assert pytest_psa.corrupt is corrupt
    assert pytest_psa.available_corruptions is available_corruptions


def test_every_registered_corruption_has_five_rows_for_each_resolution():
    for name, record in CORRUPTIONS.items():
        assert record.name == name
        assert set(record.tables) == set(RESOLUTIONS), name
        assert all(len(rows) == 5 for rows in record.tables.values()), name
        assert record.validation == (name in VALIDATION), name
        assert record.to_dict()["tables"]["32"], name
    assert set(available_corruptions()) <= set(BENCHMARK)
    assert list(available_corruptions()) == [n for n in BENCHMARK if n in CORRUPTIONS]


def test_every_corruption_keeps_shape_dtype_range_and_changes_the_image(batch):
    for name in available_corruptions(include_validation=True):
        for severity in (1, 5):
            out = corrupt(batch, name, severity)
            assert out.shape == batch.shape and out.dtype == batch.dtype, name
            assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1, name
            assert not torch.equal(out, batch), (name, severity)
        one = corrupt(batch[2], name, 3, indices=[2])
        assert one.shape == batch[2].shape
        assert torch.equal(one, corrupt(batch, name, 3)[2]), name


def test_float64_input_stays_float64_and_close_to_float32(batch):
    for name in ("gaussian_noise", "shot_noise", "zoom_blur", "defocus_blur", "brightness", "saturate", "pixelate"):
        out64 = corrupt(batch.double(), name, 4)
        assert out64.dtype == torch.float64
        assert (out64 - corrupt(batch, name, 4).double()).abs().max() < 1e-5, name


def test_severity_zero_is_an_unchanged_copy(batch):
    out = corrupt(batch, "gaussian_noise", 0)
    assert torch.equal(out, batch) and out.data_ptr() != batch.data_ptr()


# Not monotone in mean |change| by design of the reference tables, so not checked here: saturate
# desaturates at severities 1-2 and saturates at 3-5; glass_blur shuffles pixels after a blur that grows
# from sigma .05 to .4 over severities 1-3, and shuffled smooth pixels move less than shuffled sharp
# ones; frost mixes c0 * x + c1 * frost with (c0, c1) = (.9, .4) at 3 and (.75, .45) at 5, where the
# darkening and the added texture partly cancel; elastic_transform's severity 1 is its largest affine
# jitter (2.56 px at 32 px) and later severities trade it for smoothed local displacements; spatter
# is water drops at severities 1-3 and mud at 4-5.
NOT_MONOTONE = {"saturate", "glass_blur", "frost", "elastic_transform", "spatter"}


def test_severity_grows_the_change(batch):
    checked = [n for n in available_corruptions(include_validation=True) if n not in NOT_MONOTONE]
    assert len(checked) >= 8
    for name in checked:
        change = [float((corrupt(batch, name, s) - batch).abs().mean()) for s in (1, 3, 5)]
        assert change[0] < change[1] < change[2], (name, change)


def test_resolution_tables_are_picked_by_image_size(batch):
    big = torch.nn.functional.interpolate(batch[:2], size=64, mode="bilinear", align_corners=False).clamp(0, 1)
    # 64 px images use the Tiny ImageNet table: contrast severity 1 is 0.4 there, 0.75 at 32 px
    out = corrupt(big, "contrast", 1)
    mean = big.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(out, ((big - mean) * 0.4 + mean).clamp(0, 1), atol=1e-6)
    forced = corrupt(big, "contrast", 1, resolution=32)
    assert torch.allclose(forced, ((big - mean) * 0.75 + mean).clamp(0, 1), atol=1e-6)


def test_an_image_size_without_a_table_needs_an_explicit_resolution(batch):
    odd = batch[:2, :, :28, :30]
    with pytest.raises(PsaUsageError, match=r"28 x 30") as info:
        corrupt(odd, "zoom_blur", 2)
    assert "resolution=" in str(info.value) and "224" in str(info.value)
    for name in available_corruptions(include_validation=True):
        out = corrupt(odd, name, 2, resolution=32)  # non-square sizes work with an explicit table
        assert out.shape == odd.shape, name
    with pytest.raises(PsaUsageError, match="resolution 48"):
        corrupt(batch, "contrast", 1, resolution=48)


def test_compat_truncates_to_uint8_levels(batch):
    out = corrupt(batch, "gaussian_noise", 2, compat="hendrycks")
    levels = out * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    exact = corrupt(batch, "gaussian_noise", 2)
    # truncation: never above the float result, less than one level below it
    assert (levels <= exact * 255 + 1e-3).all() and (levels > exact * 255 - 1 - 1e-3).all()
    with pytest.raises(PsaUsageError, match="compat"):
        corrupt(batch, "contrast", 1, compat="imagecorruptions")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda b: corrupt(b, "gausian_noise", 1), r"did you mean 'gaussian_noise'"),
        (lambda b: corrupt(b, "contrast", 6), "severity"),
        (lambda b: corrupt(b, "contrast", 2.0), "severity"),
        (lambda b: corrupt(b, "contrast", True), "severity"),
        (lambda b: corrupt((b * 255).to(torch.uint8), "contrast", 1), "divide by 255"),
        (lambda b: corrupt(b.half(), "contrast", 1), "float32 or float64"),
        (lambda b: corrupt(b * 2 - 1, "contrast", 1), r"\[0, 1\]"),
        (lambda b: corrupt(b[:, :1], "contrast", 1), r"expand\(-1, 3, -1, -1\)"),
        (lambda b: corrupt(b.permute(0, 2, 3, 1), "contrast", 1), "permute"),
        (lambda b: corrupt(b[0, 0], "contrast", 1), "NCHW"),
        (lambda b: corrupt(b.numpy(), "contrast", 1), "torch.Tensor"),
        (lambda b: corrupt(torch.where(b > 0.5, float("nan"), b), "contrast", 1), "NaN"),
        (lambda b: corrupt(b, "contrast", 1, indices=[0, 1]), "2 indices for 6 images"),
        (lambda b: corrupt(b, "contrast", 1, indices=[0.5] * 6), "integers"),
        (lambda b: corrupt(b, "contrast", 1, seed="a"), "seed"),
    ],
)
def test_bad_input_gets_a_usage_error_naming_the_fix(batch, call, match):
    with pytest.raises(PsaUsageError, match=match) as info:
        call(batch)
    assert "fix:" in str(info.value)


def test_get_corruption_lists_valid_names():
    with pytest.raises(PsaUsageError) as info:
        get_corruption("nope")
    assert "gaussian_noise" in str(info.value)
    assert get_corruption("zoom_blur").family == "blur"


def test_empty_batch_returns_an_empty_batch(batch):
    out = corrupt(batch[:0], "gaussian_noise", 3)
    assert out.shape == (0, 3, 32, 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(batch):
    for name in available_corruptions(include_validation=True):
        cpu = corrupt(batch, name, 4)
        gpu = corrupt(batch.cuda(), name, 4)
        assert gpu.device.type == "cuda"
        assert (gpu.cpu() - cpu).abs().max() < 1e-4 or name == "jpeg_compression", name
