"""``feature``: the distance between embeddings of x and A(x) under an encoder.

The default encoder is the penultimate layer (``model.features``) of the ERM baseline that
``pytest_psa.flatness`` trains for the same data. It is looked up in the model cache under the
same key (model, training data, no augmentation, preset, seed 0, SGD), so when a flatness check
has already trained it, nothing is trained again; when it is absent it is trained once and stored
(the smoke preset on 2 CPU cores: about 32 s for CIFAR-10, 5 s for the synthetic set). Nothing is
downloaded. Any ``nn.Module`` or callable ``(N, C, H, W) -> (N, ...)`` can replace it:
``pytest_psa.feature_distance(encoder)``.

Normalization, so that values read alike across encoders:

- ``"cosine"`` (default): 1 − cos(f(x), f(y)), in [0, 2] (in [0, 1] for non-negative features such
  as post-ReLU ones); it ignores the embedding's scale entirely;
- ``"l2_median"``: ‖f(x) − f(y)‖ / s with s the median norm ‖f(x_i)‖ over the audited clean images
  (one extra encoder pass over them) or a given ``scale``.

Identical embeddings are at distance exactly 0. Encoding is batched: each clean chunk is encoded
once and each draw's batch once (`Distance.encode`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from pytest_psa.errors import PsaUsageError
from pytest_psa.measure.density.distance_types import Distance, DistanceContext

NORMALIZATIONS = ("cosine", "l2_median")
LAYERS = ("auto", "features", "call")
_PARAMS = ("normalize", "layer", "batch_size", "device", "model", "preset", "seed", "scale")


def feature_distance(
    encoder: nn.Module | Callable[[torch.Tensor], torch.Tensor] | None = None, *,
    normalize: str = "cosine", layer: str = "auto", batch_size: int = 256, device: str | None = None,
    model: str | None = None, preset: str = "smoke", seed: int = 0, scale: float | None = None,
    name: str = "feature",
) -> Distance:
    """A feature-space distance for ``distance=`` anywhere (``"feature"`` is this with the defaults).

    `encoder`: None for the cached ERM baseline of the audited data (`model`, `preset`, `seed` pick
    which one: the preset's model, ``"smoke"``, seed 0 by default), or any ``nn.Module`` / callable.
    `layer`: ``"auto"`` uses ``encoder.features(x)`` when the module has it (the built-in models'
    penultimate layer), else ``encoder(x)``; ``"features"`` / ``"call"`` force one. The encoder gets
    float images in [0, 1]; fold any input normalization into it. Outputs are flattened per image.
    """
    if normalize not in NORMALIZATIONS:
        raise PsaUsageError(f"feature distance: unknown normalize={normalize!r}", fix=f"use one of {NORMALIZATIONS}")
    if layer not in LAYERS:
        raise PsaUsageError(f"feature distance: unknown layer={layer!r}", fix=f"use one of {LAYERS}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise PsaUsageError(f"feature distance: batch_size must be an int >= 1, got {batch_size!r}")
    if scale is not None and not float(scale) > 0:
        raise PsaUsageError(f"feature distance: scale must be > 0, got {scale!r}")
    if encoder is not None and not callable(encoder):
        raise PsaUsageError("feature distance: the encoder must be an nn.Module or a callable",
                            observed=type(encoder).__name__,
                            fix="pass a module or a function mapping (N, C, H, W) images in [0, 1] to (N, D)")
    settings = {"normalize": normalize, "layer": layer, "batch_size": batch_size, "device": device, "model": model,
                "preset": preset, "seed": seed, "scale": scale}
    params: dict[str, Any] = {"normalize": normalize, "layer": layer}
    if encoder is None:
        params.update(encoder="ERM baseline (model cache)", model=model, preset=preset, seed=seed)
    if scale is not None:
        params["scale"] = float(scale)

    def variant(**kw: Any) -> Distance:
        unknown = sorted(set(kw) - set(_PARAMS))
        if unknown:
            raise PsaUsageError(f"feature: unknown parameter(s) {unknown}", fix=f"its parameters are {', '.join(_PARAMS)}")
        return feature_distance(encoder, **{**settings, **kw}, name=name)

    what = "cosine distance" if normalize == "cosine" else "L2 / median clean norm"
    base = Distance(name, _needs_encoder, f"{what} between encoder embeddings of x and A(x)", params=params,
                    variant=variant)
    if encoder is not None:
        call, info = _resolve_layer(encoder, layer)
        encode = _batched_encoder(call, encoder if isinstance(encoder, nn.Module) else getattr(call, "__self__", None),
                                  batch_size, device)
        base = dataclasses.replace(base, fn=_compare(normalize, scale), encode=encode, params={**params, **info})
        if normalize == "cosine" or scale is not None:
            return base  # nothing depends on the audited data

    def bind(dist: Distance, ctx: DistanceContext) -> Distance:
        encode = dist.encode
        extra: dict[str, Any] = {}
        if encode is None:
            net, extra = default_encoder(ctx, model=model, preset=preset, seed=seed, device=device)
            call, info = _resolve_layer(net, layer)
            encode = _batched_encoder(call, net, batch_size, device)
            extra.update(info)
        s = scale
        if normalize == "l2_median" and s is None:
            clean = encode(ctx.images.float_images())
            s = float(clean.double().norm(dim=1).median())
            if not s > 0:
                raise PsaUsageError("feature distance: the clean embeddings have median norm 0",
                                    fix="use normalize='cosine', or pass scale=")
            extra.update(scale=s, scale_from=f"median embedding norm of the {len(ctx.images)} audited clean images")
        return dataclasses.replace(dist, fn=_compare(normalize, s), encode=encode, binder=None,
                                   params={**dist.params, **extra})

    return dataclasses.replace(base, binder=bind)


def default_encoder(ctx: DistanceContext, *, model: str | None = None, preset: str = "smoke", seed: int = 0,
                    device: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The ERM baseline for the audited data, from the model cache (trained and stored when absent).

    The arguments mirror ``pytest_psa.flatness``'s ERM runs, so both use one cache entry. (The
    weights' SHA-256 is added by the caller, `_resolve_layer`, as for any module.)
    """
    from pytest_psa.data.sources import load_data
    from pytest_psa.train import ModelCache, resolve_preset

    recipe = resolve_preset(preset)
    where = {"root": ctx.data_root, "cache_dir": ctx.cache_dir}
    train_data = load_data(ctx.data, split="train", allow_download=ctx.allow_download, **where)
    test_data = load_data(ctx.data, split="test", **where)
    trained = ModelCache(ctx.cache_dir).get_or_train(model, train_data, None, preset=recipe, seed=seed, device=device,
                                                     optimizer="sgd", test_data=test_data, progress=False)
    rec = trained.record
    info = {"encoder": f"{rec.model} ERM baseline (preset {recipe.name}, seed {seed})", "cache_key": rec.cache_key,
            "cache": rec.cache, "train_data": train_data.describe(), "test_accuracy": rec.test_accuracy}
    if rec.cache == "miss":
        info["trained_s"] = rec.wall_s
    return trained.model, info


def state_sha256(module: nn.Module) -> str:
    """SHA-256 over a module's state (names, shapes, dtypes and values): what identifies its weights."""
    h = hashlib.sha256()
    for key, t in module.state_dict().items():
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# -- helpers ----------------------------------------------------------------------------------
def _needs_encoder(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    raise PsaUsageError(
        "the feature distance needs its encoder, which depends on the audited data",
        observed="called directly, outside pytest_psa.density",
        fix="audit through pytest_psa.density / psa.density (they find or train the default encoder for the "
            "data), or pass one: pytest_psa.feature_distance(encoder) (and scale= with normalize='l2_median')",
    )


def _resolve_layer(encoder: Any, layer: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    feats = getattr(encoder, "features", None) if isinstance(encoder, nn.Module) else None
    if layer == "features" and not callable(feats):
        raise PsaUsageError("feature distance: layer='features' but the encoder has no features() method",
                            observed=type(encoder).__name__, fix="use layer='call' (or 'auto')")
    call: Callable[[torch.Tensor], torch.Tensor] = encoder
    use_features = False
    if callable(feats) and layer in ("auto", "features"):
        call, use_features = feats, True
    owner = encoder if isinstance(encoder, nn.Module) else getattr(encoder, "__self__", None)
    label = type(owner).__qualname__ if isinstance(owner, nn.Module) else getattr(encoder, "__qualname__",
                                                                                  type(encoder).__qualname__)
    info: dict[str, Any] = {"encoder_class": label, "layer": "features" if use_features else "call"}
    if isinstance(owner, nn.Module):
        info["weights_sha256"] = state_sha256(owner)
    return call, info


def _batched_encoder(call: Callable[[torch.Tensor], torch.Tensor], module: nn.Module | None, batch_size: int,
                     device: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Encode a batch in slices of `batch_size`, in eval mode (restored after), without gradients."""
    if device is None and isinstance(module, nn.Module):
        first = next(iter(module.parameters()), None)
        device = str(first.device) if first is not None else None

    def encode(images: torch.Tensor) -> torch.Tensor:
        was_training = module.training if isinstance(module, nn.Module) else None
        if was_training:
            module.eval()  # type: ignore[union-attr]
        try:
            with torch.no_grad():
                parts = [_flat(call(part if device is None else part.to(device)), len(part))
                         for part in images.split(batch_size)]
        finally:
            if was_training:
                module.train(True)  # type: ignore[union-attr]
        return torch.cat(parts)

    return encode


def _flat(out: Any, n: int) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.ndim < 1 or out.shape[0] != n:
        raise PsaUsageError("feature distance: the encoder must return a tensor with one row per image",
                            observed=f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))} for {n} images",
                            fix="return (N, D) embeddings (or any (N, ...) tensor; it is flattened per image)")
    return out.detach().reshape(n, -1).to("cpu", torch.float32)


def _compare(normalize: str, scale: float | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def cosine(fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
        a, b = fx.double(), fy.double()
        cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)
        d = (1 - cos).clamp(0, 2)
        return torch.where((a == b).all(1), torch.zeros_like(d), d)  # identical (even all-zero) -> 0

    def l2_scaled(fx: torch.Tensor, fy: torch.Tensor) -> torch.Tensor:
        if scale is None:
            raise PsaUsageError("feature distance: normalize='l2_median' needs the median clean norm",
                                fix="audit through pytest_psa.density, or pass scale=")
        # Tensor.norm has no return annotation in torch
        return cast(torch.Tensor, (fx.double() - fy.double()).norm(dim=1)) / scale

    return cosine if normalize == "cosine" else l2_scaled
