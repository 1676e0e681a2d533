"""What happens between epochs: the position a resumed run needs (`RunState`), checkpoints,
the best checkpoint on the monitored validation metric, early stopping, metrics.jsonl rows.

Checkpoints are written at every epoch end, every `--checkpoint-every-steps` and on interruption;
`best.*` when the monitored metric improves. Only the writing process writes (training.process).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

import torch

from cnnlab.errors import CnnlabError, TrainingAborted
from cnnlab.run import checkpoints as ckpt
from cnnlab.run import layer_stats as layer_stats_file
from cnnlab.training.ema import averaged_or_live, ema_state, restore_ema
from cnnlab.training.layer_stats import LayerStats
from cnnlab.training.loop import EpochTotals, epoch_summary
from cnnlab.training.process import gather_objects, place, writes_files
from cnnlab.training.session import Session, now


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

    def to_dict(self) -> dict[str, Any]:
        """The part of the training state file that is not optimiser, scheduler or RNG."""
        return {
            "epoch": self.epoch,
            "next_batch": self.next_batch,
            "global_step": self.global_step,
            "totals": self.totals.to_dict(),
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    @classmethod
    def from_saved(cls, saved: dict[str, Any], history: list[dict[str, Any]]) -> RunState:
        return cls(
            epoch=int(saved["epoch"]),
            next_batch=int(saved["next_batch"]),
            global_step=int(saved["global_step"]),
            totals=EpochTotals(**saved["totals"]),
            best_score=saved["best_score"],
            best_epoch=saved["best_epoch"],
            epochs_without_improvement=int(saved["epochs_without_improvement"]),
            history=list(history),
        )


def save_position(session: Session, state: RunState, status: str) -> None:
    """A numbered checkpoint of weights and everything needed to continue from this step."""
    if not ckpt.weights_are_finite(session.model):
        raise TrainingAborted(
            f"The weights became NaN or infinite by step {state.global_step}; training has "
            "stopped and the last good checkpoint is kept. Lower --learning-rate (or use "
            "--schedule onecycle for a warm-up) and train again."
        )
    rng = _rng_state(session.device)
    every_rng = gather_objects(rng)  # each process's random stream, for an exact restart
    if not writes_files():
        return
    training_state = {
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.scheduler.state_dict(),
        "scaler": session.scaler.state_dict() if session.scaler else None,
        "rng": rng,
        **({"rng_ranks": every_rng} if len(every_rng) > 1 else {}),
        **ema_state(session.model, session.ema),
        **state.to_dict(),
    }
    meta = {
        "status": status,
        "epoch": state.epoch,
        "next_batch": state.next_batch,
        "global_step": state.global_step,
        "history": state.history,
        "world_size": place().world,
        "saved_at": now(),
    }
    saved = averaged_or_live(session.model, session.ema)  # --ema: the average's weights
    ckpt.save_numbered(session.run.checkpoints, state.global_step, saved, training_state, meta)


def restore(
    session: Session, checkpoint: ckpt.Checkpoint | None = None, announce: bool = True
) -> RunState:
    """Weights, optimiser, scheduler, scaler, RNG and position from the newest good checkpoint
    (or `checkpoint`); `announce` logs a `resumed` event."""
    checkpoint = checkpoint or ckpt.latest_checkpoint(session.run.checkpoints)
    ckpt.apply_weights(session.model, checkpoint)
    saved = checkpoint.state or {}
    try:
        session.optimizer.load_state_dict(saved["optimizer"])
        session.scheduler.load_state_dict(saved["scheduler"])
        if session.scaler is not None and saved.get("scaler"):
            session.scaler.load_state_dict(saved["scaler"])
        _restore_rng(session, saved, int(checkpoint.meta.get("world_size", 1)))
        restore_ema(session.model, session.ema, checkpoint.weights, saved)
        state = RunState.from_saved(saved, checkpoint.meta.get("history", []))
    except (KeyError, TypeError, ValueError) as error:
        raise CnnlabError(
            f"Checkpoint '{checkpoint.path}' lacks training state ({error!r}); it cannot be "
            "resumed."
        ) from None
    # Epoch rows written after this checkpoint's epoch belong to a future that will be redone;
    # rows the checkpoint knows but metrics.jsonl lost (a crash between the two writes) come back.
    logged = {row.get("epoch") for row in session.run.logged_rows()}
    for row in state.history:
        if row["epoch"] not in logged:
            log(session, row)
    if writes_files():  # layer statistics after the checkpoint will be recorded again
        layer_stats_file.drop_rows_after(session.run, state.global_step)
    if announce:
        log(session, event("resumed", state, None))
    return state


def track_best(session: Session, state: RunState, row: dict[str, Any]) -> None:
    """After validation: save `best.*` if the monitored metric improved (with --keep best), else
    count a miss. With --keep last the best epoch is still tracked (for early stopping and the
    summary), but no best.* is written: the last checkpoint is the run's result."""
    monitor = session.config.monitor
    if not improved(monitor, row[monitor], state.best_score):
        state.epochs_without_improvement += 1
        return
    state.best_score, state.best_epoch = row[monitor], state.epoch + 1
    state.epochs_without_improvement = 0
    if writes_files() and session.config.keep == "best":
        meta = {
            "epoch": state.epoch + 1,
            "monitor": monitor,
            "score": state.best_score,
            "global_step": state.global_step,
        }
        best = averaged_or_live(session.model, session.ema)
        ckpt.save_checkpoint(session.run.checkpoints, "best", best, None, meta)


