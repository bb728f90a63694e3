"""The `psa` fixture object: the measurement functions with defaults from options, ini and marker.

Each measurement's result is returned with the marker's thresholds (`with_defaults`) and the
pytest repro command (`with_repro`), and an `AuditRecord` of it joins the session. The verdicts
its assertions reach are read back from the result's verdict log by `flush()`, which the plugin
calls when the test's call phase ends: a result never calls back into pytest.
Nothing here imports torch at module level; the measurement modules load on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_psa._records import AuditRecord
from pytest_psa._settings import Settings


class Psa:
    """The ``psa`` fixture: ``psa.density(aug).assert_psa(...)``, or ``psa.check(aug)`` for the marker's check."""

    def __init__(self, settings: Settings, marker: dict[str, Any], node: pytest.Item, data: Any,
                 records: list[AuditRecord], repro: Callable[[int], str], model: Any = None,
                 trainer: Any = None) -> None:
        self.settings = settings
        self.marker = marker
        self._node = node
        self._data = data
        self._records = records
        self._repro = repro
        self._model = model
        self._trainer = trainer  # the psa_trainer fixture's recipe (the pytest_psa_train hook by default)
        self._watched: list[_Watched] = []

    @property
    def device(self) -> str | None:
        """The device this test's measurements use: "cpu", "cuda:K" (under pytest-xdist, this worker's
        GPU), or None when the preset decides (``auto`` without CUDA). Marker ``device=`` wins over
        ``--psa-device``."""
        from pytest_psa._devices import measurement_device

        return measurement_device(str(self.marker.get("device", self.settings.device)))

    @property
    def seed(self) -> int:
        """The seed this test's measurements use (marker seed, else --psa-seed)."""
        return int(self.marker.get("seed", self.settings.seed))

    def density(self, augmentation: Any, *, data: Any = None, n_images: int | None = None,
                draws: int | None = None, distance: Any = None, seed: int | None = None,
                exclude_identity: bool | None = None, split: str | None = None) -> Any:
        """`pytest_psa.density` with this test's defaults; its `assert_psa()` defaults to the marker's γ."""
        from pytest_psa.audits.density import density

        m, s = self.marker, self.settings
        seed = self.seed if seed is None else seed
        result = density(
            augmentation,
            data=_first(data, m.get("data"), self._data, s.data),
            n_images=_first(n_images, m.get("n_images"), s.n_images),
            draws=_first(draws, m.get("draws"), s.draws),
            distance=_first(distance, m.get("distance"), s.distance),
            seed=seed,
            exclude_identity=bool(_first(exclude_identity, m.get("exclude_identity"), False)),
            split=_first(split, m.get("split"), "test"),
            data_root=s.data_root, cache_dir=s.cache_dir, allow_download=s.allow_download,
        )
        defaults: dict[str, Any] = {k: m[k] for k in ("gamma", "min_density", "strict") if k in m}
        defaults["alpha"] = m.get("alpha", s.alpha)
        # summary["metrics"] then holds F at the check's γ, with intervals at its declared α
        result = result.with_defaults(**defaults).with_repro(self._repro(seed))
        self._record(result, [("psa_augmentation", result.augmentation), ("psa_distance", result.distance),
                              ("psa_seed", seed), ("psa_identity_fraction", round(result.identity_fraction, 6))])
        return result

    def flatness(self, augmentation: Any, *, seeds: Any = None, metrics: Any = None, preset: Any = None,
                 data: Any = None, **kwargs: Any) -> Any:
        """`pytest_psa.flatness` with this test's defaults; its `assert_flatter()` defaults to the marker's.

        Seeds default to the marker's `seeds` count (3) offset by the test's seed, so
        ``--psa-seed=10`` trains seeds 10, 11, 12.
        """
        from pytest_psa.audits.flatness import DEFAULT_METRICS, DEFAULT_SEEDS, flatness

        m, s = self.marker, self.settings
        seeds = _first(seeds, m.get("seeds"), DEFAULT_SEEDS)
        seed_list = _seed_list(self.seed, seeds)
        metrics = _first(metrics, m.get("metrics"), (m["metric"],) if "metric" in m else None, DEFAULT_METRICS)
        result = flatness(
            augmentation, seeds=seed_list, metrics=metrics, preset=_first(preset, m.get("preset"), s.preset),
            data=_first(data, m.get("data"), self._data, s.data), data_root=s.data_root, cache_dir=s.cache_dir,
            device=self.device,
            **self._with_trainer(self._with_model(kwargs)),
        )
        defaults = {k: m[k] for k in ("metric", "min_rel_improvement") if k in m}
        result = result.with_defaults(**defaults).with_repro(self._repro(self.seed))
        # the same property names as the density audit's
        self._record(result, [("psa_augmentation", result.augmentation),
                              ("psa_seeds", ",".join(map(str, result.seeds)))])
        return result

    def robustness(self, augmentation_or_model: Any, *, data: Any = None, preset: Any = None, corruptions: Any = None,
                   attacks: Any = None, perturbations: Any = None, seed: int | None = None, seeds: Any = None,
                   n_images: int | None = None, **kwargs: Any) -> Any:
        """`pytest_psa.robustness` with this test's defaults; its `assert_budget()` defaults to the marker's.

        Defaults: corruptions "cifar10-c", attacks "default", perturbations "cifar10-p" only when the
        marker sets `max_mfp` (else none); pass ``()`` for none. Training seeds: the marker's
        `seeds` (default 1) counted from the test's seed.
        """
        from pytest_psa.audits.robustness import DEFAULT_N_IMAGES, robustness

        m, s = self.marker, self.settings
        seed = self.seed if seed is None else seed
        seeds = _first(seeds, m.get("seeds"), 1)
        seed_list = _seed_list(seed, seeds)
        result = robustness(
            augmentation_or_model, data=_first(data, m.get("data"), self._data, s.data),
            preset=_first(preset, m.get("preset"), s.preset),
            corruptions=_first(corruptions, m.get("corruptions"), "cifar10-c"),
            attacks=_first(attacks, m.get("attacks"), "default"),
            perturbations=_first(perturbations, m.get("perturbations"), "cifar10-p" if "max_mfp" in m else None),
            seed=seed, seeds=seed_list, n_images=_first(n_images, m.get("n_images"), DEFAULT_N_IMAGES),
            data_root=s.data_root, cache_dir=s.cache_dir, device=self.device,
            **self._with_trainer(self._with_model(kwargs), augmentation_or_model),
        )
        defaults = {k: m[k] for k in ROBUSTNESS_BUDGETS if k in m}
        defaults["alpha"] = m.get("alpha", s.alpha)
        result = result.with_defaults(**defaults).with_repro(self._repro(seed))
        # the same names as the density and flatness audits': psa_augmentation (psa_model for a model)
        props: list[tuple[str, Any]] = [
            ("psa_augmentation" if result.kind == "augmentation" else "psa_model", result.subject),
            ("psa_robustness_subject", result.subject), ("psa_seed", seed)]
        for name, value in result.metrics().items():
            if name in ("clean_error", "mce", "mce_ratio", "mfp", "delta_mce") or name.startswith("adv_error("):
                props.append((f"psa_{name}", round(value.estimate, 6)))
        self._record(result, props)
        return result

    def domain_generalization(self, augmentation: Any, *, data: Any = None, seeds: Any = None, preset: Any = None,
                              **kwargs: Any) -> Any:
        """`pytest_psa.domain_generalization` with this test's defaults; its `assert_budget()` defaults to the
        marker's `min_domain_accuracy` and `domain_vs_erm` (docs/domains.md). `data` is multi-domain data
        (default "synthetic-domains"; the test's single-domain data is not used). Seeds: the marker's `seeds`
        (default 1) counted from the test's seed."""
        from pytest_psa.audits.domain import DEFAULT_SEEDS, domain_generalization

        m, s = self.marker, self.settings
        seed_list = _seed_list(self.seed, _first(seeds, m.get("seeds"), DEFAULT_SEEDS))
        result = domain_generalization(
            augmentation, data=_first(data, "synthetic-domains"), seeds=seed_list,
            preset=_first(preset, m.get("preset"), s.preset), data_root=s.data_root, cache_dir=s.cache_dir,
            device=self.device, **self._with_trainer(self._with_model(kwargs)))
        defaults: dict[str, Any] = {"alpha": m.get("alpha", s.alpha)}
        if "min_domain_accuracy" in m:
            defaults["min_domain_accuracy"] = m["min_domain_accuracy"]
        if "domain_vs_erm" in m:
            defaults["vs_erm"] = m["domain_vs_erm"]
        result = result.with_defaults(**defaults).with_repro(self._repro(self.seed))
        props: list[tuple[str, Any]] = [("psa_augmentation", result.augmentation),
                                        ("psa_seeds", ",".join(map(str, result.seeds)))]
        for name in ("accuracy_heldout_avg", "erm_accuracy_heldout_avg", "delta_accuracy_heldout_avg"):
            props.append((f"psa_{name}", round(result.metrics()[name].estimate, 6)))
        self._record(result, props)
        return result

    # -- records and verdicts ----------------------------------------------------------------------
    def _record(self, result: Any, properties: list[tuple[str, Any]]) -> None:
        """Add `result`'s record to the session and its JUnit properties to the test; watch its verdicts."""
        record = AuditRecord(self._node.nodeid, result.to_dict(), kind=result.audit_kind)
        self._records.append(record)
        self._node.user_properties.extend(properties)
        self._watched.append(_Watched(record, result))

    def flush(self) -> None:
        """Copy the verdicts the watched results reached since the last flush into their records and
        the test's JUnit properties. Records the session dropped (a replay's duplicates) are skipped."""
        props = self._node.user_properties
        for w in self._watched:
            new = w.result.verdict_log()[w.seen:]
            w.seen += len(new)
            if not any(r is w.record for r in self._records):
                continue
            for v in new:
                w.record.verdicts.append(v.to_dict())
                props.extend(_verdict_properties(w.record.kind, v))

    def _with_model(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """`kwargs` plus the `psa_model` fixture's model, unless the call passes its own."""
        return kwargs if self._model is None or "model" in kwargs else {"model": self._model, **kwargs}

    def _with_trainer(self, kwargs: dict[str, Any], subject: Any = None) -> dict[str, Any]:
        """`kwargs` plus the `psa_trainer` fixture's recipe, unless the call passes its own ``trainer=``
        (None there: the built-in trainer) or audits an already trained model."""
        if self._trainer is None or "trainer" in kwargs:
            return kwargs
        if subject is not None:
            from pytest_psa.audits.robustness import is_trained_model

            if is_trained_model(subject):
                return kwargs
        return {**kwargs, "trainer": self._trainer}

    def check(self, augmentation: Any) -> Any:
        """Run the checks the marker describes: the PSA density assertion, the flatness assertion when
        the marker names a `metric` or `min_rel_improvement`, and the robustness budgets when it sets
        any of max_mce, max_adv_error, max_clean_error, max_mfp, vs_erm, and the domain floors when it sets
        min_domain_accuracy or domain_vs_erm. Returns the density result."""
        result = self.density(augmentation).assert_psa()
        if "metric" in self.marker or "min_rel_improvement" in self.marker:
            self.flatness(augmentation).assert_flatter()
        if any(k in self.marker for k in ROBUSTNESS_BUDGETS):
            self.robustness(augmentation).assert_budget()
        if any(k in self.marker for k in DOMAIN_BUDGETS):
            self.domain_generalization(augmentation).assert_budget()
        return result


ROBUSTNESS_BUDGETS = ("max_mce", "max_adv_error", "max_clean_error", "max_mfp", "vs_erm")
DOMAIN_BUDGETS = ("min_domain_accuracy", "domain_vs_erm")


@dataclass
class _Watched:
    record: AuditRecord
    result: Any
    seen: int = 0  # verdicts of the result's log already copied


def _verdict_properties(kind: str, verdict: Any) -> list[tuple[str, Any]]:
    """The JUnit properties of one verdict (names as documented in docs/reports.md)."""
    if kind == "density":
        return [(f"psa_F({verdict.gamma:g})", round(verdict.interval.estimate, 6)),
                (f"psa_verdict({verdict.gamma:g})", verdict.outcome)]
    if kind == "flatness":
        return [(f"psa_flatness_improvement({verdict.metric})", round(verdict.mean, 6)),
                (f"psa_flatness_verdict({verdict.metric})", verdict.outcome)]
    return [(f"psa_budget({verdict.name})", verdict.outcome)]


def _seed_list(first: int, seeds: Any) -> list[int]:
    """A count of seeds (first, first+1, ...) or an explicit list."""
    return [first + i for i in range(seeds)] if isinstance(seeds, int) else list(seeds)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)
