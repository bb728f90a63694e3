"""`AttackSettings`: one attack configuration, validated, with the defaults resolved.

Defaults (docs/attacks.md):
- L∞: ε = 8/255, step ε/4 (= 2/255 at 8/255, the seed paper's PGD-20);
- L2: ε = 0.5, step 2.5·ε/steps (Madry et al.'s rule; 0.179 for PGD-7);
- APGD-CE: the initial step is 2ε (AutoAttack); a given `step_size` replaces that initial step.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.robustness.specs import eps_text

NORMS = ("linf", "l2")
METHODS = ("pgd", "apgd-ce")
DEFAULT_EPS = {"linf": 8 / 255, "l2": 0.5}
_NORM_ALIASES = {"linf": "linf", "l_inf": "linf", "inf": "linf", "l∞": "linf", "l2": "l2", "2": "l2"}
_METHOD_ALIASES = {"pgd": "pgd", "apgd": "apgd-ce", "apgd-ce": "apgd-ce", "apgd_ce": "apgd-ce"}


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        name = "APGD-CE" if self.method == "apgd-ce" else "PGD"
        step = f"initial step {self.step_size:.4g}" if self.method == "apgd-ce" else f"step {self.step_size:.4g}"
        return (f"{name}-{self.steps} {'L∞' if self.norm == 'linf' else 'L2'} ε={eps_text(self.eps, self.norm)} "
                f"{step}, {self.restarts} restart(s), seed {self.seed}")


def default_step_size(norm: str, eps: float, steps: int, method: str) -> float:
    """The step used when none is given (see the module docstring)."""
    if method == "apgd-ce":
        return 2.0 * eps
    return eps / 4.0 if norm == "linf" else 2.5 * eps / steps


def resolve_settings(*, norm: str = "linf", eps: float | None = None, steps: int = 20,
                     step_size: float | None = None, method: str = "pgd", restarts: int = 1, seed: int = 0,
                     early_stop: bool = True) -> AttackSettings:
    """Validate and normalize the arguments of `attack` / `run_attack` (aliases: "Linf", "L2", "apgd")."""
    n = _NORM_ALIASES.get(str(norm).strip().lower())
    if n is None:
        raise PsaUsageError(f"unknown attack norm {norm!r}", observed=norm, fix='use norm="linf" or norm="l2"')
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
                          seed=seed, early_stop=bool(early_stop), step_size_given=step_size is not None)
