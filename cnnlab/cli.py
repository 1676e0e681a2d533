"""`cnnlab <command>`: the parser, error handling and warnings; each command is a module of
cnnlab.commands (listed, in order, in cnnlab.commands.COMMANDS).

Each command is a thin layer over a library function; errors a user can fix print one message
(no traceback) and exit with status 2; a reader that closes the pipe (`| head`) ends the command
quietly with status 141; every command that prints numbers also takes --json.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Collection

import cnnlab
from cnnlab.commands import COMMANDS
from cnnlab.errors import CnnlabError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(with_flags=_named_command(argv))
    args = parser.parse_args(argv)
    args.argv = list(argv)  # as given: `train --nproc` passes them on to torchrun
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("cnnlab")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit where it cannot be caught
        return code
    except BrokenPipeError:
        return _reader_went_away()
    except CnnlabError as error:
        print(f"cnnlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: stopped.", file=sys.stderr)
        return 130
    finally:  # a later main() in the same process (the API, a test) must not log to this stream
        logger.removeHandler(handler)


def _reader_went_away() -> int:
    """`cnnlab evaluate RUN | head -3`: the reader closed the pipe. Stop quietly as Unix tools
    do, with status 141 (128 + SIGPIPE), what a shell reports for `yes | head` too: a pipeline
    under `set -o pipefail` sees the output was cut short. Python ignores SIGPIPE, so stdout is
    pointed at /dev/null to keep the exit's own flush from raising again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (a test's capture)
        pass
    return 141


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


class _CommandColumn(argparse.HelpFormatter):
    """Command names in a column as wide as the longest: argparse measures the names without their
    own indentation, so `duplicates` would otherwise push its purpose to the next line."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction) and action.choices:
            longest = max(len(name) for name in action.choices)
            self._action_max_length = max(
                self._action_max_length, longest + self._current_indent + 2
            )


def build_parser(with_flags: Collection[str] = tuple(COMMANDS)) -> argparse.ArgumentParser:
    """The `cnnlab` parser. Only the commands in `with_flags` get their flags (and import what
    they need, torch for most); the others are listed by name and purpose, which is all that
    `cnnlab --help` shows. `main` builds just the command it runs."""
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="A workbench for convolutional neural networks for image classification: "
        "design, train, test and explain a CNN from a data set of labelled images.",
        epilog="Run `cnnlab COMMAND --help` for each command's options.",
        formatter_class=_CommandColumn,
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {cnnlab.__version__}")
    subparsers = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for name, purpose in COMMANDS.items():
        if name in with_flags:
            module = name.replace("-", "_")  # lr-find is cnnlab/commands/lr_find.py
            importlib.import_module(f"cnnlab.commands.{module}").register(subparsers)
        else:
            subparsers.add_parser(name, help=purpose)
    return parser


def _named_command(argv: list[str]) -> tuple[str, ...]:
    """The command `argv` names: its first word that is not an option (the options before a
    command, --help and --version, take no value); () if there is none."""
    words = [word for word in argv if not word.startswith("-")]
    return tuple(words[:1]) if words and words[0] in COMMANDS else ()


if __name__ == "__main__":
    sys.exit(main())
