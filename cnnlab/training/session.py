"""Setting up a training run: data, splits, model, optimiser, loss and the fast path, in a Session.

`open_session()` does everything before the first step, for a new run (records chosen and written)
or a resumed one (records read back); the epoch loop (training/run.py) only uses the result.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from cnnlab.data.augment import Augmentation, resolve_augmentation
from cnnlab.data.loader import num_batches
from cnnlab.data.sources import load_dataset
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.fileio import atomic_write_json
from cnnlab.layers.dropout import Dropout
from cnnlab.models import ModelSpec, build_model, resolve_model_argument
from cnnlab.models.registry import defining_module
from cnnlab.run.load import model_spec, normalizer
from cnnlab.run.paths import RunDir
from cnnlab.run.records import ConfigRecord, DatasetRecord, ModelRecord
from cnnlab.run.splits import (
    DUPLICATES_FILE,
    SplitData,
    describe_counts,
    load_options,
    make_record,
    select_split,
    split_duplicates,
)
from cnnlab.runtime.device import machine_description, resolve_device
from cnnlab.runtime.fastpath import FastPath, available_cores, choose_fast_path, fast_model
from cnnlab.runtime.predict import StepSettings, tta_warning
from cnnlab.runtime.progress import Progress
from cnnlab.specs.recipes import RECIPES
from cnnlab.training.config import TrainConfig
from cnnlab.training.ema import WeightAverage
from cnnlab.training.finetune import (
    load_start_weights,
    pretrained_normalization,
    pretrained_options,
    starts_pretrained,
)
from cnnlab.training.optim import build_optimizer, build_scheduler
from cnnlab.training.process import (
    Place,
    StepSync,
    join_group,
    place,
    process_device,
    process_threads,
    writes_files,
)
from cnnlab.training.progressive import ResizePlan, session_plan
from cnnlab.training.whiten import freeze_stem, whiten_stem, whitening_sample


@dataclass
class Session:
    """Everything one training process holds; built once, read by the loop and the policy."""

    config: TrainConfig
    run: RunDir
    fast: FastPath
    record: DatasetRecord
    model_record: ModelRecord
    augmentation: Augmentation
    train: SplitData  # on the training device
    val: SplitData
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    loss_fn: nn.Module
    settings: StepSettings
    progress: Progress
    sync: StepSync | None = None  # under torchrun: what the processes agree on at every step
    ema: WeightAverage | None = None  # --ema: the moving average validated and saved
    resize: ResizePlan | None = None  # --progressive-resize: the epochs trained on small images

    @property
    def device(self) -> torch.device:
        return self.fast.device

    @property
    def steps_per_epoch(self) -> int:
        return num_batches(len(self.train.labels), self.config.batch_size)


def open_session(
    config: TrainConfig,
    out: str | Path,
    resume: bool,
    stream: TextIO,
    show_progress: bool,
    planned: dict | None = None,
) -> Session:
    """`planned`: what was decided before the data was loaded (training/budget.py), for
    config.json's `resolved`."""
    device = process_device(resolve_device(config.device))
    here = join_group(device)
    run = _check_run_dir(RunDir(out), resume)
    threads = process_threads(config.threads, available_cores())
    fast = choose_fast_path(device, config.precision, config.channels_last, threads)
    torch.manual_seed(config.seed)
    record, model_record, train, val = _data_and_spec(config, run, resume, stream)
    augmentation = resolve_augmentation(
        config.to_dict(), record.source, record.image_size, config.augment
    )
    model = build_model(model_spec(model_record))
    pretrained = None
    if starts_pretrained(config) and not resume:  # a resumed run's weights are in its checkpoint
        pretrained = load_start_weights(config, model, model_record.name)
    if config.whiten_stem:
        freeze_stem(model)
        if not resume:  # a resumed run's stem is in its checkpoint
            sample = whitening_sample(len(train.labels), config.seed)
            whiten_stem(
                model, normalizer(record)(train.images[sample.to(train.images.device)].cpu())
            )
    model = fast_model(group_model(model.to(fast.device), config, here), fast, config.fast_dropout)
    optimizer = build_optimizer(config, model)
    steps_per_epoch = num_batches(len(train.labels), config.batch_size)
    schedule_epochs = _segment_epochs(run, config, resume)
    session = Session(
        config, run, fast, record, model_record, augmentation,
        train=_to(train, fast.device), val=_to(val, fast.device), model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(config, optimizer, steps_per_epoch, schedule_epochs),
        scaler=torch.amp.GradScaler(fast.device.type) if fast.needs_grad_scaler else None,
        loss_fn=loss_function(config, record, fast.device),
        settings=StepSettings(normalizer(record), fast.precision, fast.channels_last, config.tta),
        progress=Progress(config.epochs * steps_per_epoch, stream=stream, enabled=show_progress),
        sync=StepSync() if here.distributed else None,
        ema=WeightAverage(model, config.ema) if config.ema else None,
        resize=session_plan(config, _segment_epochs(run, config, resume, 0), record, model),
    )  # fmt: skip
    if not resume and writes_files():
        run.write_records(
            config_record(config, fast, augmentation, pretrained, planned), record, model_record
        )
    return session


