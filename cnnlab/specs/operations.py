"""The seed slides' image operations as plain data, importable without torch so that
`cnnlab ops --help` lists them at once: the pipeline grammar ("LN,CO:stride=2,BN,RL,PO"), the
named 3 x 3 kernels of the slides and the modes the operations take. cnnlab/ops/ runs them: its
kernel registry is built from NAMED_KERNELS, its operations check these modes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.registry import Registry
from cnnlab.specs.activations import ACTIVATION_NAMES, OLD_SPELLINGS

LINEAR_NORMALIZATION_MODES = ("image", "set")  # cnnlab.ops.linear_normalization
BATCH_STATISTICS = ("pixel", "channel")  # cnnlab.ops.batch_normalization
POOLING_MODES = ("max", "min", "average")  # cnnlab.ops.pool2d
DEFAULT_PIPELINE = "LN,CO,BN,RL,PO"


@dataclass(frozen=True)
class KernelSpec:
    """A named w x h x 1 kernel W(q_i - p), rows top to bottom, as printed on the slides."""

    name: str
    rows: tuple[tuple[float, ...], ...]
    description: str
    slide: str


NAMED_KERNELS: list[KernelSpec] = []  # in the order `cnnlab ops --help` lists them


def _add(name: str, rows: list[list[float]], description: str, slide: str) -> None:
    NAMED_KERNELS.append(KernelSpec(name, tuple(tuple(r) for r in rows), description, slide))


_add("identity", [[0, 0, 0], [0, 1, 0], [0, 0, 0]], "copies the image", "002, 004")
_add(
    "sobel-x",
    [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "x gradient, > 0 where dark turns bright to the right (dx)",
    "000, 003",
)
_add(
    "sobel-y",
    [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "y gradient, > 0 where dark turns bright downwards (Sobel bottom, dy)",
    "002, 003",
)
_add(
    "sobel-left",
    [[1, 0, -1], [2, 0, -2], [1, 0, -1]],
    "minus sobel-x, > 0 where bright turns dark to the right (Sobel left)",
    "002",
)
_add("outline", [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], "edges in all directions", "002, 004")
_add("laplacian", [[0, 1, 0], [1, -4, 1], [0, 1, 0]], "edges, 4-neighbour Laplacian", "004")
_add("edge-diagonal", [[1, 0, -1], [0, 0, 0], [-1, 0, 1]], "diagonal edges", "004")
_add("sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]], "enhances detail", "004")
_add("box-blur", [[1 / 9] * 3] * 3, "mean of the 3 x 3 neighbourhood", "004")
_add(
    "gaussian-blur",
    [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
    "weighted mean, approximating a Gaussian",
    "003, 004",
)
_add("lighten", [[0, 0, 0], [0, 2, 0], [0, 0, 0]], "doubles every value", "002")
_add("darken", [[0, 0, 0], [0, 0.5, 0], [0, 0, 0]], "halves every value", "002")


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
        {"mode": ("image", _choice(*LINEAR_NORMALIZATION_MODES))},
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
        {"stats": ("auto", _choice("auto", *BATCH_STATISTICS))},
    ),
    StepKind("RL", "ReLU", "R_k(p) = max{0, J_k(p)}"),
    StepKind(
        "AC",
        "activation",
        "R_k(p) = f(J_k(p))",
        {"fn": ("relu", _choice(*sorted(ACTIVATION_NAMES), *OLD_SPELLINGS))},
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
            "mode": ("max", _choice(*POOLING_MODES)),
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
