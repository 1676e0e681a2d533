"""Fine-tuning a pretrained backbone (Yosinski et al. 2014; Howard & Ruder 2018: gradual unfreezing
and discriminative learning rates): a frozen backbone for the first epochs, a learning rate per
stage, batch-norm statistics frozen. Everything is a function of the epoch, so resuming is exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from cnnlab.models import ModelSpec
from cnnlab.run.records import DatasetRecord, Normalization
from cnnlab.training.config import TrainConfig
from cnnlab.transfer.backbones import BACKBONES, load_pretrained
from cnnlab.transfer.weights import classifier_prefix


def starts_pretrained(config: TrainConfig) -> bool:
    return config.pretrained or config.weights is not None


def pretrained_options(config: TrainConfig, spec: ModelSpec) -> dict[str, Any]:
    """Builder options for a pretrained backbone: images smaller than the weights' input size are
    resized to it inside the model (`input_size`, unless --model-options sets it)."""
    options = dict(spec.options)
    if starts_pretrained(config) and spec.name in BACKBONES and "input_size" in _options(spec):
        size = BACKBONES.get(spec.name).preprocessing.input_size
        if min(spec.image_size) < size:
            options.setdefault("input_size", size)
    return options


def _options(spec: ModelSpec) -> dict[str, Any]:
    from cnnlab.models import model_options

    return model_options(spec.name)


def pretrained_normalization(
    config: TrainConfig, record: DatasetRecord, model_name: str
) -> DatasetRecord:
    """The weights' own mean and std (their mean over RGB for other band counts) replace the
    data set's, so the pretrained filters see inputs on the scale they were trained on."""
    if not starts_pretrained(config) or model_name not in BACKBONES:
        return record
    mean, std = weights_mean_std(model_name, record.channels)
    return dataclasses.replace(record, normalization=Normalization(mean, std))


def weights_mean_std(model_name: str, channels: int) -> tuple[tuple[float, ...], ...]:
    """The backbone's per-band mean and std, averaged over RGB for other band counts."""
    pre = BACKBONES.get(model_name).preprocessing
    mean, std = tuple(pre.mean), tuple(pre.std)
    if channels != len(mean):
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    return mean, std


def load_start_weights(config: TrainConfig, model: nn.Module, model_name: str) -> dict[str, Any]:
    """Load the pretrained weights (--pretrained or --weights FILE) before training; returns the
    record of what was loaded and how (config.json's resolved["pretrained"])."""
    return load_pretrained(model, model_name, config.weights)


def backbone_frozen(config: TrainConfig, epoch: int) -> bool:
    return epoch < config.freeze_epochs


def apply_freezing(model: nn.Module, config: TrainConfig, epoch: int) -> None:
    """Freeze (requires_grad False) everything but the classifier during the first
    `freeze_epochs` epochs; frozen parameters get no gradient, so the optimiser skips them."""
    head = classifier_prefix(model)
    frozen = backbone_frozen(config, epoch)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not (frozen and not name.startswith(head)))


def train_mode(config: TrainConfig, epoch: int):
    """model.train(), then batch norm in eval mode (statistics kept) with --freeze-bn, and in the
    frozen backbone while it is frozen."""
    keep_statistics = config.freeze_bn or backbone_frozen(config, epoch)

    def set_mode(model: nn.Module) -> None:
        model.train()
        if keep_statistics:
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    return set_mode


def stage_of_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter name -> its stage counted from the top: 0 for the head (everything after the
    last of `feature_layers`), 1 for the deepest stage, ... (shallow layers join the first)."""
    positions = {name: index for index, (name, _) in enumerate(model.named_modules())}
    ends = []
    for layer in model.feature_layers:
        inside = [i for n, i in positions.items() if n == layer or n.startswith(layer + ".")]
        ends.append(max(inside))
    stages = {}
    for name, _ in model.named_parameters():
        position = positions[name.rpartition(".")[0]]
        below = [i for i, end in enumerate(ends) if position <= end]
        stages[name] = len(ends) - below[0] if below else 0
    return stages
