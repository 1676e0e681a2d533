"""`cnnlab <command>`: train, evaluate, predict, datasets, models.

Each command is a thin layer over a library function; errors a user can fix print one message
(no traceback) and exit with status 2; every command that prints numbers also takes --json.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import io
import json
import logging
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text

# Commands beyond the core ones live in their own modules, each with `register(commands)` that adds
# its sub-parser (with `handler` set); list them here, in the order `cnnlab --help` shows them.
COMMAND_MODULES: list[str] = [
    "cnnlab.commands.ops",
    "cnnlab.commands.augment",
    "cnnlab.commands.summary",
    "cnnlab.commands.explain",
    "cnnlab.commands.recipes",
    "cnnlab.commands.export",
]

EPILOG_TRAIN = """examples:
  cnnlab train --data digits --model small-cnn --epochs 10 --out runs/digits
  cnnlab train --data digits --model "[[conv32 -> relu]*2 -> pool]*3 -> fc" --out runs/spec
  CNNLAB_DATA=../shared/datasets cnnlab train --data fashion-mnist --model lenet5 \\
      --epochs 15 --out runs/fmnist-lenet
  cnnlab train --config recipe.toml --learning-rate 0.1 --out runs/try2
  cnnlab train --resume runs/fmnist-lenet      # continue after Ctrl-C or a crash

A TOML file given with --config sets defaults for any of the long flags (names with - or _,
optionally inside a [train] table); flags on the command line override it. Ctrl-C (or SIGTERM)
finishes the current step, saves a checkpoint and exits with status 130 (143); --resume continues
from it and ends with the same weights as an uninterrupted run on the CPU.
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("cnnlab").addHandler(handler)
    logging.getLogger("cnnlab").setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            return args.handler(args)
    except CnnlabError as error:
        print(f"cnnlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: stopped.", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        description="A workbench for convolutional neural networks for image classification: "
        "design, train, test and explain a CNN from a data set of labelled images.",
        epilog="Run `cnnlab COMMAND --help` for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {cnnlab.__version__}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    _add_train(commands)
    _add_evaluate(commands)
    _add_predict(commands)
    _add_datasets(commands)
    _add_models(commands)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


# ---------------------------------------------------------------- train


def _add_train(commands) -> None:
    from cnnlab.netspec import SPEC_GRAMMAR
    from cnnlab.training.config import TrainConfig

    parser = commands.add_parser(
        "train",
        help="train a model and write a run directory",
        description="Train a CNN on a data set and write a run directory (config.json, "
        "dataset.json, model.json, metrics.jsonl, checkpoints/).",
        epilog=EPILOG_TRAIN + "\n" + SPEC_GRAMMAR,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--out", metavar="RUN", help="run directory to create (default: runs/DATA-MODEL)"
    )
    run.add_argument(
        "--config", metavar="FILE.toml", help="TOML file of defaults for the flags below"
    )
    run.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the run in RUN from its newest good checkpoint (only --data-dir, --device "
        "and --threads may be given with it)",
    )
    run.add_argument(
        "--test",
        action="store_true",
        help="after training, score the best checkpoint on the test split in the same process, "
        "as `cnnlab evaluate RUN` would (writes eval/test.json)",
    )
    run.add_argument("--json", action="store_true", help="print the final summary as JSON")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    settings = parser.add_argument_group("training settings (TrainConfig fields)")
    defaults = {**TrainConfig().to_dict(), "recipe": "auto"}  # from_dict's default recipe
    for field in dataclasses.fields(TrainConfig):
        _add_config_flag(settings, field, defaults[field.name])
    parser.set_defaults(handler=_train)


def _add_config_flag(group, field: dataclasses.Field, default: Any) -> None:
    flag = "--" + field.name.replace("_", "-")
    meta = field.metadata
    shown = "" if default in (None, {}) else f" (default: {default})"
    kind = str(field.type)
    common = {"dest": field.name, "default": argparse.SUPPRESS}
    if kind == "bool":
        group.add_argument(
            flag, action=argparse.BooleanOptionalAction, help=meta["help"] + shown, **common
        )
    elif kind == "dict":
        group.add_argument(
            flag, action="append", metavar=meta.get("metavar"), help=meta["help"], **common
        )
    else:
        value_type = int if kind.startswith("int") else float if kind.startswith("float") else str
        group.add_argument(
            flag, type=value_type, choices=meta.get("choices"), help=meta["help"] + shown, **common
        )


def _train(args: argparse.Namespace) -> int:
    from cnnlab.models import resolve_model_argument
    from cnnlab.training.config import TrainConfig, load_toml, parse_model_option
    from cnnlab.training.run import train

    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)
    }
    if "model_options" in given:
        given["model_options"] = dict(parse_model_option(t) for t in given["model_options"])
    if args.resume:
        from cnnlab.run.paths import RunDir

        not_allowed = sorted(set(given) - {"data_dir", "device", "threads"})
        if not_allowed or args.config or args.out:
            extra = (
                not_allowed + (["config"] if args.config else []) + (["out"] if args.out else [])
            )
            raise CnnlabError(
                "--resume continues a run with the settings it was started with; these flags "
                f"cannot change it: {', '.join('--' + n.replace('_', '-') for n in extra)}."
            )
        stored = RunDir(args.resume).read("config.json").get("train", {})
        config = TrainConfig.from_dict({**stored, **given}, source=f"{args.resume}/config.json")
        out = Path(args.resume)
    else:
        values = load_toml(args.config) if args.config else {}
        config = TrainConfig.from_dict({**values, **given}, source=args.config or "flags")
        # A spec in --model becomes the "spec" family with the spec as its option (model.json).
        model, model_options = resolve_model_argument(config.model, config.model_options)
        config = dataclasses.replace(config, model=model, model_options=model_options)
        out = Path(args.out or f"runs/{config.data}-{config.model}".replace(":", "-"))
    result = train(config, out, resume=bool(args.resume), show_progress=not args.quiet)
    summary = {
        "run": str(result.run),
        "status": result.status,
        "epochs_done": result.epochs_done,
        "global_step": result.global_step,
        "best": result.best,
        "last": result.last,
    }
    if args.test and result.status != "interrupted":
        from cnnlab.inference import evaluate_run

        test = evaluate_run(result.run, "test", data_dir=config.data_dir)
        summary["test"] = {k: test[k] for k in ("accuracy", "balanced_accuracy", "cohen_kappa")}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_train_summary(summary)
    if result.status == "interrupted":
        if not args.json:
            print(f"Interrupted; resume with: cnnlab train --resume {result.run}", file=sys.stderr)
        return 128 + (result.signal_number or signal.SIGINT)
    return 0


