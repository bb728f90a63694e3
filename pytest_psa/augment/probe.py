"""An augmentation's identity by behaviour, and the determinism self-check that comes with it.

The model cache must notice any change to an augmentation that changes what it does: a function's
body, a module constant it reads, a parameter a class keeps without showing it in its repr, the
arguments of a `functools.partial`. Names and reprs miss most of these, so the key is taken
from the outputs: the augmentation is applied to a fixed probe set of images of the audited shape
under fixed seeds, and the outputs are hashed (`behaviour`).

The probe set (`probe_images`): two procedural scenes (smooth gradients, a sinusoidal texture, a
disc and a rectangle with hard edges), a checkerboard, hash noise, colour bars, and the edge cases
black, white and mid-grey, all on the uint8 grid (k/255) as real images are; the two scenes are
drawn four times each with other seeds, so changes to rarely drawn operations show too (14 draws).
Outputs are hashed on the 1/255 grid (rounded ``x * 255``): outputs of uint8 pipelines (PIL,
albumentations) sit exactly on it, and float noise of the order of 1e-6 changes the key only where
it moves a value across a rounding boundary (then the model is trained again: never served stale).

The probe runs twice with the same seeds: different outputs mean the augmentation draws from a
generator the adapter does not seed, or keeps state between calls. That stops the audit with an
`AugmentationContractError` naming the likely cause (`seeding.private_generators`) and the fix for
the library in question (`seeding.determinism_fix`).

This module knows nothing of `Augmentation`: it takes the adapter's ``apply(images, seeds)``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pytest_psa._seeding import draw_seeds, finalize64_array, text_key
from pytest_psa.augment.seeding import determinism_fix, module_of, nodes, private_generators
from pytest_psa.errors import AugmentationContractError

PROBE_VERSION = 1  # bump when the probe images, seeds or hashing change
PROBE_NAMES = ("scene", "scene2", "checkerboard", "noise", "bars", "black", "white", "grey")
_REPEATS = {"scene": 3, "scene2": 3}  # extra draws of the natural-looking images
_SEED_KEY = text_key("pytest-psa augmentation probe")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# libraries whose objects are described by their repr and version, not their class source
_LIBRARIES = ("torchvision", "torch", "albumentations", "kornia", "timm", "PIL", "numpy", "functools", "builtins")
_SIMPLE = (bool, int, float, str, bytes, type(None))

ApplyFn = Callable[[torch.Tensor, list[int]], torch.Tensor]


@dataclass(frozen=True)
class Behaviour:
    """What the probe saw: the hash of the outputs, and per draw whether it failed (and why)."""

    digest: str  # SHA-256 over the quantized outputs (or failure signatures) of every probe draw
    draws: int
    failures: tuple[str, ...]  # "<probe image>: <property>" for draws that raised a contract error


def probe_images(shape: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The probe set for (C, H, W): float32 (N, C, H, W) on the uint8 grid, and each image's name."""
    images, names = _probe_images(tuple(int(v) for v in shape))
    return torch.from_numpy(images.copy()), names  # a copy: an augmentation may write to its input


