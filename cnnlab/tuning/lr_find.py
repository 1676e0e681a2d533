"""The learning-rate range test (Smith 2015, "Cyclical learning rates", section 3.3; Smith 2017):
train for a few hundred steps while the rate grows geometrically from `start_lr` to `end_lr`, and
read a good peak rate off the loss curve.

As fastai's `lr_find` and Lightning's `LearningRateFinder` do it: one rate per step, a smoothed
loss (exponential moving average, beta 0.98, bias corrected), the sweep stopped once the smoothed
loss exceeds 4x its best. Two suggestions: "steepest", the rate where the smoothed loss falls
fastest against log(rate) (Lightning's suggestion, fastai's "steep"; the first 10 points and the
last are skipped, as Lightning does), and "minimum", a tenth of the rate at the lowest smoothed
loss (fastai's "minimum"). The model is a fresh copy; no run directory is written.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import ConfigError
from cnnlab.fileio import atomic_write_text, make_folder
from cnnlab.runtime.predict import prepare
from cnnlab.tuning.bench import Bench

SMOOTHING = 0.98  # fastai's and Lightning's beta
DIVERGENCE = 4.0  # stop when the smoothed loss passes this multiple of its best
SKIP_BEGIN, SKIP_END = 10, 1  # points the steepest-slope suggestion ignores (Lightning's)
SUGGESTIONS = ("steepest", "minimum")


@dataclass
class RangeTest:
    """The sweep: the rate of every step taken, its loss, and the smoothed loss."""

    learning_rates: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    diverged: bool = False
    suggestions: dict[str, float | None] = field(default_factory=dict)
    suggestion: str = "steepest"

    @property
    def suggested(self) -> float | None:
        return self.suggestions.get(self.suggestion)

    def to_dict(self) -> dict:
        """As JSON takes it: a loss that overflowed or became NaN is null."""
        data = asdict(self)
        for key in ("losses", "smoothed"):
            data[key] = [v if math.isfinite(v) else None for v in data[key]]
        return {**data, "suggested_learning_rate": self.suggested}


def sweep_rates(start_lr: float, end_lr: float, steps: int) -> np.ndarray:
    """The geometric sequence of rates, one per step: start * (end / start) ** (i / (n - 1))."""
    if not 0 < start_lr < end_lr:
        raise ConfigError(
            f"--start-lr {start_lr} and --end-lr {end_lr} are invalid: need 0 < start < end."
        )
    if steps < SKIP_BEGIN + SKIP_END + 2:
        raise ConfigError(f"--steps {steps} is too few: use at least {SKIP_BEGIN + SKIP_END + 2}.")
    exponents = np.arange(steps) / (steps - 1)
    return start_lr * (end_lr / start_lr) ** exponents


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Bias-corrected exponential moving average: avg_i / (1 - beta ** (i + 1))."""
    average, out = 0.0, []
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** (i + 1)))
    return out


def suggest(learning_rates: list[float], smoothed: list[float]) -> dict[str, float | None]:
    """Both suggestions; None where the sweep is too short to tell."""
    rates, losses = np.asarray(learning_rates), np.asarray(smoothed)
    finite = np.isfinite(losses)  # a diverged sweep may end in inf or nan
    rates, losses = rates[finite], losses[finite]
    if not len(losses):
        return {"steepest": None, "minimum": None}
    minimum = float(rates[int(np.argmin(losses))]) / 10
    if len(losses) < SKIP_BEGIN + SKIP_END + 2:
        return {"steepest": None, "minimum": minimum}
    kept = slice(SKIP_BEGIN, len(losses) - SKIP_END)
    slopes = np.gradient(losses[kept], np.log(rates[kept]))
    return {"steepest": float(rates[kept][int(np.argmin(slopes))]), "minimum": minimum}


def find_learning_rate(
    bench: Bench,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 100,
    suggestion: str = "steepest",
    stop_on_divergence: bool = True,
) -> RangeTest:
    """Run the range test on a copy of `bench.model`'s initial weights (the model is left as is)."""
    import copy

    if suggestion not in SUGGESTIONS:
        raise ConfigError(
            f"--suggestion {suggestion!r} is invalid: choose one of {', '.join(SUGGESTIONS)}."
        )
    rates = sweep_rates(start_lr, end_lr, steps)
    model = copy.deepcopy(bench.model)
    optimizer = bench.optimizer(model)
    # Groups keep their ratio to the peak rate (fine-tuning's per-stage rates).
    ratios = [g["lr"] / bench.config.resolved_learning_rate for g in optimizer.param_groups]
    result = RangeTest(suggestion=suggestion)
    batches = bench.batches(bench.config.batch_size, bench.config.seed)
    model.train()
    for rate in rates:
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            group["lr"] = float(rate) * ratio
        images, labels = next(batches)
        loss = bench.loss_fn(model(prepare(images, bench.settings)), labels)
        optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            optimizer.step()
        result.learning_rates.append(float(rate))
        result.losses.append(loss.item())
        result.smoothed = smooth(result.losses)
        best = min(result.smoothed)
        if stop_on_divergence and _diverged(result.smoothed[-1], best):
            result.diverged = True
            break
    result.suggestions = suggest(result.learning_rates, result.smoothed)
    return result


def _diverged(smoothed: float, best: float) -> bool:
    return not math.isfinite(smoothed) or smoothed > DIVERGENCE * best


def write_outputs(result: RangeTest, out: str | Path, optimizer: str) -> dict[str, Path]:
    """lr_find.json, lr_find.png and suggested.toml (`cnnlab train --config` reads it)."""
    import json

    out = make_folder(out)
    paths = {
        "json": out / "lr_find.json",
        "plot": out / "lr_find.png",
        "config": out / "suggested.toml",
    }
    atomic_write_text(paths["json"], json.dumps(result.to_dict(), indent=2) + "\n")
    plot(result, paths["plot"])
    if result.suggested is not None:
        atomic_write_text(
            paths["config"],
            f"# cnnlab lr-find: the {result.suggestion} suggestion for {optimizer}\n"
            f'[train]\noptimizer = "{optimizer}"\nlearning_rate = {result.suggested!r}\n',
        )
    else:
        paths.pop("config")
    return paths


def plot(result: RangeTest, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    try:
        axes.plot(result.learning_rates, result.losses, color="0.75", lw=0.8, label="loss")
        axes.plot(result.learning_rates, result.smoothed, color="C0", label="smoothed loss")
        for name, rate in result.suggestions.items():
            if rate is not None:
                style = "-" if name == result.suggestion else ":"
                axes.axvline(rate, color="C3", ls=style, label=f"{name}: {rate:.3g}")
        axes.set_xscale("log")
        finite = [v for v in result.smoothed if math.isfinite(v)]
        if finite:  # the divergence at the end would squash the interesting part
            lowest = min(v for v in result.losses + finite if math.isfinite(v))
            axes.set_ylim(lowest * 0.9, min(max(finite), 4 * min(finite)) * 1.05)
        axes.set_xlabel("learning rate")
        axes.set_ylabel("training loss")
        axes.set_title("learning-rate range test")
        axes.legend(fontsize="small")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
