"""`cnnlab report RUN`: one self-contained, interactive HTML file of everything the run directory
holds (RUN/report.html), saying which parts are missing and the command that makes them."""

from __future__ import annotations

import argparse
from typing import Any

from cnnlab.commands import COMMANDS, common


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help=COMMANDS["report"],
        description="Write one HTML file that opens offline (images, data, scripts and styles "
        "inlined): the run's command, settings and machine; the data with class counts and "
        "samples; training curves; the model layer by layer; test metrics; a confusion matrix "
        "whose cells open their images; top losses; interactive projections of every explained "
        "layer (hover for the image, select to highlight in every layer); and every figure of "
        "`cnnlab explain`. Parts not made yet are named with the command that makes them.",
    )
    common.add_run_argument(parser)
    parser.add_argument("--out", metavar="FILE", help="where to write (default: RUN/report.html)")
    common.add_split_flag(parser)
    parser.add_argument("--data-dir", help="folder to look for the run's data set in first")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.fileio import atomic_write_text
    from cnnlab.report.build import collect, render_report

    inputs = collect(args.run, split=args.split, data_dir=args.data_dir)
    html, missing = render_report(inputs)
    target = Path(args.out) if args.out else inputs.run.report
    atomic_write_text(target, html)
    for note in missing:
        print(f"missing: {note}")
    print(f"written: {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return 0
