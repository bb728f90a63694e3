"""What a robustness audit measures: corruption sets, severities and attack specs, parsed and checked.

Attack specs are ``"norm:eps[:steps[:method]]"`` strings (``"linf:8/255:20"``, ``"l2:0.25:7"``,
``"linf:8/255:100:apgd-ce"``; eps may be a fraction like ``8/255``), dicts of `pytest_psa.attack`
keywords (``{"norm": "l2", "eps": 0.5, "steps": 7}``), or None for no attack.

Default attacks: the seed paper's PGD-20 L∞ ε = 8/255 (step 2/255), plus two small budgets,
PGD-10 L∞ ε = 2/255 and PGD-7 L2 ε = 0.25. On models that were not adversarially trained, 8/255
drives robust accuracy to 0-0.2 % (cpu_feasibility.md §5: no signal, every augmentation looks
the same); the small budgets still separate them (TA 26.7 % vs ERM 17.1 % at L∞ 2/255).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pytest_psa.errors import PsaUsageError

DEFAULT_ATTACKS: tuple[str, ...] = ("linf:8/255:20", "linf:2/255:10", "l2:0.25:7")
CORRUPTION_SETS = ("cifar10-c", "all")


@dataclass(frozen=True)
class AttackSpec:
    """One attack of an audit: its short label (for metric names) and the `run_attack` keywords."""

    label: str  # e.g. "linf,8/255"; metric names read "adv_error(linf,8/255)"
    kwargs: tuple[tuple[str, Any], ...]

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def describe(self) -> str:
        s = self.settings
        method = "APGD-CE" if s.get("method") == "apgd-ce" else "PGD"
        step = s.get("step_size")
        step_text = f", step {eps_text(step, s['norm'])}" if step is not None else ""
        return f"{method}-{s['steps']} {'L∞' if s['norm'] == 'linf' else 'L2'} ε={eps_text(s['eps'], s['norm'])}{step_text}"


def eps_text(eps: float, norm: str) -> str:
    """8/255 for L∞ budgets on the 1/255 grid (to 2 decimals), else the plain number."""
    k = eps * 255
    if norm == "linf" and eps > 0 and abs(k - round(k, 2)) < 1e-9:
        return f"{round(k, 2):g}/255"
    return f"{eps:g}"


def _number(text: str, what: str) -> float:
    try:
        return float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise PsaUsageError(f"attack spec: cannot read {what} {text!r}",
                            fix='write eps as a number or a fraction, e.g. "linf:8/255:20" or "l2:0.5:7"') from None


def parse_attack(spec: Any) -> dict[str, Any]:
    """One attack spec (string or dict) -> validated keywords: norm, eps, steps, method (+ step_size, restarts)."""
    from pytest_psa.measure.robustness.attacks.settings import resolve_settings

    if isinstance(spec, str):
        parts = spec.strip().split(":")
        if not 2 <= len(parts) <= 4:
            raise PsaUsageError(f"attack spec {spec!r} is not norm:eps[:steps[:method]]",
                                fix='e.g. "linf:8/255:20", "l2:0.25:7" or "linf:8/255:100:apgd-ce"')
        kw: dict[str, Any] = {"norm": parts[0], "eps": _number(parts[1], "eps")}
        if len(parts) >= 3:
            try:
                kw["steps"] = int(parts[2])
            except ValueError:
                raise PsaUsageError(f"attack spec {spec!r}: steps must be an integer", fix='e.g. "linf:8/255:20"') from None
        if len(parts) == 4:
            kw["method"] = parts[3]
    elif isinstance(spec, dict):
        allowed = {"norm", "eps", "steps", "step_size", "method", "restarts"}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            close = difflib.get_close_matches(unknown[0], allowed, n=1)
            raise PsaUsageError(f"attack spec: unknown key {unknown[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                                fix=f"use keys from {sorted(allowed)}")
        kw = dict(spec)
    else:
        raise PsaUsageError("an attack spec must be a string or a dict", observed=type(spec).__name__,
                            fix='e.g. attacks=["linf:8/255:20", {"norm": "l2", "eps": 0.5, "steps": 7}]')
    s = resolve_settings(**kw)  # validates norm, eps, steps, method, step size and restarts
    out = {"norm": s.norm, "eps": s.eps, "steps": s.steps, "method": s.method, "restarts": s.restarts}
    if s.step_size_given:
        out["step_size"] = s.step_size
    return out


def resolve_attacks(attacks: Any) -> tuple[AttackSpec, ...]:
    """``"default"`` -> DEFAULT_ATTACKS; None or () -> none; one spec or a list of them."""
    if attacks is None:
        return ()
    if isinstance(attacks, str) and attacks == "default":
        attacks = DEFAULT_ATTACKS
    if isinstance(attacks, (str, dict)):
        attacks = [attacks]
    parsed = [parse_attack(a) for a in attacks]
    labels = [f"{p['norm']},{eps_text(p['eps'], p['norm'])}" for p in parsed]
    specs = []
    for p, label in zip(parsed, labels):
        if labels.count(label) > 1:  # same norm and ε twice: name them apart by method and steps
            label = f"{label},{p['method']}-{p['steps']}"
        specs.append(AttackSpec(label, tuple(sorted(p.items()))))
    seen = [s.label for s in specs]
    dupes = sorted({x for x in seen if seen.count(x) > 1})
    if dupes:
        raise PsaUsageError(f"attack {dupes[0]!r} is listed twice", fix="list each attack once")
    return tuple(specs)


def attack_label(key: str, specs: Sequence[AttackSpec]) -> str:
    """Find the measured attack a budget key names: a label, ``adv_error(label)`` or a spec string."""
    k = key.strip()
    if k.startswith("adv_error(") and k.endswith(")"):
        k = k[len("adv_error("):-1]
    labels = [s.label for s in specs]
    if k in labels:
        return k
    if ":" in k:
        try:
            parsed = parse_attack(k)
        except PsaUsageError:
            parsed = None
        if parsed is not None:
            for s in specs:
                if all(s.settings.get(f) == parsed.get(f) or (f == "eps" and math.isclose(s.settings["eps"], parsed["eps"]))
                       for f in ("norm", "eps", "steps", "method")):
                    return s.label
    raise PsaUsageError(f"no measured attack matches {key!r}", observed=labels or "no attacks were run",
                        fix="use one of the measured labels (or run that attack with attacks=[...])")


def resolve_corruptions(corruptions: Any) -> tuple[str, ...]:
    """``"cifar10-c"`` -> the 15 benchmark corruptions; ``"all"`` adds the 4 validation ones; a name or a
    list of names (checked, with a did-you-mean); None or () -> none."""
    from pytest_psa.measure.robustness.corruptions import available_corruptions, get_corruption

    if corruptions is None:
        return ()
    if isinstance(corruptions, str) and corruptions in CORRUPTION_SETS:
        return tuple(available_corruptions(include_validation=corruptions == "all"))
    names = (corruptions,) if isinstance(corruptions, str) else tuple(corruptions)
    for n in names:
        get_corruption(n)  # raises PsaUsageError with the valid names
    return tuple(dict.fromkeys(names))


def resolve_severities(severities: Any) -> tuple[int, ...]:
    sev = (severities,) if isinstance(severities, int) else tuple(severities)
    if not sev or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 5 for s in sev):
        raise PsaUsageError("severities must be integers in 1..5", observed=severities, fix="e.g. severities=(1, 2, 3, 4, 5)")
    return tuple(sorted(set(sev)))


__all__ = ["DEFAULT_ATTACKS", "AttackSpec", "attack_label", "eps_text", "parse_attack", "resolve_attacks",
           "resolve_corruptions", "resolve_severities"]
