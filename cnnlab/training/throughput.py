"""What a run costs, measured before it starts: a folder's files and splits without decoding them,
the decoding rate of a seeded sample (the project's own decoder, data/decode.py), and the training
rate of a few timed steps of the run's own model, loss, optimiser, augmentation and fast path on
random images of the right shape. training/budget.py says and plans with them.
"""

from __future__ import annotations

import logging
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data.augment import augmented_batches, resolve_augmentation
from cnnlab.data.decode import SERIAL_BELOW, Preprocess, decode_files, is_cached
from cnnlab.data.folder import parse_image_size, scan_folder
from cnnlab.data.images import image_header_size
from cnnlab.data.loader import Normalizer
from cnnlab.data.sources import DATASETS, FOLDER_PREFIX
from cnnlab.models import ModelSpec, build_model
from cnnlab.runtime.device import resolve_device
from cnnlab.runtime.fastpath import FastPath, available_cores, choose_fast_path, fast_model
from cnnlab.runtime.predict import StepSettings
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import EpochTotals, train_one_epoch
from cnnlab.training.optim import build_optimizer, build_scheduler
from cnnlab.training.process import process_device, process_threads

DECODE_SAMPLE = 50  # files decoded to measure the decoding rate
# One warm-up step (kernels made, the optimiser's first-step imports), then at least 3 timed steps
# and 0.5 s, at most 20; the median step counts, so a stall (new kernels, a busy machine) doesn't.
WARMUP_STEPS, TIMED_STEPS, TIMED_SECONDS, MAX_STEPS = 1, 3, 0.5, 20
MEASURE_BATCH = 32  # images per timed step (at most --batch-size): per-image cost is much the same
EVAL_SPEEDUP = 3.0  # a validation image costs about a third of a training image (no backward)


