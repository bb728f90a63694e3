"""Which generators an augmentation draws from, and how each draw is seeded through them.

The adapters seed every per-image draw from one integer. Where that integer goes depends on the
augmentation (`DrawSeeder.for_augmentation`):

- torch's default CPU generator, always (torchvision and kornia draw from it);
- numpy's and Python's global generators, unless every member of the pipeline is a torchvision
  transform (`torchvision_only`): timm's PIL operations, albumentations 1.x and hand-written
  functions draw from those;
- albumentations 2.x transforms keep their own generators (``random_generator``, ``py_random``):
  they are seeded with the transform's own ``set_random_seed(seed)`` per draw, the call
  ``A.Compose(..., seed=...)`` makes once, and restored afterwards.

An augmentation holding some other generator (``np.random.default_rng()``, ``random.Random()``,
``torch.Generator``) cannot be seeded from outside; `private_generators` names such attributes
for the determinism error, and `determinism_fix` gives the fix for the library in question.
"""

from __future__ import annotations

import contextlib
import functools
import random
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

_MAX_NODES = 256  # a pipeline deeper than this is walked no further (cycles, huge graphs)
_GENERATOR_TYPES: tuple[type, ...] = (np.random.Generator, np.random.RandomState, random.Random, torch.Generator)
# torchvision classes that call user code or draw from Python's `random` (v1 RandomOrder/RandomChoice)
_NOT_TORCH_ONLY = {"torchvision.transforms.transforms.RandomOrder", "torchvision.transforms.transforms.RandomChoice",
                   "torchvision.transforms._transforms_video.RandomHorizontalFlipVideo"}
# attributes through which albumentations 2.x transforms are seeded by `set_random_seed`
_ALBUMENTATIONS_STATE = ("seed", "random_generator", "py_random")


def module_of(obj: Any) -> str:
    """The module that defines `obj`'s behaviour: a function's own module, else its type's."""
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return str(getattr(obj, "__module__", None) or "")
    return str(type(obj).__module__ or "")


def members(obj: Any) -> list[Any]:
    """The transforms a pipeline object holds (Compose, RandomApply, RandomChoice, OneOf, Sequential ...)."""
    found: list[Any] = []
    held = getattr(obj, "transforms", None)
    if isinstance(held, (list, tuple)):
        found.extend(held)
    if isinstance(obj, functools.partial):
        found.append(obj.func)
    if isinstance(obj, torch.nn.Module):
        found.extend(obj.children())
    return found


def nodes(obj: Any) -> Iterator[Any]:
    """`obj` and everything `members` reaches from it, each once, depth first."""
    seen: set[int] = set()
    stack = [obj]
    while stack and len(seen) < _MAX_NODES:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        stack.extend(reversed(members(node)))


def torchvision_only(obj: Any) -> bool:
    """Whether every node of the pipeline is a torchvision transform that calls no user code.

    Only then does a draw use torch's generator alone (no numpy/`random` seeding needed) and
    leave its input untouched (no defensive copy). A `Lambda` or a subclass defined elsewhere is
    user code; timm's training transform is a torchvision v1 `Compose` of timm operations; v1's
    `RandomOrder` and `RandomChoice` draw from Python's `random`.
    """
    for node in nodes(obj):
        module = module_of(node)
        if (not module.startswith("torchvision.transforms") or type(node).__name__ == "Lambda"
                or f"{module}.{type(node).__qualname__}" in _NOT_TORCH_ONLY):
            return False
    return True


def library_of(obj: Any) -> str:
    """The augmentation library the pipeline comes from: albumentations, kornia, timm, torchvision, PIL or ''."""
    roots = {module_of(node).split(".", 1)[0] for node in nodes(obj)}
    for name in ("albumentations", "kornia", "timm", "torchvision", "PIL"):
        if name in roots:
            return name
    return ""


def contains_kornia(obj: Any) -> bool:
    """Whether any node of the pipeline is a kornia module (a batched augmentation)."""
    return any(module_of(node).startswith("kornia") for node in nodes(obj))


def _albumentations_roots(obj: Any) -> list[Any]:
    """The outermost albumentations 2.x objects of the pipeline (their `set_random_seed` propagates)."""
    roots: list[Any] = []
    stack = [obj]
    seen: set[int] = set()
    while stack and len(seen) < _MAX_NODES:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if module_of(node).startswith("albumentations") and callable(getattr(node, "set_random_seed", None)):
            roots.append(node)  # seeds its members itself
            continue
        stack.extend(members(node))
    return roots