def should_stop_early(session: Session, state: RunState) -> bool:
    patience = session.config.early_stopping
    return bool(patience) and state.epochs_without_improvement >= patience


def improved(monitor: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


def best_summary(session: Session, state: RunState) -> dict[str, Any]:
    return {
        "best_epoch": state.best_epoch,
        "monitor": session.config.monitor,
        "best_score": state.best_score,
    }


def epoch_row(state: RunState, learning_rate: float, seconds: float) -> dict[str, Any]:
    totals = state.totals
    return {
        "kind": "epoch",
        "epoch": state.epoch + 1,
        "step": state.global_step,
        **epoch_summary(totals),
        "lr": learning_rate,
        "skipped_steps": totals.skipped_steps,
        "epoch_seconds": round(seconds, 3),
        "images_per_second": round(totals.seen / seconds, 1) if seconds > 0 else None,
        "time": now(),
    }


def event(name: str, state: RunState, signal_number: int | None) -> dict[str, Any]:
    row = {"kind": "event", "event": name, "epoch": state.epoch + 1, "step": state.global_step}
    if signal_number is not None:
        row["signal"] = signal.Signals(signal_number).name
    return row | {"time": now()}


def record_layer_stats(session: Session, state: RunState, stats: LayerStats) -> None:
    """After step `state.global_step`: its row of RUN/layer_stats.jsonl if it is recorded, and
    the weights the next step starts from if that one is."""
    row = stats.after_step(state.global_step, state.epoch + 1)
    if row is not None and writes_files():
        layer_stats_file.append_row(session.run, row)
    stats.before_step(state.global_step + 1)


def log(session: Session, row: dict[str, Any]) -> None:
    if writes_files():
        session.run.log(row)


def _rng_state(device: torch.device) -> dict[str, Any]:
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _restore_rng(session: Session, saved: dict[str, Any], saved_world: int) -> None:
    """Each process's random stream as saved; with another number of processes than the
    checkpoint's, rank 0's and derived ones, and a line saying the run is no longer bit-exact."""
    here = place()
    ranks = saved.get("rng_ranks") or [saved["rng"]]
    if saved_world == here.world and len(ranks) == here.world:
        _set_rng_state(ranks[here.rank])
        return
    _set_rng_state(saved["rng"])
    if here.rank:
        torch.manual_seed(session.config.seed + 1_000_003 * here.rank + len(ranks))
    session.progress.message(
        f"the checkpoint was written by {saved_world} process(es) and is resumed by {here.world}: "
        "the global batches and the learning-rate schedule are the same, each process's shard "
        "and random stream are not, so the result is not bit-exact with an uninterrupted run"
    )


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
