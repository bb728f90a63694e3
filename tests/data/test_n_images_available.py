"""Asking for more images than a data set holds is an error naming both counts, in every form the
audits read data in, never a silent audit of fewer images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pytest_psa
from pytest_psa.data.sources import as_image_data, load_data
from pytest_psa.errors import PsaUsageError

IMAGES = np.random.default_rng(0).integers(0, 256, (30, 3, 8, 8), dtype=np.uint8)
LABELS = np.arange(30) % 3


class Pairs(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __len__(self) -> int:
        return 30

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        return torch.from_numpy(IMAGES[i]), int(LABELS[i])


@pytest.mark.parametrize("form", ["arrays", "image_data", "dataset", "dataloader"])
def test_every_in_memory_form_refuses_more_than_it_holds(form) -> None:
    data = {"arrays": lambda: (IMAGES, LABELS), "image_data": lambda: pytest_psa.from_arrays(IMAGES, LABELS),
            "dataset": Pairs, "dataloader": lambda: torch.utils.data.DataLoader(Pairs(), batch_size=7)}[form]()
    with pytest.raises(PsaUsageError, match=r"n_images=31 asks for more images than .*\(30\)") as info:
        as_image_data(data, n=31)
    assert "n_images=30" in info.value.fix
    assert len(as_image_data(data, n=30)) == 30  # all of them is fine


def test_load_data_refuses_more_than_the_split_holds() -> None:
    with pytest.raises(PsaUsageError, match=r"n_images=2001 asks for more images than synthetic/test holds \(2000\)"):
        load_data(None, split="test", n=2001)
    assert len(load_data(None, split="test", n=2000)) == 2000


def test_the_density_audit_says_so() -> None:
    with pytest.raises(PsaUsageError, match="requested 40, available 30"):
        pytest_psa.density(None, data=(IMAGES, LABELS), n_images=40, draws=1)
