"""Adapters: any common augmentation as a function of canonical images, one seeded draw per image.

Kinds (`Augmentation.kind`):
- ``"tensor"``: a callable on one float (C, H, W) tensor (torchvision v2 transforms, plain functions);
  with ``dtype="uint8"`` it receives and may return uint8 tensors.
- ``"pil"``: a callable on one PIL image (torchvision v1 transforms); it may return PIL or a tensor.
- ``"numpy"``: a callable on one HWC numpy image; ``albumentations=True`` calls ``aug(image=x)["image"]``.
- ``"batched"``: a module on an (N, C, H, W) batch that draws independent parameters per sample
  (kornia style). torchvision v2 transforms are NOT batched in this sense: called on a batch they
  draw one parameter set for all of it, so they are applied image by image.

Every per-image draw is seeded from an explicit integer (torch's generator; numpy's and Python's global
generators unless the pipeline is torchvision-only; albumentations 2.x through ``set_random_seed``:
`pytest_psa.augment.seeding`), and those states are restored afterwards: the audit neither relies on
nor disturbs them.

Identity (`Augmentation.identity(shape=...)`): what the augmentation does, from its outputs on a
fixed probe set of the audited shape (`pytest_psa.augment.probe`), combined with what is cheaply
known (adapter, type, repr, source) and an optional user ``cache_key``. The same probe, run twice,
is the determinism self-check (`Augmentation.check_determinism`).

Kind detection falls back once: a plain callable guessed as ``"tensor"`` whose first call fails
inside PIL is audited with the PIL adapter instead, with a `PsaWarning` saying so.

Outputs that leave [0, 1] as a tail (unclamped noise; the rule is in `pytest_psa.augment.contract`)
are kept as they are; the adapter records the range it saw (`Augmentation.observed_range`) and
warns once (a `PsaWarning` naming the augmentation and the range).
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from pytest_psa._threads import single_thread
from pytest_psa.augment.contract import BatchRange, check_batch_range, check_single
from pytest_psa.augment.probe import behaviour, check_deterministic, static_description
from pytest_psa.augment.seeding import DrawSeeder, contains_kornia, module_of
from pytest_psa.data.image_data import describe_value
from pytest_psa.errors import AugmentationContractError, PsaUsageError, PsaWarning

Kind = Literal["tensor", "pil", "numpy", "batched", "identity"]
_SEED_MASK = (1 << 63) - 1


class Augmentation:
    """An augmentation A in canonical form: float images in [0, 1] in, float images out.

    Build one with `as_augmentation` (auto-detects the kind) or the explicit constructors
    `tensor_augmentation`, `pil_augmentation`, `numpy_augmentation`, `batched_augmentation`.
    """

    def __init__(
        self, fn: Callable[..., Any] | None, *, kind: Kind, name: str | None = None,
        dtype: Literal["float", "uint8"] = "float", albumentations: bool = False,
        cache_key: str | None = None, guessed: bool = False,
    ) -> None:
        if kind != "identity" and not callable(fn):
            raise AugmentationContractError(
                "the augmentation is not callable", property="callable", observed=type(fn).__name__,
                fix="pass a transform object or a function that maps an image to an augmented image",
            )
        if dtype not in ("float", "uint8"):
            raise PsaUsageError(f"dtype must be 'float' or 'uint8', not {dtype!r}")
        if cache_key is not None and not isinstance(cache_key, str):
            raise PsaUsageError(f"cache_key must be a string, not {type(cache_key).__name__}",
                                fix="name the augmentation's version, e.g. cache_key='myaug-v3'")
        self.fn = fn
        self.kind: Kind = kind
        self.dtype = dtype
        self.albumentations = albumentations
        self.name = name or ("none" if fn is None else _readable_name(fn))
        self.cache_key = cache_key  # the user's version label, for changes the probe cannot see
        self._seeder = DrawSeeder(fn, batched=kind == "batched")
        # torchvision-only pipelines draw only from torch's generator and never write to their input:
        # skip seeding numpy/random and the defensive copy for them (~15 us of ~50 us per draw)
        self._trusted = self._seeder.torchvision_only
        self._guessed = guessed and kind == "tensor"  # may still fall back to the PIL adapter
        self._kornia = fn is not None and kind != "batched" and contains_kornia(fn)
        self._batch_checked = False
        self._probed: dict[tuple[tuple[int, int, int], str], str] = {}  # (shape, static) -> probe digest
        self.reset_observed()

    def reset_observed(self) -> None:
        """Forget the observed range and excursions (an audit calls this first), and warn again."""
        self.observed_range: tuple[float, float] | None = None  # smallest, largest output value seen
        self.excursion_images = 0  # outputs kept outside [0, 1] (unclamped noise), of ...
        self.checked_images = 0  # ... this many outputs checked
        self._warned = False

    def __repr__(self) -> str:
        return f"Augmentation({self.name}, kind={self.kind!r})"

    def identity(self, shape: Sequence[int] | None = None) -> str:
        """A stable fingerprint of what this augmentation does (64-hex SHA-256).

        With `shape` (C, H, W), the images it will see: the hash of its outputs on the probe set of
        that shape (`pytest_psa.augment.probe`; checked for determinism, cached per shape), combined
        with the adapter, the type, repr and source, and `cache_key`. Any change that alters its
        outputs on the probe changes it. Without a shape the probe cannot run: only what is
        cheaply known, which misses changes to a function's globals or hidden parameters.
        """
        probe = "no probe" if shape is None or self.kind == "identity" else self.behaviour_key(shape)
        static = static_description(self.fn)  # after the probe: a PIL fallback changes the kind
        text = f"{self.kind}|{self.dtype}|{self.albumentations}|{static}|key={self.cache_key!r}|{probe}"
        return hashlib.sha256(text.encode()).hexdigest()

    def behaviour_key(self, shape: Sequence[int]) -> str:
        """The probe digest for images of `shape` (C, H, W); raises `AugmentationContractError` when
        two probe runs with the same seeds differ (see `check_determinism`)."""
        __tracebackhide__ = True
        chw = _shape3(shape)
        if self.kind == "identity":
            return "identity"
        key = (chw, static_description(self.fn))  # a changed configuration is probed again
        if key not in self._probed:
            self._probed[key] = self._probe(chw)
        return self._probed[key]

    def check_determinism(self, shape: Sequence[int]) -> None:
        """Raise `AugmentationContractError` naming the cause and fix unless the same images and seeds
        give the same outputs twice (the probe of `identity`; a cached probe is not run again)."""
        __tracebackhide__ = True
        self.behaviour_key(shape)

    def _probe(self, shape: tuple[int, int, int]) -> str:
        __tracebackhide__ = True
        saved = (self.observed_range, self.excursion_images, self.checked_images, self._warned)
        self._warned = True  # the probe's outputs are not the audit's: no range warning, no counts
        try:
            with single_thread():
                per_image = self.kind != "batched"
                first = behaviour(self.apply, shape, per_image=per_image)
                second = behaviour(self.apply, shape, per_image=per_image)
        finally:
            self.observed_range, self.excursion_images, self.checked_images, self._warned = saved
        check_deterministic(first, second, self.fn, self.name)
        return first.digest

    # -- application -------------------------------------------------------------------------
    def apply(self, images: torch.Tensor, seeds: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """One independent draw A(x_i) per image, draw i seeded by ``seeds[i]``; checked, float32.

        For per-image kinds the result for an image depends only on (image, seed), never on the
        batch it came in. A batched module gets one seed per call (``seeds[0]``).
        """
        __tracebackhide__ = True
        if images.ndim != 4:
            raise PsaUsageError(f"apply() takes an (N, C, H, W) batch, got shape {tuple(images.shape)}")
        seeds = [int(s) & _SEED_MASK for s in (seeds.tolist() if hasattr(seeds, "tolist") else seeds)]
        if len(seeds) != len(images):
            raise PsaUsageError(f"apply() needs one seed per image: {len(images)} images, {len(seeds)} seeds")
        if self.kind == "identity":
            return images.to(torch.float32, copy=True)
        if self.kind == "batched":
            with self._seeder.preserved():
                return self._apply_batched(images, seeds)
        # the batch check too: thread hand-offs on small tensors cost more than they save
        with self._seeder.preserved(), single_thread():
            return self._checked(self._draw_each(images, seeds))

    def _draw_each(self, images: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """One seeded draw per image, stacked (unchecked range: `_checked` checks the whole batch)."""
        __tracebackhide__ = True
        if not len(images):
            return torch.empty(images.shape, dtype=torch.float32)
        seed, one = self._seeder.seed, self._one
        outs: list[torch.Tensor] = []
        append = outs.append
        try:
            # unbind + one stack: indexed reads and writes (out[i] = y) cost ~12 us of a ~60 us draw
            if self.kind == "tensor" and self.dtype == "float" and self._trusted:
                self._draw_trusted(images, seeds, append)
            else:
                for x, s in zip(images.unbind(0), seeds):
                    seed(s)
                    append(one(x))
        except AugmentationContractError as err:
            if self._fall_back_to_pil(err):
                return self._draw_each(images, seeds)  # start over: every draw through the PIL adapter
            raise
        self._guessed = False  # a whole batch went through: the kind is settled
        return torch.stack(outs).to(torch.float32)

    def _draw_trusted(self, images: torch.Tensor, seeds: list[int], append: Callable[[torch.Tensor], None]) -> None:
        """`_one` for a torchvision-only pipeline on float tensors, the audit's common case, inlined:
        torch's generator alone is seeded, a well-formed output is taken as it is, and anything else
        goes through the full check (`check_single`)."""
        __tracebackhide__ = True
        fn, manual_seed = self.fn, torch.default_generator.manual_seed
        tensor, float32, shape = torch.Tensor, torch.float32, images.shape[1:]
        assert fn is not None
        x = images[0]
        try:
            for x, s in zip(images.unbind(0), seeds):
                manual_seed(s)
                y = fn(x)
                if y.__class__ is not tensor or y.dtype is not float32 or y.shape != shape:
                    y = check_single(y, x, self.name)
                append(y)
        except AugmentationContractError:
            raise
        except Exception as exc:
            raise self._user_error(exc, x) from exc

    def _fall_back_to_pil(self, err: AugmentationContractError) -> bool:
        """Switch a guessed tensor kind to the PIL adapter when its call failed inside PIL; warn once."""
        if not (self._guessed and self.kind == "tensor" and _failed_inside_pil(err.__cause__)):
            return False
        self.kind, self._guessed = "pil", False
        cause = err.__cause__
        warnings.warn(PsaWarning(
            f"augmentation {self.name}: given a float tensor it failed inside PIL ({type(cause).__name__}: "
            f"{cause}); auditing it with the PIL adapter instead (pass pytest_psa.pil_augmentation(aug) "
            "to say so and silence this warning)"), stacklevel=4)
        return True

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Apply to one float (C, H, W) image using the current global RNG (e.g. inside a DataLoader)."""
        __tracebackhide__ = True
        if self.kind == "identity":
            return image
        if self.kind == "batched":
            return self._checked(self._call_user(image[None]))[0]
        try:
            return self._checked(self._one(image)[None])[0]
        except AugmentationContractError as err:
            if self._fall_back_to_pil(err):
                return self._checked(self._one(image)[None])[0]
            raise

    def _checked(self, out: torch.Tensor) -> torch.Tensor:
        """`check_batch`, recording the range and warning once about kept excursions."""
        __tracebackhide__ = True
        out = out.to(torch.float32)
        low, high = (float(v) for v in torch.aminmax(out)) if out.numel() else (0.0, 0.0)
        if 0.0 <= low and high <= 1.0:  # NaN fails both: every value finite and in [0, 1], nothing to clamp
            # the common case in one pass (~1 us per 32 px image, the full check's isfinite ~10 us)
            seen = BatchRange(low, high, 0, len(out))
        else:
            out, seen = check_batch_range(out, self.name)
        low, high = self.observed_range or (seen.low, seen.high)
        self.observed_range = (min(low, seen.low), max(high, seen.high))
        self.checked_images += seen.images
        self.excursion_images += seen.excursions
        if seen.excursions and not self._warned:
            self._warned = True
            warnings.warn(PsaWarning(
                f"augmentation {self.name}: {seen.excursions} of {seen.images} outputs leave [0, 1] "
                f"(values in [{seen.low:.3g}, {seen.high:.3g}]); kept unclamped, as the model would see them: "
                "distances and training use these values (clamp in the augmentation to audit clamped images)"),
                stacklevel=2)
        return out

    # -- per kind ----------------------------------------------------------------------------
    def _one(self, x: torch.Tensor) -> torch.Tensor:
        __tracebackhide__ = True
        if self.kind == "tensor":
            if self.dtype == "uint8":
                out = self._call_user(_to_uint8(x))
                if isinstance(out, torch.Tensor) and out.dtype == torch.uint8:
                    out = out.float().div_(255.0)
                return check_single(out, x, self.name, float_input=False)
            out = self._call_user(x if self._trusted else x.clone())
            if self._kornia and isinstance(out, torch.Tensor) and out.ndim == x.ndim + 1:
                raise AugmentationContractError(
                    "a kornia module returns an (N, C, H, W) batch, also for one image",
                    property="shape", observed=tuple(out.shape),
                    fix="use batched_augmentation(module): kornia draws parameters per sample of a batch",
                    augmentation=self.name)
            return check_single(out, x, self.name)
        if self.kind == "pil":
            from PIL import Image

            arr = _to_uint8(x).permute(1, 2, 0).numpy()
            pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
            out = self._call_user(pil)
            if isinstance(out, Image.Image):
                out = _pil_to_tensor(out)
            return check_single(out, x, self.name)
        # numpy
        hwc = (_to_uint8(x) if self.dtype == "uint8" else x).permute(1, 2, 0).numpy().copy()
        out = self._call_user(image=hwc) if self.albumentations else self._call_user(hwc)
        if self.albumentations:
            if not isinstance(out, dict) or "image" not in out:
                raise AugmentationContractError(
                    "an albumentations-style augmentation must return a dict with an 'image' key",
                    property="type", observed=type(out).__name__,
                    fix="use numpy_augmentation(fn) without albumentations=True for a plain function",
                    augmentation=self.name,
                )
            out = out["image"]
        return check_single(_numpy_to_tensor(out, x, self.name), x, self.name)

    def _apply_batched(self, images: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        x = images.to(torch.float32)
        if not self._batch_checked:
            self._check_independent_draws(x[0], seeds[0])
        self._seeder.seed(seeds[0])
        out = self._call_user(x.clone())
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            check_single(out, x, self.name)  # raises with the right property
        return self._checked(out)

    def _check_independent_draws(self, x: torch.Tensor, seed: int) -> None:
        """A batched module must draw parameters per sample: 4 copies of one image must differ."""
        copies = x.expand(4, *x.shape).clone()
        torch.default_generator.manual_seed(seed)
        first = self._call_user(copies.clone())
        if isinstance(first, torch.Tensor) and first.shape == copies.shape:
            same = all(torch.equal(first[0], first[i]) for i in range(1, 4))
            if same and not torch.equal(first[0], x):
                torch.default_generator.manual_seed(seed ^ 0x5DEECE66D)
                again = self._call_user(copies.clone())
                if isinstance(again, torch.Tensor) and not torch.equal(again[0], first[0]):
                    raise AugmentationContractError(
                        "the batched module draws ONE parameter set for the whole batch "
                        "(4 copies of one image came out identical, a second call differed)",
                        property="independent draws", observed="identical outputs within a batch",
                        fix="apply it image by image: wrap it with tensor_augmentation(...) instead of "
                            "batched_augmentation(...) (torchvision v2 transforms behave like this)",
                        augmentation=self.name,
                    )
        self._batch_checked = True

    def _call_user(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        try:
            return self.fn(*args, **kwargs)  # type: ignore[misc]
        except AugmentationContractError:
            raise
        except Exception as exc:  # the user's code failed: say so without an internal traceback
            raise self._user_error(exc, kwargs.get("image", args[0] if args else None)) from exc

    def _user_error(self, exc: Exception, arg: Any) -> AugmentationContractError:
        return AugmentationContractError(
            f"calling the augmentation raised {type(exc).__name__}: {exc}",
            property="exception", observed=f"input {describe_value(arg)}",
            fix=_fix_for_exception(self.kind, arg, kornia=self._kornia),
            augmentation=self.name,
        )


# -- constructors -----------------------------------------------------------------------------
# ``cache_key``: a version label for a change the probe cannot see (one that alters the outputs only
# at sizes or on images the probe does not use); it is combined with the probe's hash, not used instead.
def tensor_augmentation(fn: Callable[[torch.Tensor], torch.Tensor], *, dtype: Literal["float", "uint8"] = "float",
                        name: str | None = None, cache_key: str | None = None) -> Augmentation:
    """A callable on one (C, H, W) tensor: float in [0, 1] by default, or uint8 with ``dtype="uint8"``."""
    return Augmentation(fn, kind="tensor", dtype=dtype, name=name, cache_key=cache_key)


def pil_augmentation(fn: Callable[[Any], Any], *, name: str | None = None, cache_key: str | None = None) -> Augmentation:
    """A callable on one PIL image (torchvision v1, timm's RandAugment/AugMix); it may return PIL or a float tensor."""
    return Augmentation(fn, kind="pil", name=name, cache_key=cache_key)


def numpy_augmentation(fn: Callable[..., Any], *, dtype: Literal["float", "uint8"] = "uint8",
                       albumentations: bool = False, name: str | None = None,
                       cache_key: str | None = None) -> Augmentation:
    """A callable on one HWC numpy image (uint8 by default); ``albumentations=True`` calls ``fn(image=x)["image"]``."""
    return Augmentation(fn, kind="numpy", dtype=dtype, albumentations=albumentations, name=name, cache_key=cache_key)


def batched_augmentation(module: Callable[[torch.Tensor], torch.Tensor], *, name: str | None = None,
                         cache_key: str | None = None) -> Augmentation:
    """A module on an (N, C, H, W) float batch that draws independent parameters per sample (kornia style)."""
    return Augmentation(module, kind="batched", name=name, cache_key=cache_key)


# PIL-based operations of libraries whose objects are not torchvision types
_PIL_MODULES = ("timm.data.auto_augment", "timm.data.transforms", "PIL")


def as_augmentation(obj: Any, *, cache_key: str | None = None) -> Augmentation:
    """Wrap `obj` in the adapter its type calls for (see the module docstring); `None` is the identity.

    A name ("augmix") is not an augmentation here: `pytest_psa.augment.resolve_augmentation` resolves
    names and ``module:attr`` paths. `cache_key` labels a version the probe cannot tell apart.
    """
    __tracebackhide__ = True
    if isinstance(obj, Augmentation):
        if cache_key is None or cache_key == obj.cache_key:
            return obj
        labelled = copy.copy(obj)
        labelled.cache_key, labelled._probed = cache_key, dict(obj._probed)
        return labelled
    if obj is None:
        return Augmentation(None, kind="identity", name="none", cache_key=cache_key)
    if isinstance(obj, str):
        raise AugmentationContractError(
            f"the augmentation is a name ({obj!r}), not a callable", property="callable", observed="str",
            fix="resolve names and module:attr paths with pytest_psa.augment.resolve_augmentation(name) "
                "(pytest_psa.density and the psa fixture do), or pass the transform itself")
    if not callable(obj):
        raise AugmentationContractError(
            "the augmentation is not callable", property="callable", observed=type(obj).__name__,
            fix="pass a transform object or a function image -> augmented image",
        )
    module = type(obj).__module__ or ""
    if module.startswith("torchvision.transforms.v2"):
        return Augmentation(obj, kind="tensor", cache_key=cache_key)
    if module.startswith("torchvision.transforms") or module_of(obj).startswith(_PIL_MODULES):
        return Augmentation(obj, kind="pil", cache_key=cache_key)
    if module.startswith("albumentations"):
        return Augmentation(obj, kind="numpy", dtype="uint8", albumentations=True, cache_key=cache_key)
    if module.startswith("kornia") or _kornia_container(obj):
        return Augmentation(obj, kind="batched", cache_key=cache_key)
    return Augmentation(obj, kind="tensor", cache_key=cache_key, guessed=True)


# -- helpers ----------------------------------------------------------------------------------
def _kornia_container(obj: Any) -> bool:
    """An nn.Sequential / ModuleList whose members are all kornia modules (a batched pipeline)."""
    if not isinstance(obj, (torch.nn.Sequential, torch.nn.ModuleList)):
        return False
    children = list(obj.children())
    return bool(children) and all(
        type(c).__module__.startswith("kornia") or _kornia_container(c) for c in children)


def _failed_inside_pil(exc: BaseException | None) -> bool:
    """Whether an exception came from PIL code, or from asking a tensor for a PIL.Image attribute."""
    if exc is None:
        return False
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("PIL"):
            return True
        tb = tb.tb_next
    if isinstance(exc, AttributeError) and isinstance(getattr(exc, "obj", None), torch.Tensor):
        from PIL import Image

        return hasattr(Image.Image, str(getattr(exc, "name", "")))
    return False


def _shape3(shape: Sequence[int]) -> tuple[int, int, int]:
    dims = tuple(int(v) for v in shape)
    if len(dims) != 3 or min(dims) < 1:
        raise PsaUsageError(f"an image shape is (C, H, W) with positive sizes, got {tuple(shape)}",
                            fix="pass the shape of one image, e.g. tuple(images.shape[1:])")
    return (dims[0], dims[1], dims[2])


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.uint8 else x.mul(255.0).round_().to(torch.uint8)


def _pil_to_tensor(img: Any) -> torch.Tensor:
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)  # a channel change is reported by check_single
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()


def _numpy_to_tensor(out: Any, like: torch.Tensor, name: str) -> Any:
    if not isinstance(out, np.ndarray):
        return out  # check_single reports the type
    arr = out[..., None] if out.ndim == 2 else out
    if arr.ndim != 3:
        raise AugmentationContractError(
            "a numpy augmentation must return one HWC image", property="shape", observed=out.shape,
            fix="return an (H, W, C) array for an (H, W, C) input", augmentation=name,
        )
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    if t.is_floating_point():
        return t.float()
    raise AugmentationContractError(
        "a numpy augmentation must return uint8 or float pixels", property="dtype", observed=str(out.dtype),
        fix="return uint8 in [0, 255] or float in [0, 1]", augmentation=name,
    )


def _fix_for_exception(kind: str, arg: Any, *, kornia: bool = False) -> str:
    if kornia:
        return ("it is a kornia module, which works on (N, C, H, W) batches and draws parameters per sample: "
                "use batched_augmentation(module)")
    if kind == "tensor":
        return ("it was given a float (C, H, W) tensor in [0, 1]; if it expects a PIL image use "
                "pytest_psa.pil_augmentation(aug), for numpy HWC use numpy_augmentation(aug), for uint8 "
                "tensors tensor_augmentation(aug, dtype='uint8')")
    if kind == "pil":
        return "it was given a PIL image; if it expects tensors use pytest_psa.tensor_augmentation(aug)"
    if kind == "numpy":
        return "it was given an HWC numpy image; pass dtype='float' if it expects floats in [0, 1]"
    return "it was given an (N, C, H, W) float batch; fix the module or apply it per image with tensor_augmentation"


def _readable_name(fn: Any) -> str:
    own = getattr(fn, "name", None)  # a zoo member or any object that names itself
    if isinstance(own, str) and own.strip():
        return own.strip()
    try:
        text = repr(fn)
    except Exception:  # a repr that raises (albumentations' Lambda without a name) must not stop the audit
        text = type(fn).__qualname__
    if text.startswith("<function") or text.startswith("<bound"):
        text = getattr(fn, "__qualname__", getattr(fn, "__name__", type(fn).__name__))
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:77] + "..."
