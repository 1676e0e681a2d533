"""Extending a finished run: `cnnlab train --resume RUN --epochs N` trains the added epochs as a
new segment.

A run's epochs form segments; a new run is one segment of `epochs` epochs. Extending a finished
run (complete, or stopped early) to N epochs appends a segment that starts at the next epoch with
a fresh learning-rate schedule of the same kind over the added epochs (a warm restart: the
rate goes back to its base value, momentum buffers and weights carry on). config.json records
the segments (`resolved.segments`) and the new total; metrics.jsonl gets an `extended` event.
Checkpoints hold the current segment's scheduler, so an extension interrupted mid-way resumes
exactly like any other run.
"""

from __future__ import annotations

from cnnlab.errors import CnnlabError
from cnnlab.run import checkpoints as ckpt
from cnnlab.training.optim import build_optimizer, build_scheduler
from cnnlab.training.policy import RunState, event, log
from cnnlab.training.process import writes_files
from cnnlab.training.session import Session, now, recorded_segments

FINISHED = ("complete", "early-stopped")
# Keys a learning-rate scheduler adds to an optimiser's parameter groups; a new segment's
# scheduler sets them again from the base rates.
SCHEDULER_KEYS = ("initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum")


def plan_resume(session: Session) -> tuple[str, ckpt.Checkpoint]:
    """What a resume does, from the newest good checkpoint and the --epochs given: "continue" an
    unfinished run, report a "finished" one, "extend" it, or "begin" a segment recorded by an
    extension that stopped before its first checkpoint. Refuses what cannot be done."""
    run, config = session.run, session.config
    checkpoint = ckpt.latest_checkpoint(run.checkpoints)
    status, done = checkpoint.meta.get("status"), int(checkpoint.meta.get("epoch", 0))
    stored_epochs = int(run.config_record().train.get("epochs", config.epochs))
    requested = config.epochs != stored_epochs
    if status not in FINISHED:
        if requested:
            raise CnnlabError(
                f"'{run.path}' stopped in epoch {done + 1} of {stored_epochs}; resume it without "
                "--epochs to finish it, then extend it with --epochs N."
            )
        return "continue", checkpoint
    if not requested:
        begun = recorded_segments(run)[-1]["first_epoch"] <= done
        return ("finished" if begun else "begin"), checkpoint
    if config.epochs <= done:
        raise CnnlabError(
            f"'{run.path}' has trained {done} epoch(s); --epochs {config.epochs} would not add "
            f"any. Give the new total, above {done}."
        )
    return "extend", checkpoint


def finished_message(session: Session, done: int) -> str:
    path = session.run.path
    return (
        f"'{path}' is finished ({done} epoch(s)); nothing to resume. To train on, give the new "
        f"total: cnnlab train --resume {path} --epochs N (N > {done}); the added epochs run as "
        f"a new segment with a fresh {session.config.schedule} schedule, marked in metrics.jsonl."
    )


def start_segment(session: Session, state: RunState, plan: str) -> None:
    """For "extend": record the new segment (config.json, an `extended` event) and start it; for
    "begin": start the segment already recorded."""
    run, config = session.run, session.config
    segments = recorded_segments(run)
    if plan == "extend":
        segment = {
            "segment": len(segments) + 1,
            "first_epoch": state.epoch + 1,
            "epochs": config.epochs - state.epoch,
            "schedule": config.schedule,
            "started": now(),
        }
        segments.append(segment)
        if writes_files():
            run.update_config(train={"epochs": config.epochs}, resolved={"segments": segments})
        log(session, {**event("extended", state, None), "segment": segment["segment"],
                      "from_epochs": state.epoch, "to_epochs": config.epochs})  # fmt: skip
    segment = segments[-1]
    session.progress.message(
        f"segment {segment['segment']}: epochs {segment['first_epoch']}-{config.epochs}, a fresh "
        f"{config.schedule} schedule over {segment['epochs']} epoch(s)"
    )
    _start_segment(session, state, segment["epochs"])


def _start_segment(session: Session, state: RunState, epochs: int) -> None:
    """Base learning rates back, a new scheduler over `epochs`, the early-stopping count reset."""
    fresh = build_optimizer(session.config, session.model)
    for group, new in zip(session.optimizer.param_groups, fresh.param_groups, strict=True):
        for key in SCHEDULER_KEYS:
            group.pop(key, None)
        group["lr"] = new["lr"]
    session.scheduler = build_scheduler(
        session.config, session.optimizer, session.steps_per_epoch, epochs=epochs
    )
    state.epochs_without_improvement = 0
