"""`load_run(path)`: a trained run's model with its weights, preprocessing, class names and records.

What evaluate, predict, explain and export use; it needs no training code, only the run directory
(STYLE.md rule 11), so it works in a new process on another day.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.data.loader import Normalizer
from cnnlab.errors import CnnlabError
from cnnlab.models import ModelSpec, build_model
from cnnlab.models.registry import ensure_registered
from cnnlab.run import checkpoints as ckpt
from cnnlab.run.paths import RunDir
from cnnlab.run.records import ConfigRecord, DatasetRecord, ModelRecord
from cnnlab.runtime import TTA_CHOICES
from cnnlab.runtime.device import resolve_device
from cnnlab.runtime.fastpath import choose_fast_path
from cnnlab.runtime.predict import StepSettings


@dataclass
class LoadedRun:
    run: RunDir
    model: nn.Module  # in eval mode, on `device`, in the fast path's memory format
    record: DatasetRecord
    model_record: ModelRecord
    settings: StepSettings  # the run's normalisation, this machine's precision and layout
    checkpoint: ckpt.Checkpoint
    device: torch.device

    @property
    def class_names(self) -> list[str]:
        return list(self.record.class_names)

    def config_record(self) -> ConfigRecord:
        return self.run.config_record()


def model_spec(record: ModelRecord) -> ModelSpec:
    """The spec to build, after importing the module that registered a family outside cnnlab."""
    ensure_registered(record.name, record.module)
    return ModelSpec.from_dict(record.spec_dict())


def normalizer(record: DatasetRecord) -> Normalizer:
    return Normalizer(record.normalization.mean, record.normalization.std)


def load_run(
    run_path: str | Path,
    which: str = "best",
    device: str = "auto",
    precision: str = "auto",
    channels_last: bool = True,
    tta: str = "none",
) -> LoadedRun:
    """Rebuild a run's model with its weights, on this machine's fast path (runtime.fastpath).

    The precision is this machine's choice, not the training run's: a network trained in bf16
    elsewhere is evaluated in fp32 on a CPU without native bf16, and the other way round.
    `tta`: the test-time augmentation of predict_logits (recorded_tta gives the run's own).
    """
    run = RunDir(run_path)
    record = run.dataset_record()
    model_record = run.model_record()
    resolved = resolve_device(device)
    fast = choose_fast_path(resolved, precision, channels_last)
    model = build_model(model_spec(model_record))
    checkpoint = ckpt.load_model_weights(run.checkpoints, which)
    ckpt.apply_weights(model, checkpoint)
    model.to(resolved).eval()
    if fast.channels_last:
        model.to(memory_format=torch.channels_last)
    settings = StepSettings(normalizer(record), fast.precision, fast.channels_last, tta)
    return LoadedRun(run, model, record, model_record, settings, checkpoint, resolved)


def recorded_tta(run_path: str | Path) -> str:
    """The test-time augmentation a run was trained with (config.json `train.tta`; "none" for
    runs from before it existed, without a config.json, or whose config.json cannot be read:
    evaluating a run needs its weights, model.json and dataset.json, not its training settings)."""
    run = RunDir(run_path)
    if not run.config.is_file():
        return "none"
    try:
        tta = run.config_record().train.get("tta", "none")
    except CnnlabError:
        return "none"
    return tta if tta in TTA_CHOICES else "none"