def _print_train_summary(summary: dict[str, Any]) -> None:
    print(f"run: {summary['run']} ({summary['status']}, {summary['epochs_done']} epochs)")
    last, best = summary["last"], summary["best"]
    if last and "val_accuracy" in last:
        print(
            f"last epoch: val accuracy {last['val_accuracy']:.4f}, "
            f"balanced accuracy {last['val_balanced_accuracy']:.4f}, "
            f"Cohen's kappa {last['val_cohen_kappa']:.4f}"
        )
    if best:
        print(f"best: {best['monitor']} {best['best_score']:.4f} at epoch {best['best_epoch']}")
    test = summary.get("test")
    if test:
        print(
            f"test (best checkpoint): accuracy {test['accuracy']:.4f}, balanced accuracy "
            f"{test['balanced_accuracy']:.4f}, Cohen's kappa {test['cohen_kappa']:.4f}; "
            f"details in {summary['run']}/eval/"
        )
    else:
        print(f"next: cnnlab evaluate {summary['run']}")


# ---------------------------------------------------------------- evaluate


def _add_evaluate(commands) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="score a trained run on a split and write RUN/eval/",
        description="Evaluate a run on one split of the data it was trained on: accuracy, "
        "top-k accuracy, balanced accuracy, Cohen's kappa, per-class precision/recall/F1 and the "
        "confusion matrix (counts and row-normalised). Writes RUN/eval/SPLIT.json, "
        "RUN/eval/SPLIT-confusion.png and RUN/eval/SPLIT-predictions.csv.",
    )
    parser.add_argument("run", metavar="RUN", help="run directory written by `cnnlab train`")
    parser.add_argument(
        "--split", default="test", choices=("test", "val", "train"), help="split (default: test)"
    )
    parser.add_argument(
        "--data",
        help="read the images from this data source instead of the one recorded in the run "
        "(it must hold the same images and classes)",
    )
    parser.add_argument("--data-dir", help="folder to look for the data set in first")
    _add_model_loading(parser)
    parser.add_argument("--top-k", type=int, default=5, help="k of top-k accuracy (default: 5)")
    parser.add_argument("--batch-size", type=int, default=1024, help="images per batch")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.set_defaults(handler=_evaluate)