def group_model(model: nn.Module, config: TrainConfig, here: Place) -> nn.Module:
    """Under torchrun: SyncBatchNorm if asked (CUDA only, as PyTorch's is), and each process's own
    random stream for dropout (rank 0 keeps the run's seed)."""
    if not here.distributed:
        if config.sync_bn:
            warnings.warn(
                "--sync-bn has no effect in a single process: one process's batch statistics "
                "are already the global batch's. It matters with --nproc or torchrun on GPUs.",
                stacklevel=2,
            )
        return model
    if config.sync_bn:
        if next(model.parameters()).device.type != "cuda":
            raise ConfigError(
                "--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only. On CPUs leave "
                "it out; each process then normalises over its own shard of the batch."
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if here.rank:
        torch.manual_seed(config.seed + 1_000_003 * here.rank)
    return model


def recorded_segments(run: RunDir) -> list[dict[str, Any]]:
    """The segments config.json records (training/segments.py): one of all the epochs for a run
    never extended."""
    record = run.config_record()
    segments = record.resolved.get("segments")
    if segments:
        return [dict(segment) for segment in segments]
    return [{"segment": 1, "first_epoch": 1, "epochs": int(record.train.get("epochs", 1))}]


def _segment_epochs(run: RunDir, config: TrainConfig, resume: bool, which: int = -1) -> int:
    """The epochs of the current segment (`which` -1: its schedule spans them) or of the first
    (0: --progressive-resize counts from them)."""
    return int(recorded_segments(run)[which]["epochs"]) if resume else config.epochs


def _check_run_dir(run: RunDir, resume: bool) -> RunDir:
    if resume and not run.has_training_state():
        raise CnnlabError(f"'{run.path}' has no checkpoint to resume from.")
    if not resume and run.has_training_state():
        raise CnnlabError(
            f"'{run.path}' already holds a run. Continue it with `cnnlab train --resume "
            f"{run.path}`, or choose another --out."
        )
    if not resume and writes_files():
        _check_writable(run.path)
    return run


def _check_writable(path: Path) -> None:
    """Refuse an --out that names a file or a place where no folder can be made, before the data
    is loaded; the folders made to find out are removed again."""
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"--out '{path}' is an existing file, not a folder; --out names the run directory "
            "to create. Choose another path."
        )
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".cnnlab-write-test"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise ConfigError(
            f"--out '{path}' cannot be written ({error.strerror or error}); choose a folder you "
            "can write to."
        ) from None
    for folder in missing:  # deepest first
        folder.rmdir()


def _data_and_spec(
    config: TrainConfig, run: RunDir, resume: bool, stream: TextIO
) -> tuple[DatasetRecord, ModelRecord, SplitData, SplitData]:
    """The data set's records and its train/val splits: chosen now (and checked for duplicates
    across splits, RUN/duplicates.json), or read back on resume."""
    parts: dict[str, SplitData] = {}
    if resume:
        record, model_record = run.dataset_record(), run.model_record()
        dataset = load_dataset(
            record.source, config.data_dir, config.download, load_options(record, config.cache)
        )  # the recorded source: a folder's path is absolute
    else:
        dataset = load_dataset(config.data, config.data_dir, config.download, config.load_options())
        record = make_record(
            dataset, config.val_fraction, config.seed, config.test_fraction, config.split_seed,
            config.group_by,
        )  # fmt: skip
        if config.check_duplicates and writes_files():
            parts = {split: select_split(dataset, record, split) for split in ("train", "val")}
            report = split_duplicates(dataset, record, parts=parts)  # selects test itself
            run.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(run.path / DUPLICATES_FILE, report.to_dict())
            print(report.summary(str(run.path / DUPLICATES_FILE)), file=stream, flush=True)
        model_record = new_model_record(config, record)
        record = pretrained_normalization(config, record, model_record.name)
    if not parts:  # pretrained normalisation changes no split: the selection stands
        parts = {split: select_split(dataset, record, split) for split in ("train", "val")}
    train, val = parts["train"], parts["val"]
    if config.early_stopping and not len(val.labels):  # a folder's val/ counts too
        raise ConfigError(
            "--early-stopping needs a validation split: set --val-fraction above 0 (or give the "
            "folder a val/ split)."
        )
    return record, model_record, train, val


def _to(split: SplitData, device: torch.device) -> SplitData:
    return SplitData(split.images.to(device), split.labels.to(device), split.sample_ids)


def new_model_record(config: TrainConfig, record: DatasetRecord) -> ModelRecord:
    """model.json for a new run: the family (or spec) and options sized to the data set."""
    options = dict(config.model_options)
    if config.dropout is not None:
        options["dropout"] = config.dropout
    name, options = resolve_model_argument(config.model, options)  # a spec string or a name
    spec = ModelSpec(name, record.channels, record.num_classes, record.image_size, options)
    spec = dataclasses.replace(spec, options=pretrained_options(config, spec))
    return ModelRecord(**spec.to_dict(), module=defining_module(name))


