"""Bad input to every command: one clear line, never a traceback (issue 16's check).

Each row of CASES is a command line with placeholders for the files `build_world` makes (a tiny
trained run, damaged copies of it, odd data folders, broken TOML files); it runs in this process
through `cnnlab.cli.main` (a subprocess only where a pipe is needed) and must end with the
expected exit status, an error line that names the offending flag or file, and no traceback or
bare Python exception name on stderr. `benchmarks/bad_inputs_table.py` runs the same table and
writes docs/bad-inputs.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
import struct
import subprocess
import sys
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# The training flags of train, check, lr-find and tune (a ~400-parameter network on digits, one
# thread); train also takes --quiet.
TINY = ["--data", "digits", "--learning-rate", "0.3", "--model-options", "widths=[4,8]",
        "--model-options", "depth=1", "--batch-size", "64", "--threads", "1", "--no-download",
        "--no-check-duplicates"]  # fmt: skip
EXCEPTION_NAME = re.compile(r"^\s*(\w+\.)*\w*(Error|Exception|Interrupt)\b(:|$)")


@dataclass(frozen=True)
class Case:
    """A command line (placeholders in braces, see `build_world`), the exit status it must end
    with and a text the error line must contain (the flag or file it is about)."""

    args: tuple[str, ...]
    code: int
    names: str
    pipe: bool = False  # run as `cnnlab ARGS | head -1` in a subprocess
    process: bool = False  # run as a subprocess (--nproc reads sys.argv)


def _case(
    args: str | list[str], code: int, names: str, pipe: bool = False, process: bool = False
) -> Case:
    return Case(tuple(args.split() if isinstance(args, str) else args), code, names, pipe, process)


def _train(*args: str, flags: list[str] = TINY) -> list[str]:
    """`cnnlab train` with the tiny set-up, one epoch, a new --out per case ({out}), `args`."""
    return ["train", *flags, "--quiet", "--epochs", "1", "--out", "{out}", *args]


SPEC = ["--data", "digits", "--threads", "1", "--no-download", "--no-check-duplicates"]
TUNE = TINY[:2] + TINY[4:]  # the space searches the learning rate


CASES: list[Case] = [
    # train: the model
    _case(_train("--model", "conv8 -> -> fc", flags=SPEC), 2, "spec error at position 10"),
    _case(_train("--model", "[conv8 -> relu]*x -> fc", flags=SPEC), 2, "spec error"),
    _case(_train("--model", "conv8x -> fc", flags=SPEC), 2, "'conv8x'"),
    _case(
        _train("--model", "conv8 -> fc", "--model-options", "widths=[4]", flags=SPEC),
        2,
        "network spec ('conv8x3 -> fc') has no option 'widths'",
    ),  # fmt: skip
    _case(_train("--model", "lenet"), 2, "lenet5"),
    _case(_train("--model-options", "widths=32,64"), 2, "widths"),
    _case(_train("--model-options", 'depth="two"'), 2, "depth"),
    _case(_train("--model-options", "dropout=2"), 2, "dropout"),
    _case(_train("--model-options", "colour=1"), 2, "colour"),
    _case(_train("--model-options", "widths"), 2, "--model-options"),
    # train: numbers
    _case(_train("--learning-rate", "nan"), 2, "--learning-rate"),
    _case(_train("--learning-rate", "inf"), 2, "--learning-rate"),
    _case(_train("--learning-rate", "-1"), 2, "--learning-rate"),
    _case(_train("--learning-rate", "0"), 2, "--learning-rate"),
    _case(_train("--learning-rate", "fast"), 2, "--learning-rate"),
    _case(_train("--epochs", "0"), 2, "--epochs"),
    _case(_train("--epochs", "-3"), 2, "--epochs"),
    _case(_train("--batch-size", "0"), 2, "--batch-size"),
    _case(_train("--val-fraction", "1.5"), 2, "--val-fraction"),
    _case(_train("--test-fraction", "1"), 2, "--test-fraction"),
    _case(_train("--image-size", "0"), 2, "--image-size"),
    _case(_train("--image-size", "big"), 2, "--image-size"),
    _case(_train("--momentum", "-0.5"), 2, "--momentum"),
    _case(_train("--weight-decay", "-1"), 2, "--weight-decay"),
    _case(_train("--schedule", "step", "--step-gamma", "0"), 2, "--step-gamma"),
    _case(_train("--checkpoint-every-steps", "-1"), 2, "--checkpoint-every-steps"),
    _case(_train("--warmup-fraction", "1"), 2, "--warmup-fraction"),
    _case(_train("--optimizer", "adam"), 2, "--optimizer"),
    _case(_train("--label-smoothing", "1.5"), 2, "--label-smoothing"),
    _case(_train("--time-budget", "soon"), 2, "--time-budget"),
    _case(_train("--time-budget", "-5"), 2, "--time-budget"),
    _case(_train("--device", "gpu"), 2, "--device"),
    _case(_train("--threads", "0"), 2, "--threads"),
    _case(_train("--nproc", "0"), 2, "--nproc"),
    _case(_train("--data", "digitz"), 2, "digits"),
    _case(_train("--hflip", "2"), 2, "--hflip"),
    _case(_train("--rotate", "-5"), 2, "--rotate"),
    _case(_train("--pad-fill", "grey"), 2, "--pad-fill"),
    _case(_train("--monitor", "val_f1"), 2, "--monitor"),
    _case("trian --data digits", 2, "trian"),
    _case("train --data", 2, "--data"),
    # train: where it writes and what it reads
    _case(_train("--out", "{file}"), 2, "{file}"),
    _case(_train("--out", "{file}/run"), 2, "{file}/run"),
    _case(_train("--config", "{tmp}/missing.toml"), 2, "missing.toml"),
    _case(_train("--config", "{toml_invalid}"), 2, "invalid.toml"),
    _case(_train("--config", "{toml_wrong_type}", flags=SPEC), 2, "learning_rate"),
    _case(_train("--config", "{toml_wrong_type}"), 2, "learning_rate"),
    _case(_train("--config", "{toml_momentum}"), 2, "momentum"),
    _case(_train("--config", "{toml_binary}"), 2, "binary.toml"),
    _case(_train("--config", "{empty}"), 2, "empty"),
    _case(_train("--config", "{toml_unknown}"), 2, "learning_rat"),
    # train: folders of images
    _case(_train("--data", "folder:{tmp}/no-such-folder"), 2, "no-such-folder"),
    _case(_train("--data", "folder:{empty}"), 2, "empty"),
    _case(_train("--data", "folder:{one_class}"), 2, "class"),
    _case(_train("--data", "folder:{one_each}"), 2, "one-each"),
    _case(_train("--data", "folder:{not_images}"), 2, "not-images"),
    _case(_train("--data", "folder:{damaged}", "--strict"), 2, "damaged' cannot be read"),
    _case(_train("--data", "folder:{zero_byte}", "--strict"), 2, "zero-byte' cannot be read"),
    _case(_train("--data", "folder:{cells}", "--group-by", "(patient"), 2, "--group-by"),
    _case(_train("--data", "folder:{cells}", "--group-by", r"slide(\d+)"), 2, "--group-by"),
    _case(_train("--data", "folder:{cells}", "--group-by", "csv:{tmp}/none.csv"), 2, "none.csv"),
    _case(_train("--data", "folder:{cells}", "--group-by", "csv:{groups_missing}"), 0, "ghost.png"),
    _case(_train("--model-options", "widths=[4,"), 2, "widths"),
    _case(_train("--image-size", "100000"), 2, "--image-size"),
    _case(_train("--channels", "2"), 2, "--channels"),
    _case(_train("--device", "cuda"), 2, "cuda"),
    _case(_train("--weights", "{tmp}/none.safetensors"), 2, "none.safetensors"),
    _case(_train("--weights", "{file}"), 2, "notes.txt"),
    _case(_train("--data", "mnist", "--data-dir", "{empty}"), 2, "mnist"),
    _case(_train("--data", "folder:{file}"), 2, "notes.txt"),
    # train: resuming
    _case("train --resume {tmp}/no-run", 2, "no-run"),
    _case("train --resume {not_run}", 2, "not-a-run"),
    _case("train --resume {run} --learning-rate 0.1", 2, "--learning-rate"),
    _case("train --resume {run} --epochs 1", 2, "--epochs"),
    _case("train --resume {run}", 0, ""),  # complete: says so, changes nothing
    _case(_train("--sync-bn"), 0, ""),  # one process: nothing to synchronise
    _case(_train("--sync-bn", "--nproc", "2", "--device", "cpu"), 2, "--sync-bn"),
    _case(
        _train("--data", "folder:{damaged}", "--strict", "--nproc", "2", "--no-cache"),
        2,
        "damaged' cannot be read",
        process=True,
    ),  # fmt: skip
    _case("train --resume {bad_checkpoints}", 2, "checkpoint"),
    _case("train --resume {bad_config}", 2, "config.json"),
    # evaluate
    _case("evaluate {tmp}/no-run", 2, "no-run"),
    _case("evaluate {not_run}", 2, "not-a-run"),
    _case("evaluate {file}", 2, "is a file"),
    _case("evaluate {bad_config} --bootstrap 0", 0, ""),  # evaluate does not read config.json
    _case("evaluate {bad_dataset}", 2, "dataset.json"),
    _case("evaluate {bad_model}", 2, "model.json"),
    _case("evaluate {bad_checkpoints}", 2, "checkpoint"),
    _case("evaluate {run} --top-k 0", 2, "--top-k"),
    _case("evaluate {run} --batch-size 0", 2, "--batch-size"),
    _case("evaluate {run} --bootstrap -1", 2, "--bootstrap"),
    _case("evaluate {run} --positive-class seven", 2, "seven"),
    _case("evaluate {run} --data folder:{tmp}/no-such-folder", 2, "no-such-folder"),
    _case("evaluate {run} --split nonsense", 2, "--split"),
    _case("evaluate {run}", 141, "", pipe=True),
    _case("evaluate {bad_indices}", 2, "dataset.json"),
    _case("evaluate {bad_classes}", 2, "dataset.json"),
    _case("evaluate {unknown_family}", 2, "resnet-9000"),
    _case("evaluate {bad_option}", 2, "widths"),
    _case("evaluate {bad_sidecar} --bootstrap 0", 0, "best.json"),  # the newest step is used
    _case("evaluate {bad_calibration}", 2, "calibration.json"),
    _case("report {bad_metrics}", 0, ""),  # damaged lines of metrics.jsonl are skipped
    _case("report {bad_eval}", 2, "test.json"),
    _case("train --resume {bad_metrics}", 0, ""),  # complete: says so
    _case("predict {unknown_family} {predict_mixed}/good0.png", 2, "resnet-9000"),
    # predict
    _case("predict {run} {tmp}/missing.png", 2, "missing.png"),
    _case("predict {run} {not_images}", 2, "not-images"),
    _case("predict {run} {tmp}/nothing-*.png", 2, "nothing-*.png"),
    _case("predict {run} {predict_mixed} --csv {tmp}/pred.csv", 1, "could not be read"),
    _case("predict {run} {predict_mixed}/good0.png --positive-class seven", 2, "seven"),
    _case("predict {run} {predict_mixed}/good0.png --top-k 0", 2, "--top-k"),
    _case("predict {run} {bomb}", 2, "bomb.png"),
    _case("predict {run} {predict_mixed} --json", 141, "", pipe=True),
    _case("predict {not_run} {predict_mixed}/good0.png", 2, "not-a-run"),
    _case("predict {bad_model} {predict_mixed}/good0.png", 2, "model.json"),
    _case("predict {run} {predict_mixed}/good0.png --csv {file}/p.csv", 2, "p.csv"),
    # calibrate
    _case("calibrate {not_run}", 2, "not-a-run"),
    _case("calibrate {no_val_run}", 2, "val"),
    _case("calibrate {run} --threshold sensitivity:2", 2, "sensitivity:2"),
    _case("calibrate {run} --threshold youden2", 2, "youden2"),
    _case("calibrate {run} --threshold -1", 2, "-1"),
    _case("calibrate {run} --threshold youden", 0, ""),  # ignored beyond two classes (--help)
    _case("calibrate {run} --batch-size 0", 2, "--batch-size"),
    _case("calibrate {run} --positive-class seven", 2, "seven"),
    # explain, export, report
    _case("explain {tmp}/no-run", 2, "no-run"),
    _case("explain {bad_model}", 2, "model.json"),
    _case("explain {run} --layers nowhere", 2, "nowhere"),
    _case("explain {run} --what everything", 2, "everything"),
    _case("explain {run} --max-points -1", 2, "--max-points"),
    _case("explain {run} --split val --layers nowhere", 2, "nowhere"),
    _case("export {run} --out {file}/model.onnx", 2, "notes.txt"),
    _case("export {not_run}", 2, "not-a-run"),
    _case("export {bad_checkpoints}", 2, "checkpoint"),
    _case("report {not_run}", 2, "not-a-run"),
    _case("report {tmp}/no-run", 2, "no-run"),
    _case("report {bad_config}", 2, "config.json"),
    # data tools
    _case("duplicates --data folder:{cells} --group-by (patient", 2, "--group-by"),
    _case("duplicates --data folder:{tmp}/no-such-folder", 2, "no-such-folder"),
    _case("duplicates --run {not_run}", 2, "not-a-run"),
    _case("duplicates --data digits --distance -1", 2, "--distance"),
    _case("augment --data folder:{empty} --out {tmp}/grid.png", 2, "empty"),
    _case("augment --data digits --rows 0 --out {tmp}/grid.png", 2, "--rows"),
    _case("augment --data digits --out {file}/grid.png", 2, "notes.txt"),
    _case("report {run} --out {file}/r.html", 2, "notes.txt"),
    _case("evaluate {run} --runtime onnx --device cuda", 2, "--device"),
    # check and lr-find
    _case(["check", *TINY, "--freeze", "nowhere"], 2, "nowhere"),
    _case(["check", *TINY, "--overfit-images", "0"], 2, "--overfit-images"),
    _case(
        ["lr-find", *TINY, "--out", "{tmp}/lr", "--start-lr", "1", "--end-lr", "0.1"],
        2,
        "--start-lr",
    ),  # fmt: skip
    _case(["lr-find", *TINY, "--out", "{tmp}/lr", "--start-lr", "0"], 2, "--start-lr"),
    _case(["lr-find", *TINY, "--out", "{tmp}/lr", "--steps", "1"], 2, "--steps"),
    _case(["lr-find", *TINY, "--out", "{file}"], 2, "notes.txt"),
    _case(["lr-find", *TINY, "--out", "{tmp}/lr", "--end-lr", "nan"], 2, "--end-lr"),
    # tune
    _case(
        ["tune", *TUNE, "--out", "{tmp}/t", "--trials", "1", "--space", "{tmp}/nospace.toml"],
        2,
        "nospace.toml",
    ),  # fmt: skip
    _case(
        ["tune", *TUNE, "--out", "{tmp}/t", "--trials", "1", "--space", "{space_unknown}"],
        2,
        "learning_rat",
    ),  # fmt: skip
    _case(
        ["tune", *TUNE, "--out", "{tmp}/t", "--trials", "1", "--space", "{space_type}"],
        2,
        "learning_rate",
    ),  # fmt: skip
    _case(
        ["tune", *TUNE, "--out", "{tmp}/t", "--trials", "1", "--space", "{space_reversed}"],
        2,
        "learning_rate",
    ),  # fmt: skip
    _case(
        ["tune", *TUNE, "--out", "{tmp}/t", "--trials", "1", "--space", "{space_log}"],
        2,
        "learning_rate",
    ),  # fmt: skip
    _case(
        [
            "tune",
            *TUNE,
            "--out",
            "{tmp}/t",
            "--trials",
            "1",
            "--space",
            "{space_log}",
            "--sampler",
            "grid",
        ],
        2,
        "learning_rate",
    ),  # fmt: skip
    _case(
        [
            "tune",
            *TUNE,
            "--out",
            "{tmp}/t",
            "--trials",
            "1",
            "--space",
            "{space_float}",
            "--sampler",
            "grid",
        ],
        2,
        "learning_rate",
    ),  # fmt: skip
    _case(["tune", *TUNE, "--out", "{tmp}/t", "--trials", "1", "--space", "{empty}"], 2, "empty"),
    _case(
        ["tune", *TUNE, "--out", "{tmp}/t", "--trials", "1", "--space", "{toml_binary}"],
        2,
        "binary.toml",
    ),  # fmt: skip
    _case(
        ["tune", *TUNE, "--out", "{tmp}/t", "--trials", "0", "--space", "{space_good}"],
        2,
        "--trials",
    ),  # fmt: skip
    _case(
        [
            "tune",
            *TUNE,
            "--out",
            "{tmp}/t",
            "--trials",
            "1",
            "--space",
            "{space_good}",
            "--storage",
            "postgresql://nobody@127.0.0.1:1/x",
        ],
        2,
        "--storage",
    ),  # fmt: skip
    _case(
        [
            "tune",
            *TUNE,
            "--out",
            "{tmp}/t",
            "--trials",
            "1",
            "--space",
            "{space_good}",
            "--storage",
            "nosuchdb://x",
        ],
        2,
        "--storage",
    ),  # fmt: skip
    _case(
        ["tune", *TUNE, "--out", "{file}", "--trials", "1", "--space", "{space_good}"],
        2,
        "notes.txt",
    ),  # fmt: skip
    # compare
    _case("compare --data digits --pipelines raw-svm,magic-svm --out {tmp}/c", 2, "magic-svm"),
    _case(
        "compare --data digits --pipelines scratch:conv8->->fc --out {tmp}/c", 2, "conv8->->fc"
    ),  # fmt: skip
    _case("compare --data digits --pipelines pretrained-svm:nonet --out {tmp}/c", 2, "nonet"),
    _case("compare --data digits --pipelines raw-svm --folds 1 --out {tmp}/c", 2, "--folds"),
    _case("compare --data digits --pipelines raw-svm --curve 2 --out {tmp}/c", 2, "--curve"),
    _case("compare --data digits --pipelines raw-svm --out {file}", 2, "notes.txt"),
    # cache, ops, summary
    _case("cache clear everything", 2, "everything"),
    _case("ops {predict_mixed}/good0.png --out {file}", 2, "notes.txt"),
    _case("summary lenet5 --input 0,28,28", 2, "--input"),
    _case("cache frobnicate", 2, "frobnicate"),
    _case("ops {tmp}/missing.png", 2, "missing.png"),
    _case("ops {bomb} --out {tmp}/ops", 2, "bomb.png"),
    _case("ops {empty} --out {tmp}/ops", 2, "empty"),
    _case("ops {predict_mixed}/good0.png --pipeline LN,XX --out {tmp}/ops", 2, "XX"),
    _case("ops {predict_mixed}/good0.png --kernels nosuch --out {tmp}/ops", 2, "nosuch"),
    _case("ops {predict_mixed}/good0.png --size 0 --out {tmp}/ops", 2, "--size"),
    _case("ops {predict_mixed}/broken.png --out {tmp}/ops", 2, "broken.png"),
    _case(["summary", "conv8 -> -> fc", "--input", "1,28,28"], 2, "spec error at position 10"),
    _case("summary lenet5 --input 1,2,2 --classes 10", 2, "at least 4x4"),
    _case("summary lenet5 --input abc", 2, "--input"),
    _case("summary lenet5 --input 1,28,28 --classes 0", 2, "--classes"),
    _case("summary lenet5 --input 1,28,28 --model-options nonsense=3", 2, "nonsense"),
]


def build_world(root: Path) -> dict[str, str]:
    """The files the cases name, made under `root`; returns the placeholders' values."""
    from PIL import Image

    from cnnlab.cli import main

    root.mkdir(parents=True, exist_ok=True)
    world = {"tmp": str(root)}

    def folder(name: str, classes: dict[str, int], size: int = 8) -> Path:
        rng = np.random.default_rng(len(name))
        path = root / name
        for label, count in classes.items():
            (path / label).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
                Image.fromarray(pixels).save(path / label / f"{label}{i}.png")
        world[name.replace("-", "_")] = str(path)
        return path

    (root / "empty").mkdir()
    world["empty"] = str(root / "empty")
    folder("one-class", {"cats": 12})
    folder("one-each", {"cats": 1, "dogs": 1})
    not_images = root / "not-images"
    for label in ("cats", "dogs"):
        (not_images / label).mkdir(parents=True)
        (not_images / label / "readme.txt").write_text("not an image")
    world["not_images"] = str(not_images)
    damaged = folder("damaged", {"cats": 6, "dogs": 6})
    good = (damaged / "cats" / "cats0.png").read_bytes()
    (damaged / "cats" / "truncated.png").write_bytes(good[: len(good) // 2])
    zero = folder("zero-byte", {"cats": 6, "dogs": 6})
    (zero / "dogs" / "empty.png").write_bytes(b"")
    cells = folder("cells", {"healthy": 6, "infected": 6})
    rows = [
        f"{p.relative_to(cells).as_posix()},p{i % 4}" for i, p in enumerate(cells.rglob("*.png"))
    ]
    groups = root / "groups.csv"  # every image has a row, and one row names no file
    groups.write_text("\n".join(["file,group", *rows, "healthy/ghost.png,p9", ""]))
    world["groups_missing"] = str(groups)
    mixed = folder("predict-mixed", {"x": 0})
    for i in range(2):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(mixed / f"good{i}.png")
    (mixed / "broken.png").write_bytes(good[:30])
    world["predict_mixed"] = str(mixed)
    bomb = root / "bomb.png"  # a valid header claiming 60,000 x 60,000 pixels, and no pixels
    header = b"IHDR" + struct.pack(">IIBBBBB", 60_000, 60_000, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + header + struct.pack(">I", zlib.crc32(header))
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    world["bomb"] = str(bomb)
    notes = root / "notes.txt"
    notes.write_text("mine")
    world["file"] = str(notes)
    (root / "not-a-run").mkdir()
    (root / "not-a-run" / "photo.txt").write_text("x")
    world["not_run"] = str(root / "not-a-run")
    _write_tomls(root, world)

    run = root / "run"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(run)]) == 0
    world["run"] = str(run)
    no_val = root / "no-val-run"
    assert main(["train", *TINY, "--epochs", "1", "--val-fraction", "0", "--out", str(no_val)]) == 0
    world["no_val_run"] = str(no_val)
    for name, damage in [
        ("bad-config", lambda r: (r / "config.json").write_text("{")),
        ("bad-dataset", lambda r: (r / "dataset.json").write_text('{"classes": 3}')),
        ("bad-model", lambda r: (r / "model.json").write_text("[]")),
        ("bad-checkpoints", _truncate_checkpoints),
        ("bad-indices", lambda r: _edit_json(r / "dataset.json", _split_past_the_end)),
        ("bad-classes", lambda r: _edit_json(r / "dataset.json", _classes_not_a_list)),
        ("unknown-family", lambda r: _edit_json(r / "model.json", _unknown_family)),
        ("bad-option", lambda r: _edit_json(r / "model.json", _option_of_wrong_type)),
        ("bad-sidecar", lambda r: (r / "checkpoints" / "best.json").write_text("{")),
        ("bad-metrics", lambda r: (r / "metrics.jsonl").write_text('{"epoch": 1,\n[]\n')),
        ("bad-calibration", lambda r: (r / "calibration.json").write_text('{"temperature": "x"}')),
        ("bad-eval", lambda r: (r / "eval").mkdir() or (r / "eval/test.json").write_text("[1")),
    ]:
        copy = root / name
        shutil.copytree(run, copy)
        damage(copy)
        world[name.replace("-", "_")] = str(copy)
    return world


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _split_past_the_end(dataset: dict) -> None:
    dataset["splits"]["test"]["indices"][-1] = 10**6


def _classes_not_a_list(dataset: dict) -> None:
    dataset["class_names"] = "0123456789"


def _unknown_family(model: dict) -> None:
    model["name"] = "resnet-9000"


def _option_of_wrong_type(model: dict) -> None:
    model["options"]["widths"] = "wide"


def _truncate_checkpoints(run: Path) -> None:
    for weights in (run / "checkpoints").glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[:300])


