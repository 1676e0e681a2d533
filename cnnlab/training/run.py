"""`train()`: from a TrainConfig to a run directory, resumable at any step.

Writes config.json, dataset.json and model.json first, then per epoch a checkpoint and a line of
metrics.jsonl. SIGINT/SIGTERM finish the current step, save a checkpoint and return; `resume=True`
continues from the newest good checkpoint and ends with the same weights an uninterrupted run has.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from cnnlab.data.augment import augmented_batches, resolve_augmentation
from cnnlab.data.loader import (
    Normalizer,
    balanced_epoch_order,
    epoch_order,
    num_batches,
    train_batches,
)
from cnnlab.data.rundata import describe_counts, load_options, make_record, select_split
from cnnlab.data.sources import load_dataset
from cnnlab.errors import CnnlabError, ConfigError, TrainingAborted
from cnnlab.fileio import append_jsonl, atomic_write_json, read_jsonl
from cnnlab.models import ModelSpec, build_model, resolve_model_argument
from cnnlab.recipes import RECIPES
from cnnlab.run import checkpoints as ckpt
from cnnlab.run.paths import RunDir
from cnnlab.runtime.device import machine_description, resolve_device
from cnnlab.runtime.fastpath import FastPath, choose_fast_path
from cnnlab.runtime.predict import StepSettings
from cnnlab.runtime.progress import Progress, format_duration
from cnnlab.training.config import TrainConfig
from cnnlab.training.interrupt import StopFlag, stop_on_signals
from cnnlab.training.loop import EpochTotals, epoch_summary, evaluate, train_one_epoch
from cnnlab.training.optim import build_optimizer, build_scheduler


@dataclass
class TrainResult:
    run: Path
    status: str  # "complete", "early-stopped" or "interrupted"
    epochs_done: int
    global_step: int
    best: dict[str, Any] | None
    last: dict[str, Any] | None
    signal_number: int | None = None


@dataclass
class RunState:
    """Everything besides weights and optimiser that a resumed run needs."""

    epoch: int = 0  # the epoch in progress (0-based)
    next_batch: int = 0  # the next batch of that epoch
    global_step: int = 0
    totals: EpochTotals = field(default_factory=EpochTotals)
    best_score: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    stop: StopFlag | None = None,
    show_progress: bool = True,
    stream: TextIO | None = None,
) -> TrainResult:
    run = RunDir(out)
    if resume and not run.has_training_state():
        raise CnnlabError(f"'{run.path}' has no checkpoint to resume from.")
    if not resume and run.has_training_state():
        raise CnnlabError(
            f"'{run.path}' already holds a run. Continue it with `cnnlab train --resume "
            f"{run.path}`, or choose another --out."
        )
    stream = stream or sys.stderr
    stop = stop or StopFlag()
    device = resolve_device(config.device)
    fast = choose_fast_path(device, config.precision, config.channels_last, config.threads)
    torch.manual_seed(config.seed)

    if resume:
        record = run.read("dataset.json")
        spec = ModelSpec.from_dict(run.read("model.json"))
        options = load_options(record, cache=config.cache)
    else:
        options = config.load_options()
    source = record["source"] if resume else config.data  # the recorded one is absolute
    dataset = load_dataset(source, config.data_dir, config.download, options)
    if not resume:
        record = make_record(
            dataset, config.val_fraction, config.seed, config.test_fraction, config.split_seed
        )
        spec = _model_spec(config, record)
    augmentation = resolve_augmentation(
        config.to_dict(), record["source"], tuple(record["image_size"]), config.augment
    )
    train_split = select_split(dataset, record, "train")
    val_split = select_split(dataset, record, "val")
    if config.early_stopping and not len(val_split.labels):  # a folder's val/ counts too
        raise ConfigError(
            "--early-stopping needs a validation split: set --val-fraction above 0 (or give the "
            "folder a val/ split)."
        )
    model = build_model(spec).to(device)
    if fast.channels_last:
        model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = num_batches(len(train_split.labels), config.batch_size)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer, steps_per_epoch)
    loss_fn = _loss_function(config, record, device)
    settings = StepSettings(
        normalizer=Normalizer(
            tuple(record["normalization"]["mean"]), tuple(record["normalization"]["std"])
        ),
        precision=fast.precision,
        channels_last=fast.channels_last,
    )
    scaler = torch.amp.GradScaler(device.type) if fast.needs_grad_scaler else None

    state = RunState()
    if resume:
        state = _restore(run, model, optimizer, scheduler, scaler)
    else:
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run.config, _config_record(config, fast, augmentation.to_dict()))
        atomic_write_json(run.dataset, record)
        atomic_write_json(run.model, spec.to_dict())

    progress = Progress(config.epochs * steps_per_epoch, stream=stream, enabled=show_progress)
    _announce(progress, config, record, model, fast, state, resume)
    if augmentation.enabled:
        shown = ", ".join(f"{k}={v}" for k, v in augmentation.to_dict().items() if v)
        progress.message(f"augmentation: {shown}")
    train_images, train_labels = train_split.images.to(device), train_split.labels.to(device)
    val_images, val_labels = val_split.images.to(device), val_split.labels.to(device)

    def save_position(status: str) -> None:
        if not ckpt.weights_are_finite(model):
            raise TrainingAborted(
                f"The weights became NaN or infinite by step {state.global_step}; training has "
                "stopped and the last good checkpoint is kept. Lower --learning-rate (or use "
                "--schedule onecycle for a warm-up) and train again."
            )
        training_state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler else None,
            "rng": _rng_state(device),
            "epoch": state.epoch,
            "next_batch": state.next_batch,
            "global_step": state.global_step,
            "totals": state.totals.to_dict(),
            "best_score": state.best_score,
            "best_epoch": state.best_epoch,
            "epochs_without_improvement": state.epochs_without_improvement,
        }
        meta = {
            "status": status,
            "epoch": state.epoch,
            "next_batch": state.next_batch,
            "global_step": state.global_step,
            "history": state.history,
            "saved_at": _now(),
        }
        ckpt.save_numbered(run.checkpoints, state.global_step, model, training_state, meta)

    status = "complete"
    with stop_on_signals(stop, progress):
        while state.epoch < config.epochs:
            epoch_start = time.perf_counter()
            if config.sampler == "balanced":
                order = balanced_epoch_order(train_labels, config.seed, state.epoch)
            else:
                order = epoch_order(len(train_labels), config.seed, state.epoch)
            batches = train_batches(
                train_images, train_labels, config.batch_size, order, state.next_batch
            )
            if augmentation.enabled:
                batches = augmented_batches(
                    batches, augmentation, tuple(record["normalization"]["mean"]),
                    config.seed, state.epoch, state.next_batch,
                )  # fmt: skip

            def after_step(totals: EpochTotals, images: int) -> None:
                state.global_step += 1
                state.next_batch = totals.steps
                summary = epoch_summary(totals)
                progress.update(
                    state.epoch + 1,
                    config.epochs,
                    state.global_step,
                    summary["train_loss"],
                    summary["train_accuracy"],
                    images,
                )
                every = config.checkpoint_every_steps
                if every and state.global_step % every == 0 and not stop():
                    save_position("running")

            train_one_epoch(
                model, batches, optimizer, scheduler, loss_fn, settings, state.totals,
                should_stop=stop, after_step=after_step, scaler=scaler,
                max_nonfinite_steps=config.max_nonfinite_steps,
            )  # fmt: skip
            if state.next_batch < steps_per_epoch:  # stopped mid-epoch by a signal
                status = "interrupted"
                save_position(status)
                append_jsonl(run.metrics, _event("interrupted", state, stop.signal_number))
                break
            row = _epoch_row(state, optimizer, time.perf_counter() - epoch_start)
            if len(val_labels):
                val = evaluate(model, val_images, val_labels, settings, config.eval_batch_size)
                row.update({f"val_{key}": value for key, value in val.items()})
                if _improved(config.monitor, row[config.monitor], state.best_score):
                    state.best_score, state.best_epoch = row[config.monitor], state.epoch + 1
                    state.epochs_without_improvement = 0
                    ckpt.save_checkpoint(
                        run.checkpoints, "best", model, None,
                        {"epoch": state.epoch + 1, "monitor": config.monitor,
                         "score": state.best_score, "global_step": state.global_step},
                    )  # fmt: skip
                else:
                    state.epochs_without_improvement += 1
            state.history.append(row)
            state.epoch, state.next_batch, state.totals = state.epoch + 1, 0, EpochTotals()
            stopping_early = bool(config.early_stopping) and (
                state.epochs_without_improvement >= config.early_stopping
            )
            done = state.epoch >= config.epochs or stopping_early
            save_position("complete" if done else "running")
            append_jsonl(run.metrics, row)
            progress.message(_format_row(row, config.epochs))
            if stopping_early:
                status = "early-stopped"
                progress.message(
                    f"Early stopping: {config.monitor} has not improved for "
                    f"{config.early_stopping} epochs (best {state.best_score:.4f} at epoch "
                    f"{state.best_epoch})."
                )
                break
            if stop() and not done:
                status = "interrupted"
                append_jsonl(run.metrics, _event("interrupted", state, stop.signal_number))
                break
    progress.close()
    if status != "interrupted":
        append_jsonl(run.metrics, {"kind": "end", "status": status, **_best(state, config)})
    return TrainResult(
        run=run.path,
        status=status,
        epochs_done=state.epoch,
        global_step=state.global_step,
        best=_best(state, config) if state.best_epoch else None,
        last=state.history[-1] if state.history else None,
        signal_number=stop.signal_number,
    )


def _model_spec(config: TrainConfig, record: dict[str, Any]) -> ModelSpec:
    options = dict(config.model_options)
    if config.dropout is not None:
        options["dropout"] = config.dropout
    name, options = resolve_model_argument(config.model, options)  # a spec string or a name
    return ModelSpec(
        name=name,
        in_channels=record["channels"],
        num_classes=record["num_classes"],
        image_size=tuple(record["image_size"]),
        options=options,
    )


def _loss_function(config: TrainConfig, record: dict[str, Any], device: torch.device) -> nn.Module:
    weight = None
    if config.class_weighted_loss:
        counts = torch.tensor(record["class_counts"]["train"], dtype=torch.float32)
        # Inverse frequency, scaled so a balanced data set gets weight 1 for every class.
        weight = (counts.sum() / (len(counts) * counts.clamp(min=1))).to(device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def _restore(run: RunDir, model: nn.Module, optimizer, scheduler, scaler) -> RunState:
    checkpoint = ckpt.latest_checkpoint(run.checkpoints)
    ckpt.apply_weights(model, checkpoint)
    saved = checkpoint.state or {}
    try:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        _set_rng_state(saved["rng"])
        state = RunState(
            epoch=int(saved["epoch"]),
            next_batch=int(saved["next_batch"]),
            global_step=int(saved["global_step"]),
            totals=EpochTotals(**saved["totals"]),
            best_score=saved["best_score"],
            best_epoch=saved["best_epoch"],
            epochs_without_improvement=int(saved["epochs_without_improvement"]),
            history=list(checkpoint.meta.get("history", [])),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CnnlabError(
            f"Checkpoint '{checkpoint.path}' lacks training state ({error!r}); it cannot be "
            "resumed."
        ) from None
    # Epoch rows written after this checkpoint's epoch belong to a future that will be redone;
    # rows the checkpoint knows but metrics.jsonl lost (a crash between the two writes) come back.
    logged = (
        {row.get("epoch") for row in read_jsonl(run.metrics)} if run.metrics.exists() else set()
    )
    for row in state.history:
        if row["epoch"] not in logged:
            append_jsonl(run.metrics, row)
    append_jsonl(run.metrics, _event("resumed", state, None))
    return state


def _rng_state(device: torch.device) -> dict[str, Any]:
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _improved(monitor: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


def _best(state: RunState, config: TrainConfig) -> dict[str, Any]:
    return {
        "best_epoch": state.best_epoch,
        "monitor": config.monitor,
        "best_score": state.best_score,
    }


def _epoch_row(state: RunState, optimizer, seconds: float) -> dict[str, Any]:
    totals = state.totals
    return {
        "kind": "epoch",
        "epoch": state.epoch + 1,
        "step": state.global_step,
        **epoch_summary(totals),
        "lr": optimizer.param_groups[0]["lr"],
        "skipped_steps": totals.skipped_steps,
        "epoch_seconds": round(seconds, 3),
        "images_per_second": round(totals.seen / seconds, 1) if seconds > 0 else None,
        "time": _now(),
    }


def _event(name: str, state: RunState, signal_number: int | None) -> dict[str, Any]:
    row = {"kind": "event", "event": name, "epoch": state.epoch + 1, "step": state.global_step}
    if signal_number is not None:
        row["signal"] = signal.Signals(signal_number).name
    return row | {"time": _now()}


def _format_row(row: dict[str, Any], epochs: int) -> str:
    text = (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_accuracy']:.4f}"
    )
    if "val_loss" in row:
        text += (
            f"  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f} "
            f"bal-acc {row['val_balanced_accuracy']:.4f} kappa {row['val_cohen_kappa']:.4f}"
        )
    ips = row["images_per_second"]
    return text + f"  {ips or 0:,.0f} img/s  {format_duration(row['epoch_seconds'])}"


def _announce(
    progress, config, record, model, fast: FastPath, state: RunState, resume: bool
) -> None:
    parameters = sum(p.numel() for p in model.parameters())
    progress.message(
        f"data {record['source']} ({record['location']}): {record['num_classes']} classes, "
        f"{record['channels']}x{record['image_size'][0]}x{record['image_size'][1]}"
    )
    progress.message(describe_counts(record))
    skipped = record.get("skipped", [])
    if skipped:
        progress.message(f"skipped {len(skipped)} file(s) or folder(s), listed in dataset.json")
    if config.sampler == "balanced":
        progress.message("sampler: balanced (every class drawn equally often)")
    if config.recipe != "none":
        progress.message(
            f"recipe {config.recipe}: {RECIPES[config.recipe].summary} (flags override it)"
        )
    progress.message(f"model {config.model}: {parameters:,} parameters")
    progress.message(fast.describe())
    if resume:
        progress.message(
            f"resuming at epoch {state.epoch + 1}, batch {state.next_batch}, "
            f"step {state.global_step}"
        )


def _config_record(
    config: TrainConfig, fast: FastPath, augmentation: dict[str, Any]
) -> dict[str, Any]:
    return {
        "train": config.to_dict(),
        "resolved": {
            "learning_rate": config.resolved_learning_rate,
            "device": str(fast.device),
            "fast_path": fast.to_dict(),
            "augmentation": augmentation,
        },
        "seed": config.seed,
        "machine": machine_description(fast.device),
        "command": sys.argv,
        "created": _now(),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
