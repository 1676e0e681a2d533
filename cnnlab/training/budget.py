"""Time before training: say how long a run will take, and plan one that fits `--time-budget`.

From rates measured on this machine, never assumed (training/throughput.py). The budget covers
training and validation; decoding (once per image size, then cached) comes on top and is
estimated apart. A planned run's clock stops it at an epoch's end if it runs slower than measured.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TextIO

import torch

from cnnlab.data.folder import automatic_image_size, parse_image_size
from cnnlab.data.sources import FOLDER_PREFIX
from cnnlab.errors import ConfigError
from cnnlab.models import model_min_image_size
from cnnlab.training.config import TrainConfig, parse_duration
from cnnlab.training.process import place
from cnnlab.training.throughput import (
    DecodeEstimate,
    Workload,
    data_facts,
    estimate_decode,
    measure_training,
    run_fast_path,
    spoken_duration,
)

SIZES = (128, 96, 64, 48, 32)  # longest side of the image sizes a budget chooses from
HALF_WIDTHS = (16, 32, 64)  # small-cnn at half its default widths (32, 64, 128)
SAFETY = 0.85  # plan to use this share of the budget; the rest absorbs what is not measured
MIN_EPOCHS = 3  # fewer epochs than this only when even the smallest candidate allows no more
GOOD_EPOCHS = 6  # a larger image or width is preferred only while it leaves this many epochs
LONG_RUN_SECONDS = 30 * 60  # estimates above this say so and suggest --time-budget
ESTIMATE_ABOVE = 5_000  # image passes (train images x epochs) of runs too short to estimate
PLAN_VARIABLE = "CNNLAB_TIME_BUDGET_PLAN"  # --nproc: the plan made once, for every process
RULE = (
    f"candidates in order of preference: larger images first (never above the images' own size), "
    f"at each size the model's own widths before half; the first that fits {GOOD_EPOCHS} epochs "
    f"(or --epochs if fewer) in {SAFETY:.0%} of the budget is chosen, with as many epochs as fit "
    f"up to --epochs; else the largest that fits {MIN_EPOCHS}; else the one that fits most"
)


@dataclass(frozen=True)
class Candidate:
    image_size: tuple[int, int]  # (H, W)
    widths: tuple[int, ...] | None = None  # None: the model's own

    def describe(self) -> str:
        return f"{self.image_size[1]}x{self.image_size[0]}"  # WIDTHxHEIGHT, as --image-size


@dataclass
class Option:
    """A candidate's verdict: its rate (measured, or an upper bound), epochs and seconds."""

    candidate: Candidate
    images_per_second: float
    measured: bool
    epochs: int
    predicted_seconds: float
    fit: float = 0.0  # epochs that fit, unrounded

    def to_dict(self) -> dict[str, Any]:
        widths = list(self.candidate.widths) if self.candidate.widths else None
        rate, seconds = round(self.images_per_second, 1), round(self.predicted_seconds, 1)
        return {"image_size": self.candidate.describe(), "widths": widths,
                "images_per_second": rate, "measured": self.measured, "epochs": self.epochs,
                "predicted_seconds": seconds}  # fmt: skip


def _scaled(native: tuple[int, int], longest: int) -> tuple[int, int]:
    scale = min(1.0, longest / max(native))
    return (
        max(1, math.floor(native[0] * scale + 0.5)),
        max(1, math.floor(native[1] * scale + 0.5)),
    )


def candidates(config: TrainConfig, workload: Workload) -> list[Candidate]:
    """Image sizes (largest first, never upscaled, none below what the model accepts) times
    widths (the model's own, then half)."""
    if workload.fixed_size:
        sizes = [workload.native_size]
    else:
        sizes = list(dict.fromkeys(_scaled(workload.native_size, side) for side in SIZES))
        smallest = model_min_image_size(config.model)
        sizes = [size for size in sizes if min(size) >= smallest] or sizes[:1]
    widths: list[tuple[int, ...] | None] = [None]
    if config.model == "small-cnn" and "widths" not in config.model_options:
        widths.append(HALF_WIDTHS)
    return [Candidate(size, width) for size in sizes for width in widths]


