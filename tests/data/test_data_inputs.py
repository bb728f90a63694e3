"""In-memory data a user of the measurement API holds: `ImageData`, (images, labels) tensors, a
map-style `Dataset`, a `DataLoader` — taken by `load_data` (so by density / flatness / robustness)
through `as_image_data`, and by `measure_flatness` through `as_batches` (issue 12, "Inputs")."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import pytest_psa
from pytest_psa.audits.density import density
from pytest_psa.data import sources
from pytest_psa.data.sources import load_data
from pytest_psa.errors import DataSourceError
from pytest_psa.measure.flatness.measure import measure_flatness

DATA = pytest_psa.synthetic("test", n=24)
X, Y = DATA.float_images(), DATA.labels


def same_pixels(a: pytest_psa.ImageData, b: pytest_psa.ImageData) -> bool:
    return torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


class Stream(IterableDataset):
    def __iter__(self):
        return iter(zip(X, Y))


FORMS = {
    "image_data": lambda: DATA,
    "float-tensors": lambda: (X, Y),
    "uint8-nhwc-numpy": lambda: (DATA.images.permute(0, 2, 3, 1).numpy(), DATA.labels.numpy()),
    "tensor-dataset": lambda: TensorDataset(X, Y),
    "dataloader": lambda: DataLoader(TensorDataset(X, Y), batch_size=5),
    "shuffled-dataloader": lambda: DataLoader(TensorDataset(X, Y), batch_size=7, shuffle=True),
    "uint8-dataloader": lambda: DataLoader(TensorDataset(DATA.images, Y), batch_size=8),
    "unbatched-dataloader": lambda: DataLoader(TensorDataset(X, Y), batch_size=None),
    "tensor-and-label-list": lambda: (X, Y.tolist()),
    "iterable-dataset": lambda: Stream(),
}


@pytest.mark.parametrize("form", FORMS)
def test_as_image_data_gives_the_same_pixels_for_every_form(form: str) -> None:
    data = sources.as_image_data(FORMS[form]())
    assert same_pixels(data, DATA)


@pytest.mark.parametrize("form", ["dataloader", "float-tensors", "uint8-nhwc-numpy"])
def test_load_data_takes_loaders_and_tensor_pairs(form: str) -> None:
    data = load_data(FORMS[form](), n=10, seed=3)
    assert same_pixels(data, DATA.subset(10, 3))


def test_a_shuffled_loader_is_read_in_index_order_so_runs_repeat() -> None:
    loader = FORMS["shuffled-dataloader"]()
    assert same_pixels(load_data(loader), DATA) and same_pixels(load_data(loader), DATA)


def test_density_audits_a_dataloader_like_its_dataset() -> None:
    aug = lambda x: x.flip(-1)  # noqa: E731
    from_loader = density(aug, data=FORMS["dataloader"](), n_images=12, draws=2)
    from_dataset = density(aug, data=DATA, n_images=12, draws=2)
    assert (from_loader.distances == from_dataset.distances).all()


def test_robustness_of_a_model_takes_a_dataloader() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    r = pytest_psa.robustness(model, data=FORMS["shuffled-dataloader"](), corruptions=["gaussian_noise"],
                              severities=(1,), attacks=None, n_images=12)
    assert r.to_dict()["data"]["n"] == 12


def test_normalized_images_in_a_loader_get_a_fix_that_names_normalize() -> None:
    loader = DataLoader(TensorDataset((X - 0.5) / 0.25, Y), batch_size=8)
    with pytest.raises(DataSourceError, match="Normalize"):
        load_data(loader)


# -- measure_flatness: the model's own inputs, no image contract -------------------------------
def _model(n_in: int = 3 * 32 * 32) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n_in, 10))


def _lpf(data: object, model: torch.nn.Module | None = None) -> float:
    report = measure_flatness(model or _model(), data, metrics="lpf", seed=1, n_samples=2)
    return float(report["lpf"].value)


@pytest.mark.parametrize("form", ["tensor-dataset", "shuffled-dataloader", "iterable-dataset"])
def test_measure_flatness_takes_datasets_and_loaders(form: str) -> None:
    assert _lpf(FORMS[form]()) == _lpf((X, Y))


def test_measure_flatness_keeps_a_datasets_inputs_as_they_are() -> None:
    """Normalized or non-image inputs are what the model takes: no [0, 1] contract here."""
    normalized = (X - 0.5) / 0.25
    assert _lpf(TensorDataset(normalized, Y)) == _lpf((normalized, Y))
    features = torch.randn(30, 5)
    labels = torch.randint(0, 10, (30,))
    assert _lpf(TensorDataset(features, labels), _model(5)) == _lpf((features, labels), _model(5))


def test_measure_flatness_reads_only_max_images_of_a_dataset() -> None:
    class Counting(Dataset):
        reads = 0

        def __len__(self) -> int:
            return 10_000

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            Counting.reads += 1
            return X[i % len(X)], int(Y[i % len(Y)])

    report = measure_flatness(_model(), Counting(), metrics="lpf", seed=1, n_samples=2, max_images=40,
                              chunk_size=20)
    assert report.n_images == 40 and Counting.reads == 40


def test_a_dataset_of_pil_images_gets_a_fix_for_measure_flatness() -> None:
    from PIL import Image

    pil = [(Image.new("RGB", (32, 32)), 0)] * 4

    class Pil(Dataset):
        def __len__(self) -> int:
            return len(pil)

        def __getitem__(self, i: int) -> tuple[object, int]:
            return pil[i]

    with pytest.raises(DataSourceError, match="ToTensor"):
        measure_flatness(_model(), Pil(), metrics="lpf", seed=1, n_samples=2)
