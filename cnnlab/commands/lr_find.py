"""`cnnlab lr-find`: the learning-rate range test (cnnlab.tuning.lr_find) into --out DIR:
lr_find.png, lr_find.json and suggested.toml for `cnnlab train --config`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnlab.commands import COMMANDS
from cnnlab.commands.check import add_training_flags, resolve_training
from cnnlab.commands.common import add_json_flag
from cnnlab.fileio import make_folder

EPILOG = """examples:
  cnnlab lr-find --data digits --model small-cnn --out lr/digits
  cnnlab train --config lr/digits/suggested.toml --data digits --model small-cnn --out runs/x

The rate grows geometrically from --start-lr to --end-lr, one value per training step; the loss
is smoothed (exponential moving average, beta 0.98, bias corrected) and the sweep stops when it
passes 4x its best (as fastai's lr_find and Lightning's LearningRateFinder do). Suggestions:
steepest (default; where the smoothed loss falls fastest against log rate, as Lightning
suggests) or minimum (a tenth of the rate at the lowest smoothed loss, fastai's "minimum"). The
sweep trains a copy of a new model; no run directory is written. The suggestion is for the
optimiser given (--optimizer), which suggested.toml records with it.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lr-find",
        help=COMMANDS["lr-find"],
        description="Find a learning rate with the range test (Smith 2015): plot the loss "
        "against a growing rate and suggest a peak rate for `cnnlab train`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for lr_find.png/.json, suggested.toml"
    )
    parser.add_argument(
        "--start-lr", type=float, default=1e-7, help="first rate of the sweep (default: 1e-7)"
    )
    parser.add_argument(
        "--end-lr", type=float, default=10.0, help="last rate of the sweep (default: 10)"
    )
    parser.add_argument(
        "--steps", type=int, default=100, help="training steps, one rate each (default: 100)"
    )
    parser.add_argument(
        "--suggestion",
        default="steepest",
        choices=("steepest", "minimum"),
        help="steepest fall of the smoothed loss (default), or the minimum's rate / 10",
    )
    parser.add_argument(
        "--no-stop-on-divergence",
        dest="stop_on_divergence",
        action="store_false",
        help="sweep to --end-lr even after the loss has passed 4x its best",
    )
    add_json_flag(parser, "the result (every rate and loss)")
    add_training_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.tuning.bench import open_bench
    from cnnlab.tuning.lr_find import find_learning_rate, write_outputs

    config = resolve_training(args)
    make_folder(args.out)  # an --out that cannot be written fails before the sweep, not after
    bench = open_bench(config)
    result = find_learning_rate(
        bench, args.start_lr, args.end_lr, args.steps, args.suggestion, args.stop_on_divergence
    )
    paths = write_outputs(result, args.out, config.optimizer)
    if args.json:
        print(json.dumps({**result.to_dict(), "files": {k: str(v) for k, v in paths.items()}}))
        return 0
    stop = "stopped: the loss diverged" if result.diverged else "reached --end-lr"
    print(
        f"swept {len(result.learning_rates)} steps from {result.learning_rates[0]:.3g} to "
        f"{result.learning_rates[-1]:.3g} ({stop})"
    )
    for name, rate in result.suggestions.items():
        shown = "none (the sweep is too short)" if rate is None else f"{rate:.3g}"
        mark = "  <- suggested" if name == result.suggestion else ""
        print(f"{name:<9} {shown}{mark}")
    print(f"plot: {paths['plot']}")
    if "config" in paths:
        print(f"next: cnnlab train --config {paths['config']} ...")
    return 0