def choose(
    options: list[Candidate],
    measure: Callable[[Candidate], float],
    workload: Workload,
    available: Callable[[], float],
    max_epochs: int,
) -> tuple[Option, list[Option]]:
    """The plan (RULE) and every candidate considered, in order of preference.

    `available()` is the training time left to plan with: every candidate is judged against its
    value at the start, and the chosen one loses the epochs that the measuring itself took. A
    candidate whose rate bound (_rate_bound) cannot fit the epochs wanted is not measured; when
    none fits them, the fastest candidate (the last) is measured too."""
    good, at_start = min(GOOD_EPOCHS, max_epochs), max(available(), 1e-3)
    considered: list[Option] = []
    measured: dict[Candidate, float] = {}

    def option(candidate: Candidate, rate: float, is_measured: bool, time: float) -> Option:
        fit = max(time, 1e-3) / workload.epoch_seconds(rate)  # > 0: a faster one fits more
        epochs = min(max_epochs, math.floor(fit))
        seconds = max(1, epochs) * workload.epoch_seconds(rate)
        return Option(candidate, rate, is_measured, epochs, seconds, fit)

    chosen = None
    for candidate in options:
        bound = _rate_bound(candidate, measured)
        if bound is not None and option(candidate, bound, False, at_start).epochs < good:
            considered.append(option(candidate, bound, False, at_start))
            continue
        measured[candidate] = measure(candidate)
        considered.append(option(candidate, measured[candidate], True, at_start))
        if considered[-1].epochs >= good:
            chosen = considered[-1]
            break
    if chosen is None:
        if options[-1] not in measured:
            measured[options[-1]] = measure(options[-1])
            considered[-1] = option(options[-1], measured[options[-1]], True, at_start)
        real = [o for o in considered if o.measured]
        floor = [o for o in real if o.epochs >= min(MIN_EPOCHS, max_epochs)]
        chosen = floor[0] if floor else max(real, key=lambda o: o.fit)
    now = option(chosen.candidate, chosen.images_per_second, True, available())
    epochs = max(1, min(chosen.epochs, now.epochs))  # at least one: the clock stops after it
    seconds = epochs * workload.epoch_seconds(chosen.images_per_second)
    return replace(chosen, epochs=epochs, predicted_seconds=seconds), considered


def _rate_bound(candidate: Candidate, measured: dict[Candidate, float]) -> float | None:
    """An upper bound on a candidate's rate from a measured one at least as large: the cost of a
    convolution grows with the pixels, and half the widths cost at least a quarter."""
    bounds = []
    for other, rate in measured.items():
        if min(other.image_size[0] - candidate.image_size[0],
               other.image_size[1] - candidate.image_size[1]) < 0:  # fmt: skip
            continue
        pixels = math.prod(other.image_size) / math.prod(candidate.image_size)
        width = 4.0 if candidate.widths and not other.widths else 1.0
        if other.widths and not candidate.widths:
            continue
        bounds.append(rate * pixels * width)
    return min(bounds) if bounds else None


def plan_budget(config: TrainConfig, stream: TextIO | None) -> tuple[TrainConfig, dict[str, Any]]:
    """The settings that fit config.time_budget (image size, widths, epochs), and the record of
    the choice for config.json (resolved.time_budget); the choice is printed to `stream`."""
    started = time.perf_counter()
    budget = parse_duration(config.time_budget)
    facts = data_facts(config)
    fast = run_fast_path(config)
    options = candidates(config, facts.workload)

    def available() -> float:
        return budget * SAFETY - (time.perf_counter() - started)

    chosen, considered = choose(
        options, lambda c: measure_training(config, facts.workload, c.image_size, c.widths, fast),
        facts.workload, available, config.epochs,
    )  # fmt: skip
    decode = None
    if facts.root is not None:
        decode = estimate_decode(config, facts, chosen.candidate.image_size)
    planned = _apply(config, facts.workload, chosen)
    record = {
        "budget": config.time_budget,
        "budget_seconds": budget,
        "safety": SAFETY,
        "rule": RULE,
        "train_images": facts.workload.train_images,
        "val_images": facts.workload.val_images,
        "fast_path": fast.to_dict(),
        "planning_seconds": round(time.perf_counter() - started, 1),
        "decode": decode.to_dict() if decode else None,
        "chosen": chosen.to_dict(),
        "considered": [o.to_dict() for o in considered],
        "settings": {
            "image_size": planned.image_size,
            "epochs": planned.epochs,
            "model_options": dict(planned.model_options),
        },  # fmt: skip
    }
    say(stream, plan_lines(record, decode))
    return planned, record


def _apply(config: TrainConfig, workload: Workload, chosen: Option) -> TrainConfig:
    changes: dict[str, Any] = {"epochs": chosen.epochs}
    if not workload.fixed_size:
        height, width = chosen.candidate.image_size
        changes["image_size"] = f"{width}x{height}"
    if chosen.candidate.widths is not None:
        changes["model_options"] = {**config.model_options, "widths": list(chosen.candidate.widths)}
    return replace(config, **changes)


