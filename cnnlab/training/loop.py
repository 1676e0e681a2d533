"""The plain training loop: `train_one_epoch()` and `evaluate()`, read top to bottom (STYLE.md 5).

Both return dicts of floats. `train_one_epoch` can start mid-epoch (for resumed runs) and stops
after the current step when `should_stop()` turns true; its running totals live in `EpochTotals`
so an interrupted epoch continues with the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import TrainingAborted
from cnnlab.metrics import confusion_matrix, summary_scores
from cnnlab.runtime.predict import StepSettings, autocast, predict_logits, prepare
from cnnlab.training.process import StepSync, place, reduce_sums, split_for_this_process


@dataclass
class EpochTotals:
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    steps: int = 0
    skipped_steps: int = 0
    consecutive_nonfinite: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    settings: StepSettings,
    totals: EpochTotals,
    should_stop: Callable[[], bool] = lambda: False,
    after_step: Callable[[EpochTotals, int], None] = lambda totals, images: None,
    scaler: torch.amp.GradScaler | None = None,
    max_nonfinite_steps: int = 5,
    train_mode: Callable[[nn.Module], None] = nn.Module.train,
    sync: StepSync | None = None,
) -> dict[str, float]:
    """One pass over `batches`; returns the epoch's mean loss and accuracy so far.

    `scaler` (float16 autocast only) scales the loss so small gradients survive float16.
    `train_mode` puts the model in training mode (fine-tuning keeps some batch norms in eval).
    `sync` (under torchrun) wraps the model in DistributedDataParallel and makes every process
    agree on each step's finiteness, totals and stop requests (training/process.py).
    """
    train_mode(model)
    forward = sync.wrap(model) if sync is not None else model
    for images, labels in batches:
        x = prepare(images, settings)
        with autocast(x.device, settings.precision):
            logits = forward(x)
        step = step_loss(logits, labels, loss_fn, sync)
        if not step.finite:
            totals.skipped_steps += 1
            totals.consecutive_nonfinite += 1
            optimizer.zero_grad(set_to_none=True)
            if totals.consecutive_nonfinite >= max_nonfinite_steps:
                raise TrainingAborted(
                    f"The loss was not finite (NaN or infinity) in {totals.consecutive_nonfinite} "
                    "consecutive steps; each was skipped and training has stopped. The weights "
                    "saved so far are finite. Lower --learning-rate, or check the data for "
                    "broken values, then train again."
                )
        else:
            totals.consecutive_nonfinite = 0
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                step.loss.backward()
                optimizer.step()
            else:
                scaler.scale(step.loss).backward()
                scaler.step(optimizer)  # skipped by the scaler if the gradients overflowed
                scaler.update()
            scheduler.step()
            totals.loss_sum += step.loss_sum
            totals.correct += step.correct
            totals.seen += step.count
        totals.steps += 1
        after_step(totals, step.count)
        if should_stop():
            break
    return epoch_summary(totals)


@dataclass
class StepLoss:
    loss: torch.Tensor  # what backward() runs on
    finite: bool  # in every process
    count: int  # images in the (global) batch
    loss_sum: float
    correct: int


def step_loss(
    logits: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module, sync: StepSync | None
) -> StepLoss:
    """The loss of one step and what the epoch totals add (the loss is computed in float32).

    In a group, a process whose shard is empty gets a stand-in image labelled -1 (weight 0), and
    each shard's mean loss is weighted by its share of the global batch."""
    if sync is None:
        loss = loss_fn(logits.float(), labels)
        finite, count = bool(torch.isfinite(loss)), len(labels)
        loss_sum = loss.item() * count if finite else 0.0
        return StepLoss(loss, finite, count, loss_sum, int((logits.argmax(1) == labels).sum()))
    count = int((labels >= 0).sum())
    loss = loss_fn(logits.float(), labels) if count else logits.float().sum() * 0.0
    finite = bool(torch.isfinite(loss))
    correct = int((logits.argmax(1) == labels).sum())  # a stand-in's -1 never matches
    finite, total, loss_sum, correct = sync.agree(
        finite, count, loss.item() * count if finite else 0.0, correct
    )
    return StepLoss(loss * sync.loss_weight(count, total), finite, total, loss_sum, correct)


def epoch_summary(totals: EpochTotals) -> dict[str, float]:
    seen = max(totals.seen, 1)
    return {"train_loss": totals.loss_sum / seen, "train_accuracy": totals.correct / seen}


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    settings: StepSettings,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Loss, accuracy, balanced accuracy and Cohen's kappa on a split (plain cross-entropy).

    Under torchrun each process scores its part of the split and the confusion counts and loss
    sums are added up, so every process returns the numbers of the whole split."""
    if place().distributed and len(labels) >= place().world:
        return _evaluate_shards(model, images, labels, settings, batch_size)
    logits = predict_logits(model, images, settings, batch_size)  # [N, K] on the CPU
    labels = labels.cpu()
    counts = confusion_matrix(labels, logits.argmax(1), logits.shape[1])  # [K, K]
    return {"loss": F.cross_entropy(logits, labels).item(), **summary_scores(counts)}


def _evaluate_shards(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    settings: StepSettings,
    batch_size: int,
) -> dict[str, float]:
    total = len(labels)
    images, labels = split_for_this_process(images, labels)
    logits = predict_logits(model, images, settings, batch_size)
    labels = labels.cpu()
    classes = logits.shape[1]
    counts = confusion_matrix(labels, logits.argmax(1), classes).to(torch.float64).flatten()
    loss_sum = F.cross_entropy(logits, labels, reduction="sum").to(torch.float64).view(1)
    summed = reduce_sums(torch.cat([counts, loss_sum]))
    counts = summed[:-1].round().to(torch.int64).view(classes, classes)
    return {"loss": float(summed[-1]) / total, **summary_scores(counts)}
