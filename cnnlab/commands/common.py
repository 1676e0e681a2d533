"""Flags shared by several commands, each group defined once: the run to read, its data, the
checkpoint, the device and runtime, --json, and flags generated from a config dataclass's fields.

The choice lists come from the modules that define the things (cnnlab.run, cnnlab.runtime), which
import no torch, so building these flags keeps `cnnlab COMMAND --help` fast.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from cnnlab.run.paths import CHECKPOINT_CHOICES
from cnnlab.run.records import SPLITS
from cnnlab.runtime import RUNTIMES


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN", help="run directory written by `cnnlab train`")


def split_choices() -> tuple[str, ...]:
    """The splits, test first: the one a finished run is usually scored and explained on."""
    return tuple(reversed(SPLITS))


def add_split_flag(parser: argparse.ArgumentParser, default: str = "test") -> None:
    parser.add_argument(
        "--split",
        default=default,
        choices=split_choices(),
        help=f"split of the data the run was trained on (default: {default})",
    )


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """--data and --data-dir: where the images of a trained run are read from."""
    parser.add_argument(
        "--data",
        help="read the images from this data source instead of the one recorded in the run "
        "(it must hold the same images and classes)",
    )
    parser.add_argument("--data-dir", help="folder to look for the data set in first")


def add_checkpoint_flag(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """--checkpoint best|last (dest "checkpoint"); `aliases` are further spellings of it."""
    parser.add_argument(
        "--checkpoint",
        *aliases,
        dest="checkpoint",
        default=CHECKPOINT_CHOICES[0],
        choices=CHECKPOINT_CHOICES,
        help="best validation checkpoint or the newest one (default: best, else last)",
    )


def add_device_flags(parser: argparse.ArgumentParser, runtime: bool = True) -> None:
    """--device, and with `runtime` --runtime (PyTorch or ONNX Runtime)."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    if not runtime:
        return
    parser.add_argument(
        "--runtime",
        default=RUNTIMES[0],
        choices=RUNTIMES,
        help="torch (default): PyTorch on --device; onnx: ONNX Runtime on the CPU in float32, "
        "often 2-5x faster for small CNNs (exports RUN/export/model-CHECKPOINT.onnx on first "
        "use; needs `pip install onnx onnxruntime`)",
    )


def add_json_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def comma_names(text: str) -> tuple[str, ...]:
    """ "a, b,,c" -> ("a", "b", "c"): the value of a comma-separated list flag."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_config_flag(group: Any, field: dataclasses.Field, default: Any) -> None:
    """One flag for a config dataclass field whose metadata holds its help (and choices, metavar):
    `--learning-rate` for `learning_rate`. Its default is SUPPRESS, so the namespace holds only the
    flags given and a TOML file or the dataclass supplies the rest."""
    flag = "--" + field.name.replace("_", "-")
    meta = field.metadata
    shown = "" if default in (None, {}, "") else f" (default: {default})"
    kind = str(field.type)
    common = {"dest": field.name, "default": argparse.SUPPRESS}
    if kind == "bool":
        group.add_argument(
            flag, action=argparse.BooleanOptionalAction, help=meta["help"] + shown, **common
        )
    elif kind == "dict":
        group.add_argument(
            flag, action="append", metavar=meta.get("metavar"), help=meta["help"], **common
        )
    else:
        value_type = int if kind.startswith("int") else float if kind.startswith("float") else str
        group.add_argument(
            flag, type=value_type, choices=meta.get("choices"), metavar=meta.get("metavar"),
            help=meta["help"] + shown, **common,
        )  # fmt: skip