def _add_model_loading(parser) -> None:
    parser.add_argument(
        "--checkpoint",
        default="best",
        choices=("best", "last"),
        help="best validation checkpoint or the newest one (default: best, else last)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--runtime",
        default="torch",
        choices=("torch", "onnx"),
        help="torch (default): PyTorch on --device; onnx: ONNX Runtime on the CPU in float32, "
        "often 2-5x faster for small CNNs (exports RUN/export/model-CHECKPOINT.onnx on first "
        "use; needs `pip install onnx onnxruntime`)",
    )


def _evaluate(args: argparse.Namespace) -> int:
    from cnnlab.evaluation import format_metrics_table
    from cnnlab.inference import evaluate_run

    if args.top_k < 1:
        raise CnnlabError("--top-k must be at least 1.")
    metrics = evaluate_run(
        args.run,
        args.split,
        data=args.data,
        data_dir=args.data_dir,
        which=args.checkpoint,
        device=args.device,
        batch_size=args.batch_size,
        top_k=args.top_k,
        runtime=args.runtime,
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics_table(metrics))
        print(f"runtime: {metrics['runtime']}")
        print(
            f"written: {Path(args.run) / 'eval' / args.split}.json, "
            "-confusion.png, -predictions.csv"
        )
    return 0


# ---------------------------------------------------------------- predict


def _add_predict(commands) -> None:
    parser = commands.add_parser(
        "predict",
        help="classify image files with a trained run",
        description="Classify image files with a trained run. Each image is converted to the "
        "run's bands, resized to its image size and normalised with its statistics, exactly as "
        "in training (all read from RUN/dataset.json).",
    )
    parser.add_argument("run", metavar="RUN", help="run directory written by `cnnlab train`")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument(
        "--top-k", type=int, default=3, help="classes to show per image (default: 3)"
    )
    parser.add_argument("--csv", metavar="OUT.csv", help="also write the predictions to a CSV file")
    _add_model_loading(parser)
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON")
    parser.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from cnnlab.inference import predict_files

    if args.top_k < 1:
        raise CnnlabError("--top-k must be at least 1.")
    rows = predict_files(
        args.run,
        args.images,
        which=args.checkpoint,
        device=args.device,
        top_k=args.top_k,
        runtime=args.runtime,
    )
    if args.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        k = len(rows[0]["top"])
        writer.writerow(["file", "predicted", "confidence"] + [f"top{i + 1}" for i in range(k)])
        for row in rows:
            top = [f"{t['class']}:{t['probability']:.6f}" for t in row["top"]]
            writer.writerow([row["file"], row["predicted"], f"{row['confidence']:.6f}", *top])
        atomic_write_text(args.csv, buffer.getvalue())
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            top = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top"])
            print(f"{row['file']}: {row['predicted']} ({row['confidence']:.3f})  [{top}]")
        print(f"runtime: {args.runtime}")
    return 0


# ---------------------------------------------------------------- datasets, models


def _add_datasets(commands) -> None:
    parser = commands.add_parser(
        "datasets",
        help="list data sets and where they were found",
        description="List the named data sets, their shape and classes, and where each was found "
        "(search order: --data-dir, $CNNLAB_DATA, the user cache, /usr/share/datasets; otherwise "
        "it is downloaded on first use).",
    )
    parser.add_argument("--data-dir", help="folder to look in first")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.set_defaults(handler=_datasets)


def _datasets(args: argparse.Namespace) -> int:
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


def _add_models(commands) -> None:
    parser = commands.add_parser(
        "models",
        help="list the model registry",
        description="List every registered model family with its options and defaults. Any "
        "option can be set with `cnnlab train --model-options KEY=VALUE`; `--model` also takes a "
        "network spec (grammar: `cnnlab train --help`). `cnnlab summary MODEL` shows its layers.",
    )
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.set_defaults(handler=_models)


def _models(args: argparse.Namespace) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
