"""Global feature vectors of chosen layers over a split, streamed in batches.

The seeds' "global feature space" of a layer: its output for an image flattened into one vector
(spatially average-pooled first when that would exceed `max_features`), or averaged per channel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.hooks import (
    ForwardHook,
    ForwardPreHook,
    classifier_name,
    hooks_attached,
)
from cnnlab.runtime.predict import StepSettings, autocast, prepare
from cnnlab.specs.explain import INPUT, LAST_HIDDEN, POOLINGS


@dataclass
class LayerFeatures:
    name: str
    features: torch.Tensor  # [N, F] float32: the global feature vectors
    channel_means: torch.Tensor  # [N, U]: mean activation of each channel or unit (neurons)
    output_shape: tuple[int, ...]  # one image's output: (C, H, W) or (F,)
    reduction: str  # how [C, H, W] became F, e.g. "flatten of a 8x8 average-pooled grid"


@dataclass
class FeatureSet:
    layers: list[LayerFeatures]
    labels: torch.Tensor  # [N] int64
    logits: torch.Tensor  # [N, K] float32
    indices: torch.Tensor  # [N] int64: positions of these points in the split

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(1)

    def layer(self, name: str) -> LayerFeatures:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise CnnlabError(
            f"No features were collected for layer {name!r}; collected: "
            f"{', '.join(layer.name for layer in self.layers)}."
        )


def default_layers(model: nn.Module) -> list[str]:
    """The input, every stage output the model names (shallow to deep), the last hidden layer."""
    return [INPUT, *model.feature_layers, LAST_HIDDEN]


def sample_indices(num_samples: int, max_points: int | None, seed: int) -> torch.Tensor:
    """All indices, or a seeded random subset of `max_points` of them, in increasing order."""
    if max_points is None or max_points >= num_samples:
        return torch.arange(num_samples)
    if max_points < 1:
        raise CnnlabError(f"--max-points must be at least 1, got {max_points}.")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_samples, generator=generator)[:max_points].sort().values


def pooled_grid(channels: int, height: int, width: int, max_features: int) -> tuple[int, int]:
    """The largest grid (h, w) of the same aspect with channels * h * w <= max_features."""
    if channels * height * width <= max_features:
        return height, width
    scale = math.sqrt(max_features / (channels * height * width))
    h, w = max(1, int(height * scale)), max(1, int(width * scale))
    while channels * h * w > max_features and (h > 1 or w > 1):
        h, w = (h - 1, w) if h >= w and h > 1 else (h, max(1, w - 1))
    return h, w


def global_vector(
    activation: torch.Tensor, pooling: str, max_features: int
) -> tuple[torch.Tensor, str]:
    """[B, C, H, W] or [B, F] -> ([B, F'] float32, description of the reduction)."""
    x = activation.float()
    if x.dim() == 2:
        return x, "as is"
    if x.dim() != 4:
        return x.flatten(1), "flatten"
    if pooling == "gap":
        return x.mean(dim=(2, 3)), "global average pooling"
    if pooling != "flatten":
        raise CnnlabError(f"Unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}.")
    _, channels, height, width = x.shape
    h, w = pooled_grid(channels, height, width, max_features)
    if (h, w) == (height, width):
        return x.flatten(1), "flatten"
    x = F.adaptive_avg_pool2d(x, (h, w))
    return x.flatten(1), f"flatten of a {h}x{w} average-pooled grid (from {height}x{width})"


def channel_means(activation: torch.Tensor) -> torch.Tensor:
    """The mean activation of each channel ([B, C, H, W] -> [B, C]) or unit ([B, F])."""
    x = activation.float()
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x.flatten(1)


def collect_features(
    model: nn.Module,
    images: torch.Tensor,
    layers: list[str],
    settings: StepSettings,
    *,
    pooling: str = "flatten",
    max_features: int = 2048,
    batch_size: int = 500,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[list[LayerFeatures], torch.Tensor]:
    """Run uint8 images [N, C, H, W] through the model once, in batches, keeping for each layer
    only the bounded global vectors. Returns (layer features in the order asked, logits [N, K]).
    `on_batch(done, total)` is called after each batch, for progress output."""
    if pooling not in POOLINGS:
        raise CnnlabError(f"Unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}.")
    collector = _FeatureCollector(layers, pooling, max_features)
    device = next(model.parameters()).device
    model.eval()
    forward, forward_pre = collector.hooks(model, images[:1].to(device), settings)
    logits = []
    with hooks_attached(model, forward, forward_pre), torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = prepare(images[start : start + batch_size].to(device), settings)
            if INPUT in collector.parts:
                collector.keep(INPUT, x)
            with autocast(x.device, settings.precision):
                logits.append(model(x).float().cpu())
            if on_batch is not None:
                on_batch(min(start + batch_size, len(images)), len(images))
    return collector.layer_features(len(images)), torch.cat(logits) if logits else torch.empty(0, 0)


class _FeatureCollector:
    """Receives layer outputs from the hooks and keeps only their global vectors, batch by batch."""

    def __init__(self, layers: list[str], pooling: str, max_features: int) -> None:
        self.pooling, self.max_features = pooling, max_features
        names = list(dict.fromkeys(layers))  # drop repeats, keep the order
        self.parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in names}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.reductions: dict[str, str] = {}

    def keep(self, name: str, activation: torch.Tensor) -> None:
        vector, self.reductions[name] = global_vector(activation, self.pooling, self.max_features)
        self.shapes[name] = tuple(activation.shape[1:])
        self.parts[name].append((vector.cpu(), channel_means(activation).cpu()))

    def hooks(
        self, model: nn.Module, probe_images: torch.Tensor, settings: StepSettings
    ) -> tuple[dict[str, ForwardHook], dict[str, ForwardPreHook]]:
        """(forward hooks, forward pre-hooks) by module name; the last hidden layer is the input
        of the classifier, found by running `probe_images` (uint8, on the model's device)."""
        forward = {
            name: self._output_hook(name) for name in self.parts if name not in (INPUT, LAST_HIDDEN)
        }
        forward_pre = {}
        if LAST_HIDDEN in self.parts and len(probe_images):
            probe = prepare(probe_images, settings)
            forward_pre[classifier_name(model, probe)] = self._input_hook(LAST_HIDDEN)
        return forward, forward_pre

    def _output_hook(self, name: str) -> ForwardHook:
        return lambda module, inputs, output: self.keep(name, output)

    def _input_hook(self, name: str) -> ForwardPreHook:
        return lambda module, inputs: self.keep(name, inputs[0])

    def layer_features(self, num_images: int) -> list[LayerFeatures]:
        """The collected vectors per layer, in the order asked; an error for a layer that did
        not give one vector per image."""
        result = []
        for name, parts in self.parts.items():
            if not parts:
                raise CnnlabError(
                    f"Layer {name!r} did not run in the forward pass, so it has no features; "
                    "choose layers that forward_features/forward_head use (`cnnlab summary` "
                    "lists them)."
                )
            vectors, means = zip(*parts, strict=True)
            if sum(len(v) for v in vectors) != num_images:
                raise CnnlabError(
                    f"Layer {name!r} runs more than once per forward pass (a shared module), so "
                    "its output is not one vector per image; choose another layer."
                )
            result.append(
                LayerFeatures(
                    name,
                    torch.cat(vectors),
                    torch.cat(means),
                    self.shapes[name],
                    self.reductions[name],
                )
            )
        return result
