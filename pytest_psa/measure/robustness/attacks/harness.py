"""`run_attack` (the full report) and `attack` (just the adversarial images).

Per batch: a clean forward pass; the clean-correct samples are attacked (restarts only on the
ones still robust); the fooling iterates are re-checked by a forward pass (a fooling image that
the second pass classifies correctly still counts as not robust: it fooled the model once, and
counting it robust would overstate robust accuracy; the disagreements are counted and, beyond
max(2, 1 %), fail the run as nondeterminism); every perturbation is checked against ε, [0, 1]
and finiteness. Around everything: the model is in eval mode, and its
mode, buffers and parameters are checked and restored afterwards. On the first batch the model's
outputs are checked to be logits, deterministic, and to reproduce clean accuracy at ε = 0.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.robustness.attacks import checks
from pytest_psa.measure.robustness.attacks.apgd import apgd_run
from pytest_psa.measure.robustness.attacks.checks import AttackSelfCheckError, CheckOutcome
from pytest_psa.measure.robustness.attacks.geometry import perturbation_norms
from pytest_psa.measure.robustness.attacks.oracle import Oracle
from pytest_psa.measure.robustness.attacks.pgd import pgd_run
from pytest_psa.measure.robustness.attacks.attack_result import DEFAULT_ALPHA, AttackResult
from pytest_psa._specs.attacks import AttackSettings, resolve_settings

Model = Callable[[torch.Tensor], torch.Tensor]
PROBE = 32  # samples of the first batch used for the determinism and ε = 0 probes
_RUNS = {"pgd": pgd_run, "apgd-ce": apgd_run}


def attack(model: Model, images: torch.Tensor, labels: torch.Tensor, *, norm: str = "linf",
           eps: float | None = None, steps: int | None = None, step_size: float | None = None,
           method: str | None = None, restarts: int | None = None, seed: int = 0, batch_size: int | None = None,
           device: str | torch.device | None = None, check: bool = True, config: str | None = None) -> torch.Tensor:
    """Adversarial versions of `images` (same shape, dtype and device) against `model`.

    images: float (N, C, H, W) in [0, 1]; labels: (N,) class indices; model: images -> logits (N, classes),
    with any normalization inside it. eps None = 8/255 for "linf", 0.5 for "l2"; step_size None = ε/4
    (L∞), 2.5·ε/steps (L2) or 2ε as APGD's initial step; method "pgd" or "apgd-ce"; steps None = 20,
    restarts None = 1; config a named configuration ("autoattack-apgd-ce": APGD-CE, 100 steps, 1 restart,
    AutoAttack's settings) that fixes method, steps, restarts and step rule. Samples the model
    gets wrong on clean images are returned unchanged; robust ones as the highest-loss iterate found.
    Self-checks (on by default) raise `AttackSelfCheckError`; see `run_attack` for the full report.
    """
    result = run_attack(model, images, labels, norm=norm, eps=eps, steps=steps, step_size=step_size,
                        method=method, restarts=restarts, seed=seed, batch_size=batch_size, device=device,
                        check=check, keep_images=True, config=config)
    adversarial = result.adversarial
    if not isinstance(adversarial, torch.Tensor):  # keep_images=True always keeps them
        raise RuntimeError(f"run_attack(keep_images=True) kept no adversarial images: {type(adversarial).__name__}")
    return adversarial


def run_attack(model: Model, images: torch.Tensor, labels: torch.Tensor, *, norm: str = "linf",
               eps: float | None = None, steps: int | None = None, step_size: float | None = None,
               method: str | None = None, restarts: int | None = None, seed: int = 0, batch_size: int | None = None,
               device: str | torch.device | None = None, check: bool = True, keep_images: bool = False,
               early_stop: bool = True, alpha: float = DEFAULT_ALPHA, label: str = "",
               config: str | None = None) -> AttackResult:
    """Attack `model` on (images, labels) and report per-sample clean/robust correctness, cost and checks.

    Arguments as for `attack`, plus: restarts (extra random starts, only on samples still robust),
    seed (the random starts; the global RNG is untouched), batch_size (None = 256 on CPU, 1024 on CUDA;
    results do not depend on it), device (None = the model's), keep_images (store the adversarial
    images in the result), early_stop (False keeps fooled samples in the batch: same result, more
    passes; for testing), alpha (level of the reported confidence interval), label (for reports).
    check=False skips the probes and re-verification, never the ε-bound check. A fooling image that
    re-verification classifies correctly counts as not robust either way (`reverify_mismatches`
    says how many there were), so check=True and check=False give the same robust accuracy.
    """
    start_time = time.perf_counter()
    s = resolve_settings(norm=norm, eps=eps, steps=steps, step_size=step_size, method=method,
                         restarts=restarts, seed=seed, early_stop=early_stop, config=config)
    if not callable(model):
        raise PsaUsageError("model must be callable: images (N, C, H, W) -> logits (N, classes)",
                            observed=type(model).__name__, fix="pass an nn.Module or a function")
    images = checks.validate_images(images)
    labels = checks.validate_labels(labels, len(images))
    dev, dtype, fmt = _placement(model, images, device)
    bs = _batch_size(batch_size, dev)
    oracle = Oracle(model, fmt)
    n = len(images)
    clean = np.zeros(n, dtype=bool)
    robust = np.zeros(n, dtype=bool)
    adversarial = torch.empty_like(images) if keep_images else None
    # rounding allowance of the coarser of the attack's dtype and the returned images' dtype
    coarse = dtype if torch.finfo(dtype).eps >= torch.finfo(images.dtype).eps else images.dtype
    tol = checks.perturbation_tolerance(s.eps, s.norm, coarse, int(images[0].numel()))
    outcomes: list[CheckOutcome] = []
    stats = {"max_norm": 0.0, "mismatches": 0, "fooled": 0}
    with torch.no_grad(), checks.model_guard(model, outcomes):
        for lo in range(0, n, bs):
            x = images[lo:lo + bs].to(device=dev, dtype=dtype).contiguous(memory_format=fmt)
            y = labels[lo:lo + bs].to(dev)
            idx = torch.arange(lo, lo + len(x), device=dev)
            logits = _clean_logits(oracle, x, y, first=lo == 0, check=check, outcomes=outcomes)
            ok = logits.argmax(1) == y
            if lo == 0 and check:
                _probe_eps_zero(oracle, x[:PROBE], y[:PROBE], idx[:PROBE], ok[:PROBE], s, outcomes)
            x_adv, fooled = _attack_batch(oracle, x, y, idx, ok, s, check)
            if check:
                _reverify(oracle, x_adv, y, fooled, stats)
            _check_bounds(x, x_adv, s, tol, stats)
            clean[lo:lo + len(x)] = ok.cpu().numpy()
            robust[lo:lo + len(x)] = (ok & ~fooled).cpu().numpy()
            if adversarial is not None:
                adversarial[lo:lo + len(x)] = x_adv.to(device=images.device, dtype=images.dtype)
    _finish_checks(s, tol, stats, oracle, n, check, outcomes)
    return AttackResult(
        settings=s, clean_correct=clean, robust_correct=robust, batch_size=bs, device=str(dev),
        dtype=str(dtype).replace("torch.", ""), forwards=oracle.forwards, backwards=oracle.backwards,
        model_calls=oracle.calls, seconds=time.perf_counter() - start_time, max_perturbation=stats["max_norm"],
        tolerance=tol, checks=tuple(outcomes), zero_gradient_samples=oracle.zero_grad_samples,
        reverify_mismatches=int(stats["mismatches"]), alpha=alpha, label=label, adversarial=adversarial)


# -- pieces ------------------------------------------------------------------------------------
def _placement(model: Model, images: torch.Tensor,
               device: str | torch.device | None) -> tuple[torch.device, torch.dtype, torch.memory_format]:
    """(device, dtype, memory format) of the model's floating tensors; images are cast to match."""
    tensors = [t for t in (list(model.parameters()) + list(model.buffers()) if isinstance(model, torch.nn.Module)
                           else []) if t.is_floating_point()]
    model_dev = tensors[0].device if tensors else None
    dev = torch.device(device) if device is not None else (model_dev or images.device)
    if model_dev is not None and model_dev.type != dev.type:
        raise PsaUsageError(f"the model is on {model_dev} but the attack was asked to run on {dev}",
                            fix=f"move the model first (model.to({str(dev)!r})) or leave device=None")
    dtype = tensors[0].dtype if tensors else images.dtype
    weights4d = [t for t in tensors if t.dim() == 4]
    channels_last = bool(weights4d) and weights4d[0].is_contiguous(memory_format=torch.channels_last) \
        and not weights4d[0].is_contiguous()
    return dev, dtype, torch.channels_last if channels_last else torch.contiguous_format


def _batch_size(batch_size: int | None, dev: torch.device) -> int:
    if batch_size is None:
        return 1024 if dev.type == "cuda" else 256  # measured on 2 CPU cores: 250 runs 2x faster than 1000 on CPU
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PsaUsageError("batch_size must be an int >= 1 (or None)", observed=batch_size, fix="e.g. 256")
    return batch_size


def _clean_logits(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, *, first: bool, check: bool,
                  outcomes: list[CheckOutcome]) -> torch.Tensor:
    out = oracle.raw(x)
    checks.validate_logits(out, len(x), y)
    assert isinstance(out, torch.Tensor)
    oracle.check_finite(out)
    if first and check:
        checks.check_still_eval(oracle.model)
        checks.check_not_probabilities(out, outcomes)
        again = oracle.raw(x[:PROBE])
        assert isinstance(again, torch.Tensor)
        checks.check_deterministic(out[:PROBE], again, outcomes,
                                    precision=checks.forward_precision(oracle.model, x))
    return out


def _attack_batch(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, ok: torch.Tensor,
                  s: AttackSettings, check: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_adv, fooled) for one batch: restarts attack only the samples still robust."""
    x_adv = x.clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    best = torch.full((len(x),), -float("inf"), device=x.device)
    todo = ok.nonzero().squeeze(1)
    run = _RUNS[s.method]
    for r in range(s.restarts):
        if len(todo) == 0:
            break
        track = run(oracle, x[todo], y[todo], idx[todo], s, r, check and r == 0)
        take = track.fooled | (track.loss_out > best[todo])
        x_adv[todo[take]] = track.x_out[take]
        best[todo[take]] = track.loss_out[take]
        fooled[todo[track.fooled]] = True
        todo = todo[~track.fooled]
    return x_adv, fooled


def _probe_eps_zero(oracle: Oracle, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, ok: torch.Tensor,
                    s: AttackSettings, outcomes: list[CheckOutcome]) -> None:
    """The attack machinery at ε = 0 (one step) must leave every correctly classified image correct."""
    zero = dataclasses.replace(s, eps=0.0, steps=1, restarts=1)
    x_adv, fooled = _attack_batch(oracle, x, y, idx, ok, zero, check=False)
    moved = float((x_adv - x).abs().max()) if len(x) else 0.0
    if bool(fooled.any()) or moved != 0.0:
        raise AttackSelfCheckError(
            "ε = 0 does not reproduce clean accuracy: with a zero perturbation the attack's own forward passes "
            "disagree with the clean pass",
            observed=f"{int(fooled.sum())} of {int(ok.sum())} correctly classified probe images misclassified; "
                     f"max |x_adv − x| {moved:.3g}",
            fix="the model's prediction depends on the batch or on chance (BatchNorm using batch statistics, "
                "dropout active in eval mode, noise layers); make eval-mode forward deterministic and per-sample")
    outcomes.append(CheckOutcome("ε = 0 reproduces clean accuracy", True,
                                 f"{int(ok.sum())} of {len(x)} probe images correct clean and at ε = 0"))


def _reverify(oracle: Oracle, x_adv: torch.Tensor, y: torch.Tensor, fooled: torch.Tensor,
              stats: dict[str, Any]) -> None:
    """A separate forward pass on every fooling image; counts those it classifies correctly.

    They stay fooled (not robust): the attack's own forward pass misclassified them, and a model
    whose prediction on one image changes between passes is not robust there. Counting them robust
    would raise robust accuracy by bookkeeping. Too many of them fail the run (`_finish_checks`)."""
    where = fooled.nonzero().squeeze(1)
    if len(where) == 0:
        return
    out = oracle.raw(x_adv[where])
    if not isinstance(out, torch.Tensor):  # it returned a logits tensor on the clean images
        raise AttackSelfCheckError("the model returned no tensor when re-checking the fooling images",
                                   observed=type(out).__name__,
                                   fix="make forward always return the logits tensor (N, classes)")
    confirmed = out.argmax(1) != y[where]
    stats["mismatches"] += int((~confirmed).sum())
    stats["fooled"] += len(where)


def _check_bounds(x: torch.Tensor, x_adv: torch.Tensor, s: AttackSettings, tol: float,
                  stats: dict[str, Any]) -> None:
    if not bool(torch.isfinite(x_adv).all()):
        raise AttackSelfCheckError("the attack produced NaN or inf pixels",
                                   fix="report this as a pytest-psa bug with the attack settings")
    lo, hi = float(x_adv.min()), float(x_adv.max())
    if lo < 0 or hi > 1:
        raise AttackSelfCheckError("an adversarial image left the [0, 1] pixel range", observed=f"[{lo}, {hi}]",
                                   fix="report this as a pytest-psa bug with the attack settings")
    norms = perturbation_norms(x_adv - x, s.norm)
    worst = float(norms.max())
    stats["max_norm"] = max(stats["max_norm"], worst)
    if worst > tol:
        raise AttackSelfCheckError(
            f"a perturbation exceeds ε: {s.norm} norm {worst:.8g} > ε = {s.eps:.8g} (tolerance {tol:.3g})",
            observed=f"{int((norms > tol).sum())} of {len(x)} samples in the batch",
            fix="report this as a pytest-psa bug with the attack settings")


def _finish_checks(s: AttackSettings, tol: float, stats: dict[str, Any], oracle: Oracle, n: int, check: bool,
                   outcomes: list[CheckOutcome]) -> None:
    outcomes.append(CheckOutcome("perturbations within ε, in [0, 1], finite", True,
                                 f"max {s.norm} norm {stats['max_norm']:.6g} <= {tol:.6g} over {n} samples"))
    if not check:
        return
    mism, fooled = stats["mismatches"], stats["fooled"]
    if mism > max(2, 0.01 * fooled):
        raise AttackSelfCheckError(
            "fooling images did not fool the model when evaluated again: the model's predictions depend on the "
            "batch or on chance", observed=f"{mism} of {fooled} fooling images classified correctly on re-evaluation",
            fix="make eval-mode forward deterministic and per-sample (no batch statistics, no randomness)")
    outcomes.append(CheckOutcome("fooling images re-verified", True,
                                 f"{fooled - mism} of {fooled} confirmed by a separate forward pass"
                                 + (f" ({mism} near-boundary disagreements counted as not robust)" if mism else "")))
    outcomes.append(CheckOutcome("gradients not masked", True,
                                 f"{oracle.zero_grad_samples} samples with an all-zero first gradient"))
