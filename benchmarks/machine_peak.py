"""How close training runs to what the machine can do (issue 17, item 4): a matrix-multiply
micro-benchmark gives the measured peak in fp32 and bf16; a few training steps of each recipe
network under torch.profiler give where the time goes by operator kind; multiply-accumulates
counted by cnnlab.models.summary turn training images/s into achieved GFLOP/s.

Achieved GFLOP/s = 6 x MACs per image x images/s: a multiply-accumulate is 2 FLOP and the
backward pass costs twice the forward (gradients of the inputs and of the weights). It counts
convolutions and dense layers only (BatchNorm, activations and pooling add a few percent) and
credits the first convolution with an input gradient it never computes, so it is an estimate.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

OPERATOR_KINDS = (
    "conv forward", "conv backward", "batch norm", "activation", "pooling", "optimizer", "casts",
    "other",
)  # fmt: skip
CAST_OPERATORS = {"aten::to", "aten::_to_copy", "ToCopyBackward0"}  # autocast's dtype changes
ACTIVATIONS = ("relu", "gelu", "clamp_min", "threshold_backward", "silu", "sigmoid", "tanh")
# The recipe networks profiled: (recipe, data set named in the config, image shape [C, H, W]).
RECIPE_SHAPES = (
    ("mnist", "mnist", (1, 28, 28)),
    ("fashion-mnist", "fashion-mnist", (1, 28, 28)),
    ("cifar10", "folder:cifar10-jpg", (3, 32, 32)),
)
WARMUP_STEPS = 3  # oneDNN builds its kernels for each new shape in the first steps


def matmul_gflops(size: int, seconds: float) -> float:
    """A [size, size] @ [size, size] product is size**3 multiply-accumulates, 2 FLOP each."""
    return 2 * size**3 / seconds / 1e9


def training_gflops(macs_per_image: int, images_per_second: float) -> float:
    """Forward 2 FLOP per multiply-accumulate, backward twice the forward: 6 per MAC."""
    return 6 * macs_per_image * images_per_second / 1e9


def macs_per_image(model, input_shape: tuple[int, int, int]) -> int:
    from cnnlab.models.summary import summarize

    return summarize(model, input_shape).total_macs


def measure_peak(size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """Best of `repeats` torch.mm of two random [size, size] matrices, fp32 and bf16, on all of
    torch's threads: the rate this machine's BLAS/oneDNN reaches on the friendliest workload."""
    import torch

    rates = {}
    generator = torch.Generator().manual_seed(0)
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, generator=generator).to(dtype)
        b = torch.randn(size, size, generator=generator).to(dtype)
        torch.mm(a, b)  # warm-up: the first call picks and builds the kernel
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        rates[f"{label}_gflops"] = round(matmul_gflops(size, best), 1)
    return {"size": size, "repeats": repeats, "threads": torch.get_num_threads(), **rates}


def operator_kind(chain: Sequence[str]) -> str:
    """The kind of an operator, from its name and its callers' (nearest first): the nearest name
    that says convolution, BatchNorm, activation, pooling, optimiser or cast decides."""
    for name in chain:
        lower = name.lower()
        if lower.startswith("optimizer."):  # torch.optim's "Optimizer.step#SGD.step"
            return "optimizer"
        if name in CAST_OPERATORS:
            return "casts"
        if "conv" in lower:
            return "conv backward" if "backward" in lower else "conv forward"
        if "batch_norm" in lower or "batchnorm" in lower:
            return "batch norm"
        if any(word in lower for word in ACTIVATIONS):
            return "activation"
        if "pool" in lower:
            return "pooling"
    return "other"


def operator_seconds(events: Iterable[Any]) -> dict[str, float]:
    """Self time (seconds) by operator kind of profiler events (FunctionEvent: name, cpu_parent,
    self_cpu_time_total in microseconds); self times add up without counting a call twice."""
    totals = dict.fromkeys(OPERATOR_KINDS, 0.0)
    for event in events:
        chain, node = [], event
        while node is not None:
            chain.append(node.name)
            node = node.cpu_parent
        totals[operator_kind(chain)] += event.self_cpu_time_total / 1e6
    return totals


def profile_recipe(recipe: str, data: str, shape: tuple[int, int, int], steps: int) -> dict:
    """Train the recipe's network, optimiser, loss, augmentation and fast path on one random batch
    of its shape: `steps` timed steps (the median step gives images/s), then `steps` more under
    torch.profiler (the shares of time by operator kind)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from cnnlab.data.augment import augmented_batches, resolve_augmentation
    from cnnlab.data.loader import Normalizer
    from cnnlab.models import ModelSpec, build_model, resolve_model_argument
    from cnnlab.runtime.fastpath import choose_fast_path
    from cnnlab.runtime.predict import StepSettings
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.loop import EpochTotals, train_one_epoch
    from cnnlab.training.optim import build_optimizer, build_scheduler

    config = TrainConfig.from_dict({"data": data, "recipe": recipe})
    fast = choose_fast_path(torch.device("cpu"))  # the machine's defaults, as `cnnlab train`
    channels, height, width = shape
    name, options = resolve_model_argument(config.model, dict(config.model_options))
    model = build_model(ModelSpec(name, channels, 10, (height, width), options))
    macs = macs_per_image(model, shape)
    if fast.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer, 2 * steps + WARMUP_STEPS, 1)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (config.batch_size, *shape), dtype=torch.uint8, generator=generator
    )
    labels = torch.randint(0, 10, (config.batch_size,), generator=generator)
    augmentation = resolve_augmentation(
        config.to_dict(), config.data, (height, width), config.augment
    )
    settings = StepSettings(Normalizer((0.5,) * channels, (0.25,) * channels), fast.precision,
                            fast.channels_last)  # fmt: skip
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def train(count: int, after_step=lambda totals, seen: None) -> None:
        batches = [(images, labels)] * count
        if augmentation.enabled:
            batches = augmented_batches(iter(batches), augmentation, (0.5,) * channels, 0, 0)
        train_one_epoch(model, batches, optimizer, scheduler, loss_fn, settings, EpochTotals(),
                        after_step=after_step, max_nonfinite_steps=count + 1)  # fmt: skip

    train(WARMUP_STEPS)
    times = [time.perf_counter()]
    train(steps, after_step=lambda totals, count: times.append(time.perf_counter()))
    step_seconds = statistics.median(b - a for a, b in zip(times, times[1:], strict=False))
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        train(steps)
    wall = time.perf_counter() - start
    seconds = operator_seconds(profiler.events())
    total = sum(seconds.values())
    rate = config.batch_size / step_seconds
    return {
        "recipe": recipe, "model": config.model, "batch_size": config.batch_size,
        "precision": fast.precision, "channels_last": fast.channels_last, "threads": fast.threads,
        "macs_per_image": macs, "images_per_second": round(rate, 1),
        "achieved_gflops": round(training_gflops(macs, rate), 2),
        "shares": {kind: round(value / total, 4) for kind, value in seconds.items()},
        "operator_seconds": round(total, 3), "profiled_wall_seconds": round(wall, 3),
    }  # fmt: skip
