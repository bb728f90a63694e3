"""Run a `Design` through the public audits and keep every number (JSON-ready), per arm and per pair.

Nothing here measures on its own: density, flatness and robustness are `pytest_psa.density`,
`pytest_psa.flatness` and `pytest_psa.robustness`, and affinity is `measure.affinity` on the ERM models
the audits trained. Models, flatness values and robustness evaluations go through the caches, so an
interrupted run resumes where it stopped and a warm rerun trains and evaluates nothing (the stage
log says so: ``timings["trained"]`` counts the trainings that were not cache hits).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

from pytest_psa import _timings
from pytest_psa._timings import stage
from pytest_psa.errors import PsaError, PsaSanityError, PsaUsageError
from pytest_psa.reproduce.design import ARMS, FLATNESS_KEYS, ArmDef, Design

# flatness key -> (metric, measure_flatness options that make it that convention)
_FLATNESS_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "pac_bayes(target=loss)": ("pac_bayes", {"target_type": "loss"}),
    "pac_bayes(target=accuracy)": ("pac_bayes", {"target_type": "accuracy"}),
    "lpf(bisla)": ("lpf", {"lpf_normalization": "bisla"}),
    "eps_sharpness": ("eps_sharpness", {}),
    "hessian_top": ("hessian_top", {}),
    "hessian_trace": ("hessian_trace", {}),
}
assert tuple(_FLATNESS_CALLS) == FLATNESS_KEYS


class Runner:
    """Runs the audits of one design; `run()` returns the raw measurements and the audit records."""

    def __init__(self, design: Design, *, data_root: Any = None, cache_dir: Any = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.design = design
        self.data_root = data_root
        self.cache_dir = cache_dir
        self.say = say or (lambda text: print(f"psa reproduce: {text}", file=sys.stderr, flush=True))
        self.records: list[dict[str, Any]] = []  # (kind, result.to_dict()) for the figures
        self._density_done: dict[str, dict[str, Any]] = {}

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from pytest_psa.data.sources import load_data

        d = self.design
        mark = _timings.count()
        started = time.perf_counter()
        test = load_data(d.data, split="test", root=self.data_root, cache_dir=self.cache_dir)
        self.image_size = max(test.image_size)
        arms: dict[str, dict[str, Any]] = {}
        steps = len(d.arms) + len(d.pairs()) + 1 + len(d.domain_arms())
        step = 0
        for key in d.arms:
            step += 1
            self.say(f"[{step}/{steps}] density {key}")
            arms[key] = {"label": ARMS[key].label, "role": ARMS[key].role, "density": self._density(ARMS[key])}
        pairs: dict[str, dict[str, Any]] = {}
        for subject, baseline in d.pairs():
            step += 1
            self.say(f"[{step}/{steps}] {subject} vs {baseline}: training (cache), flatness, robustness")
            pairs[f"{subject} vs {baseline}"] = self._pair(ARMS[subject], ARMS[baseline])
        step += 1
        self.say(f"[{step}/{steps}] affinity and diversity")
        self._predictors(arms, pairs, test)
        domains: dict[str, dict[str, Any]] = {}
        for key in d.domain_arms():
            step += 1
            self.say(f"[{step}/{steps}] {key} vs erm under domain shift ({d.domains}, leave one domain out)")
            domains[key] = self._domains(ARMS[key])
        stages = _timings.collect()[mark:]
        trained = sum(1 for s in stages if s.name == "training" and not s.cached)
        return {"arms": arms, "pairs": pairs, "domains": domains,
                "timings": {"stages": _timings.summarize(stages), "trained": trained,
                            "total_s": time.perf_counter() - started},
                "_records": self.records}  # the audits' full records, for the figures (not in the JSON)

    # -- domain shift ----------------------------------------------------------------------------
    def _domains(self, arm: ArmDef) -> dict[str, Any]:
        """One arm vs ERM, leave one domain out (`pytest_psa.domain_generalization`): the averages over
        held-out domains with their intervals, per-domain accuracies, and the protocol as recorded."""
        from pytest_psa.audits.domain import domain_generalization

        d = self.design
        data: Any = d.domains
        built = d.domain_classes is not None  # the synthetic set drawn here at its size and per-domain count
        if built:
            from pytest_psa.data.domains import SYNTHETIC_DOMAINS_NAME, synthetic_domains

            if d.domains != SYNTHETIC_DOMAINS_NAME:
                raise PsaUsageError("domain_classes applies to the synthetic-domains set only", observed=d.domains,
                                    fix="drop domain_classes, or use domains='synthetic-domains'")
            data = synthetic_domains(d.domain_per_domain or 1_500, size=d.domain_size or 32,
                                     n_classes=int(d.domain_classes or 0))
        try:
            r = domain_generalization(
                arm.augmentation, data=data, held_out=d.domain_held_out, seeds=list(d.seeds), preset=d.preset,
                model=d.model, alpha=d.alpha, n_per_domain=None if built else d.domain_per_domain,
                size=None if built else d.domain_size,
                cache_dir=self.cache_dir, data_root=self.data_root, optimizer=d.optimizer, progress=False,
                **dict(d.domain_overrides))
        except PsaSanityError as exc:  # a collapsed model: the row says so and the run goes on
            return {"refused": str(exc).splitlines()[0]}
        self.records.append({"kind": "domain", "key": arm.key, "summary": r.to_dict()})
        metrics = r.metrics()
        return {"averages": {name: metrics[f"{name}_avg"].to_dict() for name in (
                    "accuracy_heldout", "erm_accuracy_heldout", "delta_accuracy_heldout", "accuracy_indomain",
                    "erm_accuracy_indomain")},
                "held_out": list(r.domains),
                "per_domain": {dom: {name: e.to_dict() for name, e in per.items()}
                               for dom, per in r.per_domain().items()},
                "protocol": r.settings.get("protocol")}

    # -- density ---------------------------------------------------------------------------------
    def _density(self, arm: ArmDef) -> dict[str, Any] | None:
        from pytest_psa.audits.density import density
        from pytest_psa.measure.density.distances import PAPER_DISTANCE

        name = arm.augmentation or "none"
        if name in self._density_done:
            return self._density_done[name]
        d = self.design
        out: dict[str, Any] = {"augmentation": name}
        for scale, distance in (("paper", PAPER_DISTANCE), ("tool", "l2")):
            r = density(name, data=d.data, n_images=d.n_density, draws=d.draws, distance=distance, seed=0,
                        data_root=self.data_root, cache_dir=self.cache_dir)
            out[scale] = {"distance": r.distance, "scale": r.distance_info.get("params", {}).get("scale"),
                          "n_images": r.n_images, "draws": r.draws, "identity_fraction": r.identity_fraction,
                          "ecdf": [{"gamma": float(g), **_interval(r.interval(float(g), d.alpha))}
                                   for g in _gammas(r.gammas, scale)]}
            if scale == "tool":
                from pytest_psa.results.density import DEFAULT_MIN_DENSITY
                from pytest_psa.reproduce.design import TOOL_GAMMA

                # the tool's own PSA check (its threshold, not the paper's): DensityResult.verdicts
                out["psa_verdict"] = r.verdicts(TOOL_GAMMA, DEFAULT_MIN_DENSITY)[0].to_dict()
                self.records.append({"kind": "density", "key": arm.key, "summary": r.to_dict()})
        self._density_done[name] = out
        return out

    # -- one comparison --------------------------------------------------------------------------
    def _pair(self, subject: ArmDef, baseline: ArmDef) -> dict[str, Any]:
        from pytest_psa.audits.flatness import flatness
        from pytest_psa.audits.robustness import robustness
        from pytest_psa.audits.trained_pair import BASELINE, SUBJECT, train_pair

        d = self.design
        common: dict[str, Any] = {"data": d.data, "preset": d.preset, "model": d.model, "optimizer": d.optimizer,
                                  "cache_dir": self.cache_dir, "data_root": self.data_root, **dict(d.train_overrides)}
        subj, base = subject.subject(self.image_size), baseline.baseline(self.image_size)
        out: dict[str, Any] = {"subject": subject.key, "baseline": baseline.key, "flatness": {}}
        # train (or load) first, so that a training error stops the run; a metric that cannot be
        # compared (a non-positive value) is recorded as that metric's error below
        try:
            train_pair(subj, base, seeds=list(d.seeds), data=d.data, data_root=self.data_root,
                       cache_dir=self.cache_dir, preset=d.preset, overrides=dict(d.train_overrides), model=d.model,
                       optimizer=d.optimizer, progress=False, roles=(SUBJECT, BASELINE), order="seed")
        except PsaSanityError as exc:
            # a model that learned nothing gets no verdict; the other arms of an hours-long run go on
            self.say(f"{subject.key} vs {baseline.key}: refused by the sanity gate")
            out["refused"] = str(exc)
            return out
        training: dict[str, Any] | None = None
        for key in d.flatness_keys:
            metric, options = _FLATNESS_CALLS[key]
            try:
                # alpha / 2: each one-sided bound at 1 - alpha / 2 makes a two-sided 1 - alpha interval
                r = flatness(subj, baseline=base, seeds=list(d.seeds), metrics=[metric], n_measure=d.n_measure,
                             alpha=d.alpha / 2, progress=False,
                             measure_options={**dict(d.flatness_options), **options}, **common)
            except PsaError as exc:
                out["flatness"][key] = {"error": str(exc).splitlines()[0]}
                continue
            c = r[metric]
            out["flatness"][key] = {
                "erm": list(c.erm), "augmented": list(c.augmented), "log_ratio": list(c.log_ratio),
                "improvement": _finite(c.mean), "low": _finite(c.low), "high": _finite(c.high), "test": c.test,
                "p_value": _finite(c.p_value), "confidence": 1 - d.alpha,
                "convention": ("improvement = 1 - exp(-mean_seeds log(baseline/subject)), > 0: subject flatter; "
                               "two-sided interval (each bound one-sided at 1 - alpha/2) by the named test"),
                "definition": r.settings.get("definitions", {}).get(metric)}
            if training is None:
                training = {"loss": r.settings.get("training_loss"),
                            "final_loss": {"subject": [t.get("final_loss") for t in r.training["augmented"]],
                                           "baseline": [t.get("final_loss") for t in r.training["erm"]]},
                            "test_accuracy": {"subject": [t.get("test_accuracy") for t in r.training["augmented"]],
                                              "baseline": [t.get("test_accuracy") for t in r.training["erm"]]},
                            # the cost as recorded when each model was trained (a warm rerun reads it back)
                            "epochs": {"subject": [t.get("epochs") for t in r.training["augmented"]],
                                       "baseline": [t.get("epochs") for t in r.training["erm"]]},
                            "wall_s": {"subject": [t.get("wall_s") for t in r.training["augmented"]],
                                       "baseline": [t.get("wall_s") for t in r.training["erm"]]}}
            if key == "pac_bayes(target=loss)" and baseline.key == "erm":
                self.records.append({"kind": "flatness", "key": subject.key, "summary": r.to_dict()})
        out["training"] = training
        rob = robustness(subj, baseline=base, seeds=list(d.seeds), seed=0, corruptions=d.corruptions if isinstance(d.corruptions, str) else list(d.corruptions),
                         attacks=list(d.attacks), perturbations="cifar10-p" if d.n_perturbation_images else None,
                         n_images=d.n_images, n_attack_images=d.n_attack_images,
                         n_perturbation_images=max(d.n_perturbation_images, 1),
                         perturbation_frames=d.perturbation_frames, alpha=d.alpha, progress=False, **common)
        out["robustness"] = {"metrics": rob.headline(), "per_seed": rob.per_seed, "cache": rob.cache,
                             "attacks": [a.label for a in rob.attacks]}
        if baseline.key == "erm":
            self.records.append({"kind": "robustness", "key": subject.key, "summary": rob.to_dict()})
        return out

    # -- affinity and diversity -------------------------------------------------------------------
    def _predictors(self, arms: dict[str, dict[str, Any]], pairs: dict[str, dict[str, Any]], test: Any) -> None:
        from pytest_psa.audits.trained_pair import BASELINE, train_pair
        from pytest_psa.augment.known import resolve_augmentation
        from pytest_psa.measure.affinity import AFFINITY_CONVENTION, DIVERSITY_CONVENTION, affinity, diversity

        d = self.design
        erm = train_pair(None, "erm", seeds=list(d.seeds), data=d.data, data_root=self.data_root,
                         cache_dir=self.cache_dir, preset=d.preset, overrides=dict(d.train_overrides), model=d.model,
                         optimizer=d.optimizer, progress=False, roles=(BASELINE,))
        models = [t.model for t in erm.models(BASELINE)]
        images = test.subset(d.n_affinity, seed=0)
        for key, info in arms.items():
            arm = ARMS[key]
            if arm.role != "augmentation":
                continue
            with stage("affinity", detail=key):
                est, per_seed = affinity(models, resolve_augmentation(arm.augmentation or "none",
                                                                      image_size=self.image_size),
                                         images, seed=0, alpha=d.alpha)
            info["affinity"] = {**est.to_dict(), "per_seed": per_seed, "convention": AFFINITY_CONVENTION}
            training = (pairs.get(f"{key} vs erm") or {}).get("training") or {}
            losses = training.get("final_loss") or {}
            if losses.get("subject") and None not in losses["subject"] + losses["baseline"]:
                dv, per = diversity(losses["subject"], losses["baseline"], alpha=d.alpha)
                info["diversity"] = {**dv.to_dict(), "per_seed": per, "convention": DIVERSITY_CONVENTION}


def _gammas(gammas: Any, scale: str) -> list[float]:
    from pytest_psa.reproduce.design import PAPER_GAMMA, TOOL_GAMMA

    out = [float(g) for g in gammas]
    stated = PAPER_GAMMA if scale == "paper" else TOOL_GAMMA
    return sorted(set(out) | {stated})


def _interval(iv: Any) -> dict[str, Any]:
    return {"estimate": float(iv.estimate), "low": float(iv.low), "high": float(iv.high),
            "confidence": float(iv.confidence)}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


__all__ = ["Runner"]
