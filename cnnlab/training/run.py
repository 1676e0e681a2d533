"""`train()`: from a TrainConfig to a run directory, resumable at any step.

Writes config.json, dataset.json and model.json first (training.session), then per epoch a
checkpoint and a line of metrics.jsonl (training.policy). SIGINT/SIGTERM finish the current step,
save a checkpoint and return; `resume=True` continues from the newest good checkpoint and ends
with the same weights an uninterrupted run has.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from cnnlab.data.augment import augmented_batches
from cnnlab.run import layer_stats as layer_stats_file
from cnnlab.runtime.progress import format_duration
from cnnlab.training import budget, policy
from cnnlab.training.config import TrainConfig
from cnnlab.training.ema import averaged_or_live
from cnnlab.training.finetune import apply_freezing, train_mode
from cnnlab.training.interrupt import StopFlag, stop_on_signals
from cnnlab.training.layer_stats import LayerStats, choose_probe
from cnnlab.training.loop import EpochTotals, epoch_summary, evaluate, train_one_epoch
from cnnlab.training.policy import RunState
from cnnlab.training.process import (
    GroupStop,
    augment_seed,
    epoch_indices,
    shard_batches,
    writes_files,
)
from cnnlab.training.segments import finished_message, plan_resume, start_segment
from cnnlab.training.session import Session, describe, open_session


@dataclass
class TrainResult:
    run: Path
    status: str  # "complete", "early-stopped", "time-budget" or "interrupted"
    epochs_done: int
    global_step: int
    best: dict[str, Any] | None
    last: dict[str, Any] | None
    signal_number: int | None = None


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    stop: StopFlag | None = None,
    show_progress: bool = True,
    stream: TextIO | None = None,
) -> TrainResult:
    stop, stream, started = stop or StopFlag(), stream or sys.stderr, time.perf_counter()
    planned: dict[str, Any] = {}
    if not resume:  # --time-budget's plan, or a folder's time estimate, before the data loads
        shown = stream if show_progress and writes_files() else None
        config, planned = budget.before_training(config, shown)
    session = open_session(config, out, resume, stream, show_progress and writes_files(), planned)
    clock = budget_clock(session, planned, started)
    if session.sync is not None:  # under torchrun: stop where every process agrees to
        stop = session.sync.stop = GroupStop(stop)
    state, finished = _start(session, resume)
    if finished:  # resuming a finished run without --epochs: said so, nothing to do
        return _result(session, state, finished, stop)
    status, stats = "running", layer_stats(session)
    with stop_on_signals(stop, session.progress, at_once=session.sync is None):
        while status == "running" and state.epoch < config.epochs:
            began = time.perf_counter()
            status = run_epoch(session, state, stop, stats)
            if status == "running" and clock is not None:
                status = check_budget(session, state, clock, time.perf_counter() - began)
    session.progress.close()
    if stats is not None:
        layer_stats_file.write_png(session.run)
    if status == "running":
        status = "complete"
    if status != "interrupted":
        policy.log(
            session, {"kind": "end", "status": status, **policy.best_summary(session, state)}
        )
    return _result(session, state, status, stop)


def budget_clock(
    session: Session, planned: dict[str, Any], started: float
) -> budget.BudgetClock | None:
    """A planned --time-budget's clock, from the start of planning; decoding does not count. A
    resumed run trains to its end (its budget was the first segment's)."""
    if "time_budget" not in planned:
        return None
    preprocess = session.record.preprocess
    decoding = 0.0 if preprocess.get("from_cache") else preprocess.get("decode_seconds", 0.0)
    return budget.BudgetClock(planned["time_budget"]["budget_seconds"], started, decoding)


def check_budget(
    session: Session, state: RunState, clock: budget.BudgetClock, epoch_seconds: float
) -> str:
    """After an epoch: "time-budget" if the next one would end past the budget (its checkpoint,
    saved as running, resumes it), else "running"."""
    if not clock.out_of_time(epoch_seconds, session.device):
        return "running"
    policy.log(session, policy.event("time-budget", state, None))
    session.progress.message(
        f"Stopped by --time-budget after epoch {state.epoch}: {format_duration(clock.elapsed())} "
        f"of training, and another epoch (~{format_duration(epoch_seconds)}) would pass "
        f"{format_duration(clock.budget_seconds)}. Continue with: cnnlab train --resume "
        f"{session.run.path}"
    )
    return "time-budget"


def _start(session: Session, resume: bool) -> tuple[RunState, str | None]:
    """The state to train from: new, restored from the newest good checkpoint, or restored and
    extended by a new segment (training/segments.py); and the status of a finished run that has
    nothing to do (None otherwise)."""
    plan, checkpoint = plan_resume(session) if resume else ("new", None)
    if plan == "new":
        state = RunState()
    else:
        state = policy.restore(session, checkpoint, announce=plan != "finished")
    if plan == "finished":
        session.progress.message(finished_message(session, state.epoch))
        session.progress.close()
        return state, str(checkpoint.meta["status"])
    for line in describe(session):
        session.progress.message(line)
    if plan in ("extend", "begin"):
        start_segment(session, state, plan)
    if resume:
        session.progress.message(
            f"resuming at epoch {state.epoch + 1}, batch {state.next_batch}, "
            f"step {state.global_step}"
        )
    return state, None


def _result(session: Session, state: RunState, status: str, stop: StopFlag) -> TrainResult:
    return TrainResult(
        run=session.run.path,
        status=status,
        epochs_done=state.epoch,
        global_step=state.global_step,
        best=policy.best_summary(session, state) if state.best_epoch else None,
        last=state.history[-1] if state.history else None,
        signal_number=stop.signal_number,
    )


def layer_stats(session: Session) -> LayerStats | None:
    """The recorder of `--layer-stats N` in the writing process (None when off or elsewhere);
    its probe batch: validation images (training ones without a validation split)."""
    if not session.config.layer_stats or not writes_files():
        return None
    split = session.val if len(session.val.labels) else session.train
    probe = choose_probe(split.images, session.config.seed)
    return LayerStats(session.model, probe, session.settings, session.config.layer_stats)


def run_epoch(
    session: Session, state: RunState, stop: StopFlag, stats: LayerStats | None = None
) -> str:
    """Train the rest of the current epoch, validate, checkpoint and log it; `stats` records
    the layer statistics.

    Returns "running" to go on, or why training ends: "complete", "early-stopped",
    "interrupted".
    """
    config, started = session.config, time.perf_counter()
    if stats is not None:
        stats.before_step(state.global_step + 1)

    def after_step(totals: EpochTotals, images: int) -> None:
        state.global_step += 1
        state.next_batch = totals.steps
        if session.ema is not None:  # a skipped non-finite step left the live weights as they were
            session.ema.update()
        if stats is not None:
            policy.record_layer_stats(session, state, stats)
        if totals.pending is None:  # current, not deferred on the device (loop.py)
            summary = epoch_summary(totals)
            session.progress.update(
                state.epoch + 1, config.epochs, state.global_step,
                summary["train_loss"], summary["train_accuracy"], images,
            )  # fmt: skip
        every = config.checkpoint_every_steps
        if every and state.global_step % every == 0 and not stop():
            policy.save_position(session, state, "running")

    if config.freeze_epochs:
        apply_freezing(session.model, config, state.epoch)
    resize = session.resize.size_at(state.epoch) if session.resize is not None else None
    train_one_epoch(
        session.model, epoch_batches(session, state), session.optimizer, session.scheduler,
        session.loss_fn, session.settings, state.totals, should_stop=stop,
        after_step=after_step, scaler=session.scaler,
        max_nonfinite_steps=config.max_nonfinite_steps,
        train_mode=train_mode(config, state.epoch), sync=session.sync, read_back_every="auto",
        resize=resize,
    )  # fmt: skip
    if state.next_batch < session.steps_per_epoch:  # stopped mid-epoch by a signal
        policy.save_position(session, state, "interrupted")
        policy.log(session, policy.event("interrupted", state, stop.signal_number))
        return "interrupted"
    learning_rate = session.optimizer.param_groups[0]["lr"]
    row = policy.epoch_row(state, learning_rate, time.perf_counter() - started)
    if session.resize is not None:  # the [H, W] this epoch trained at
        row["image_size"] = list(resize or session.resize.full)
    return end_epoch(session, state, row, stop)


def epoch_batches(session: Session, state: RunState):
    """The (augmented) batches left in the current epoch, from its seeded order."""
    config, train = session.config, session.train
    order = epoch_indices(train.labels, config.sampler, config.seed, state.epoch)
    batches = shard_batches(train.images, train.labels, config.batch_size, order, state.next_batch)
    if not session.augmentation.enabled:
        return batches
    fill, seed = session.record.normalization.mean, augment_seed(config.seed)
    return augmented_batches(
        batches, session.augmentation, fill, seed, state.epoch, state.next_batch
    )


def end_epoch(session: Session, state: RunState, row: dict[str, Any], stop: StopFlag) -> str:
    """Validate, keep the best, move to the next epoch, checkpoint, log; decide whether to go on."""
    config = session.config
    if len(session.val.labels):
        val = evaluate(
            averaged_or_live(session.model, session.ema), session.val.images,
            session.val.labels, session.settings, config.eval_batch_size,
        )  # fmt: skip
        row.update({f"val_{key}": value for key, value in val.items()})
        policy.track_best(session, state, row)
    state.history.append(row)
    state.epoch, state.next_batch, state.totals = state.epoch + 1, 0, EpochTotals()
    stopping_early = policy.should_stop_early(session, state)
    done = state.epoch >= config.epochs or stopping_early
    policy.save_position(session, state, "complete" if done else "running")
    policy.log(session, row)
    session.progress.message(format_row(row, config.epochs))
    if stopping_early:
        session.progress.message(
            f"Early stopping: {config.monitor} has not improved for {config.early_stopping} "
            f"epochs (best {state.best_score:.4f} at epoch {state.best_epoch})."
        )
        return "early-stopped"
    if stop() and not done:
        policy.log(session, policy.event("interrupted", state, stop.signal_number))
        return "interrupted"
    return "complete" if done else "running"


def format_row(row: dict[str, Any], epochs: int) -> str:
    text = (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_accuracy']:.4f}"
    )
    if "val_loss" in row:
        text += (
            f"  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f} "
            f"bal-acc {row['val_balanced_accuracy']:.4f} kappa {row['val_cohen_kappa']:.4f}"
        )
    if "image_size" in row:  # --progressive-resize
        text += "  at " + "x".join(map(str, row["image_size"]))
    ips = row["images_per_second"]
    return text + f"  {ips or 0:,.0f} img/s  {format_duration(row['epoch_seconds'])}"
