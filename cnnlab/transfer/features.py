"""Global features of a pretrained backbone for classical classifiers (the "CNN features off the
shelf" pipeline, Razavian et al. 2014): any layer, global average pooling, cached on disk.

The cache key is the backbone, its weights, the layer, the preprocessing and the SHA-256 of the
exact uint8 images, so a hit is the same numbers the network would compute.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.locate import cache_root
from cnnlab.errors import ConfigError
from cnnlab.fileio import atomic_write_bytes
from cnnlab.models import MODELS, ModelSpec, build_model
from cnnlab.runtime.device import resolve_device
from cnnlab.transfer.backbones import BACKBONES, load_pretrained
from cnnlab.transfer.weights import Preprocessing


def features_cache_dir() -> Path:
    return cache_root() / "features"


def backbone_features(
    name: str,
    images: torch.Tensor,
    layer: str | None = None,
    weights: str | Path | None = None,
    batch_size: int = 64,
    cache: bool = True,
    device: str = "auto",
    progress: bool = True,
) -> torch.Tensor:
    """Features [N, D] float32 (on the CPU) of uint8 images [N, C, H, W] from backbone `name`.

    `layer`: a dotted module name (one of the model's `feature_layers`, or any other); default
    the output of `forward_features`. Each image is scaled to [0, 1], resized to the weights'
    input size, normalised with their mean/std and its feature map averaged over space.
    `weights`: a weights file instead of the backbone's own.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ConfigError(
            f"backbone_features takes uint8 images [N, C, H, W]; got {images.dtype} with shape "
            f"{tuple(images.shape)}. Pass the data set's images before normalisation."
        )
    model_name, preprocessing, source = _backbone(name, images, weights)
    key = _cache_key(name, images, layer, weights, preprocessing, source)
    path = features_cache_dir() / f"{key}.pt"
    if cache and path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(ModelSpec(model_name, images.shape[1], 1, tuple(images.shape[2:])))
    load_pretrained(model, name, weights)
    target = resolve_device(device)
    model = model.to(target).eval()
    result = _extract(model, images, layer, preprocessing, batch_size, target, progress)
    if cache:
        buffer = io.BytesIO()
        torch.save(result, buffer)
        atomic_write_bytes(path, buffer.getvalue())
    return result


def _backbone(
    name: str, images: torch.Tensor, weights: str | Path | None
) -> tuple[str, Preprocessing, str]:
    """(model name, preprocessing, source) of a registered backbone; a model of cnnlab's registry
    with a weights file of its own takes the images at their size with ImageNet's mean and std."""
    if weights is not None and name not in BACKBONES and name in MODELS:
        return name, Preprocessing(input_size=max(images.shape[-2:])), "weights file"
    backbone = BACKBONES.get(name)
    return backbone.model, backbone.preprocessing, backbone.source


def _extract(
    model: nn.Module,
    images: torch.Tensor,
    layer: str | None,
    preprocessing: Preprocessing,
    batch_size: int,
    device: torch.device,
    progress: bool,
) -> torch.Tensor:
    captured: list[torch.Tensor] = []
    handle = None
    if layer is not None:
        hook = _layer(model, layer).register_forward_hook
        handle = hook(lambda _module, _inputs, output: captured.append(output))
    chunks, started, shown = [], time.perf_counter(), 0.0
    try:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = prepare(images[start : start + batch_size].to(device), preprocessing)
                captured.clear()
                output = model.forward_features(x)
                output = captured[-1] if captured else output  # [B, D, h, w]
                chunks.append(output.float().mean(dim=(2, 3)).cpu())  # [B, D]
                done = min(start + batch_size, len(images))
                if progress and (time.perf_counter() - shown > 2 or done == len(images)):
                    shown = time.perf_counter()
                    print(f"\rbackbone features: {done}/{len(images)} images "
                          f"({shown - started:.0f} s)", end="", file=sys.stderr)  # fmt: skip
    finally:
        if handle is not None:
            handle.remove()
    if progress:
        print(file=sys.stderr)
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)


def prepare(images: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float [B, C, S, S] as the weights expect. Grey and multiband images
    use the mean of the RGB means and stds (their first conv is adapted by summing/averaging)."""
    x = images.float() / 255
    size = (preprocessing.input_size,) * 2
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode=preprocessing.interpolation, antialias=True)
        x = x.clamp(0, 1)
    mean, std = torch.tensor(preprocessing.mean), torch.tensor(preprocessing.std)
    if x.shape[1] != len(mean):
        mean, std = mean.mean().repeat(x.shape[1]), std.mean().repeat(x.shape[1])
    return (x - mean.to(x)[:, None, None]) / std.to(x)[:, None, None]


def _layer(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ConfigError(
            f"Backbone {type(model).__name__} has no layer {layer!r}; its stage outputs are "
            f"{', '.join(model.feature_layers)}."
        )
    return modules[layer]


def _cache_key(
    name: str, images: torch.Tensor, layer: str | None, weights: str | Path | None,
    preprocessing: Preprocessing, source: str,
) -> str:  # fmt: skip
    digest = hashlib.sha256()
    if weights is not None:
        digest.update(Path(weights).expanduser().read_bytes())
    described = {"backbone": name, "layer": layer, "preprocessing": preprocessing.to_dict(),
                 "shape": list(images.shape), "source": source}  # fmt: skip
    digest.update(json.dumps(described, sort_keys=True).encode())
    digest.update(images.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:32]
