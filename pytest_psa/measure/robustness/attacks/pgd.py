"""Untargeted PGD (Madry et al. 2018) in L∞ and L2, one run (one random start) on one batch.

Each step: per-sample CE gradient at the iterate, a step of `step_size` along sign(g) (L∞) or
g/‖g‖ (L2), projection onto the ε-ball ∩ [0, 1]. The start and every iterate, the last one
included, are evaluated; a sample leaves the batch as soon as an iterate fools the model (with
`early_stop`), so no forward or backward pass is spent on it afterwards.
"""

from __future__ import annotations

import torch

from pytest_psa.measure.robustness.attacks.geometry import ascent_direction, pgd_start, project
from pytest_psa.measure.robustness.attacks.oracle import Oracle
from pytest_psa._specs.attacks import AttackSettings
from pytest_psa.measure.robustness.attacks.tracker import Tracker, compact


def pgd_run(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, s: AttackSettings,
            restart: int, check_gradient: bool) -> Tracker:
    """Attack the batch (x, y); `indices` are the samples' positions in the data set (for the seeded start)."""
    cur = pgd_start(x, indices, s.eps, s.norm, s.seed, restart)
    track = Tracker(cur)
    pos = torch.arange(len(x), device=x.device)
    x0, yy = x, y
    for t in range(s.steps + 1):
        if t < s.steps:
            logits, loss, grad = oracle.loss_grad(cur, yy)
            if t == 0 and check_gradient:
                oracle.note_first_gradient(grad)
        else:  # the final iterate: evaluated, never stepped from
            logits, loss = oracle.loss(cur, yy)
        wrong = track.observe(pos, cur, logits, loss, yy)
        if t == s.steps:
            break
        if s.early_stop and bool(wrong.any()):
            keep = ~wrong
            if not bool(keep.any()):
                break
            pos, cur, x0, yy, grad = compact(keep, pos, cur, x0, yy, grad)
        cur = project(cur + s.step_size * ascent_direction(grad, s.norm), x0, s.eps, s.norm)
    return track
