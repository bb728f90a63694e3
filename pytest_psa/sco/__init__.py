"""Flat minima that generalize badly: arXiv 2511.03548 (stochastic convex optimization) made executable.

The paper builds convex, smooth, non-negative, ρ-flat losses on which a flat empirical minimum has Ω(1)
population risk while a sharp one generalizes (Thm 1), SA-GD reaches a flat minimum at O(1/T) yet keeps
Ω(η²(r−ρ)²T) population risk (Thms 2, 3), and SAM stays at sharp minima or drifts to bad ones (Thms 6, 7),
while plain GD generalizes on the same instances. This is why pytest-psa's flatness assertion says
"flatter", never "more robust". See docs/sco.md and `python -m pytest_psa.sco --help`.

Modules: `losses` (ρ-flat losses, F, F_S^r), `chain` (Thm 7's loss), `testbeds` (1-D and 2-D instances),
`algorithms` (GD, SA-GD, SAM, iterates), `constructions` (Thms 1, 3, 6, 7 with their bad events),
`experiments` (E1–E5), `figures`, `module` (an instance's empirical loss as a torch `nn.Module`).
Importing this package needs numpy and scipy only; torch and matplotlib load on use.
"""

from __future__ import annotations

from pytest_psa.sco.algorithms import Trajectory, certify, gd, sa_gd, sam
from pytest_psa.sco.constructions import (
    adversarial_oracle,
    bad_event_probability,
    bad_event_rate,
    random_oracle,
    thm1_instance,
    thm3_instance,
    thm6_instance,
    thm7_instance,
    trigger_oracle,
)
from pytest_psa.sco.experiments import e1_sa_erm, e2_sa_gd, e3_sam_sharpness, e4_sam, e5_stability, run_all
from pytest_psa.sco.losses import MaskedNormLoss, PopulationRisk, h
from pytest_psa.sco.results import ExperimentResult

__all__ = [
    "ExperimentResult",
    "MaskedNormLoss",
    "PopulationRisk",
    "Trajectory",
    "adversarial_oracle",
    "bad_event_probability",
    "bad_event_rate",
    "certify",
    "e1_sa_erm",
    "e2_sa_gd",
    "e3_sam_sharpness",
    "e4_sam",
    "e5_stability",
    "gd",
    "h",
    "random_oracle",
    "run_all",
    "sa_gd",
    "sam",
    "thm1_instance",
    "thm3_instance",
    "thm6_instance",
    "thm7_instance",
    "trigger_oracle",
]
