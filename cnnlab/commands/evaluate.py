"""`cnnlab evaluate RUN`: score a trained run on one split, write RUN/eval/ (cnnlab.inference)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cnnlab.commands import COMMANDS, common
from cnnlab.commands.calibrate import add_positive_class_flag
from cnnlab.errors import CnnlabError
from cnnlab.runtime import TTA_CHOICES


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help=COMMANDS["evaluate"],
        description="Evaluate a run on one split of the data it was trained on: accuracy, "
        "top-k accuracy, balanced accuracy, Cohen's kappa, per-class precision/recall/F1, the "
        "confusion matrix (counts and row-normalised), the expected calibration error with its "
        "reliability diagram, and for two classes sensitivity, specificity, PPV, NPV, ROC AUC "
        "and PR AUC (average precision) with their curves; 95% intervals by stratified "
        "bootstrap. Writes RUN/eval/SPLIT.json, SPLIT-confusion.png, SPLIT-reliability.png, "
        "SPLIT-roc-pr.png (two classes) and SPLIT-predictions.csv; with --checkpoint last or "
        "--runtime onnx the names say so (RUN/eval/SPLIT-last.json, SPLIT-onnx.json, "
        "SPLIT-last-onnx.json; a --tta other than the run's own: SPLIT-tta-none.json...), so no "
        "evaluation overwrites another. When RUN/calibration.json "
        "exists (`cnnlab calibrate`), its temperature and threshold are used, and a line says so.",
    )
    common.add_run_argument(parser)
    common.add_split_flag(parser)
    common.add_data_flags(parser)
    common.add_checkpoint_flag(parser)
    common.add_device_flags(parser)
    parser.add_argument("--top-k", type=int, default=5, help="k of top-k accuracy (default: 5)")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="images per batch (default: 256 on a CPU, 1024 on a GPU)",
    )
    add_calibration_flag(parser)
    add_tta_flag(parser)
    add_positive_class_flag(parser)
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap resamples for the 95%% intervals of accuracy, balanced accuracy and (two "
        "classes) sensitivity, specificity and ROC AUC; each class is resampled with "
        "replacement, seed 0 (default: 1000; 0: no intervals)",
    )
    common.add_json_flag(parser, "the metrics")
    parser.set_defaults(handler=run)


def add_calibration_flag(parser: argparse.ArgumentParser) -> None:
    """--no-calibration: shared with predict."""
    parser.add_argument(
        "--no-calibration",
        dest="calibration",
        action="store_false",
        help="ignore RUN/calibration.json: the argmax of the model's own softmax decides",
    )


def add_tta_flag(parser: argparse.ArgumentParser) -> None:
    """--tta: shared with predict."""
    parser.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        default=None,
        help="test-time augmentation: none; flip (average the logits of each image and its "
        "mirror image, 2 forward passes); flip-shift (also two copies shifted one pixel "
        "diagonally, each with its mirror image, 6 passes); on either runtime (default: the "
        "run's own `train --tta`, config.json train.tta). Digits and MNIST are not "
        "mirror-symmetric: a line warns there",
    )


def run(args: argparse.Namespace) -> int:
    from cnnlab.evaluation import format_metrics_table
    from cnnlab.inference import evaluate_run
    from cnnlab.run.evaluation import evaluation_name, other_tta
    from cnnlab.run.paths import RunDir

    if args.top_k < 1:
        raise CnnlabError("--top-k must be at least 1.")
    if args.bootstrap < 0:
        raise CnnlabError(f"--bootstrap must be 0 or more, got {args.bootstrap}.")
    if args.batch_size is not None and args.batch_size < 1:
        raise CnnlabError(f"--batch-size must be at least 1, got {args.batch_size}.")
    metrics = evaluate_run(
        args.run,
        args.split,
        data=args.data,
        data_dir=args.data_dir,
        which=args.checkpoint,
        device=args.device,
        batch_size=args.batch_size,
        top_k=args.top_k,
        runtime=args.runtime,
        calibration=args.calibration,
        positive_class=args.positive_class,
        bootstrap=args.bootstrap,
        tta=args.tta,
        notify=lambda line: print(line, file=sys.stderr),
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics_table(metrics))
        print(f"runtime: {metrics['runtime']}, test-time augmentation: {metrics['tta']}")
        run = RunDir(args.run)
        name = evaluation_name(
            args.split, args.checkpoint, args.runtime, other_tta(run, metrics["tta"])
        )
        figures = "-confusion.png, -reliability.png" + (
            ", -roc-pr.png" if "binary" in metrics else ""
        )
        print(f"written: {Path(args.run) / 'eval' / name}.json, {figures}, -predictions.csv")
    return 0
