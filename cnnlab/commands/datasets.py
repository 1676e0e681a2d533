"""`cnnlab datasets`: the named data sets, their shape and classes, and where each was found."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnlab.commands import COMMANDS, common


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "datasets",
        help=COMMANDS["datasets"],
        description="List the named data sets, their shape and classes, and where each was found "
        "(search order: --data-dir, $CNNLAB_DATA, the user cache, /usr/share/datasets; otherwise "
        "it is downloaded on first use).",
    )
    parser.add_argument("--data-dir", help="folder to look in first")
    common.add_json_flag(parser, "the list")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.data import DATASETS, dataset_info

    infos = [dataset_info(name, args.data_dir) for name in DATASETS.names()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for info in infos:
        height, width = info["image_size"]
        found = info["found_at"] or (
            "not found (will be downloaded on first use)" if info["downloadable"] else "not found"
        )
        print(
            f"{info['name']:<15} {info['num_classes']} classes, "
            f"{info['channels']}x{height}x{width}, "
            f"{info['train_count']:,} train / {info['test_count']:,} test"
        )
        print(f"{'':<15} {info['description']}")
        print(f"{'':<15} found: {found}")
        if not info["found_at"] and info["searched"]:
            print(f"{'':<15} searched: {', '.join(info['searched'])}")
    return 0
