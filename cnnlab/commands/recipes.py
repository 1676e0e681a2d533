"""`cnnlab recipes`: the per-data-set training defaults, their settings and what they reached."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnlab.commands import COMMANDS, common
from cnnlab.specs.recipes import RECIPES


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "recipes",
        help=COMMANDS["recipes"],
        description="List the recipes `cnnlab train --recipe` takes. With --recipe auto (the "
        "default) a named data set trains with its own recipe; flags and --config override any "
        "of its settings. Each recipe was chosen on validation data and measured with "
        "benchmarks/speed.py (BENCHMARKS.md).",
    )
    common.add_json_flag(parser, "the list")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    rows = [
        {"name": r.name, "summary": r.summary, "settings": r.settings, "measured": r.measured}
        for r in RECIPES.values()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']:<14} {row['summary']}")
        for key, value in row["settings"].items():
            print(f"{'':<14}   --{key.replace('_', '-')} {_shown(value)}")
        if row["measured"]:
            print(f"{'':<14} measured: {row['measured']}")
    return 0


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "(on)" if value else "(off)"
    return f'"{value}"' if isinstance(value, str) and " " in value else str(value)
