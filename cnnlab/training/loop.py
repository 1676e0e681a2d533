"""The plain training loop: `train_one_epoch()` and `evaluate()`, read top to bottom (STYLE.md 5).

Both return dicts of floats. `train_one_epoch` can start mid-epoch (for resumed runs) and stops
after the current step when `should_stop()` turns true; its running totals live in `EpochTotals`
so an interrupted epoch continues with the same numbers.

On a GPU every read of a number back to the host (`loss.item()`, `bool(finite)`) waits for the
GPU's queued work, so one process on a non-CPU device defers them (`read_back_every`): the step's
loss sum, correct count and finiteness stay on the device (`DeviceTotals`), a non-finite step's
update is dropped there (`step_unless_nonfinite`), and the totals are read back in one transfer
every few steps, when a checkpoint or a summary needs them, and at the epoch's end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import TrainingAborted
from cnnlab.metrics import confusion_matrix, summary_scores
from cnnlab.runtime.predict import StepSettings, autocast, predict_logits, prepare
from cnnlab.training.process import StepSync, place, reduce_sums, split_for_this_process
from cnnlab.training.progressive import resize_images

# Steps between read-backs of deferred totals: ~0.1-0.5 s of GPU work for CIFAR-sized batches,
# so progress lines stay current; it is also how late a run of non-finite steps can be noticed.
READ_BACK_STEPS = 25


@dataclass
class EpochTotals:
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    steps: int = 0
    skipped_steps: int = 0
    consecutive_nonfinite: int = 0
    # steps added on the device and not yet read back (None: the numbers above are current)
    pending: DeviceTotals | None = field(default=None, repr=False, compare=False)

    def settle(self) -> None:
        """Read deferred totals back (one transfer); raises TrainingAborted if they hold too
        many consecutive non-finite steps."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.read_into(self)

    def to_dict(self) -> dict:
        self.settle()
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "pending"}


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
    read_back_every: int | str = 0,
    resize: tuple[int, int] | None = None,
) -> dict[str, float]:
    """One pass over `batches`; returns the epoch's mean loss and accuracy so far.

    `scaler` (float16 autocast only) scales the loss so small gradients survive float16.
    `train_mode` puts the model in training mode (fine-tuning keeps some batch norms in eval).
    `sync` (under torchrun) wraps the model in DistributedDataParallel and makes every process
    agree on each step's finiteness, totals and stop requests (training/process.py).
    `read_back_every`: 0 reads every step's numbers at once; N > 0 defers them to every N steps
    and at the last (`read_back_interval`; "auto": on a CUDA GPU). While they are deferred,
    `totals.pending` is set and `after_step` gets 0 images; where they are current it gets the
    images since its previous such call, so progress shows exact numbers, a few steps apart.
    `resize` [H, W]: prepared images are resized to it (--progressive-resize's small epochs).
    """
    train_mode(model)
    forward = sync.wrap(model) if sync is not None else model
    device = next(model.parameters(), torch.empty(0)).device
    every, unreported = read_back_interval(read_back_every, device, sync, scaler), 0
    steps = _marking_last(batches) if every else ((batch, False) for batch in batches)
    for (images, labels), last in steps:
        x = prepare(images, settings)
        x = x if resize is None else resize_images(x, resize, settings.channels_last)
        with autocast(x.device, settings.precision):
            logits = forward(x)
        if every:
            count = deferred_step(logits, labels, loss_fn, optimizer, totals, max_nonfinite_steps)
            scheduler.step()  # also after a dropped step: its finiteness is not known here
            totals.steps += 1
            if totals.steps % every == 0 or last:
                totals.settle()
        else:
            step = step_loss(logits, labels, loss_fn, sync)
            count = step.count
            if not step.finite:
                totals.skipped_steps += 1
                totals.consecutive_nonfinite += 1
                optimizer.zero_grad(set_to_none=True)
                if totals.consecutive_nonfinite >= max_nonfinite_steps:
                    raise TrainingAborted(nonfinite_message(totals.consecutive_nonfinite))
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
        unreported += count
        current = totals.pending is None
        after_step(totals, unreported if current else 0)
        unreported = 0 if current else unreported
        if should_stop():
            break
    totals.settle()
    return epoch_summary(totals)


def _marking_last(items: Iterable) -> Iterator[tuple[object, bool]]:
    """(item, whether it is the last one): the one after it is taken before it is returned."""
    iterator = iter(items)
    try:
        item = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield item, False
        item = following
    yield item, True


def nonfinite_message(steps: int, deferred: bool = False) -> str:
    found = " (seen when the totals were read back, a few steps later)" if deferred else ""
    return (
        f"The loss was not finite (NaN or infinity) in {steps} consecutive steps{found}; each was "
        "skipped and training has stopped. The weights saved so far are finite. Lower "
        "--learning-rate, or check the data for broken values, then train again."
    )


def read_back_interval(
    setting: int | str,
    device: torch.device,
    sync: StepSync | None,
    scaler: torch.amp.GradScaler | None,
) -> int:
    """Steps between read-backs of the totals (0: every step). Deferred only in one process
    (a group agrees on every step) without a float16 scaler (whose step reads its own flag);
    "auto" defers on CUDA, where a read-back waits for the GPU's queue to drain."""
    if sync is not None or scaler is not None:
        return 0
    if setting == "auto":
        return READ_BACK_STEPS if device.type == "cuda" else 0
    return int(setting)


