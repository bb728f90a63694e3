"""Multi-domain data (pytest_psa/data/domains.py): the folder tree reader and the procedural set."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_psa.data.domains import STYLES, DomainData, load_domains, read_domain_tree, synthetic_domains
from pytest_psa.errors import PsaUsageError


def _tree(root: Path, layout: dict[str, dict[str, int]], size: tuple[int, int] | dict[str, tuple[int, int]] = (20, 20)
          ) -> Path:
    """root/<domain>/<class>/<i>.png, each image one flat colour (domain index, class index, i)."""
    for d, (domain, classes) in enumerate(layout.items()):
        for c, (cls, n) in enumerate(classes.items()):
            folder = root / domain / cls
            folder.mkdir(parents=True)
            wh = size[domain] if isinstance(size, dict) else size
            for i in range(n):
                Image.new("RGB", wh, (40 * d, 60 * c, 10 * i)).save(folder / f"{i}.png")
    return root


def test_tree_reads_domains_and_one_shared_class_index(tmp_path: Path) -> None:
    root = _tree(tmp_path / "PACS", {"photo": {"dog": 2, "cat": 3}, "sketch": {"cat": 1, "dog": 2}})
    data = read_domain_tree(root)
    assert data.names == ("photo", "sketch")
    assert data.classes == ("cat", "dog")  # sorted folder names, the same index in every domain
    photo, sketch = data["photo"], data["sketch"]
    assert photo.images.shape == (5, 3, 20, 20) and sketch.images.shape == (3, 3, 20, 20)
    assert photo.labels.tolist() == [0, 0, 0, 1, 1] and sketch.labels.tolist() == [0, 1, 1]
    # the pixels are the files' (domain 1, class "dog" = folder index 1 of sketch's sorted classes)
    assert sketch.images[1, :, 0, 0].tolist() == [40, 60, 0]
    assert photo.fingerprint() != sketch.fingerprint()
    assert data.to_dict()["domains"] == {"photo": 5, "sketch": 3}


def test_missing_class_names_domain_and_class_with_the_fix(tmp_path: Path) -> None:
    root = _tree(tmp_path / "office", {"art": {"mug": 2, "pen": 2}, "clipart": {"mug": 2}})
    with pytest.raises(PsaUsageError) as err:
        read_domain_tree(root)
    text = str(err.value)
    assert "class 'pen' is missing from domain 'clipart'" in text
    assert "missing_classes='allow'" in text and str(root / "clipart" / "pen") in text
    allowed = read_domain_tree(root, missing_classes="allow")
    assert allowed.classes == ("mug", "pen") and allowed["clipart"].labels.tolist() == [0, 0]


def test_sizes_must_agree_or_be_resized(tmp_path: Path) -> None:
    root = _tree(tmp_path / "mixed", {"a": {"x": 2, "y": 2}, "b": {"x": 2, "y": 2}},
                 size={"a": (20, 20), "b": (30, 24)})
    with pytest.raises(PsaUsageError, match=r"differ in (image )?(size|shape)[\s\S]*size="):
        read_domain_tree(root)
    data = read_domain_tree(root, size=16)
    assert data["a"].image_size == (16, 16) and data["b"].image_size == (16, 16)


def test_archive_of_a_tree_loads_like_the_tree_and_caches_decoded_pixels(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src" / "VLCS", {"c": {"bird": 2, "car": 2}, "l": {"bird": 3, "car": 1}})
    archive = tmp_path / "VLCS.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="VLCS")
    cache = tmp_path / "cache"
    from_archive = load_domains(archive, cache_dir=cache)
    direct = read_domain_tree(root)
    assert from_archive.names == direct.names and from_archive.classes == direct.classes
    for d in direct.names:
        assert from_archive[d].fingerprint() == direct[d].fingerprint()
    assert list(cache.rglob("*.npz")), "decoded pixels are cached beside the unpacked archive"
    again = load_domains(archive, cache_dir=cache)
    assert again["l"].fingerprint() == direct["l"].fingerprint()


def test_one_domain_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "single", {"only": {"a": 1, "b": 1}})
    with pytest.raises(PsaUsageError, match="at least two"):
        read_domain_tree(root)


def test_unknown_path_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(PsaUsageError, match="not found"):
        load_domains(tmp_path / "nope")


def test_procedural_set_is_deterministic_and_prefix_stable() -> None:
    a = synthetic_domains(600, seed=3)
    b = synthetic_domains(600, seed=3)
    assert isinstance(a, DomainData) and a.names == STYLES
    assert a.fingerprint() == b.fingerprint()
    small = synthetic_domains(100, seed=3)
    assert np.array_equal(small["sketch"].images.numpy(), a["sketch"].images[:100].numpy())
    assert synthetic_domains(100, seed=4).fingerprint() != small.fingerprint()
    for d in a.names:  # every class in every domain, balanced
        assert np.bincount(a[d].labels.numpy(), minlength=10).min() >= 50


def test_styles_differ_in_their_pixel_statistics() -> None:
    data = synthetic_domains(500)
    stats = {}
    for d in data.names:
        x = data[d].images.float() / 255
        red_share = float(x[:, 0].mean() / x.mean())
        stats[d] = (float(x.mean()), float(x.std()), red_share)
    assert stats["sketch"][0] > 0.75, "sketches are dark strokes on light paper"
    assert stats["infrared"][2] > 1.5, "the false-colour palette is red-dominated"
    means = sorted(s[0] for s in stats.values())
    assert len({round(m, 2) for m in means}) == 4, f"the four styles differ in mean brightness: {stats}"


def test_fewer_classes_keep_the_first_shapes() -> None:
    data = synthetic_domains(200, n_classes=4, size=16)
    assert data.classes == ("disk", "square", "triangle", "ring") and data["photo"].image_size == (16, 16)
    assert all(set(data[d].labels.tolist()) == {0, 1, 2, 3} for d in data.names)
    with pytest.raises(PsaUsageError, match="n_classes"):
        synthetic_domains(10, n_classes=1)
