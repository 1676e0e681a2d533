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
) -> dict[str, float]:
    """One pass over `batches`; returns the epoch's mean loss and accuracy so far.

    `scaler` (float16 autocast only) scales the loss so small gradients survive float16.
    `train_mode` puts the model in training mode (fine-tuning keeps some batch norms in eval).
    """
    train_mode(model)
    for images, labels in batches:
        x = prepare(images, settings)
        with autocast(x.device, settings.precision):
            logits = model(x)
        loss = loss_fn(logits.float(), labels)  # the loss is always computed in float32
        if not torch.isfinite(loss):
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
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)  # skipped by the scaler if the gradients overflowed
                scaler.update()
            scheduler.step()
            totals.loss_sum += loss.item() * len(labels)
            totals.correct += int((logits.argmax(1) == labels).sum())
            totals.seen += len(labels)
        totals.steps += 1
        after_step(totals, len(labels))
        if should_stop():
            break
    return epoch_summary(totals)


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
    """Loss, accuracy, balanced accuracy and Cohen's kappa on a split (plain cross-entropy)."""
    logits = predict_logits(model, images, settings, batch_size)  # [N, K] on the CPU
    labels = labels.cpu()
    counts = confusion_matrix(labels, logits.argmax(1), logits.shape[1])  # [K, K]
    return {"loss": F.cross_entropy(logits, labels).item(), **summary_scores(counts)}
