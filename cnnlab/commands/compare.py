"""`cnnlab compare`: raw pixels, the slides' random kernel bank, hand-crafted features, pretrained
features, fine-tuning and training from scratch, on identical splits (cnnlab.compare.runner)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnlab.commands import COMMANDS, common

PIPELINE_HELP = (
    "comma-separated: raw-svm, random-bank-svm, handcrafted-svm, pretrained-svm:BACKBONE, "
    "finetune:BACKBONE, scratch:MODEL (default: raw-svm,random-bank-svm,handcrafted-svm)"
)


GROUP_BY_HELP = (
    "folder: no group (patient, slide, culture) in two parts of a fold (StratifiedGroupKFold; "
    "grouped hold-outs with --repeats): a regular expression matched against each file's name "
    "(its path if it holds a '/'), the first capture group or else the whole match naming the "
    "group, e.g. '^[^_]+'; or csv:PATH with columns file and group (as `cnnlab train --group-by`)"
)


def _shares(text: str) -> tuple[float, ...]:
    try:
        shares = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 0.1,0.5,1") from None
    if not shares or any(not 0 < s <= 1 for s in shares) or 1.0 not in shares:
        raise argparse.ArgumentTypeError(
            f"{text!r}: shares must lie in (0, 1] and include 1 (the table's results)"
        )
    return tuple(sorted(set(shares)))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help=COMMANDS["compare"],
        description="Run every pipeline on exactly the same seeded stratified splits and write "
        "a table (accuracy, balanced accuracy, Cohen's kappa, macro-F1 as mean +- sd over folds, "
        "training time, inference images/s), a paired t-test between the best two, and learning "
        "curves, as JSON + CSV + PNG. Each result is saved as it finishes: run the same command "
        "again to continue an interrupted comparison.",
    )
    parser.add_argument("--data", default="digits", help="data set name or folder:PATH")
    parser.add_argument("--data-dir", help="folder to look for the data set in first")
    parser.add_argument("--pipelines", default="raw-svm,random-bank-svm,handcrafted-svm",
                        help=PIPELINE_HELP)  # fmt: skip
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--folds", type=int, default=5, help="stratified K-fold (default: 5)")
    group.add_argument("--repeats", type=int, default=0,
                       help="repeated stratified hold-out of --test-fraction, R times")  # fmt: skip
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="with --repeats: share of each class held out (0.2)")  # fmt: skip
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of non-test images per class to choose C (0.2)")  # fmt: skip
    parser.add_argument("--curve", type=_shares, default=(0.1, 0.25, 0.5, 1.0),
                        help="learning-curve shares of the training images per class "
                        "(default: 0.1,0.25,0.5,1; 1 alone: no curve)")  # fmt: skip
    parser.add_argument("--max-images", type=int,
                        help="use a stratified seeded subset of this many images")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of splits and banks (0)")
    parser.add_argument("--group-by", help=GROUP_BY_HELP)
    parser.add_argument("--classifier", default="linear-svm",
                        choices=("linear-svm", "logistic", "rbf-svm"),
                        help="classifier of the *-svm pipelines (default: linear-svm)")  # fmt: skip
    parser.add_argument("--bank-kernels", type=int, default=16,
                        help="random-bank-svm: 5x5xC kernels per layer (16)")  # fmt: skip
    parser.add_argument("--bank-layers", type=int, default=1, choices=(1, 2),
                        help="random-bank-svm: layers of CO, BN, RL, PO (1)")  # fmt: skip
    parser.add_argument("--scratch-epochs", type=int, default=5,
                        help="scratch: and finetune: epochs of training (5)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=32,
                        help="scratch: and finetune: images per step (32)")  # fmt: skip
    parser.add_argument("--learning-rate", type=float,
                        help="scratch:, finetune: peak learning rate")  # fmt: skip
    parser.add_argument("--weights", help="pretrained-svm: and finetune: start from this "
                        "weights file instead of the backbone's own")  # fmt: skip
    parser.add_argument("--freeze-epochs", type=int, default=1,
                        help="finetune: epochs training only the new classifier (1)")  # fmt: skip
    parser.add_argument("--lr-decay-per-stage", type=float, default=1.0,
                        help="finetune: stage i from the top: rate * F**i (1)")  # fmt: skip
    parser.add_argument("--freeze-bn", action="store_true",
                        help="finetune: keep batch-norm statistics fixed")  # fmt: skip
    parser.add_argument(
        "--out", help="output folder (default: compare/NAME from data and pipelines)"
    )
    common.add_json_flag(parser, "the summary")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.compare.outputs import format_table
    from cnnlab.compare.runner import CompareSettings, run_comparison

    settings = CompareSettings(
        data=args.data,
        pipelines=args.pipelines,
        folds=args.folds,
        repeats=args.repeats,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        curve=args.curve,
        max_images=args.max_images,
        seed=args.seed,
        classifier=args.classifier,
        bank_kernels=args.bank_kernels,
        bank_layers=args.bank_layers,
        scratch_epochs=args.scratch_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weights=args.weights,
        freeze_epochs=args.freeze_epochs,
        lr_decay_per_stage=args.lr_decay_per_stage,
        freeze_bn=args.freeze_bn,
        data_dir=args.data_dir,
        group_by=args.group_by,
    )
    out = args.out or f"compare/{settings.default_name()}"
    summary = run_comparison(settings, out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_table(summary))
        print(f"written: {out}/summary.json, summary.csv, learning_curve.png, splits.json")
    return 0