@functools.lru_cache(maxsize=16)
def _probe_images(shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    c, h, w = shape
    if c < 1 or h < 1 or w < 1:
        raise ValueError(f"probe shape must be positive (C, H, W), got {shape}")
    yy, xx = np.meshgrid(np.linspace(0.0, 1.0, h), np.linspace(0.0, 1.0, w), indexing="ij")
    channels = np.arange(c)[:, None, None] / max(c, 1)

    def scene(freq: float, tilt: float, cx: float, cy: float) -> np.ndarray:
        gradient = 0.15 + 0.5 * ((1 - tilt) * xx + tilt * yy)[None] * (1 - channels) + 0.3 * channels * yy[None]
        texture = 0.12 * np.sin(2 * np.pi * freq * (xx + 0.7 * yy))[None] * np.cos(np.pi * (channels + 1) * yy)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < 0.05)[None] * (0.35 - 0.2 * channels)
        rect = ((np.abs(xx - (1 - cx)) < 0.15) & (np.abs(yy - (1 - cy)) < 0.1))[None] * (-0.3 + 0.1 * channels)
        return np.asarray(gradient + texture + disc + rect)

    block = max(1, min(h, w) // 8)
    checker = (((np.arange(h)[:, None] // block) + (np.arange(w)[None, :] // block)) % 2).astype(np.float64)
    counter = np.arange(c * h * w, dtype=np.uint64).reshape(c, h, w) + np.uint64(_SEED_KEY & ((1 << 63) - 1))
    noise = (finalize64_array(counter) >> np.uint64(56)).astype(np.float64) / 255.0
    bars = ((np.floor(xx * 6).astype(int)[None] + np.arange(c)[:, None, None]) % 3 == 0).astype(np.float64)
    images = {
        "scene": scene(3.0, 0.3, 0.35, 0.4),
        "scene2": scene(5.5, 0.8, 0.65, 0.6),
        "checkerboard": np.broadcast_to(0.1 + 0.8 * checker, (c, h, w)),
        "noise": noise,
        "bars": bars,
        "black": np.zeros((c, h, w)),
        "white": np.ones((c, h, w)),
        "grey": np.full((c, h, w), 128 / 255),
    }
    names = tuple(n for n in PROBE_NAMES for _ in range(1 + _REPEATS.get(n, 0)))
    stack = np.stack([np.broadcast_to(images[n], (c, h, w)) for n in names])
    grid = np.clip(np.round(stack * 255.0), 0, 255) / 255.0  # real images are uint8
    return grid.astype(np.float32), names


def probe_seeds(n: int) -> list[int]:
    """The fixed draw seeds of the probe (one per probe image), from the audit's own seed table."""
    return [int(s) for s in draw_seeds(_SEED_KEY & 0xFFFFFFFF, np.arange(n), 1)[:, 0]]


def behaviour(apply: ApplyFn, shape: tuple[int, int, int], *, per_image: bool = True) -> Behaviour:
    """Apply the augmentation to the probe set once and hash what came out.

    `apply` is the adapter's ``apply(images, seeds)``. Per-image kinds are probed in one call; if
    it fails, image by image, so that one failing draw (a constant image dividing by zero, say)
    enters the key as its failure instead of stopping the probe. A batched module gets the whole
    probe in one call, as in an audit.
    """
    images, names = probe_images(shape)
    seeds = probe_seeds(len(images))
    h = hashlib.sha256(f"probe{PROBE_VERSION}|{tuple(images.shape)}".encode())
    failures: list[str] = []
    try:
        outs: list[torch.Tensor | str] = list(apply(images, seeds))
    except AugmentationContractError as whole:
        if not per_image:
            outs = [f"error:{whole.property}"] * len(images)
        else:
            outs = []
            for i in range(len(images)):
                try:
                    outs.append(apply(images[i:i + 1], seeds[i:i + 1])[0])
                except AugmentationContractError as err:
                    outs.append(f"error:{err.property}")
    for name, out in zip(names, outs):
        if isinstance(out, str):
            failures.append(f"{name}: {out[6:]}")
            h.update(out.encode())
        else:
            h.update(quantize(out).tobytes())
    return Behaviour(h.hexdigest(), len(images), tuple(failures))


def quantize(out: torch.Tensor) -> np.ndarray:
    """An output on the 1/255 grid as int16 (values outside [0, 1], kept by the contract, stay distinct)."""
    q = torch.round(out.detach().to(torch.float64) * 255.0).clamp_(-32768, 32767)
    return np.ascontiguousarray(q.to(torch.int16).numpy())


def check_deterministic(first: Behaviour, second: Behaviour, fn: Any, name: str) -> None:
    """Raise `AugmentationContractError` unless two probe runs with the same seeds agree."""
    __tracebackhide__ = True
    if first.digest == second.digest:
        return
    held = private_generators(fn)
    cause = ("it holds a generator the adapter cannot seed: " + "; ".join(held[:3]) if held else
             "it draws from a generator the adapter does not seed (a private one, or one inside a library), "
             "or keeps state between calls")
    raise AugmentationContractError(
        "the same images and seeds gave different outputs on two calls: the augmentation is not reproducible, "
        f"so its audits and trainings would not be either; {cause}",
        property="determinism", observed=f"probe of {first.draws} seeded draws, applied twice: outputs differ",
        fix=determinism_fix(fn), augmentation=name,
    )


def static_description(fn: Any, *, depth: int = 0) -> str:
    """What is cheaply known about `fn` without running it: type, repr (addresses removed), the
    arguments of a partial, a function's source (or bytecode and constants), a user class's
    source and simple attributes, and the version of the library it comes from."""
    if fn is None:
        return "none"
    if depth > 4:
        return type(fn).__qualname__
    module = module_of(fn)
    parts = [f"{module}.{getattr(fn, '__qualname__', type(fn).__qualname__)}", _clean_repr(fn)]
    if isinstance(fn, functools.partial):
        parts.append(static_description(fn.func, depth=depth + 1))
        parts.extend(_value_text(a) for a in fn.args)
        parts.extend(f"{k}={_value_text(v)}" for k, v in sorted(fn.keywords.items()))
        return "|".join(parts)
    if isinstance(fn, types.MethodType):
        parts.append(static_description(fn.__func__, depth=depth + 1))
        parts.append(static_description(fn.__self__, depth=depth + 1))
    elif isinstance(fn, types.FunctionType):
        parts.append(_function_text(fn))
    elif not _is_library(module):
        parts.append(_source_sha(type(fn)))
        parts.extend(f"{k}={_value_text(v)}" for k, v in sorted(_simple_attributes(fn).items()))
    lambd = getattr(fn, "lambd", None)  # torchvision's Lambda holds user code its repr does not show
    if callable(lambd):
        parts.append(static_description(lambd, depth=depth + 1))
    for node in list(nodes(fn))[1:]:  # members a library pipeline holds: user code among them
        if not _is_library(module_of(node)) or callable(getattr(node, "lambd", None)):
            parts.append(static_description(node, depth=depth + 1))
    parts.append(_library_version(module))
    return "|".join(parts)


def _clean_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception as exc:  # a broken __repr__ must not stop the key
        text = f"<repr failed: {type(exc).__name__}>"
    return _ADDRESS.sub("", text)


def _value_text(value: Any) -> str:
    if isinstance(value, _SIMPLE):
        return repr(value)
    if isinstance(value, (tuple, list)) and len(value) <= 64:
        return "[" + ",".join(_value_text(v) for v in value) + "]"
    if isinstance(value, np.ndarray) and value.size <= 4096:
        return f"ndarray{value.shape}{value.dtype}:{hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}"
    if isinstance(value, torch.Tensor) and value.numel() <= 4096:
        data = value.detach().cpu().contiguous().numpy().tobytes()
        return f"tensor{tuple(value.shape)}{value.dtype}:{hashlib.sha256(data).hexdigest()}"
    if callable(value):
        return f"{module_of(value)}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    return _clean_repr(value)


def _simple_attributes(obj: Any) -> dict[str, Any]:
    try:
        attrs = vars(obj)
    except TypeError:
        return {}
    return {k: v for k, v in attrs.items() if not k.startswith("__") and isinstance(v, (*_SIMPLE, tuple, list))}


def _function_text(fn: types.FunctionType) -> str:
    try:
        return "src:" + hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
    except (OSError, TypeError):  # defined in a REPL or generated: the bytecode and constants instead
        code = fn.__code__
        return "code:" + hashlib.sha256(code.co_code + _ADDRESS.sub("", repr(code.co_consts)).encode()).hexdigest()


def _source_sha(cls: type) -> str:
    try:
        return "src:" + hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()
    except (OSError, TypeError):
        return "src:?"


def _is_library(module: str) -> bool:
    return module.split(".", 1)[0] in _LIBRARIES


def _library_version(module: str) -> str:
    root = module.split(".", 1)[0]
    lib = sys.modules.get(root)
    version = str(getattr(lib, "__version__", "?")).split("+", 1)[0]  # a CPU and a CUDA build behave alike here
    return f"{root}=={version}" if root in _LIBRARIES else ""


__all__ = ["Behaviour", "PROBE_NAMES", "PROBE_VERSION", "behaviour", "check_deterministic", "probe_images",
           "probe_seeds", "quantize", "static_description"]
