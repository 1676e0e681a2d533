"""`cnnlab predict RUN IMAGE...`: classify image files with a trained run (cnnlab.inference)."""

from __future__ import annotations

import argparse
import csv
import io
import json
from typing import Any

from cnnlab.commands import COMMANDS, common
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help=COMMANDS["predict"],
        description="Classify image files with a trained run. Each image is converted to the "
        "run's bands, resized to its image size and normalised with its statistics, exactly as "
        "in training (all read from RUN/dataset.json).",
    )
    common.add_run_argument(parser)
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument(
        "--top-k", type=int, default=3, help="classes to show per image (default: 3)"
    )
    parser.add_argument("--csv", metavar="OUT.csv", help="also write the predictions to a CSV file")
    common.add_checkpoint_flag(parser)
    common.add_device_flags(parser)
    common.add_json_flag(parser, "the predictions")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.inference import predict_files

    if args.top_k < 1:
        raise CnnlabError("--top-k must be at least 1.")
    rows = predict_files(
        args.run,
        args.images,
        which=args.checkpoint,
        device=args.device,
        top_k=args.top_k,
        runtime=args.runtime,
    )
    if args.csv:
        atomic_write_text(args.csv, _csv_text(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            top = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top"])
            print(f"{row['file']}: {row['predicted']} ({row['confidence']:.3f})  [{top}]")
        print(f"runtime: {args.runtime}")
    return 0


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    k = len(rows[0]["top"])
    writer.writerow(["file", "predicted", "confidence"] + [f"top{i + 1}" for i in range(k)])
    for row in rows:
        top = [f"{t['class']}:{t['probability']:.6f}" for t in row["top"]]
        writer.writerow([row["file"], row["predicted"], f"{row['confidence']:.6f}", *top])
    return buffer.getvalue()
