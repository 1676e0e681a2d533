"""`cnnlab models`: every registered model family with its options and defaults."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnlab.commands import COMMANDS, common


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "models",
        help=COMMANDS["models"],
        description="List every registered model family with its options and defaults. Any "
        "option can be set with `cnnlab train --model-options KEY=VALUE`; `--model` also takes a "
        "network spec (grammar: `cnnlab train --help`). `cnnlab summary MODEL` shows its layers.",
    )
    common.add_json_flag(parser, "the list")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.models import MODELS, model_description, model_min_image_size, model_options

    rows = [
        {
            "name": name,
            "description": model_description(name),
            "options": model_options(name),
            "min_image_size": model_min_image_size(name),
        }
        for name in MODELS.names()
    ]
    if args.json:
        print(json.dumps(rows, indent=2, default=list))
        return 0
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        options = ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "none"
        smallest = row["min_image_size"]
        print(f"{row['name']:<{width}} {row['description']}")
        print(
            f"{'':<{width}} options: {options}"
            + (f"; images from {smallest} px" if smallest > 1 else "")
        )
    return 0
