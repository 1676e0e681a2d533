"""`cnnlab duplicates`: the check `cnnlab train` makes before training, alone: exact and near
duplicate images across the train, val and test splits of a trained run, or of the splits a run
with these flags would use."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from cnnlab.commands import COMMANDS, common
from cnnlab.training.config import TrainConfig

SPLIT_FLAGS = ("val_fraction", "test_fraction", "seed", "split_seed", "group_by")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "duplicates",
        help=COMMANDS["duplicates"],
        description="Take the splits of a trained run (--run), or choose those `cnnlab train` "
        "would choose with the same flags, and list the images of a later split (val after "
        "train, test after both) that are an exact copy (equal pixels) or a near copy (64-bit "
        "difference hash within --distance bits; images of 32 pixels a side and more) of an "
        "image of an earlier one. A copy in two splits inflates the scores measured on the "
        "later one.",
    )
    parser.add_argument("--run", help="check the splits this run directory was trained on")
    parser.add_argument(
        "--data", default="digits", help="data set name or folder:PATH (without --run)"
    )
    parser.add_argument("--data-dir", help="folder to look for the data set in first")
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        if field.name in SPLIT_FLAGS:
            default = getattr(defaults, field.name)
            shown = "" if default is None else f" (default: {default})"
            parser.add_argument(
                "--" + field.name.replace("_", "-"),
                type=type(default) if default is not None else str,
                default=default,
                help=field.metadata["help"] + shown + " (without --run)",
            )
    parser.add_argument(
        "--distance", type=int, default=4,
        help="most bits of the 64-bit hash in which near copies differ (default: 4)",
    )  # fmt: skip
    parser.add_argument("--out", help="also write the JSON list to this file")
    common.add_json_flag(parser, "the pairs found")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.errors import ConfigError
    from cnnlab.fileio import atomic_write_json
    from cnnlab.run.splits import split_duplicates

    if not 0 <= args.distance < 32:
        raise ConfigError(f"--distance {args.distance} is invalid: use 0 to 31 (bits of 64).")
    dataset, record = _splits(args)
    report = split_duplicates(dataset, record, args.distance)
    if args.out:
        atomic_write_json(Path(args.out), report.to_dict())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(report.summary(args.out))
    for pair in report.pairs:
        first, second = pair["splits"].split("/")
        print(f"  {pair['kind']:<5} {pair['distance']:>2}  {pair[first]}  {pair[second]}")
    return 0


def _splits(args: argparse.Namespace) -> tuple[Any, Any]:
    """(data set, DatasetRecord): a run's, or chosen now as `cnnlab train` would."""
    from cnnlab.data import load_dataset
    from cnnlab.run.paths import RunDir
    from cnnlab.run.splits import load_options, make_record

    if args.run:
        record = RunDir(args.run).dataset_record()
        dataset = load_dataset(record.source, args.data_dir, options=load_options(record))
        return dataset, record
    dataset = load_dataset(args.data, args.data_dir)
    record = make_record(
        dataset, args.val_fraction, args.seed, args.test_fraction, args.split_seed, args.group_by
    )
    return dataset, record
