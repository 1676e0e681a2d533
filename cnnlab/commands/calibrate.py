"""`cnnlab calibrate RUN`: fit a temperature and (two classes) the decision threshold on the run's
validation split and write RUN/calibration.json, which evaluate and predict then use."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cnnlab.commands import COMMANDS, common
from cnnlab.errors import CnnlabError

THRESHOLD_HELP = (
    "how a two-class run's decision threshold on p(positive class) is chosen on the validation "
    "split: 'youden' (default: the largest sensitivity + specificity - 1), 'sensitivity:0.95' "
    "(the highest threshold whose validation sensitivity is at least 0.95, so the best "
    "specificity that keeps it), 'specificity:0.95' (likewise for specificity), or a number in "
    "(0, 1) used as given. Ignored for more than two classes, where the argmax decides"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help=COMMANDS["calibrate"],
        description="Choose a run's operating point on its validation split (never the test "
        "split, whose numbers must stay unbiased): temperature scaling (one scalar T dividing "
        "the logits, fitted by minimising the validation negative log-likelihood, so "
        "probabilities mean what they say) and, for two classes, the decision threshold on the "
        "positive class's probability. Writes RUN/calibration.json with what was fitted, on "
        "which split and checkpoint, and the validation numbers behind it (ECE and NLL before "
        "and after, sensitivity/specificity/PPV/NPV at the threshold). `cnnlab evaluate` and "
        "`cnnlab predict` then use it (--no-calibration turns it off there).",
    )
    common.add_run_argument(parser)
    parser.add_argument("--threshold", default="youden", metavar="RULE", help=THRESHOLD_HELP)
    parser.add_argument(
        "--temperature",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fit the temperature (default); --no-temperature keeps the model's own softmax",
    )
    add_positive_class_flag(parser)
    common.add_data_flags(parser)
    common.add_checkpoint_flag(parser)
    common.add_device_flags(parser, runtime=False)
    parser.add_argument(
        "--batch-size",
        type=int,
        help="images per batch (default: 256 on a CPU, 1024 on a GPU)",
    )
    common.add_json_flag(parser, "calibration.json's content")
    parser.set_defaults(handler=run)


def add_positive_class_flag(parser: argparse.ArgumentParser) -> None:
    """--positive-class: shared with evaluate and predict."""
    parser.add_argument(
        "--positive-class",
        metavar="NAME",
        help="two-class runs: the class whose sensitivity is reported and whose probability is "
        "thresholded (default: the one RUN/calibration.json chose, else the second class name)",
    )


def run(args: argparse.Namespace) -> int:
    from cnnlab.binary_metrics import parse_threshold_rule
    from cnnlab.inference import calibrate_run
    from cnnlab.run.calibration import calibration_path
    from cnnlab.run.paths import RunDir

    parse_threshold_rule(args.threshold)  # a bad rule fails before the model is loaded
    if args.batch_size is not None and args.batch_size < 1:
        raise CnnlabError(f"--batch-size must be at least 1, got {args.batch_size}.")
    record = calibrate_run(
        args.run,
        args.threshold,
        temperature=args.temperature,
        positive_class=args.positive_class,
        which=args.checkpoint,
        device=args.device,
        data=args.data,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
    )
    if args.json:
        print(json.dumps(record.to_dict(), indent=2))
        return 0
    numbers = record.validation
    print(
        f"calibrated on {record.split} ({numbers['num_samples']} images), {record.checkpoint} "
        f"checkpoint {record.checkpoint_file}"
    )
    if record.temperature is not None:
        print(f"temperature        {record.temperature:.4f}")
    print(f"val ece            {numbers['ece_before']:.4f} -> {numbers['ece_after']:.4f}")
    print(f"val nll            {numbers['nll_before']:.4f} -> {numbers['nll_after']:.4f}")
    if record.threshold is not None:
        print(
            f"threshold          {record.threshold:.4f} on p({record.positive_class}), "
            f"rule {record.rule}"
        )
        for name in ("sensitivity", "specificity", "ppv", "npv"):
            print(f"val {name:<15}{numbers[f'{name}_at_threshold']:.4f}")
    print(f"written: {calibration_path(RunDir(Path(args.run)))}")
    return 0
