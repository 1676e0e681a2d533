"""Pipelines of the seed slides' operations, written like the slides' "LN, CO, BN, RL, PO".

Parses a spec such as "LN,CO:stride=2,BN,RL,PO:mode=max:size=3" and runs it on a batch of images
with cnnlab.ops (seed slide 000, "Convolutional Layer": LN -> CO -> BN -> RL -> PO).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from cnnlab import ops
from cnnlab.errors import ConfigError
from cnnlab.registry import Registry

DEFAULT_PIPELINE = "LN,CO,BN,RL,PO"


def parse_size(text: str) -> tuple[int, int]:
    """ "WxH" or "N" -> (height, width); sizes on the command line are width x height like the
    slides' w x h (the slides' divisive normalisation rectangle is 25x5: 25 wide, 5 high)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"{text!r} is not a size; write WIDTHxHEIGHT like 25x5, or one number")
    width, height = (int(parts[0]),) * 2 if len(parts) == 1 else map(int, parts)
    return height, width


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} is not a positive integer")
    return int(text)


def _padding(text: str) -> str | int:
    if text in ("same", "valid"):
        return text
    if text.isdigit():
        return int(text)
    raise ValueError(f"{text!r} is not a padding; write same, valid or a number of pixels")


def _choice(*choices: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return convert


@dataclass(frozen=True)
class StepKind:
    """One kind of pipeline step: its code, what it does, and its options with defaults."""

    code: str
    title: str
    formula: str
    options: dict[str, tuple[str, Callable[[str], Any]]] = field(default_factory=dict)

    def usage(self) -> str:
        opts = ":".join(f"{k}={d}" for k, (d, _) in self.options.items())
        return f"{self.code}:{opts}" if opts else self.code


STEP_KINDS: Registry[StepKind] = Registry("pipeline step")
for kind in (
    StepKind(
        "LN",
        "linear normalisation",
        "N_k(p) = (I_k(p) - min I_k) / (max I_k - min I_k)",
        {"mode": ("image", _choice(*ops.normalization.LINEAR_NORMALIZATION_MODES))},
    ),
    StepKind(
        "CO",
        "convolution",
        "J_k(p) = sum_i <I(q_i), w_k,i>",
        {"padding": ("same", _padding), "stride": ("1", _positive_int)},
    ),
    StepKind(
        "BN",
        "batch normalisation",
        "N_k = (I_k - mu_k) / sigma_k * gamma + beta, gamma = 1, beta = 0",
        {"stats": ("auto", _choice("auto", *ops.normalization.BATCH_STATISTICS))},
    ),
    StepKind("RL", "ReLU", "R_k(p) = max{0, J_k(p)}"),
    StepKind(
        "AC",
        "activation",
        "R_k(p) = f(J_k(p))",
        {"fn": ("relu", _choice(*ops.activations.accepted_names()))},
    ),
    StepKind(
        "DN",
        "divisive normalisation",
        "N_k(p) = I_k(p) / sqrt(sum over q in C(p) of I_k(q)^2)",
        {"size": ("25x5", parse_size)},
    ),
    StepKind(
        "PO",
        "pooling",
        "P_k(p) = max / min / mean over q in B(p) of R_k(q)",
        {
            "mode": ("max", _choice(*ops.pooling.POOLING_MODES)),
            "size": ("3", parse_size),
            "stride": ("2", _positive_int),
        },
    ),
):
    STEP_KINDS.add(kind.code, kind)


@dataclass(frozen=True)
class Step:
    kind: StepKind
    options: dict[str, Any]
    token: str


def parse_pipeline(spec: str) -> list[Step]:
    """ "LN,CO:stride=2,RL" -> steps; an error names the offending token and marks it."""
    steps, start = [], 0
    for token in spec.split(","):
        steps.append(_parse_step(token.strip(), spec, start))
        start += len(token) + 1
    return steps


def _parse_step(token: str, spec: str, start: int) -> Step:
    def fail(problem: str) -> ConfigError:
        marker = " " * start + "^" * max(1, len(token))
        known = " ".join(STEP_KINDS.get(c).usage() for c in STEP_KINDS)
        return ConfigError(
            f"Pipeline step {token!r} is not valid: {problem}.\n  {spec}\n  {marker}\n"
            f"Steps (with their default options): {known}. Example: --pipeline {DEFAULT_PIPELINE}"
        )

    code, *pairs = token.split(":")
    if code.upper() not in STEP_KINDS:
        close = difflib.get_close_matches(code.upper(), STEP_KINDS.names(), n=1, cutoff=0.4)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise fail(f"{code!r} is not a step{hint}")
    kind = STEP_KINDS.get(code.upper())
    options = {name: conv(default) for name, (default, conv) in kind.options.items()}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in kind.options:
            takes = ", ".join(kind.options) or "no options"
            raise fail(f"{kind.code} does not take {name!r} (it takes {takes})")
        try:
            options[name] = kind.options[name][1](value)
        except ValueError as error:
            raise fail(f"{name}: {error}") from None
    return Step(kind, options, token)


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
