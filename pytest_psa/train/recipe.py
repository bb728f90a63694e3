"""A user's training recipe named for the model cache: its identity, its version, its error.

A recipe is ``fn(job) -> nn.Module`` (or ``(module, extra_record)``); see
`pytest_psa.train.user_trainer` for what `job` offers and how `train_plan` runs it. This module
holds only what the `TrainingPlan` needs before any training (so the plan can put the recipe in
its key without importing the trainer):

    @pytest_psa.training_recipe(version="2")     # optional; bump it when code the recipe calls changes
    def augmix_jsd(job): ...

`recipe_identity(fn)` is ``{"name": module.qualname, "version": ..., "source_sha256": ...}``: the
source of the function itself is hashed, so editing its body gives a new cache key; code it calls
(helpers, imported losses) is not, which is what `version` is for. A lambda or a function defined
inside another one needs a `version` (its name does not identify it, and its closure is not
hashed), as an anonymous model factory needs a `cache_key`.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pytest_psa.errors import PsaError, PsaUsageError

VERSION_ATTR = "psa_recipe_version"
IDENTITY_ATTR = "psa_recipe_identity"  # an object that names itself (the hook's recipe) carries its identity

F = TypeVar("F", bound=Callable[..., Any])


class TrainingRecipeError(PsaError, RuntimeError):
    """A user's training recipe failed, or returned something that is not a trained model."""


def training_recipe(fn: F | None = None, *, version: str | int | None = None) -> Any:
    """Mark `fn` as a training recipe, optionally with a `version` that joins the model cache key.

    Use as ``@training_recipe`` or ``@training_recipe(version="2")``. The function is returned
    unchanged (still picklable by reference), with ``fn.psa_recipe_version`` set.
    """
    if version is not None and not isinstance(version, (str, int)) or isinstance(version, bool):
        raise PsaUsageError("a recipe version must be a string or an int", observed=repr(version),
                            fix='training_recipe(version="2")')

    def mark(f: F) -> F:
        if not callable(f):
            raise PsaUsageError("training_recipe decorates a function fn(job) -> nn.Module",
                                observed=type(f).__name__)
        setattr(f, VERSION_ATTR, None if version is None else str(version))
        return f

    return mark(fn) if fn is not None else mark


def recipe_identity(fn: Any) -> dict[str, Any]:
    """What names recipe `fn` in the model cache key (JSON-ready); `PsaUsageError` when nothing can."""
    own = getattr(fn, IDENTITY_ATTR, None)
    if isinstance(own, dict):
        return dict(own)
    if not callable(fn):
        raise PsaUsageError("trainer= takes a training recipe: a function fn(job) returning the trained nn.Module",
                            observed=f"{type(fn).__name__}: {fn!r}"[:200],
                            fix="pass a function (see pytest_psa.train.user_trainer), or None for the built-in trainer")
    target = getattr(fn, "__func__", fn)  # a bound method: its function
    if not (inspect.isfunction(target) or inspect.isbuiltin(target)):
        target = type(fn)  # a callable object: its class's source
    version = getattr(fn, VERSION_ATTR, None)
    qual = getattr(target, "__qualname__", type(target).__name__)
    name = f"{getattr(target, '__module__', None) or '?'}.{qual}"
    try:
        source: str | None = inspect.getsource(target)
    except (OSError, TypeError):  # defined in a REPL or by exec: no file to read
        source = None
    anonymous = "<lambda>" in qual or "<locals>" in qual
    if (anonymous or source is None) and version is None:
        why = "its source cannot be read" if source is None else "it is a lambda or a function defined inside another"
        raise PsaUsageError(
            f"cannot cache models trained by the recipe {name}: {why}, so nothing identifies it",
            observed=name,
            fix="give it a version (decorate it with @pytest_psa.training_recipe(version='1') and bump the version "
                "whenever it changes), or define it at module level",
        )
    return {"name": name, "version": version,
            "source_sha256": hashlib.sha256(source.encode()).hexdigest() if source is not None else None}


class HookRecipe:
    """The ``pytest_psa_train`` hook as one recipe: the first implementation that returns a model wins.

    Its identity lists every implementation's (`recipe_identity`), so adding, removing or editing
    one changes the key of every plan it trains. When every implementation returns None, the
    built-in trainer trains the plan (under the same key).
    """

    declines = True  # None from the call means "train it the built-in way", not a broken recipe

    def __init__(self, call: Callable[..., Any], functions: Sequence[Callable[..., Any]]) -> None:
        self._call = call
        impls = sorted((recipe_identity(f) for f in functions), key=lambda i: str(i["name"]))
        names = ", ".join(str(i["name"]) for i in impls)
        setattr(self, IDENTITY_ATTR, {"name": f"pytest_psa_train hook ({names})", "version": None,
                                      "source_sha256": None, "hook": impls})

    def __call__(self, job: Any) -> Any:
        return self._call(plan=job)

    def __repr__(self) -> str:
        names = [i["name"] for i in getattr(self, IDENTITY_ATTR)["hook"]]
        return f"HookRecipe({', '.join(names)})"


__all__ = ["HookRecipe", "TrainingRecipeError", "recipe_identity", "training_recipe"]