def _write_tomls(root: Path, world: dict[str, str]) -> None:
    files = {
        "toml_invalid": ("invalid.toml", "learning_rate = = 3\n"),
        "toml_wrong_type": ("wrong-type.toml", 'learning_rate = "fast"\n'),
        "toml_unknown": ("unknown.toml", "learning_rat = 0.1\n"),
        "toml_momentum": ("momentum.toml", "momentum = 1.5\n"),
        "space_unknown": ("space-unknown.toml", "[space]\nlearning_rat = {low = 0.01, high = 1}\n"),
        "space_type": ("space-type.toml", '[space]\nlearning_rate = {low = "a", high = "b"}\n'),
        "space_reversed": (
            "space-reversed.toml",
            "[space]\nlearning_rate = {low = 1, high = 0.1}\n",
        ),
        "space_log": (
            "space-log.toml",
            "[space]\nlearning_rate = {low = 0.0, high = 1.0, log = true}\n",
        ),
        "space_float": ("space-float.toml", "[space]\nlearning_rate = {low = 0.01, high = 1.0}\n"),
        "space_good": ("space-good.toml", "[space]\nlearning_rate = [0.1, 0.3]\n"),
    }
    (root / "binary.toml").write_bytes(b"learning_rate = \xff\xfe\n")
    world["toml_binary"] = str(root / "binary.toml")
    for key, (name, text) in files.items():
        (root / name).write_text(text)
        world[key] = str(root / name)


