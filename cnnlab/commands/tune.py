"""`cnnlab tune`: hyper-parameter search on Optuna (cnnlab.tuning.search); every trial an ordinary
run directory in DIR/trials/, the results, plots and best.toml in DIR."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cnnlab.commands import COMMANDS
from cnnlab.commands.check import add_training_flags, training_settings
from cnnlab.commands.common import add_json_flag

EPILOG = """examples:
  cnnlab tune --data digits --model small-cnn --epochs 4 --space space.toml --trials 20 \\
      --out tune/digits
  cnnlab train --config tune/digits/best.toml --out runs/best     # the best configuration
  cnnlab tune ... --storage postgresql://user:pw@host/db          # one worker per machine

space.toml:
  [space]
  learning_rate = {low = 0.001, high = 0.3, log = true}   # a float range (log scale)
  batch_size = [64, 128, 256]                             # a list: categorical
  epochs = {low = 2, high = 6, step = 2}                  # an int range (int settings)

The keys are `cnnlab train` settings (its long flags with _); the other flags given here hold
for every trial. Trials are scored on validation (--monitor, default val_accuracy, the best epoch
of the trial); the test split is never read. DIR gets trials/NNNN (run directories), trials.csv,
trials.json, best.toml, history.png, importance.png, parallel.png and the study (study.db unless
--storage). Run the same command again to continue a stopped search: --trials is the total the
study should hold (complete or pruned trials), so --trials 40 after 20 runs 20 more. Workers on
several machines share a study through --storage; a trial whose worker dies (no heartbeat for
2x --heartbeat seconds) is failed and run again by another worker.
"""


def register(subparsers: Any) -> None:
    from cnnlab.tuning.search import PRUNERS, SAMPLERS

    parser = subparsers.add_parser(
        "tune",
        help=COMMANDS["tune"],
        description="Search training settings with Optuna: each trial trains a run directory "
        "and is scored on the validation split.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    group = parser.add_argument_group("search")
    group.add_argument(
        "--space", required=True, metavar="FILE.toml", help="TOML file with a [space] table"
    )
    group.add_argument(
        "--trials",
        type=int,
        required=True,
        help="complete or pruned trials the study should hold when this worker stops",
    )
    group.add_argument("--out", required=True, metavar="DIR", help="folder of the search")
    group.add_argument(
        "--sampler",
        default="tpe",
        choices=SAMPLERS,
        help="Optuna's sampler: tpe (default; Bergstra et al. 2011), random, or grid (every "
        "combination of lists and int ranges; float ranges need a step). The order of training "
        "images (`cnnlab train --sampler`) is set in --config or searched in the space",
    )
    group.add_argument(
        "--pruner",
        default="median",
        choices=PRUNERS,
        help="stop a trial whose per-epoch validation metric is below the median of earlier "
        "trials at that epoch (default), by successive halving, or never",
    )
    group.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna RDB storage, e.g. postgresql://user:password@host/database for workers on "
        "several machines (default: sqlite:///DIR/study.db)",
    )
    group.add_argument(
        "--study-name", default="cnnlab", help="study in the storage (default: cnnlab)"
    )
    group.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        metavar="SECONDS",
        help="a running trial's worker signals every SECONDS; one silent for twice that is "
        "failed and run again (default: 30)",
    )
    add_json_flag(parser, "the results (trials and the best)")
    add_training_flags(parser, skip=("sampler",))  # train's --sampler: via --config or space
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from cnnlab.errors import ConfigError
    from cnnlab.training.config import load_toml, parse_model_option
    from cnnlab.tuning.search import Search, run_search
    from cnnlab.tuning.space import load_space

    if args.trials < 1 or args.heartbeat < 1:
        raise ConfigError("--trials and --heartbeat must be at least 1.")
    fixed = {
        **(load_toml(args.config) if args.config else {}),
        **training_settings(args, skip=("sampler",)),
    }
    if isinstance(fixed.get("model_options"), list):
        fixed["model_options"] = dict(parse_model_option(t) for t in fixed["model_options"])
    search = Search(
        fixed=fixed,
        space=load_space(args.space, fixed),
        out=Path(args.out),
        trials=args.trials,
        sampler=args.sampler,
        pruner=args.pruner,
        storage=args.storage,
        study_name=args.study_name,
        seed=int(fixed.get("seed", 0)),
        heartbeat=args.heartbeat,
    )
    progress = (lambda line: print(line, file=sys.stderr)) if args.json else print
    paths = run_search(search, report=progress)
    results = json.loads(paths["json"].read_text())
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    best = results.get("best")
    counts: dict[str, int] = {}
    for row in results["trials"]:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    print(f"{len(results['trials'])} trials: {', '.join(f'{n} {s}' for s, n in counts.items())}")
    if best:
        shown = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        print(f"best: trial {best['number']}, {results['monitor']} {best['value']:.4f} ({shown})")
        print(f"next: cnnlab train --config {paths['best']} --out runs/best")
    return 0
