"""The attack spec grammar: ``"norm:eps[:steps[:method]]"`` strings and dicts -> validated settings.

Attack specs are ``"norm:eps[:steps[:method]]"`` strings (``"linf:8/255:20"``, ``"l2:0.25:7"``,
``"linf:8/255:100:apgd-ce"``; eps may be a fraction like ``8/255``), ``"norm:eps:<configuration>"``
strings naming a fixed configuration (``"linf:8/255:autoattack-apgd-ce"``), dicts of
`pytest_psa.attack` keywords (``{"norm": "l2", "eps": 0.5, "steps": 7}``, ``{"norm": "linf",
"config": "autoattack-apgd-ce"}``), or None for no attack. Norms and methods take aliases
(``"Linf"``, ``"l_inf"``, ``"inf"``, ``"l∞"``, ``"2"``; ``"apgd"``, ``"apgd_ce"``).

Named configurations (`CONFIGS`) fix method, steps, restarts and step rule; only norm, ε and seed
are the caller's. ``"autoattack-apgd-ce"`` is the first attack of AutoAttack's ``standard`` version
for L∞ and L2 (fra31/auto-attack, `autoattack.py`: `APGDAttack(n_iter=100, rho=.75)`,
`n_restarts = 1`): APGD-CE, 100 steps, 1 restart, initial step 2ε, checkpoints at ⌊0.22·N⌋ with
windows shrinking by ⌊0.03·N⌋ down to ⌊0.06·N⌋. It is not the whole AutoAttack ensemble (APGD-T,
FAB-T and Square are not implemented), so a result from it is labelled with its name, never
"AutoAttack". A configuration's name is part of the attack's label (``linf,8/255,autoattack-apgd-ce``)
and so of its metric name, so its numbers are never compared with another configuration's.

Defaults (docs/attacks.md):
- L∞: ε = 8/255, step ε/4 (= 2/255 at 8/255, the seed paper's PGD-20);
- L2: ε = 0.5, step 2.5·ε/steps (Madry et al.'s rule; 0.179 for PGD-7);
- APGD-CE: the initial step is 2ε (AutoAttack); a given `step_size` replaces that initial step.

Default attacks of a robustness audit: the seed paper's PGD-20 L∞ ε = 8/255 (step 2/255), plus two
small budgets, PGD-10 L∞ ε = 2/255 and PGD-7 L2 ε = 0.25. On models that were not adversarially
trained, 8/255 drives robust accuracy to 0-0.2 % (measured on 2 CPU cores: no signal, every
augmentation looks the same); the small budgets still separate them (TA 26.7 % vs ERM 17.1 % at
L∞ 2/255).

Standard library only (no torch): the psa marker is validated with this very parser at collection.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pytest_psa.errors import PsaUsageError

__all__ = [
    "ATTACK_KEYS",
    "CONFIGS",
    "DEFAULT_ATTACKS",
    "DEFAULT_EPS",
    "METHODS",
    "NORMS",
    "AttackSettings",
    "AttackSpec",
    "default_step_size",
    "eps_text",
    "parse_attack",
    "resolve_attacks",
    "resolve_config",
    "resolve_settings",
]

NORMS = ("linf", "l2")
METHODS = ("pgd", "apgd-ce")
DEFAULT_EPS = {"linf": 8 / 255, "l2": 0.5}
DEFAULT_ATTACKS: tuple[str, ...] = ("linf:8/255:20", "linf:2/255:10", "l2:0.25:7")
#: the keys an attack spec dict may hold
ATTACK_KEYS = frozenset({"norm", "eps", "steps", "step_size", "method", "restarts", "config"})
#: named configurations: what each fixes (the step size is always the method's default rule)
CONFIGS: dict[str, dict[str, Any]] = {
    "autoattack-apgd-ce": {"method": "apgd-ce", "steps": 100, "restarts": 1},
}
_CONFIG_ALIASES = {"autoattack-apgd-ce": "autoattack-apgd-ce", "autoattack_apgd_ce": "autoattack-apgd-ce"}
_NORM_ALIASES = {"linf": "linf", "l_inf": "linf", "inf": "linf", "l∞": "linf", "l2": "l2", "2": "l2"}
_METHOD_ALIASES = {"pgd": "pgd", "apgd": "apgd-ce", "apgd-ce": "apgd-ce", "apgd_ce": "apgd-ce"}
_DEFAULT_STEPS, _DEFAULT_METHOD, _DEFAULT_RESTARTS = 20, "pgd", 1


def eps_text(eps: float, norm: str) -> str:
    """8/255 for L∞ budgets on the 1/255 grid (to 2 decimals), else the plain number."""
    k = eps * 255
    if norm == "linf" and eps > 0 and abs(k - round(k, 2)) < 1e-9:
        return f"{round(k, 2):g}/255"
    return f"{eps:g}"


def default_step_size(norm: str, eps: float, steps: int, method: str) -> float:
    """The step used when none is given (see the module docstring)."""
    if method == "apgd-ce":
        return 2.0 * eps
    return eps / 4.0 if norm == "linf" else 2.5 * eps / steps


@dataclass(frozen=True)
class AttackSettings:
    """What an attack does; `step_size` is the resolved value (never None)."""

    norm: str
    eps: float
    steps: int
    step_size: float
    method: str
    restarts: int = 1
    seed: int = 0
    early_stop: bool = True
    step_size_given: bool = False  # False: `step_size` is the documented default for norm/method
    config: str = ""  # the named configuration (`CONFIGS`) these settings are, "" for settings given one by one

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        name = "APGD-CE" if self.method == "apgd-ce" else "PGD"
        step = f"initial step {self.step_size:.4g}" if self.method == "apgd-ce" else f"step {self.step_size:.4g}"
        return (f"{name}-{self.steps} {'L∞' if self.norm == 'linf' else 'L2'} ε={eps_text(self.eps, self.norm)} "
                f"{step}, {self.restarts} restart(s), seed {self.seed}" + _config_text(self.config))


def _config_text(config: str | None) -> str:
    return f" [configuration {config}]" if config else ""


def resolve_config(config: Any) -> str:
    """A configuration name (or alias) -> its canonical name in `CONFIGS`; unknown names raise."""
    c = _CONFIG_ALIASES.get(str(config).strip().lower())
    if c is not None:
        return c
    if str(config).strip().lower() in ("autoattack", "aa", "standard"):
        raise PsaUsageError(f"attack configuration {config!r}: the AutoAttack ensemble (APGD-CE, APGD-T, FAB-T, "
                            "Square) is not implemented", observed=config,
                            fix='use "autoattack-apgd-ce" (its first attack: APGD-CE, 100 steps, 1 restart)')
    raise PsaUsageError(f"unknown attack configuration {config!r}", observed=config,
                        fix=f"use one of {sorted(CONFIGS)}, or give method, steps and restarts yourself")


def resolve_settings(*, norm: str = "linf", eps: float | None = None, steps: int | None = None,
                     step_size: float | None = None, method: str | None = None, restarts: int | None = None,
                     seed: int = 0, early_stop: bool = True, config: str | None = None) -> AttackSettings:
    """Validate and normalize the arguments of `attack` / `run_attack` (aliases: "Linf", "L2", "apgd").

    steps/method/restarts None: 20 / "pgd" / 1, or what the named `config` fixes; a value given
    together with a configuration must equal the configuration's (a step size may not be given).
    """
    n = _NORM_ALIASES.get(str(norm).strip().lower())
    if n is None:
        raise PsaUsageError(f"unknown attack norm {norm!r}", observed=norm, fix='use norm="linf" or norm="l2"')
    cfg = ""
    if config is not None and config != "":
        cfg = resolve_config(config)
        fixed = CONFIGS[cfg]
        given = {"method": None if method is None else _METHOD_ALIASES.get(str(method).strip().lower(), method),
                 "steps": steps, "restarts": restarts}
        for key, value in given.items():
            if value is not None and value != fixed[key]:
                raise PsaUsageError(f"attack configuration {cfg!r} fixes {key}={fixed[key]!r}", observed=value,
                                    fix=f"drop {key}= (or drop config= and give every setting yourself)")
        if step_size is not None:
            raise PsaUsageError(f"attack configuration {cfg!r} fixes the step size (initial step 2ε)",
                                observed=step_size, fix="drop step_size= (or drop config=)")
        method, steps, restarts = fixed["method"], fixed["steps"], fixed["restarts"]
    method = _DEFAULT_METHOD if method is None else method
    steps = _DEFAULT_STEPS if steps is None else steps
    restarts = _DEFAULT_RESTARTS if restarts is None else restarts
    m = _METHOD_ALIASES.get(str(method).strip().lower())
    if m is None:
        raise PsaUsageError(f"unknown attack method {method!r}", observed=method,
                            fix='use method="pgd" or method="apgd-ce"')
    e = DEFAULT_EPS[n] if eps is None else eps
    if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
        raise PsaUsageError("eps must be a finite number >= 0", observed=eps,
                            fix=f"e.g. eps={DEFAULT_EPS[n]:g} for {n} (eps is on the [0, 1] pixel scale)")
    if n == "linf" and e >= 1:
        raise PsaUsageError("an L∞ eps of 1 or more allows any image", observed=e,
                            fix="give eps on the [0, 1] pixel scale, e.g. 8/255 rather than 8")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PsaUsageError("steps must be an int >= 1", observed=steps, fix="e.g. steps=20")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise PsaUsageError("restarts must be an int >= 1", observed=restarts, fix="e.g. restarts=1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PsaUsageError("seed must be an int >= 0", observed=seed, fix="e.g. seed=0")
    if step_size is not None and (isinstance(step_size, bool) or not isinstance(step_size, (int, float))
                                  or not math.isfinite(step_size) or step_size <= 0):
        raise PsaUsageError("step_size must be a finite number > 0 (or None for the default)", observed=step_size,
                            fix="leave step_size=None for the documented default")
    step = default_step_size(n, float(e), steps, m) if step_size is None else float(step_size)
    return AttackSettings(norm=n, eps=float(e), steps=steps, step_size=step, method=m, restarts=restarts,
                          seed=seed, early_stop=bool(early_stop), step_size_given=step_size is not None, config=cfg)


@dataclass(frozen=True)
class AttackSpec:
    """One attack of an audit: its short label (for metric names) and the `run_attack` keywords."""

    label: str  # e.g. "linf,8/255" or "linf,8/255,autoattack-apgd-ce"; metric names read "adv_error(<label>)"
    kwargs: tuple[tuple[str, Any], ...]

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def describe(self) -> str:
        s = self.settings
        method = "APGD-CE" if s.get("method") == "apgd-ce" else "PGD"
        step = s.get("step_size")
        step_text = f", step {eps_text(step, s['norm'])}" if step is not None else ""
        return (f"{method}-{s['steps']} {'L∞' if s['norm'] == 'linf' else 'L2'} ε={eps_text(s['eps'], s['norm'])}"
                f"{step_text}{_config_text(s.get('config'))}")


def _number(text: str, what: str) -> float:
    try:
        return float(Fraction(text.strip())) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise PsaUsageError(f"attack spec: cannot read {what} {text!r}",
                            fix='write eps as a number or a fraction, e.g. "linf:8/255:20" or "l2:0.5:7"') from None


def parse_attack(spec: Any) -> dict[str, Any]:
    """One attack spec (string or dict) -> validated keywords: norm, eps, steps, method, restarts
    (+ step_size when given, config when a named configuration was asked for)."""
    if isinstance(spec, str):
        parts = spec.strip().split(":")
        if not 2 <= len(parts) <= 4:
            raise PsaUsageError(f"attack spec {spec!r} is not norm:eps[:steps[:method]] or norm:eps:<configuration>",
                                fix='e.g. "linf:8/255:20", "l2:0.25:7", "linf:8/255:100:apgd-ce" or '
                                    '"linf:8/255:autoattack-apgd-ce"')
        kw: dict[str, Any] = {"norm": parts[0], "eps": _number(parts[1], "eps")}
        if len(parts) >= 3:
            try:
                kw["steps"] = int(parts[2])
            except ValueError:
                if len(parts) == 3 and not parts[2].strip().isdigit() and parts[2].strip().lower() not in _METHOD_ALIASES:
                    kw["config"] = parts[2]  # a configuration name; resolve_settings checks it
                else:
                    raise PsaUsageError(f"attack spec {spec!r}: steps must be an integer (or the third field a "
                                        f"configuration name: {', '.join(sorted(CONFIGS))})",
                                        fix='e.g. "linf:8/255:20" or "linf:8/255:autoattack-apgd-ce"') from None
        if len(parts) == 4:
            kw["method"] = parts[3]
    elif isinstance(spec, dict):
        unknown = sorted(set(spec) - ATTACK_KEYS)
        if unknown:
            close = difflib.get_close_matches(unknown[0], ATTACK_KEYS, n=1)
            raise PsaUsageError(f"attack spec: unknown key {unknown[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                                fix=f"use keys from {sorted(ATTACK_KEYS)}")
        kw = dict(spec)
    else:
        raise PsaUsageError("an attack spec must be a string or a dict", observed=type(spec).__name__,
                            fix='e.g. attacks=["linf:8/255:20", {"norm": "l2", "eps": 0.5, "steps": 7}]')
    s = resolve_settings(**kw)  # validates norm, eps, steps, method, step size, restarts and configuration
    out = {"norm": s.norm, "eps": s.eps, "steps": s.steps, "method": s.method, "restarts": s.restarts}
    if s.step_size_given:
        out["step_size"] = s.step_size
    if s.config:
        out["config"] = s.config
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
    # a named configuration is part of the label (and so of the metric name): never compared with other settings
    labels = [f"{p['norm']},{eps_text(p['eps'], p['norm'])}" + (f",{p['config']}" if "config" in p else "")
              for p in parsed]
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
