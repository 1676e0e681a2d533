"""`cnnlab check`: sanity checks of a training set-up (cnnlab.tuning.check), each a pass/fail line
with the number behind it; exit status 1 when one fails. Also home of the training flags that
`check`, `lr-find` and `tune` share with `cnnlab train`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from cnnlab.commands import COMMANDS
from cnnlab.commands.common import add_config_flag, add_json_flag, comma_names
from cnnlab.training.config import TrainConfig

EPILOG = """examples:
  cnnlab check --data digits --model small-cnn
  cnnlab check --data digits --model "conv16 -> relu -> pool -> fc" --learning-rate 10
  cnnlab check --data digits --freeze features.stage1    # see a frozen layer named

Checks: labels (every class present, none nearly all), normalization (the model's input has
mean ~0 and sd ~1 per band), initial_loss (~ln C), layers_learn (every layer's weights move in a
short training, none explodes), loss_falls, overfit_batch (one small batch memorised),
shuffled_labels (trained on shuffled labels, validation stays at chance). Each trains a copy of
the same initial weights at the peak learning rate, without schedule or augmentation; no run
directory is written. Exit status: 0 all passed, 1 a check failed, 2 bad input.
"""


def add_training_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """--config and one flag per TrainConfig field, as `cnnlab train` has them, but `skip`."""
    parser.add_argument(
        "--config", metavar="FILE.toml", help="TOML file of defaults for the training flags"
    )
    settings = parser.add_argument_group("training settings (as `cnnlab train`)")
    defaults = {**TrainConfig().to_dict(), "recipe": "auto"}
    for field in dataclasses.fields(TrainConfig):
        if field.name not in skip:
            add_config_flag(settings, field, defaults[field.name])


def training_settings(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The training flags given on the command line, by TrainConfig field name, but `skip`."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name) and f.name not in skip
    }


def resolve_training(args: argparse.Namespace) -> TrainConfig:
    from cnnlab.training.resolve import resolve_config

    return resolve_config(training_settings(args), args.config, source=args.config or "flags")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help=COMMANDS["check"],
        description="Sanity-check a training set-up in seconds before training it: each check "
        "prints PASS or FAIL with the number behind it and, on a failure, what is wrong.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--overfit-images",
        type=int,
        default=32,
        help="images in the small batch the model must memorise (default: 32)",
    )
    add_json_flag(parser, "the verdicts")
    broken = parser.add_argument_group("break the set-up on purpose (to see a check catch it)")
    broken.add_argument(
        "--freeze",
        metavar="LAYER[,LAYER]",
        help="stop the parameters of these layers (dotted names from `cnnlab summary`, or a "
        "prefix such as features.stage1) from learning",
    )
    broken.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        help="feed the images scaled to [0, 1] only, without the data's mean and sd",
    )
    broken.add_argument(
        "--constant-labels",
        action="store_true",
        help="label every training image as the first class",
    )
    add_training_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.errors import ConfigError
    from cnnlab.tuning.bench import open_bench
    from cnnlab.tuning.check import freeze, run_checks

    if args.overfit_images < 1:
        raise ConfigError(f"--overfit-images {args.overfit_images} is invalid: use 1 or more.")
    config = resolve_training(args)
    bench = open_bench(config, normalize=args.normalize)
    if args.freeze:
        freeze(bench.model, comma_names(args.freeze))
    if args.constant_labels:
        bench.train.labels = torch.zeros_like(bench.train.labels)
    results = run_checks(bench, args.overfit_images)
    failed = [r.name for r in results if not r.passed]
    if args.json:
        print(
            json.dumps({"passed": not failed, "checks": [r.to_dict() for r in results]}, indent=2)
        )
    else:
        for result in results:
            print(f"{'PASS' if result.passed else 'FAIL'}  {result.name:<16} {result.message}")
        print(f"{len(results) - len(failed)} of {len(results)} checks passed")
    return 1 if failed else 0