def spoken_duration(seconds: float) -> str:
    """'45 s', '4 min', '2 h 10 min': how long, as an estimate is said."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


@dataclass(frozen=True)
class Workload:
    """What a run trains on, known before decoding."""

    channels: int
    num_classes: int
    train_images: int
    val_images: int
    native_size: tuple[int, int]  # (H, W) of most images; a named data set's own
    fixed_size: bool  # named data sets and --image-size: not the planner's to choose

    def epoch_seconds(self, images_per_second: float) -> float:
        return (self.train_images + self.val_images / EVAL_SPEEDUP) / images_per_second


@dataclass(frozen=True)
class DecodeEstimate:
    files: int
    files_per_second: float  # the whole folder on every core; 0 when cached
    cached: bool

    @property
    def seconds(self) -> float:
        return 0.0 if self.cached else self.files / max(self.files_per_second, 1e-9)

    def describe(self) -> str:
        if self.cached:
            return f"decode none ({self.files:,} files already in the cache)"
        return (
            f"decode ~{spoken_duration(self.seconds)} ({self.files:,} files at "
            f"~{self.files_per_second:,.0f}/s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "files_per_second": round(self.files_per_second, 1),
                "cached": self.cached, "seconds": round(self.seconds, 1)}  # fmt: skip


def measure_training(
    config: TrainConfig,
    workload: Workload,
    size: tuple[int, int],
    widths: tuple[int, ...] | None,
    fast: FastPath,
) -> float:
    """Training images per second of the run's model, loss, optimiser, augmentation and fast path
    at this (H, W) and widths (None: the model's own): the median of timed steps on random uint8
    images after a warm-up step."""
    options = dict(config.model_options)
    if widths is not None:
        options["widths"] = list(widths)
    if config.dropout is not None:
        options["dropout"] = config.dropout
    channels = workload.channels
    spec = ModelSpec(config.model, channels, workload.num_classes, size, options)
    model: nn.Module = fast_model(build_model(spec).to(fast.device), fast, config.fast_dropout)
    batch = max(1, min(config.batch_size, MEASURE_BATCH, workload.train_images))
    steps = MAX_STEPS
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer, 100, 1)  # early in warm-up: finite steps
    generator = torch.Generator().manual_seed(config.seed)
    images = torch.randint(0, 256, (batch, channels, *size), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, workload.num_classes, (batch,), generator=generator)
    batches = [(images.to(fast.device), labels.to(fast.device))] * steps
    augmentation = resolve_augmentation(config.to_dict(), config.data, size, config.augment)
    if augmentation.enabled:
        batches = augmented_batches(iter(batches), augmentation, (0.5,) * channels, 0, 0, 0)
    settings = StepSettings(
        Normalizer((0.5,) * channels, (0.25,) * channels), fast.precision, fast.channels_last
    )
    times: list[float] = []

    def enough() -> bool:
        timed = times[WARMUP_STEPS - 1 :]
        return len(timed) > TIMED_STEPS and timed[-1] - timed[0] >= TIMED_SECONDS

    train_one_epoch(
        model, batches, optimizer, scheduler, nn.CrossEntropyLoss(), settings, EpochTotals(),
        should_stop=enough, after_step=lambda totals, count: times.append(time.perf_counter()),
        max_nonfinite_steps=steps + 1,
    )  # fmt: skip
    durations = [
        b - a for a, b in zip(times[WARMUP_STEPS - 1 :], times[WARMUP_STEPS:], strict=False)
    ]
    return batch / max(statistics.median(durations), 1e-9)


def run_fast_path(config: TrainConfig) -> FastPath:
    """The fast path open_session will choose (training/session.py), chosen the same way."""
    device = process_device(resolve_device(config.device))
    threads = process_threads(config.threads, available_cores())
    return choose_fast_path(device, config.precision, config.channels_last, threads)


@dataclass(frozen=True)
class Facts:
    """A data set before it is loaded: its workload, and for a folder the files and decoding."""

    workload: Workload
    root: Path | None = None
    files: tuple[str, ...] = ()
    sample: tuple[str, ...] = ()  # the seeded sample of files decoded to measure the rate


def data_facts(config: TrainConfig) -> Facts:
    """The workload of config.data without decoding it: a folder's files are listed and a seeded
    sample's headers read; a named data set's sizes are in its DATASETS entry."""
    if not config.data.startswith(FOLDER_PREFIX):
        source = DATASETS.get(config.data)
        val = round(source.train_count * config.val_fraction)
        workload = Workload(source.channels, len(source.class_names), source.train_count - val,
                            val, source.image_size, True)  # fmt: skip
        return Facts(workload)
    scan = scan_folder(config.data[len(FOLDER_PREFIX) :])
    root = scan.root.resolve()
    files = [name for pool in ("train", "val", "test") for name in scan.files.get(pool, [])]
    picked = sorted(
        random.Random(config.seed).sample(range(len(files)), min(DECODE_SAMPLE, len(files)))
    )
    sample = tuple(files[i] for i in picked)
    given = parse_image_size(config.image_size)
    headers = Counter(size for name in sample if (size := image_header_size(root / name)))
    native = given or (headers.most_common(1)[0][0] if headers else (64, 64))
    train, val = _split_counts(config, scan.files, scan.split_folders)
    channels = config.channels or 3  # colour unless asked: the larger cost
    workload = Workload(channels, len(scan.class_names), train, val, native, given is not None)
    return Facts(workload, root, tuple(files), sample)


def _split_counts(
    config: TrainConfig, files: dict[str, list[str]], split_folders: bool
) -> tuple[int, int]:
    """(train, val) images as the run's splits will hold them (run/splits.py), to within one."""
    train = len(files["train"])
    if not split_folders or "test" not in files:
        train -= round(train * config.test_fraction)
    val = len(files.get("val", []))
    if not val:
        val = round(train * config.val_fraction)
        train -= val
    return max(1, train), val


def estimate_decode(
    config: TrainConfig, facts: Facts, image_size: tuple[int, int]
) -> DecodeEstimate:
    """The time to decode the folder at this size: none when cached, else the rate of a seeded
    sample decoded in this process, times the processes decode_files will use."""
    files, root = list(facts.files), facts.root
    preprocess = Preprocess(image_size, config.aspect, config.channels)
    if config.cache and is_cached(root, files, preprocess):
        return DecodeEstimate(len(files), 0.0, True)
    start, quiet = time.perf_counter(), logging.getLogger(decode_files.__module__)
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # a sample's "decoding 50 images" is no news to the user
    try:
        decode_files(root, list(facts.sample), preprocess, cache=False, workers=1)
    finally:
        quiet.setLevel(level)
    per_process = len(facts.sample) / max(time.perf_counter() - start, 1e-6)
    processes = available_cores() if len(files) >= SERIAL_BELOW else 1
    return DecodeEstimate(len(files), per_process * processes, False)
