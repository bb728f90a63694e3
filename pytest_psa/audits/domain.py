"""`domain_generalization(aug)`: leave-one-domain-out accuracy of augmented and ERM models.

For each held-out domain d of a multi-domain data set (`pytest_psa.data.domains`): every other
domain is split once into held-in train (80 %) and held-in test (20 %, DomainBed's
``holdout_fraction``) images, seeded and class-balanced; the pooled held-in train images are one
`ImageData` that `trained_pair` trains both models on, per seed, through the model cache, the
preset and the sanity gate every other audit uses (a model trained here is a cache hit for the next
run and for any audit of the same pooled data). Each model is then evaluated, image by image, on
all images of d (held-out accuracy) and on the pooled held-in test images (in-domain accuracy).
The numbers, their intervals and the budgets are `pytest_psa.results.domain.DomainResult`'s.

Deviations from DomainBed (docs/domains.md): the preset's model and recipe (not ResNet-50
fine-tuned from ImageNet); no hyperparameter search and no model selection (the final model of the
recipe is evaluated); in-domain accuracy is on the held-in 20 % of the training domains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pytest_psa._timings import stage
from pytest_psa.audits.trained_pair import BASELINE, SUBJECT, PairSpec, Role, Sanity, seed_list
from pytest_psa.data.domains import DomainData, MissingClasses, load_domains, pool
from pytest_psa.data.image_data import ImageData
from pytest_psa.errors import PsaUsageError
from pytest_psa.results.domain import DEFAULT_ALPHA, PROTOCOL, DomainResult, HeldOutDomain

DEFAULT_SEEDS = 1  # DomainBed reports 3 runs; one keeps a CPU audit short (seeds=3 for the paper's protocol)
HOLDIN_FRACTION = 0.2  # DomainBed's holdout_fraction
SPLIT_SEED = 0


def domain_generalization(
    augmentation: Any, *, baseline: Any = "erm", data: Any = "synthetic-domains",
    held_out: Sequence[str] | None = None, seeds: int | Sequence[int] = DEFAULT_SEEDS, preset: Any = None,
    model: Any = None, alpha: float = DEFAULT_ALPHA, holdin_fraction: float = HOLDIN_FRACTION,
    n_per_domain: int | None = None, size: int | None = None, missing_classes: MissingClasses = "error",
    device: Any = None, cache_dir: Any = None, data_root: Any = None, optimizer: str = "sgd",
    progress: bool = True, sanity: Sanity = "error", trainer: Any = None, **train_overrides: Any,
) -> DomainResult:
    """Train (or load) ERM and `augmentation` models on all domains but one, for each held-out domain
    in `held_out` (default: every domain) and each seed, and compare their held-out accuracy.

    `data`: "synthetic-domains" (default), a `DomainData`, a dict {domain: data}, or a path to a
    ``root/<domain>/<class>/<file>`` tree (PACS, OfficeHome in DomainBed's layout) or an archive of one;
    `size` resizes its images (needed when they differ in size), `n_per_domain` takes a seeded subset
    of each domain, `missing_classes` "allow" accepts a class missing from a domain. `seeds` is a count
    (0..k-1) or explicit seeds; `preset`, `trainer` (the user's training recipe) and keyword
    `train_overrides` as for `pytest_psa.flatness`. Trainings go through the session's executor
    (`trained_pair`), so ``--psa-executor=ray`` spreads them too.
    """
    if not 0 < holdin_fraction < 1:
        raise PsaUsageError("holdin_fraction must be in (0, 1)", observed=holdin_fraction,
                            fix="0.2 (DomainBed's holdout_fraction)")
    seeds_ = seed_list(seeds, first=0)
    if not seeds_:
        raise PsaUsageError("domain_generalization() needs at least one seed", fix="seeds=1 (or a list of seeds)")
    domains = load_domains(data, size=size, missing_classes=missing_classes, root=data_root, cache_dir=cache_dir,
                           n_per_domain=n_per_domain)
    targets = list(domains.names if held_out is None else held_out)
    unknown = [d for d in targets if d not in domains.names]
    if unknown or not targets or len(set(targets)) != len(targets):
        raise PsaUsageError(f"held_out must name domains of {domains.name!r} once each",
                            observed=f"held_out={list(held_out or [])}", fix=f"choose from {list(domains.names)}")
    # names ("augmix", "module:attr") resolve at the domains' image size, as density does
    image_size = max(domains[domains.names[0]].image_size)
    augmentation = _resolved(augmentation, image_size)
    baseline = baseline if baseline in ("erm", None) else _resolved(baseline, image_size)
    splits = {d: _holdin_split(domains[d], holdin_fraction) for d in domains.names}

    outcomes, names = [], None
    for target in targets:
        train_domains = tuple(d for d in domains.names if d != target)
        train = pool([splits[d][0] for d in train_domains], name=f"{domains.name}-{target}", split="train")
        holdin = pool([splits[d][1] for d in train_domains], name=f"{domains.name}-{target}", split="test")
        spec = PairSpec.resolve(augmentation, baseline, seeds=seeds_, data=train, cache_dir=cache_dir,
                                preset=preset, overrides=train_overrides)
        spec = dataclasses.replace(spec, test_data=holdin)  # the sanity gate reads held-in test images
        roles: tuple[Role, ...] = (BASELINE,) if spec.compares_nothing else (BASELINE, SUBJECT)
        pair = spec.train(model=model, optimizer=optimizer, device=device, progress=progress, roles=roles,
                          order="seed", sanity=sanity, trainer=trainer)
        names = (pair.subject_name, pair.baseline_name)
        heldout_images = domains[target]
        with stage("domain", detail=f"held out {target}"):
            heldout = {r: np.stack([_correct(t.model, heldout_images, device) for t in pair.models(r)]) for r in roles}
            indomain = {r: np.stack([_correct(t.model, holdin, device) for t in pair.models(r)]) for r in roles}
        by_name: dict[str, Role] = {"erm": BASELINE, "augmented": SUBJECT if SUBJECT in roles else BASELINE}
        outcomes.append(HeldOutDomain(
            domain=target, train_domains=train_domains,
            heldout={k: heldout[r] for k, r in by_name.items()}, indomain={k: indomain[r] for k, r in by_name.items()},
            training={k: pair.records(r) for k, r in by_name.items()}, sanity=pair.sanity))

    recipe = spec.preset
    assert names is not None
    return DomainResult(
        augmentation=names[0], baseline=names[1], outcomes=tuple(outcomes), seeds=seeds_,
        data={**domains.to_dict(), "describe": f"{domains.name}[{'+'.join(domains.names)}]"},
        settings={"protocol": PROTOCOL, "preset": recipe.name, "baseline": names[1], "optimizer": optimizer,
                  "holdin_fraction": holdin_fraction, "split_seed": SPLIT_SEED, "held_out": targets,
                  "missing_classes": missing_classes, "model_selection": "none (the recipe's final model)",
                  "n_per_domain": n_per_domain, "size": size},
        alpha=alpha,
        repro=(f"pytest_psa.domain_generalization(<the augmentation {names[0]}>, data={_data_label(data)}, "
               f"seeds={list(seeds_)}, preset={recipe.name!r})"),
    )


def _resolved(spec: Any, image_size: int) -> Any:
    from pytest_psa.augment.known import resolve_augmentation

    return resolve_augmentation(spec, image_size=image_size) if isinstance(spec, str) else spec


def _holdin_split(d: ImageData, fraction: float) -> tuple[ImageData, ImageData]:
    """(held-in train, held-in test) of one domain: a seeded, class-balanced `fraction` for test."""
    n_test = max(1, int(round(fraction * len(d))))
    # positions in `d` itself (a subset's `indices` point into its parent)
    plain = ImageData(d.images, d.labels, d.classes, d.name, d.split, d.source)
    picked = plain.subset(n_test, seed=SPLIT_SEED).indices
    keep = torch.ones(len(d), dtype=torch.bool)
    keep[picked if picked is not None else torch.arange(len(d))] = False
    return d.take(torch.nonzero(keep).flatten()), d.take(torch.nonzero(~keep).flatten())


@torch.no_grad()
def _correct(model: torch.nn.Module, data: ImageData, device: Any, batch_size: int = 500) -> np.ndarray:
    """Per-image correctness (0/1, float) of `model` on clean `data`, in eval mode."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(data), batch_size):
            x = data.images[i:i + batch_size].to(dev).float().div_(255.0)
            pred = model(x.contiguous(memory_format=torch.channels_last)).argmax(1).cpu()
            out.append((pred == data.labels[i:i + batch_size]).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out).astype(np.float64)


def _data_label(data: Any) -> str:
    return repr(data) if isinstance(data, str) or data is None else f"<{type(data).__name__}>"


__all__ = ["DEFAULT_SEEDS", "HOLDIN_FRACTION", "domain_generalization"]
