"""`cnnlab cache list|clear`: the decoded-image cache's entries, their size and last use, and
removing them (all, or those unused for some days)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from cnnlab.commands import COMMANDS, common


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cache",
        help=COMMANDS["cache"],
        description="Show or clear the decoded-image cache (CACHE/decoded/, where CACHE is "
        "$CNNLAB_CACHE_DIR, else $XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab). It is capped at "
        "$CNNLAB_CACHE_MAX_GB gigabytes (default 4); past that, the least recently used entries "
        "are removed when a new one is written.",
    )
    actions = parser.add_subparsers(
        dest="action", metavar="ACTION", required=True, help="list or clear"
    )
    listing = actions.add_parser("list", help="each entry's folder, images, size and last use")
    common.add_json_flag(listing, "the entries and totals")
    clearing = actions.add_parser("clear", help="remove every entry, or the ones unused for days")
    clearing.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="remove only the entries last used more than DAYS days ago",
    )
    common.add_json_flag(clearing, "the removed entries")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.data import cache
    from cnnlab.errors import ConfigError

    if args.action == "list":
        entries = cache.list_entries()
    else:
        if args.older_than is not None and not args.older_than >= 0:
            raise ConfigError(
                f"--older-than {args.older_than:g} is not a number of days; give 0 or more."
            )
        entries = cache.clear(args.older_than)
    total = sum(entry.size_bytes for entry in entries)
    if args.json:
        print(
            json.dumps(
                {
                    "cache_dir": str(cache.decoded_cache_dir()),
                    "max_bytes": cache.max_cache_bytes(),
                    "entries": [entry.to_dict() for entry in entries],
                    "num_entries": len(entries),
                    "total_bytes": total,
                },
                indent=2,
            )
        )
        return 0
    verb = "holds" if args.action == "list" else "removed"
    print(
        f"{cache.decoded_cache_dir()} {verb} {len(entries)} entries, {total / 1e6:.1f} MB "
        f"(cap {cache.max_cache_bytes() / 1e9:g} GB, CNNLAB_CACHE_MAX_GB)"
    )
    for entry in reversed(entries):  # most recently used first
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used))
        print(f"  {used}  {entry.num_images:>8,} images  {entry.size_bytes / 1e6:>9.1f} MB  "
              f"{entry.folder}")  # fmt: skip
    return 0
