"""``module:attr`` paths: the one importer behind augmentation paths and ``psa audit --trainer``."""

from __future__ import annotations

import importlib
from typing import Any

from pytest_psa.errors import PsaUsageError


def import_object(spec: str, *, what: str, fix: str, form: str = "MODULE:ATTR") -> Any:
    """The object `spec` ("package.module:attr.sub") names; `what` ("augmentation", "--trainer") and
    `fix` go into the `PsaUsageError` raised when the form, the module or an attribute is wrong."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise PsaUsageError(f"{what} {spec!r} is not {form}", fix=fix)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PsaUsageError(f"cannot import {module_name!r} for {what} {spec!r}: {exc}", fix=fix) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PsaUsageError(f"{module_name!r} has no attribute {attr!r}", fix=fix)
        obj = getattr(obj, part)
    return obj


__all__ = ["import_object"]