class DrawSeeder:
    """Seeds one draw of one augmentation: torch always, numpy/`random` unless torchvision-only,
    albumentations 2.x through its own API. `preserved()` restores everything it touches."""

    def __init__(self, fn: Any, *, batched: bool = False) -> None:
        self.torchvision_only = fn is None or torchvision_only(fn)
        # a batched (kornia-style) module draws from torch's generator only
        self.globals = not (self.torchvision_only or batched)
        self.albumentations = [] if fn is None else _albumentations_roots(fn)
        self._torch = torch.default_generator

    def seed(self, seed: int) -> None:
        """Seed every generator this augmentation draws from with `seed` (a 63-bit integer)."""
        self._torch.manual_seed(seed)  # ~1 us; torch.manual_seed also seeds CUDA (~100 us)
        if self.globals:
            np.random.seed(seed & 0xFFFFFFFF)
            random.seed(seed)
        for transform in self.albumentations:
            transform.set_random_seed(seed)

    @contextlib.contextmanager
    def preserved(self) -> Iterator[None]:
        """Leave the global generators, and the library generators seeded here, as they were."""
        torch_state = torch.get_rng_state()
        np_state = np.random.get_state() if self.globals else None
        py_state = random.getstate() if self.globals else None
        library = [(node, {a: getattr(node, a) for a in _ALBUMENTATIONS_STATE if hasattr(node, a)})
                   for root in self.albumentations for node in nodes(root)]
        try:
            yield
        finally:
            torch.set_rng_state(torch_state)
            if np_state is not None:
                np.random.set_state(np_state)
            if py_state is not None:
                random.setstate(py_state)
            for node, state in library:
                for attr, value in state.items():
                    setattr(node, attr, value)

    def __getstate__(self) -> dict[str, Any]:  # the torch generator is looked up again, not pickled
        return {k: v for k, v in self.__dict__.items() if k != "_torch"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._torch = torch.default_generator


def private_generators(obj: Any) -> list[str]:
    """Generators held by the pipeline that per-draw seeding cannot reach, as 'where: type' lines."""
    found: list[str] = []
    seeded = {id(node) for root in _albumentations_roots(obj) for node in nodes(root)}
    for node in nodes(obj):
        owner = getattr(node, "__qualname__", type(node).__qualname__)
        places: dict[str, Any] = {}
        if id(node) not in seeded:
            places.update({f"{owner}.{k}": v for k, v in _attributes(node).items()})
        if isinstance(node, functools.partial):
            places.update({f"{owner} argument {i}": v for i, v in enumerate(node.args)})
            places.update({f"{owner} argument {k}": v for k, v in node.keywords.items()})
        code = getattr(node, "__code__", None)
        cells = getattr(node, "__closure__", None) or ()
        if code is not None:
            places.update({f"{owner} closure {n}": c.cell_contents for n, c in zip(code.co_freevars, cells)
                           if _cell_filled(c)})
            globals_ = getattr(node, "__globals__", {})
            places.update({f"{owner} global {n}": globals_[n] for n in code.co_names if n in globals_})
        for where, value in places.items():
            if isinstance(value, _GENERATOR_TYPES) and value is not np.random.mtrand._rand:
                found.append(f"{where}: {type(value).__module__}.{type(value).__qualname__}")
    return found


def _attributes(node: Any) -> dict[str, Any]:
    try:
        return dict(vars(node))
    except TypeError:  # no __dict__ (slots, builtins)
        return {}


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def determinism_fix(obj: Any) -> str:
    """How to make the augmentation draw only from seeded generators, for the library it comes from."""
    library = library_of(obj)
    generic = ("draw from torch's, numpy's or Python's global generators (the adapter seeds them per draw "
               "and restores them), or build the generator from a seed the augmentation is given; a cache or "
               "counter kept between calls makes draws depend on call order as well")
    if library == "albumentations":
        return ("albumentations 2.x transforms draw from their own generators, which the adapter seeds per draw with "
                "set_random_seed(seed) (what A.Compose(..., seed=...) does once); a member that keeps another "
                "generator (an A.Lambda with its own rng, a custom transform) must draw from self.random_generator "
                "or self.py_random instead; otherwise " + generic)
    if library == "kornia":
        return ("kornia draws from torch's global generator, which the adapter seeds; pass the module itself "
                "(batched_augmentation(module)) rather than a wrapper holding a torch.Generator; otherwise " + generic)
    if library in ("timm", "PIL"):
        return ("timm's and other PIL operations draw from Python's `random` and numpy's global generator, which "
                "the adapter seeds for any pipeline that is not torchvision-only; otherwise " + generic)
    return generic


__all__ = ["DrawSeeder", "contains_kornia", "determinism_fix", "library_of", "members", "module_of", "nodes",
           "private_generators", "torchvision_only"]