def loss_function(config: TrainConfig, record: DatasetRecord, device: torch.device) -> nn.Module:
    weight = None
    if config.class_weighted_loss:
        counts = torch.tensor(record.class_counts["train"], dtype=torch.float32)
        # Inverse frequency, scaled so a balanced data set gets weight 1 for every class.
        weight = (counts.sum() / (len(counts) * counts.clamp(min=1))).to(device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def config_record(
    config: TrainConfig,
    fast: FastPath,
    augmentation: Augmentation,
    pretrained: dict | None = None,
    planned: dict | None = None,
) -> ConfigRecord:
    resolved = {
        "learning_rate": config.resolved_learning_rate,
        "device": str(fast.device),
        "fast_path": fast.to_dict(),
        "augmentation": augmentation.to_dict(),
        **(planned or {}),
        **averaging(config),
    }
    if pretrained is not None:  # what was loaded, the band adaptation, the preprocessing
        resolved["pretrained"] = pretrained
    here = place()
    if here.distributed:
        resolved["distributed"] = {
            "world_size": here.world,
            "processes_per_machine": here.local_world,
            "backend": "nccl" if fast.device.type == "cuda" else "gloo",
            "global_batch_size": config.batch_size,
            "sync_bn": config.sync_bn,
        }
    return ConfigRecord(
        train=config.to_dict(),
        resolved=resolved,
        seed=config.seed,
        machine=machine_description(fast.device),
        command=tuple(sys.argv),
        created=now(),
    )


def averaging(config: TrainConfig) -> dict:
    """config.json resolved: which weights are validated and saved, and the test-time
    augmentation evaluate and predict use."""
    weights = "live" if not config.ema else {
        "kind": "ema", "decay": config.ema, "warmup": "min(decay, (1 + n) / (10 + n))",
        "used_by": "validation, best checkpoint, --test, saved weights (evaluate, predict, export)",
    }  # fmt: skip
    return {"weights": weights, "tta": config.tta}


def describe_group(session: Session) -> list[str]:
    here, config = place(), session.config
    if not here.distributed:
        return []
    share = config.batch_size / here.world
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in session.model.modules())
    norm = "" if not has_bn else (
        "; SyncBatchNorm: batch statistics over the global batch" if config.sync_bn
        else "; BatchNorm: each process normalises over its own shard (--sync-bn on CUDA)"
    )  # fmt: skip
    return [
        f"distributed: {here.world} processes ({here.local_world} on this machine), "
        f"{'nccl' if session.device.type == 'cuda' else 'gloo'}; global batch {config.batch_size} "
        f"= {here.world} x ~{share:g} per process; learning rate not rescaled{norm}"
    ]


def describe_dropout(session: Session) -> list[str]:
    """Which dropout the model's dropout layers train with (none: no line)."""
    layers = [m for m in session.model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
    if not layers:
        return []
    ours = sum(isinstance(m, Dropout) for m in layers)
    if ours and session.device.type == "cpu":
        return [f"dropout: cnnlab's cheaper CPU mask in {ours} of {len(layers)} layer(s) "
                "(--no-fast-dropout: PyTorch's)"]  # fmt: skip
    return [f"dropout: PyTorch's in {len(layers)} layer(s)"]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def describe(session: Session) -> list[str]:
    """The lines shown before the first step: data, counts, sampler, recipe, model, fast path."""
    config, record = session.config, session.record
    height, width = record.image_size
    lines = [
        f"data {record.source} ({record.location}): {record.num_classes} classes, "
        f"{record.channels}x{height}x{width}",
        describe_counts(record),
    ]
    if record.skipped:
        lines.append(f"skipped {len(record.skipped)} file(s) or folder(s), listed in dataset.json")
    if record.groups:
        counts = ", ".join(f"{s} {n}" for s, n in record.groups["counts"].items())
        lines.append(f"groups of --group-by {record.groups['group_by']!r}: {counts}")
    if config.sampler == "balanced":
        lines.append("sampler: balanced (every class drawn equally often)")
    if config.recipe != "none":
        lines.append(
            f"recipe {config.recipe}: {RECIPES[config.recipe].summary} (flags override it)"
        )
    parameters = sum(p.numel() for p in session.model.parameters())
    lines += [f"model {config.model}: {parameters:,} parameters", session.fast.describe()]
    lines += describe_dropout(session)
    lines += describe_group(session)
    if session.ema is not None:
        lines.append(session.ema.describe())
    if config.tta != "none":
        lines.append(f"test-time augmentation {config.tta}: validation and --test average logits")
        lines += [line for line in [tta_warning(record.source, config.tta)] if line]
    if config.keep == "last":
        lines.append("--keep last: the last epoch's weights are the result (no best checkpoint)")
    if session.resize is not None:
        lines.append(session.resize.describe())
    if session.augmentation.enabled:
        shown = ", ".join(f"{k}={v}" for k, v in session.augmentation.to_dict().items() if v)
        lines.append(f"augmentation: {shown}")
    return lines
