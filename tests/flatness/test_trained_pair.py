"""The trained pair shared by the augmentation audits (`pytest_psa/audits/trained_pair.py`).

Each (role, seed) is trained once, in the order asked; flatness and robustness ask the model
cache for the same entries, so one audit's models are the other's cache hits; a seed count
counts from 0 for flatness and from `seed` for robustness. Trainings are one step on 256
synthetic images (a few seconds each on 2 cores).
"""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

import pytest_psa
from pytest_psa import PsaUsageError
from pytest_psa.audits import robustness_of_augmentation, robustness_of_model
from pytest_psa.audits.trained_pair import BASELINE, SUBJECT, PairSpec, seed_list, train_pair
from pytest_psa.train import ModelCache

NOISE = v2.GaussianNoise(sigma=0.1)
TINY = {"epochs": 1, "n_train": 256, "workers": 0, "train_eval_n": 0}
AT_CHANCE = {"sanity": "warn"}  # one epoch on 256 images is at chance: plumbing, no verdict
EVAL = {"corruptions": ["gaussian_noise"], "severities": (1,), "attacks": None, "n_images": 50}


def _trained(cache_dir) -> list[tuple[str, int]]:
    return [(t["augmentation"], t["seed"]) for t in ModelCache(cache_dir).trainings()]


def test_seed_list_counts_from_first_and_takes_lists_as_given() -> None:
    assert seed_list(3, first=0) == (0, 1, 2)  # flatness: seeds=3
    assert seed_list(2, first=5) == (5, 6)  # robustness: seed=5, seeds=2
    assert seed_list([4, 1], first=7) == (4, 1)
    assert seed_list(0, first=3) == ()  # each audit says it needs a seed
    with pytest.raises(TypeError, match="not a bool"):
        seed_list(True, first=0)


def test_the_audits_keep_their_empty_seed_messages() -> None:
    with pytest.raises(PsaUsageError, match=r"flatness\(\) needs at least one seed"):
        pytest_psa.flatness(NOISE, seeds=0)
    with pytest.raises(PsaUsageError, match=r"robustness\(\) needs at least one training seed"):
        pytest_psa.robustness(NOISE, seeds=[], **EVAL)


def test_pair_spec_resolves_once_and_checks_its_arguments() -> None:
    spec = PairSpec.resolve(NOISE, "erm", seeds=[2, 0], preset="smoke", overrides=TINY)
    assert spec.seeds == (2, 0) and spec.baseline is None and spec.baseline_name == "erm"
    assert spec.preset.epochs == 1 and spec.preset.n_train == 256
    assert (spec.train_data.split, spec.test_data.split) == ("train", "test")
    assert PairSpec.resolve(None, NOISE, seeds=[0]).baseline_name == spec.subject_name
    with pytest.raises(PsaUsageError, match="at least one seed"):
        PairSpec.resolve(NOISE, seeds=[])
    with pytest.raises(PsaUsageError, match="roles must name"):
        spec.train(roles=("subject", "subject"))
    with pytest.raises(PsaUsageError, match="order must be"):
        spec.train(order="random")  # type: ignore[arg-type]


def test_the_pair_takes_augmentation_names_as_density_and_psa_audit_do(tmp_path) -> None:
    """flatness("augmix") and robustness("augmix") resolve the name for the data's image size, the same
    transform (so the same model cache key) as resolve_augmentation; they refused a string before."""
    from pytest_psa.augment.known import resolve_augmentation

    spec = PairSpec.resolve("trivialaugment", "randaugment", seeds=[0], overrides=TINY)
    assert (spec.subject_name, spec.baseline_name) == ("trivialaugment", "randaugment")
    size = max(spec.train_data.image_size)
    for got, name in ((spec.subject, "trivialaugment"), (spec.baseline, "randaugment")):
        assert got is not None and got.identity() == resolve_augmentation(name, image_size=size).identity()
    with pytest.raises(PsaUsageError, match="did you mean 'augmix'"):  # before any data: none is there
        PairSpec.resolve("augmx", seeds=[0], data="cifar10", data_root=str(tmp_path))
    with pytest.raises(PsaUsageError, match="unknown augmentation 'nothing-like-this'"):
        pytest_psa.flatness("nothing-like-this", seeds=1)


def test_the_entry_points_take_what_they_say() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(PsaUsageError, match="needs a trained nn.Module"):
        robustness_of_model(NOISE, **EVAL)  # type: ignore[arg-type]
    with pytest.raises(PsaUsageError, match="got a trained model"):
        robustness_of_augmentation(net, **EVAL)
    via_dispatch = pytest_psa.robustness(net, **EVAL)
    direct = robustness_of_model(net, **EVAL)
    assert direct.kind == via_dispatch.kind == "model" and direct.subject == via_dispatch.subject
    assert (direct.samples.corruption == via_dispatch.samples.corruption).all()
    assert direct.per_seed == via_dispatch.per_seed and direct.settings == via_dispatch.settings


@pytest.mark.slow
def test_the_pair_trains_each_role_and_seed_once_in_the_order_asked(tmp_path) -> None:
    pair = train_pair(NOISE, seeds=[0, 1], cache_dir=tmp_path, overrides=TINY, progress=False, **AT_CHANCE,
                      roles=(BASELINE, SUBJECT), order="seed")
    aug = pair.subject_name
    assert _trained(tmp_path) == [("none", 0), (aug, 0), ("none", 1), (aug, 1)]
    assert pair.roles == (BASELINE, SUBJECT) and pair.seeds == (0, 1)
    for role in pair.roles:
        assert [t.record.seed for t in pair.models(role)] == [0, 1]
        assert [r["cache"] for r in pair.records(role)] == ["miss", "miss"]
    again = train_pair(NOISE, seeds=[1, 0], cache_dir=tmp_path, overrides=TINY, progress=False, **AT_CHANCE,
                       order="role")
    assert len(_trained(tmp_path)) == 4  # nothing retrained
    assert again.roles == (SUBJECT, BASELINE)
    assert [t.record.cache for t in again.models(SUBJECT) + again.models(BASELINE)] == ["hit"] * 4
    assert [t.record.seed for t in again.models(SUBJECT)] == [1, 0]


@pytest.mark.slow
def test_flatness_and_robustness_share_the_trained_models(tmp_path) -> None:
    flat = pytest_psa.flatness(NOISE, seeds=[3], metrics=["eps_sharpness"], n_measure=32, cache_dir=tmp_path, progress=False,
                               **TINY, **AT_CHANCE)
    assert flat.seeds == (3,) and len(_trained(tmp_path)) == 2
    # seeds=1 counts from seed=3: the models flatness trained for seed 3
    rob = pytest_psa.robustness(NOISE, seed=3, seeds=1, cache_dir=tmp_path, **EVAL, **TINY, **AT_CHANCE)
    assert rob.seeds == (3,) and len(_trained(tmp_path)) == 2
    assert {k: v for k, v in rob.cache.items() if k.endswith(" model")} == {
        f"subject:{flat.augmentation} seed 3 model": "hit", "baseline:erm seed 3 model": "hit"}
    for role, label in (("subject", "augmented"), ("baseline", "erm")):
        assert rob.training[role][0]["cache_key"] == flat.training[label][0]["cache_key"]
