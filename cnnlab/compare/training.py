"""A short in-memory training of a cnnlab model for `cnnlab compare` (scratch:MODEL and
finetune:BACKBONE): the plain loop of cnnlab.training on one split's tensors, no run directory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnlab.errors import CnnlabError


@dataclass
class TrainedModel:
    model: torch.nn.Module
    settings: object  # cnnlab.runtime.predict.StepSettings
    details: dict

    def scores(self, images: torch.Tensor) -> np.ndarray:
        from cnnlab.runtime.predict import predict_logits

        logits = predict_logits(self.model, images, self.settings)  # [N, K]
        return torch.softmax(logits, dim=1).double().numpy()


def train_in_memory(
    model_name: str, train: Any, val: Any, options: Any, pretrained: bool
) -> TrainedModel:
    """Train on train (val is only scored at the end) for options.scratch_epochs epochs; train
    and val are compare_pipelines.Part, options its PipelineOptions (not imported: no cycle)."""
    from cnnlab.data.loader import Normalizer, epoch_order, num_batches, train_batches
    from cnnlab.data.splits import channel_mean_std
    from cnnlab.runtime.predict import StepSettings
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.loop import EpochTotals, train_one_epoch
    from cnnlab.training.optim import build_optimizer, build_scheduler

    extra = {"pretrained": True} if pretrained else {}
    try:
        config = TrainConfig(model=model_name, epochs=options.scratch_epochs, **extra)
    except TypeError:
        raise CnnlabError(
            f"finetune:{model_name} needs TrainConfig(pretrained=True) from cnnlab.training, "
            "which this installation does not have yet. Leave finetune out of --pipelines."
        ) from None
    torch.manual_seed(options.seed)
    model = _build(model_name, train, options.num_classes, pretrained)
    mean, std = channel_mean_std(train.images)
    settings = StepSettings(Normalizer(tuple(mean), tuple(std)))
    optimizer = build_optimizer(config, model)
    steps = num_batches(len(train.labels), config.batch_size)
    scheduler = build_scheduler(config, optimizer, steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(config.epochs):
        order = epoch_order(len(train.labels), options.seed, epoch)
        batches = train_batches(train.images, train.labels, config.batch_size, order)
        train_one_epoch(model, batches, optimizer, scheduler, loss_fn, settings, EpochTotals())
    trained = TrainedModel(model, settings, {"model": model_name, "epochs": config.epochs})
    if len(val.labels):
        accuracy = (trained.scores(val.images).argmax(1) == val.labels.numpy()).mean()
        trained.details["val_accuracy"] = float(accuracy)
    return trained


def _build(model_name: str, train: Any, num_classes: int, pretrained: bool) -> torch.nn.Module:
    from cnnlab.models.registry import ModelSpec, build_model

    _, channels, height, width = train.images.shape
    spec = ModelSpec(model_name, channels, num_classes, (height, width))
    model = build_model(spec)
    if not pretrained:
        return model
    try:
        from cnnlab.transfer.backbones import load_pretrained
    except ImportError:
        raise CnnlabError(
            f"finetune:{model_name} needs cnnlab.transfer.backbones, which this installation "
            "does not have yet. Leave finetune out of --pipelines."
        ) from None
    load_pretrained(model, model_name)
    return model