@dataclass
class Outcome:
    code: int
    stderr: str

    @property
    def message(self) -> str:
        """The line that says what went wrong: the first `error:` line, else stderr's first."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if "error:" in line]
        return (errors or lines or [""])[0]


def run_case(case: Case, world: dict[str, str]) -> Outcome:
    """Runs one case: in this process through `cnnlab.cli.main`, or as a subprocess for a pipe.
    An exception escaping `main` is an outcome too (status 1 and its traceback, as Python's)."""
    out = Path(world["tmp"], "outs")
    out.mkdir(exist_ok=True)
    world = {**world, "out": str(out / str(len(list(out.iterdir()))))}  # a new --out each case
    args = [arg.format(**world) for arg in case.args]
    if case.process:
        done = subprocess.run(
            [sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, timeout=300
        )
        return Outcome(done.returncode, done.stderr)
    if case.pipe:
        process = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        process.stdout.close()  # `| head -1` once it has its line
        err = process.stderr.read().decode()
        return Outcome(process.wait(timeout=300), err)
    import torch

    from cnnlab.cli import main

    logger, threads = logging.getLogger("cnnlab"), torch.get_num_threads()
    handlers, err, out = list(logger.handlers), io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(args)
            except SystemExit as stop:  # argparse
                code = stop.code if isinstance(stop.code, int) else 1
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        logger.handlers[:] = handlers
        torch.set_num_threads(threads)
    return Outcome(code, err.getvalue())


def problems(case: Case, outcome: Outcome, world: dict[str, str]) -> list[str]:
    """What is wrong with an outcome; empty when the case behaves."""
    found = []
    if outcome.code != case.code:
        found.append(f"exit status {outcome.code}, expected {case.code}")
    if "Traceback" in outcome.stderr:
        found.append("traceback")
    if any(EXCEPTION_NAME.match(line) for line in outcome.stderr.splitlines()):
        found.append("a bare exception name")
    names = case.names.format(**world)
    said = outcome.message if case.code else outcome.stderr  # status 0: a warning names it
    if names and names not in said:
        found.append(f"the error line does not name {names!r}")
    return found


def case_id(case: Case) -> str:
    """The command line without the shared training flags (TINY, SPEC, TUNE)."""
    args = list(case.args)
    for flags in (TINY, SPEC, TUNE):
        for start in range(len(args) - len(flags) + 1):
            if args[start : start + len(flags)] == flags:
                del args[start : start + len(flags)]
                break
    return " ".join(args)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("cache")
        patch.setenv("CNNLAB_CACHE_DIR", str(cache))
        patch.setenv("XDG_CACHE_HOME", str(cache))
        patch.delenv("CNNLAB_DATA", raising=False)  # "not found" rows must not find ../shared
        yield build_world(tmp_path_factory.mktemp("bad-inputs"))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_input_is_one_clear_line(case, world):
    outcome = run_case(case, world)
    assert not problems(case, outcome, world), outcome.stderr


def test_predict_with_an_unreadable_file_still_writes_the_others(world):
    """The row above exits 1; the CSV it wrote holds both readable images."""
    case = _case("predict {run} {predict_mixed} --csv {tmp}/pred-kept.csv", 1, "broken.png")
    assert run_case(case, world).code == 1
    rows = Path(world["tmp"], "pred-kept.csv").read_text().splitlines()
    assert sorted(Path(row.split(",")[0]).name for row in rows[1:]) == ["good0.png", "good1.png"]