def plan_lines(record: dict[str, Any], decode: DecodeEstimate | None) -> list[str]:
    chosen = record["chosen"]
    widths = f", widths {chosen['widths']}" if chosen["widths"] else ""
    over = chosen["predicted_seconds"] > record["budget_seconds"]
    return [
        f"time budget {record['budget']}: image size {chosen['image_size']}{widths}, "
        f"{chosen['epochs']} epoch(s) at ~{chosen['images_per_second']:,.0f} img/s, "
        f"predicted ~{spoken_duration(chosen['predicted_seconds'])} of training"
        + (f" (+ {decode.describe()})" if decode else "")
        + (" - MORE than the budget: even the smallest choice is too slow" if over else ""),
        f"  measured in {record['planning_seconds']:.0f} s, considered: "
        + "; ".join(
            f"{o['image_size']}{' half width' if o['widths'] else ''} "
            f"{'' if o['measured'] else '<='}{o['images_per_second']:,.0f} img/s "
            f"-> {o['epochs']} epoch(s)"
            for o in record["considered"]
        ),  # fmt: skip
    ]


def say(stream: TextIO | None, lines: list[str]) -> None:
    if stream is not None:
        for line in lines:
            print(line, file=stream, flush=True)


def estimate_run(config: TrainConfig, stream: TextIO | None) -> dict[str, Any] | None:
    """For a folder: the predicted decoding and training time, said before either starts, with a
    plain warning and the --time-budget suggestion when it exceeds LONG_RUN_SECONDS. None (and
    nothing said) for named data sets and runs too small to be worth the measurement."""
    if not config.data.startswith(FOLDER_PREFIX):
        return None
    facts = data_facts(config)
    workload = facts.workload
    if workload.train_images * config.epochs < ESTIMATE_ABOVE and len(facts.files) < ESTIMATE_ABOVE:
        return None
    size = (
        parse_image_size(config.image_size)
        or automatic_image_size(facts.root, list(facts.files))[0]
    )
    decode = estimate_decode(config, facts, size)
    fast = run_fast_path(config)
    rate = measure_training(config, workload, size, None, fast)
    seconds = config.epochs * workload.epoch_seconds(rate)
    height, width = size
    lines = [
        f"estimated: {decode.describe()}, training ~{spoken_duration(seconds)} ({config.epochs} "
        f"epochs of {workload.train_images:,} images at ~{rate:,.0f} img/s, {width}x{height}, "
        f"{config.model})"
    ]
    if decode.seconds + seconds > LONG_RUN_SECONDS:
        lines.append(
            f"  that is over {LONG_RUN_SECONDS // 60} minutes. To finish sooner, give a time "
            "budget (--time-budget 10m picks the image size, width and epochs that fit, from "
            "measured speed) or a smaller image size (--image-size 64). Training starts anyway."
        )
    say(stream, lines)
    return {"decode": decode.to_dict(), "training_seconds": round(seconds, 1),
            "images_per_second": round(rate, 1), "image_size": f"{width}x{height}",
            "epochs": config.epochs, "train_images": workload.train_images,
            "val_images": workload.val_images}  # fmt: skip


def before_training(
    config: TrainConfig, stream: TextIO | None
) -> tuple[TrainConfig, dict[str, Any]]:
    """What a new run does before loading its data: plan --time-budget (or apply the plan the
    --nproc launcher made), or estimate a folder's time. Returns the config to train and the
    records for config.json's `resolved`."""
    shared = os.environ.get(PLAN_VARIABLE)
    if config.time_budget and shared:  # made once by `--nproc`, before the processes started
        record = json.loads(shared)
        settings = record["settings"]
        return replace(config, **settings), {"time_budget": record}
    if config.time_budget:
        if place().distributed:
            raise ConfigError(
                "--time-budget plans from speed measured in one process: start the group with "
                "`cnnlab train --nproc N --time-budget ...`, which plans once for every process."
            )
        planned, record = plan_budget(config, stream)
        return planned, {"time_budget": record}
    if place().rank:  # one estimate is enough: rank 0 says it
        return config, {}
    estimate = estimate_run(config, stream)
    return config, ({"estimate": estimate} if estimate else {})


def export_plan(config: TrainConfig, stream: TextIO | None) -> None:
    """`--nproc N --time-budget T`: plan here, once, and hand the plan to the processes."""
    _, record = plan_budget(config, stream)
    os.environ[PLAN_VARIABLE] = json.dumps(record)


class BudgetClock:
    """Enforces a planned budget: after an epoch, stop if the next one would end past it.
    Decoding does not count; every process of a group takes rank 0's decision."""

    def __init__(self, budget_seconds: float, started: float, excluded: float = 0.0) -> None:
        self.budget_seconds, self.started, self.excluded = budget_seconds, started, excluded

    def elapsed(self) -> float:
        return time.perf_counter() - self.started - self.excluded

    def out_of_time(self, last_epoch_seconds: float, device: torch.device) -> bool:
        over = self.elapsed() + last_epoch_seconds > self.budget_seconds
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            decision = torch.tensor([1.0 if over else 0.0], device=device)
            torch.distributed.broadcast(decision, src=0)
            over = bool(decision.item())
        return over
