"""A short in-memory training of a cnnlab model for `cnnlab compare` (scratch:MODEL and
finetune:BACKBONE): cnnlab.training's TrainConfig, optimiser, schedule, plain loop and fine-tuning
(pretrained start, new classifier, freeze schedule, per-stage rates) on one split's tensors, with
no run directory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cnnlab.data.loader import Normalizer, epoch_order, num_batches, train_batches
from cnnlab.data.splits import channel_mean_std
from cnnlab.models import ModelSpec, build_model
from cnnlab.runtime.predict import StepSettings, predict_logits
from cnnlab.training.config import TrainConfig
from cnnlab.training.finetune import (
    apply_freezing,
    load_start_weights,
    pretrained_options,
    train_mode,
    weights_mean_std,
)
from cnnlab.training.loop import EpochTotals, train_one_epoch
from cnnlab.training.optim import build_optimizer, build_scheduler
from cnnlab.transfer.backbones import BACKBONES


@dataclass
class TrainedModel:
    model: torch.nn.Module
    settings: StepSettings
    details: dict

    def scores(self, images: torch.Tensor) -> np.ndarray:
        logits = predict_logits(self.model, images, self.settings)  # [N, K]
        return torch.softmax(logits, dim=1).double().numpy()


def train_config(model_name: str, options: Any, pretrained: bool) -> TrainConfig:
    """The TrainConfig of one fit: options is compare.pipelines.PipelineOptions (its fields
    scratch_epochs, batch_size, learning_rate, seed, and for fine-tuning weights, freeze_epochs,
    lr_decay_per_stage, freeze_bn)."""
    tuning = {}
    if pretrained:
        tuning = {
            "pretrained": True,
            "weights": options.weights,
            "freeze_epochs": options.freeze_epochs,
            "lr_decay_per_stage": options.lr_decay_per_stage,
            "freeze_bn": options.freeze_bn,
        }
    return TrainConfig(
        model=model_name,
        epochs=options.scratch_epochs,
        batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        seed=options.seed,
        **tuning,
    )


def train_in_memory(
    model_name: str, train: Any, val: Any, options: Any, pretrained: bool
) -> TrainedModel:
    """Train on train (val is only scored at the end) as cnnlab.training's train() would, with
    no augmentation; train and val are compare.pipelines.Part."""
    config = train_config(model_name, options, pretrained)
    torch.manual_seed(config.seed)
    model, settings, loaded = build_start(config, train, options.num_classes)
    optimizer = build_optimizer(config, model)
    steps = num_batches(len(train.labels), config.batch_size)
    scheduler = build_scheduler(config, optimizer, steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(config.epochs):
        apply_freezing(model, config, epoch)
        order = epoch_order(len(train.labels), config.seed, epoch)
        batches = train_batches(train.images, train.labels, config.batch_size, order)
        train_one_epoch(model, batches, optimizer, scheduler, loss_fn, settings, EpochTotals(),
                        train_mode=train_mode(config, epoch))  # fmt: skip
    details = {"model": model_name, "epochs": config.epochs, "batch_size": config.batch_size}
    if loaded:
        details["pretrained"] = {k: loaded[k] for k in ("source", "classifier", "band_adaptation")}
        details["freeze_epochs"] = config.freeze_epochs
    trained = TrainedModel(model, settings, details)
    if len(val.labels):
        accuracy = (trained.scores(val.images).argmax(1) == val.labels.numpy()).mean()
        trained.details["val_accuracy"] = float(accuracy)
    return trained


def build_start(
    config: TrainConfig, train: Any, num_classes: int
) -> tuple[torch.nn.Module, StepSettings, dict | None]:
    """The model as training's session builds it (options for the weights' input size), the
    pretrained weights loaded with a new classifier, and the normalisation: the weights' own
    mean/std for a registered backbone, else the training images'."""
    _, channels, height, width = train.images.shape
    spec = ModelSpec(config.model, channels, num_classes, (height, width))
    spec = dataclasses.replace(spec, options=pretrained_options(config, spec))
    model = build_model(spec)
    loaded = None
    if config.pretrained or config.weights:
        loaded = load_start_weights(config, model, config.model)
    if loaded and config.model in BACKBONES:
        mean, std = weights_mean_std(config.model, channels)
    else:
        mean, std = channel_mean_std(train.images)
    return model, StepSettings(Normalizer(tuple(mean), tuple(std))), loaded
