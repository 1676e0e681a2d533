"""`cnnlab report RUN`: one self-contained, interactive HTML file of everything the run directory
holds (RUN/report.html), saying which parts are missing and the command that makes them; with
several runs, them side by side; with a `cnnlab compare` folder, the comparison."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.commands import COMMANDS, common

EPILOG = """examples:
  cnnlab report runs/fmnist                      # runs/fmnist/report.html
  cnnlab report runs/a runs/b --out ab.html      # side by side (default: ./report-a-vs-b.html)
  cnnlab report compare/fmnist                   # a comparison: compare/fmnist/report.html
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help=COMMANDS["report"],
        description="Write one HTML file that opens offline (images, data, scripts and styles "
        "inlined): the run's command, settings and machine; the data with class counts and "
        "samples; training curves; the model layer by layer; test metrics; a confusion matrix "
        "whose cells open their images; top losses; interactive projections of every explained "
        "layer (hover for the image, select to highlight in every layer); and every figure of "
        "`cnnlab explain`. Parts not made yet are named with the command that makes them. "
        "Several runs: their test metrics, training curves overlaid (one colour per run) and "
        "per-class recall and F1, the last run's difference to the first highlighted. A folder "
        "of `cnnlab compare`: its pipelines (mean +- sd), paired test, learning curves, splits.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "run",
        metavar="RUN",
        nargs="+",
        help="run directory written by `cnnlab train` (several: side by side), or one folder "
        "written by `cnnlab compare`",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="where to write (default: RUN/report.html; for several runs "
        "report-FIRST-vs-SECOND.html, or report-FIRST-and-N-more.html, in the current folder; "
        "for a comparison FOLDER/report.html)",
    )
    common.add_split_flag(parser)
    parser.add_argument("--data-dir", help="folder to look for the run's data set in first")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.fileio import atomic_write_text
    from cnnlab.report.build import render_any

    html, missing, default = render_any(args.run, split=args.split, data_dir=args.data_dir)
    target = Path(args.out) if args.out else default
    atomic_write_text(target, html)
    for note in missing:
        print(f"missing: {note}")
    print(f"written: {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return 0
