"""A training set-up without a run directory: the data's train/val splits, a freshly built model,
its loss and optimiser, as `cnnlab train` would make them, for the checks and the learning-rate
finder, which must leave no run behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.data.loader import Normalizer, epoch_order, train_batches
from cnnlab.data.sources import load_dataset
from cnnlab.models import build_model
from cnnlab.run.load import model_spec, normalizer
from cnnlab.run.records import DatasetRecord
from cnnlab.run.splits import SplitData, make_record, select_split
from cnnlab.runtime.device import resolve_device
from cnnlab.runtime.fastpath import choose_fast_path
from cnnlab.runtime.predict import StepSettings
from cnnlab.training.config import TrainConfig
from cnnlab.training.finetune import load_start_weights, pretrained_normalization, starts_pretrained
from cnnlab.training.optim import build_optimizer
from cnnlab.training.session import loss_function, new_model_record


@dataclass
class Bench:
    """What one training step needs, on float32 and the configured device."""

    config: TrainConfig
    record: DatasetRecord
    train: SplitData  # on `device`
    val: SplitData
    model: nn.Module
    loss_fn: nn.Module
    settings: StepSettings
    device: torch.device

    def optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """The run's optimiser (its parameter groups, weight decay, momentum) at the peak rate."""
        return build_optimizer(self.config, model or self.model)

    def batches(self, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches in a seeded shuffled order, epoch after epoch, without end."""
        epoch = 0
        while True:
            order = epoch_order(len(self.train.labels), seed, epoch)
            yield from train_batches(self.train.images, self.train.labels, batch_size, order)
            epoch += 1


def open_bench(config: TrainConfig, normalize: bool = True) -> Bench:
    """The data and a new model of `config`; `normalize=False` feeds images scaled to [0, 1]
    only, as a pipeline that forgot the standardisation would (to see `check` catch it)."""
    device = resolve_device(config.device)
    choose_fast_path(device, "fp32", False, config.threads)  # applies the thread count
    torch.manual_seed(config.seed)
    dataset = load_dataset(config.data, config.data_dir, config.download, config.load_options())
    record = make_record(
        dataset, config.val_fraction, config.seed, config.test_fraction, config.split_seed
    )
    model_record = new_model_record(config, record)
    record = pretrained_normalization(config, record, model_record.name)
    model = build_model(model_spec(model_record))
    if starts_pretrained(config):
        load_start_weights(config, model, model_record.name)
    train, val = select_split(dataset, record, "train"), select_split(dataset, record, "val")
    bands = record.channels
    scale = normalizer(record) if normalize else Normalizer((0.0,) * bands, (1.0,) * bands)
    return Bench(
        config=config,
        record=record,
        train=_to(train, device),
        val=_to(val, device),
        model=model.to(device),
        loss_fn=loss_function(config, record, device),
        settings=StepSettings(scale),
        device=device,
    )


def _to(split: SplitData, device: torch.device) -> SplitData:
    return SplitData(split.images.to(device), split.labels.to(device), split.sample_ids)
