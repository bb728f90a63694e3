"""`AttackSettings`: one attack configuration, validated, with the defaults resolved.

Declared in `pytest_psa._specs.attacks` (torch-free, shared with the attack spec grammar and the
psa marker validation) and re-exported here for the attack modules; the defaults are documented
there and in docs/attacks.md.
"""

from __future__ import annotations

from pytest_psa._specs.attacks import (
    DEFAULT_EPS,
    METHODS,
    NORMS,
    AttackSettings,
    default_step_size,
    resolve_settings,
)

__all__ = ["DEFAULT_EPS", "METHODS", "NORMS", "AttackSettings", "default_step_size", "resolve_settings"]
