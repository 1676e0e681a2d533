"""The command set: one module per command in workflow order, every --help works, the shared flag
groups are the same everywhere, and `cnnlab --help` starts without torch."""

import argparse
import dataclasses
import importlib
import subprocess
import sys

import pytest

from cnnlab.cli import build_parser, main
from cnnlab.commands import COMMANDS

WORKFLOW_ORDER = [
    "datasets",
    "augment",
    "duplicates",
    "models",
    "summary",
    "ops",
    "recipes",
    "check",
    "lr-find",
    "train",
    "tune",
    "calibrate",
    "evaluate",
    "predict",
    "explain",
    "report",
    "export",
    "compare",
    "cache",
]
# `cnnlab explain --help` before its flags were generated from ExplainConfig (2026-12).
EXPLAIN_FLAGS = {
    "--batch-size", "--cam-layer", "--cam-methods", "--checkpoint", "--data", "--data-dir",
    "--device", "--help", "--image-index", "--json", "--layers", "--masks", "--max-features",
    "--max-points", "--method", "--neighbours", "--neuron-classes", "--neuron-layers",
    "--per-cell", "--pooling", "--quiet", "--seed", "--split", "--untrained", "--what", "-h",
}  # fmt: skip
USES_A_RUN = ("evaluate", "predict", "explain", "export")


@pytest.fixture(scope="module")
def subparsers() -> dict[str, argparse.ArgumentParser]:
    return build_parser()._subparsers._group_actions[0].choices


def _actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


def test_help_lists_every_command_in_workflow_order_with_a_one_line_purpose(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert list(COMMANDS) == WORKFLOW_ORDER
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [line.split(None, 1) for line in lines[lines.index("  COMMAND") + 1 :] if line]
    rows = [row for row in listed if row[0] in COMMANDS]
    assert [row[0] for row in rows] == WORKFLOW_ORDER
    for name, purpose in rows:
        assert purpose == COMMANDS[name], f"the purpose of {name} is not on one line"


def test_every_command_is_a_module_that_registers_itself(subparsers):
    assert list(subparsers) == WORKFLOW_ORDER
    for name in COMMANDS:
        module = importlib.import_module(f"cnnlab.commands.{name.replace('-', '_')}")
        assert callable(module.register)
        assert subparsers[name].get_default("handler") is not None, name


@pytest.mark.parametrize("name", WORKFLOW_ORDER)
def test_every_command_help_exits_0(name, capsys):
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: cnnlab {name}")


def test_the_shared_flags_are_the_same_on_every_command_that_reads_a_run(subparsers):
    from cnnlab.run.paths import CHECKPOINT_CHOICES
    from cnnlab.run.records import SPLITS
    from cnnlab.runtime import RUNTIMES

    expected = {
        "--checkpoint": (USES_A_RUN, tuple(CHECKPOINT_CHOICES), "best"),
        "--json": (USES_A_RUN, None, False),
        "--device": (("evaluate", "predict", "explain"), None, "auto"),
        "--runtime": (("evaluate", "predict"), tuple(RUNTIMES), "torch"),
        "--data": (("evaluate", "explain"), None, None),
        "--data-dir": (("evaluate", "explain"), None, None),
        "--split": (("evaluate", "explain"), ("test", "val", "train"), "test"),
    }
    assert set(expected["--split"][1]) == set(SPLITS)
    for flag, (names, choices, default) in expected.items():
        shown = {_actions(subparsers[name])[flag].help for name in names}
        assert flag == "--json" or len(shown) == 1, f"{flag} has different help texts: {shown}"
        for name in names:
            action = _actions(subparsers[name])[flag]
            assert action.choices is None or tuple(action.choices) == choices, (name, flag)
            assert action.default == default, (name, flag)
    assert (
        _actions(subparsers["export"])["--which"] is _actions(subparsers["export"])["--checkpoint"]
    )


def test_export_takes_checkpoint_and_its_old_spelling_which():
    parser = build_parser(with_flags=("export",))
    assert parser.parse_args(["export", "RUN", "--which", "last"]).checkpoint == "last"
    assert parser.parse_args(["export", "RUN", "--checkpoint", "last"]).checkpoint == "last"
    assert parser.parse_args(["export", "RUN"]).checkpoint == "best"


def test_explain_keeps_every_flag_it_had(subparsers):
    assert set(_actions(subparsers["explain"])) == EXPLAIN_FLAGS


def test_explain_flags_cover_the_config_fields_and_default_to_them():
    from cnnlab.commands.explain import FIELD_HELP, SHARED
    from cnnlab.explain import ExplainConfig

    fields = [f.name for f in dataclasses.fields(ExplainConfig)]
    assert sorted(fields) == sorted([*FIELD_HELP, *SHARED])
    parser = build_parser(with_flags=("explain",))
    args = vars(parser.parse_args(["explain", "RUN"]))
    assert ExplainConfig(**{name: args[name] for name in fields}) == ExplainConfig()
    args = vars(
        parser.parse_args(
            ["explain", "RUN", "--what", "features, cam", "--untrained", "--max-points", "50"]
            + ["--split", "val", "--data-dir", "D", "--checkpoint", "last", "--masks", "M"]
        )
    )
    config = ExplainConfig(**{name: args[name] for name in fields})
    assert config.what == ("features", "cam") and config.untrained and config.max_points == 50
    assert (config.split, config.data_dir, config.checkpoint, config.masks) == (
        "val",
        "D",
        "last",
        "M",
    )


def test_help_and_the_light_commands_start_without_torch():
    """`cnnlab --help` builds no command's flags; these commands' flags need no torch."""
    code = (
        "import sys\nfrom cnnlab.cli import main\n"
        "for argv in (['--help'], ['datasets', '--help'], ['models', '--help'], "
        "['recipes', '--help'], ['summary', '--help'], ['train', '--help'], "
        "['augment', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stderr.strip() == "False"
