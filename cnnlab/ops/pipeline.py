"""Pipelines of the seed slides' operations, written like the slides' "LN, CO, BN, RL, PO".

Runs a spec such as "LN,CO:stride=2,BN,RL,PO:mode=max:size=3" (parsed by the torch-free grammar
of cnnlab.specs.operations) on a batch of images with cnnlab.ops (seed slide 000, "Convolutional
Layer": LN -> CO -> BN -> RL -> PO).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnlab import ops
from cnnlab.errors import ConfigError
from cnnlab.specs.operations import (
    DEFAULT_PIPELINE,
    STEP_KINDS,
    Step,
    StepKind,
    parse_pipeline,
    parse_size,
)

__all__ = [
    "DEFAULT_PIPELINE",
    "STEP_KINDS",
    "KernelBankChoice",
    "Step",
    "StepKind",
    "StepResult",
    "parse_pipeline",
    "parse_size",
    "run_pipeline",
]


@dataclass(frozen=True)
class KernelBankChoice:
    """Where CO's kernels come from: named kernels, or a seeded random bank of num_random."""

    names: tuple[str, ...] = ("sobel-x", "sobel-y")
    num_random: int = 0
    seed: int = 0
    random_size: tuple[int, int] = (5, 5)  # (height, width)

    def bank(self, in_channels: int, index: int) -> tuple[torch.Tensor, list[str]]:
        if self.num_random:
            seed = self.seed + index  # a second CO gets its own, still reproducible, bank
            bank = ops.random_kernel_bank(self.num_random, in_channels, self.random_size, seed)
            return bank, [f"random {k + 1}" for k in range(self.num_random)]
        return ops.kernel_bank(list(self.names), in_channels), list(self.names)


@dataclass
class StepResult:
    step: str  # e.g. "CO" or "PO:mode=min"
    description: str
    images: torch.Tensor  # [B, C, H, W]
    band_names: list[str]


def run_pipeline(
    images: torch.Tensor, steps: list[Step], bank: KernelBankChoice
) -> list[StepResult]:
    """Apply the steps in order to [B, C, H, W] float images; result 0 is the input itself."""
    names = ["grey"] if images.shape[1] == 1 else ["red", "green", "blue"][: images.shape[1]]
    results = [StepResult("input", "the image as read, values 0..255", images, names)]
    for index, step in enumerate(steps):
        try:
            images, names, detail = _apply(step, images, names, bank, index)
        except ConfigError as error:
            raise ConfigError(f"Pipeline step {index + 1} ({step.token!r}): {error}") from None
        description = f"{step.kind.title}{detail}: {step.kind.formula}"
        results.append(StepResult(step.token, description, images, names))
    return results


def _apply(step: Step, x: torch.Tensor, names: list[str], bank: KernelBankChoice, index: int):
    code, o = step.kind.code, step.options
    if code == "LN":
        return ops.linear_normalization(x, o["mode"]), names, f", per {o['mode']}"
    if code == "CO":
        kernels, names = bank.bank(x.shape[1], index)
        if o["padding"] != "same":  # raises, naming the sizes, if the kernel does not fit
            pad = 0 if o["padding"] == "valid" else o["padding"]
            for axis in (2, 3):
                ops.conv_output_size(x.shape[axis], kernels.shape[axis], pad, o["stride"])
        detail = f" with {', '.join(names)} ({o['padding']} padding, stride {o['stride']})"
        return ops.conv2d(x, kernels, stride=o["stride"], padding=o["padding"]), names, detail
    if code == "BN":
        stats = o["stats"]
        if stats == "auto":
            stats = "pixel" if x.shape[0] >= 2 else "channel"
        if stats == "pixel" and x.shape[0] < 2:
            raise ConfigError(
                "per-pixel statistics (the slides' mu_k(p)) need a set of 2 or more images; "
                "give several IMAGE files or use BN:stats=channel."
            )
        where = "per pixel over the images" if stats == "pixel" else "per band over its pixels"
        return ops.batch_normalization(x, statistics=stats), names, f", statistics {where}"
    if code == "RL":
        return ops.relu(x), names, ""
    if code == "AC":
        return ops.activation(x, o["fn"]), names, f" {o['fn']}"
    if code == "DN":
        height, width = o["size"]
        detail = f" over C of {width} x {height} (w x h)"
        return ops.divisive_normalization(x, (height, width)), names, detail
    height, width = o["size"]  # PO
    window = ops.rectangular_adjacency(width, height)
    detail = f" {o['mode']} over B of {width} x {height}, stride {o['stride']}"
    return ops.pool2d(x, window, o["mode"], o["stride"]), names, detail
