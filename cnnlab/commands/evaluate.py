"""`cnnlab evaluate RUN`: score a trained run on one split, write RUN/eval/ (cnnlab.inference)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cnnlab.commands import COMMANDS, common
from cnnlab.errors import CnnlabError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help=COMMANDS["evaluate"],
        description="Evaluate a run on one split of the data it was trained on: accuracy, "
        "top-k accuracy, balanced accuracy, Cohen's kappa, per-class precision/recall/F1 and the "
        "confusion matrix (counts and row-normalised). Writes RUN/eval/SPLIT.json, "
        "RUN/eval/SPLIT-confusion.png and RUN/eval/SPLIT-predictions.csv; with --checkpoint "
        "last or --runtime onnx the names say so (RUN/eval/SPLIT-last.json, SPLIT-onnx.json, "
        "SPLIT-last-onnx.json), so no evaluation overwrites another.",
    )
    common.add_run_argument(parser)
    common.add_split_flag(parser)
    common.add_data_flags(parser)
    common.add_checkpoint_flag(parser)
    common.add_device_flags(parser)
    parser.add_argument("--top-k", type=int, default=5, help="k of top-k accuracy (default: 5)")
    parser.add_argument("--batch-size", type=int, default=1024, help="images per batch")
    common.add_json_flag(parser, "the metrics")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.evaluation import format_metrics_table
    from cnnlab.inference import evaluate_run
    from cnnlab.run.evaluation import evaluation_name

    if args.top_k < 1:
        raise CnnlabError("--top-k must be at least 1.")
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
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics_table(metrics))
        print(f"runtime: {metrics['runtime']}")
        name = evaluation_name(args.split, args.checkpoint, args.runtime)
        print(f"written: {Path(args.run) / 'eval' / name}.json, -confusion.png, -predictions.csv")
    return 0
