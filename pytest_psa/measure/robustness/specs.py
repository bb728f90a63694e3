"""What a robustness audit measures: corruption sets, severities and attack specs, parsed and checked.

The attack spec grammar (``"norm:eps[:steps[:method]]"`` strings, dicts, `DEFAULT_ATTACKS`) and the
corruption names live in `pytest_psa._specs`, without torch, so that the psa marker is validated by
the same parser; they are re-exported here. This module adds what needs the measurement side: the
corruption registry, and matching a budget key to a measured attack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pytest_psa._specs.attacks import DEFAULT_ATTACKS, AttackSpec, eps_text, parse_attack, resolve_attacks
from pytest_psa._specs.names import CORRUPTION_SETS
from pytest_psa.errors import PsaUsageError


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
