"""APGD-CE (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", Algorithm 1) in L∞ and L2, one run on one batch.

Written from the paper and the facts of AutoAttack's `autopgd_base.py` (no code copied):
- start on the ε-sphere (`geometry.apgd_start`); initial step η = 2ε per sample;
- z = P(x_k + η·dir(∇)), x_{k+1} = P(x_k + a(z − x_k) + (1 − a)(x_k − x_{k−1})), a = 1 on the first
  step and 0.75 after;
- checkpoints: the first after w = max(⌊0.22·N⌋, 1) steps, each next window 3 % of N shorter
  (max(⌊0.03·N⌋, 1)) down to max(⌊0.06·N⌋, 1);
- at a checkpoint a sample's η halves when at most ρ = 0.75 of the window's steps raised its loss,
  or when its η did not halve at the previous checkpoint and its best loss has not improved since;
  a halving sample restarts from its best point x_max (with the gradient stored there).
Every sample's step size and state are its own, so dropping fooled samples (early stop) changes
nothing for the others. One difference from AutoAttack: the first window's first step is compared
with the loss at the start point (AutoAttack compares it with an unfilled zero entry, so it always
counts as a rise). The final iterate is evaluated without a backward pass.
AutoAttack runs this with N = 100 and 1 restart: `config="autoattack-apgd-ce"` (`_specs.attacks.CONFIGS`).
"""

from __future__ import annotations

import torch

from pytest_psa.measure.robustness.attacks.geometry import apgd_start, ascent_direction, per_sample, project
from pytest_psa.measure.robustness.attacks.oracle import Oracle
from pytest_psa._specs.attacks import AttackSettings
from pytest_psa.measure.robustness.attacks.tracker import Tracker, compact

RHO = 0.75
MOMENTUM = 0.75


def checkpoint_windows(steps: int) -> tuple[int, int, int]:
    """(first window, decrement, minimum window) in steps for an N-step run."""
    return max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)


def apgd_run(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, s: AttackSettings,
             restart: int, check_gradient: bool) -> Tracker:
    n_steps = s.steps
    window, decrement, min_window = checkpoint_windows(n_steps)
    cur = apgd_start(x, indices, s.eps, s.norm, s.seed, restart)
    track = Tracker(cur)
    pos = torch.arange(len(x), device=x.device)
    logits, loss, grad = oracle.loss_grad(cur, y)
    if check_gradient:
        oracle.note_first_gradient(grad)
    wrong = track.observe(pos, cur, logits, loss, y)

    # per-sample state, compacted together whenever fooled samples leave
    x0, yy, x_prev = x, y, cur.clone()
    x_best, grad_best, loss_best = cur.clone(), grad.clone(), loss.clone()
    prev_loss, loss_best_at_check = loss.clone(), loss.clone()
    eta = torch.full((len(x),), float(s.step_size), device=x.device, dtype=x.dtype)
    rises = torch.zeros(len(x), device=x.device)
    halved_at_check = torch.ones(len(x), dtype=torch.bool, device=x.device)
    since_check = 0

    for i in range(n_steps):
        if s.early_stop and bool(wrong.any()):
            keep = ~wrong
            if not bool(keep.any()):
                break
            (pos, cur, grad, x0, yy, x_prev, x_best, grad_best, loss_best, prev_loss, loss_best_at_check,
             eta, rises, halved_at_check) = compact(
                keep, pos, cur, grad, x0, yy, x_prev, x_best, grad_best, loss_best, prev_loss,
                loss_best_at_check, eta, rises, halved_at_check)
        z = project(cur + per_sample(eta, cur) * ascent_direction(grad, s.norm), x0, s.eps, s.norm)
        if i > 0:
            z = project(cur + MOMENTUM * (z - cur) + (1 - MOMENTUM) * (cur - x_prev), x0, s.eps, s.norm)
        x_prev, cur = cur, z
        last = i == n_steps - 1
        if last:
            logits, loss = oracle.loss(cur, yy)
        else:
            logits, loss, grad = oracle.loss_grad(cur, yy)
        wrong = track.observe(pos, cur, logits, loss, yy)
        if last:
            break
        rises += loss > prev_loss
        prev_loss = loss
        better = loss > loss_best
        if bool(better.any()):
            x_best[better], grad_best[better], loss_best[better] = cur[better], grad[better], loss[better]
        since_check += 1
        if since_check == window:
            halve = (rises <= window * RHO) | (~halved_at_check & (loss_best_at_check >= loss_best))
            halved_at_check, loss_best_at_check = halve, loss_best.clone()
            if bool(halve.any()):
                eta = torch.where(halve, eta / 2, eta)
                cur[halve], grad[halve] = x_best[halve], grad_best[halve]
            window = max(window - decrement, min_window)
            since_check = 0
            rises.zero_()
    return track