class DeviceTotals:
    """The epoch totals as tensors on the training device, added to at every step without a
    read-back, and read back by `EpochTotals.settle()` in one transfer. They start from the host's
    numbers, so the loss sum is added up in the same order, to the same float64, as on the host."""

    def __init__(self, totals: EpochTotals, device: torch.device, max_nonfinite_steps: int):
        def scalar(value: float, dtype: torch.dtype) -> torch.Tensor:
            return torch.full((), value, dtype=dtype, device=device)  # a fill, not a copy

        self.loss_sum = scalar(totals.loss_sum, torch.float64)
        self.correct = scalar(totals.correct, torch.int64)
        self.seen = scalar(totals.seen, torch.int64)
        self.skipped = scalar(totals.skipped_steps, torch.int64)
        self.run = scalar(totals.consecutive_nonfinite, torch.int64)  # non-finite steps in a row
        self.longest_run = self.run.clone()
        self.max_nonfinite_steps = max_nonfinite_steps

    def add(
        self, finite: torch.Tensor, loss: torch.Tensor, correct: torch.Tensor, count: int
    ) -> None:
        """One step: `finite` and `correct` are 0-d device tensors, `loss` the batch's mean."""
        self.loss_sum += torch.where(finite, loss.double() * count, 0.0)
        self.correct += torch.where(finite, correct, 0)
        self.seen += finite.long() * count
        self.skipped += (~finite).long()
        self.run = torch.where(finite, 0, self.run + 1)
        self.longest_run = torch.maximum(self.longest_run, self.run)

    def read_into(self, totals: EpochTotals) -> None:
        values = [self.loss_sum, self.correct, self.seen, self.skipped, self.run, self.longest_run]
        loss_sum, correct, seen, skipped, run, longest = torch.stack(
            [value.double() for value in values]
        ).tolist()  # the one read-back
        totals.loss_sum, totals.correct, totals.seen = loss_sum, round(correct), round(seen)
        totals.skipped_steps, totals.consecutive_nonfinite = round(skipped), round(run)
        if longest >= self.max_nonfinite_steps:
            raise TrainingAborted(nonfinite_message(round(longest), deferred=True))


def deferred_step(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    totals: EpochTotals,
    max_nonfinite_steps: int,
) -> int:
    """One optimiser step that reads nothing back: a non-finite loss still runs backward, and
    its update is dropped on the device (`step_unless_nonfinite`). Returns the batch's images."""
    loss = loss_fn(logits.float(), labels)
    finite = torch.isfinite(loss)  # [] bool on the device
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    step_unless_nonfinite(optimizer, finite)
    if totals.pending is None:
        totals.pending = DeviceTotals(totals, loss.device, max_nonfinite_steps)
    correct = (logits.argmax(1) == labels).sum()
    totals.pending.add(finite, loss.detach(), correct, len(labels))
    return len(labels)


def step_unless_nonfinite(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    """optimizer.step(), its update dropped on the device where `finite` (0-d bool) is False:
    parameters and optimiser state stay as they were, and `finite` is never read back.

    A fused optimiser (`fused=True`) skips inside its kernels when handed `found_inf`, as it does
    for a GradScaler. Any other is stepped, and the tensors it changed are put back where the step
    was not finite (one copy of parameters and state per step). A dropped step still advances
    the learning-rate schedule, and on a GPU a non-fused Adam's step count (kept on the CPU)."""
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        _start_momentum_buffers(optimizer)
        optimizer.found_inf = (~finite).float()
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
        return
    with torch.no_grad():
        before = {key: t.clone() for key, t in _stepped_tensors(optimizer, finite.device).items()}
        optimizer.step()
        for key, tensor in _stepped_tensors(optimizer, finite.device).items():
            old = before.get(key)  # None: state the step created, which starts at zero
            tensor.copy_(torch.where(finite, tensor, 0 if old is None else old))


def _stepped_tensors(
    optimizer: torch.optim.Optimizer, device: torch.device
) -> dict[tuple[int, str], torch.Tensor]:
    """The parameters a step changes (those with gradients) and their floating-point state on
    `device`, by (parameter, state name)."""
    found = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if parameter.grad is None:
                continue
            found[id(parameter), ""] = parameter
            for name, value in optimizer.state.get(parameter, {}).items():
                if torch.is_tensor(value) and value.is_floating_point() and value.device == device:
                    found[id(parameter), name] = value
    return found


def _start_momentum_buffers(optimizer: torch.optim.Optimizer) -> None:
    """Zero momentum buffers before a fused SGD's first step: skipped by `found_inf`, that step
    would leave the buffers it allocates uninitialised. From zero, the first step's buffer is the
    gradient, as it is from none (without dampening)."""
    if not isinstance(optimizer, torch.optim.SGD):
        return
    for group in optimizer.param_groups:
        if group["momentum"]:
            for parameter in group["params"]:
                state = optimizer.state[parameter]
                if parameter.grad is not None and state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = torch.zeros_like(parameter)


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
    totals.settle()  # deferred totals are read back here
    seen = max(totals.seen, 1)
    return {"train_loss": totals.loss_sum / seen, "train_accuracy": totals.correct / seen}


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    settings: StepSettings,
    batch_size: int | None = None,
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
