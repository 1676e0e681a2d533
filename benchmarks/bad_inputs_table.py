"""Run every bad input of tests/test_bad_inputs.py and write the table a reviewer reads: the
command line, its exit status and the line that says what went wrong, with a mark on any row
that misbehaves (wrong status, a traceback, a message that does not name the flag or file).

    .venv/bin/python benchmarks/bad_inputs_table.py [--out docs/bad-inputs.md]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _table_module():
    spec = importlib.util.spec_from_file_location("bad_inputs", ROOT / "tests/test_bad_inputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bad_inputs"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs/bad-inputs.md")
    args = parser.parse_args()
    table = _table_module()
    with tempfile.TemporaryDirectory() as folder:
        os.environ["CNNLAB_CACHE_DIR"] = os.environ["XDG_CACHE_HOME"] = f"{folder}/cache"
        world = table.build_world(Path(folder, "w"))
        rows, bad = [], 0
        for number, case in enumerate(table.CASES, 1):
            outcome = table.run_case(case, world)
            problems = table.problems(case, outcome, world)
            bad += bool(problems)
            shown = table.case_id(case).format(**world, out="T/out")
            command = "cnnlab " + shown + (" | head -1" if case.pipe else "")
            command, message = (
                text.replace(folder + "/w", "T") for text in (command, outcome.message)
            )
            rows.append(
                f"| {number} | {_cell(command)} | {outcome.code} | "
                f"{_cell(message)} | {'; '.join(problems) or 'ok'} |"
            )
            print(f"{number:3d} {outcome.code:3d} {problems or ''} {message[:100]}", flush=True)
    lines = [
        "# Bad inputs: exit status and message",
        "",
        "Written by `benchmarks/bad_inputs_table.py` from the cases of `tests/test_bad_inputs.py`",
        "(which asserts every row). `T` is the temporary folder holding the cases' files (a tiny",
        "trained run `T/run`, damaged copies of it, odd data folders, broken TOML files); the",
        "training flags every `train`, `check`, `lr-find` and `tune` row shares (`--data digits`,",
        "a tiny model, one thread, `--quiet`) are left out. The message is the line with",
        "`error:` (argparse's usage line before it is not shown), else stderr's first line.",
        "",
        f"{len(table.CASES)} inputs, {bad} misbehaving.",
        "",
        "| # | command | exit | message | verdict |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"written: {args.out} ({len(table.CASES)} inputs, {bad} misbehaving)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
