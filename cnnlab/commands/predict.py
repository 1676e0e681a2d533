"""`cnnlab predict RUN PATH...`: classify image files with a trained run (cnnlab.inference).

Streams: each batch of files is decoded, predicted and written (terminal, JSON, CSV) before the
next is read; unreadable files are listed at the end and make the exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
from collections.abc import Iterator
from typing import Any

from cnnlab.commands import COMMANDS, common
from cnnlab.commands.calibrate import add_positive_class_flag
from cnnlab.commands.evaluate import add_calibration_flag, add_tta_flag
from cnnlab.errors import CnnlabError, DataError
from cnnlab.fileio import atomic_writer

SOME_UNREADABLE = 1  # exit status when some files could not be read (the others are written)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help=COMMANDS["predict"],
        description="Classify image files with a trained run. Each image is converted to the "
        "run's bands, resized to its image size and normalised with its statistics, exactly as "
        "in training (all read from RUN/dataset.json). Files are read and predicted in batches, "
        "so any number of them fits in memory. A file that cannot be read does not stop the "
        "others: their predictions are written and the unreadable files are listed with their "
        f"reasons on stderr; the exit status is then {SOME_UNREADABLE}. When no file at all can "
        "be read the exit status is 2, as for other errors. When RUN/calibration.json exists "
        "(`cnnlab calibrate`), its temperature and a two-class run's threshold are used (a line "
        "on stderr says so), and two-class rows also give the positive class's probability.",
    )
    common.add_run_argument(parser)
    parser.add_argument(
        "images",
        metavar="PATH",
        nargs="+",
        help="image files (PNG, JPEG, ...), folders (searched recursively for image files, "
        "hidden ones skipped) or glob patterns such as 'photos/**/*.jpg' (expanded by cnnlab "
        "when quoted)",
    )
    parser.add_argument(
        "--top-k", type=int, default=3, help="classes to show per image (default: 3)"
    )
    parser.add_argument("--csv", metavar="OUT.csv", help="also write the predictions to a CSV file")
    common.add_checkpoint_flag(parser)
    common.add_device_flags(parser)
    add_calibration_flag(parser)
    add_tta_flag(parser)
    add_positive_class_flag(parser)
    common.add_json_flag(parser, "the predictions")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.inference import iter_file_predictions, nothing_readable_message

    if args.top_k < 1:
        raise CnnlabError("--top-k must be at least 1.")
    batches = iter_file_predictions(
        args.run,
        args.images,
        which=args.checkpoint,
        device=args.device,
        top_k=args.top_k,
        runtime=args.runtime,
        calibration=args.calibration,
        positive_class=args.positive_class,
        tta=args.tta,
        notify=lambda line: print(line, file=sys.stderr),
    )
    failures: list[dict[str, str]] = []
    predicted = 0
    with _csv_writer(args.csv) as write_csv_rows:
        for rows, batch_failures in batches:
            failures.extend(batch_failures)
            if rows:
                write_csv_rows(rows)
                _print_rows(rows, args.json, first=predicted == 0)
                predicted += len(rows)
        if not predicted:
            raise DataError(nothing_readable_message(failures))  # no CSV is left behind
    if args.json:
        print("\n]")
    else:
        print(f"runtime: {args.runtime}")
    if failures:
        _report_failures(failures, predicted)
        return SOME_UNREADABLE
    return 0


def _print_rows(rows: list[dict[str, Any]], as_json: bool, first: bool) -> None:
    if as_json:  # one JSON array, written a batch at a time
        items = ",\n".join(_indent(json.dumps(row, indent=2)) for row in rows)
        print(("[\n" if first else ",\n") + items, end="")
        return
    for row in rows:
        top = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top"])
        print(f"{row['file']}: {row['predicted']} ({row['confidence']:.3f})  [{top}]")


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _report_failures(failures: list[dict[str, str]], predicted: int) -> None:
    print(
        f"cnnlab: {len(failures)} file(s) could not be read and were skipped "
        f"({predicted} predicted):",
        file=sys.stderr,
    )
    for failure in failures:
        print(f"  {failure['file']}: {failure['reason']}", file=sys.stderr)


@contextlib.contextmanager
def _csv_writer(path: str | None) -> Iterator[Any]:
    """A function that appends prediction rows to the CSV at `path` (the header before the first
    rows); the file appears only when all is written. Without a path it does nothing."""
    if path is None:
        yield lambda rows: None
        return
    with atomic_writer(path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        writer = csv.writer(text)
        header: list[bool] = []  # written once, before the first rows
        yield lambda rows: _write_csv_rows(writer, header, rows)
        text.flush()
        text.detach()  # atomic_writer closes the file


def _write_csv_rows(writer: Any, header: list[bool], rows: list[dict[str, Any]]) -> None:
    if not header:
        header.append(True)
        k = len(rows[0]["top"])
        positive = ["positive_probability"] if "positive_probability" in rows[0] else []
        writer.writerow(
            ["file", "predicted", "confidence"] + [f"top{i + 1}" for i in range(k)] + positive
        )
    for row in rows:
        top = [f"{t['class']}:{t['probability']:.6f}" for t in row["top"]]
        if "positive_probability" in row:
            top.append(f"{row['positive_probability']:.6f}")
        writer.writerow([row["file"], row["predicted"], f"{row['confidence']:.6f}", *top])
