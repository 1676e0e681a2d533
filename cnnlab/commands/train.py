"""`cnnlab train`: train a model and write a run directory; one flag per TrainConfig field."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from cnnlab.commands import COMMANDS
from cnnlab.commands.common import add_config_flag
from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig

EPILOG = """examples:
  cnnlab train --data digits --model small-cnn --epochs 10 --out runs/digits
  cnnlab train --data digits --model "[[conv32 -> relu]*2 -> pool]*3 -> fc" --out runs/spec
  CNNLAB_DATA=../shared/datasets cnnlab train --data fashion-mnist --model lenet5 \\
      --epochs 15 --out runs/fmnist-lenet
  cnnlab train --config recipe.toml --learning-rate 0.1 --out runs/try2
  cnnlab train --data folder:~/images/cells --time-budget 10m --out runs/cells
  cnnlab train --resume runs/fmnist-lenet      # continue after Ctrl-C or a crash
  cnnlab train --resume runs/fmnist-lenet --epochs 25   # a finished run: train on to 25 epochs

A TOML file given with --config sets defaults for any of the long flags (names with - or _,
optionally inside a [train] table); flags on the command line override it. Before a folder is
decoded, a line estimates the decoding and training time from measured speed; --time-budget picks
the image size, width and epochs that fit (config.json resolved.time_budget says why). Ctrl-C (or
SIGTERM) finishes the current step, saves a checkpoint and exits with status 130 (143); --resume
continues from it and ends with the same weights as an uninterrupted run on the CPU. A finished run
(complete or stopped early) is extended with --resume RUN --epochs N: the added epochs are a new
segment with a fresh schedule of the same kind (config.json "segments", an "extended" event in
metrics.jsonl).
"""


def register(subparsers: Any) -> None:
    from cnnlab.specs.network import SPEC_GRAMMAR

    parser = subparsers.add_parser(
        "train",
        help=COMMANDS["train"],
        description="Train a CNN on a data set and write a run directory (config.json, "
        "dataset.json, model.json, metrics.jsonl, checkpoints/).",
        epilog=EPILOG + "\n" + SPEC_GRAMMAR,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run_group = parser.add_argument_group("run")
    run_group.add_argument(
        "--out", metavar="RUN", help="run directory to create (default: runs/DATA-MODEL)"
    )
    run_group.add_argument(
        "--config", metavar="FILE.toml", help="TOML file of defaults for the flags below"
    )
    run_group.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the run in RUN from its newest good checkpoint (only --data-dir, --device, "
        "--threads, and --epochs to extend a finished run, may be given with it)",
    )
    run_group.add_argument(
        "--test",
        action="store_true",
        help="after training, score the best checkpoint on the test split in the same process, "
        "as `cnnlab evaluate RUN` would (writes eval/test.json)",
    )
    run_group.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train with N processes on this machine (data-parallel, one model): starts "
        "`torchrun --standalone --nproc-per-node N -m cnnlab train ...` with the other flags; "
        "--batch-size stays the global batch, split across the processes",
    )
    run_group.add_argument("--json", action="store_true", help="print the final summary as JSON")
    run_group.add_argument("--quiet", action="store_true", help="no progress output")
    settings = parser.add_argument_group("training settings (TrainConfig fields)")
    defaults = {**TrainConfig().to_dict(), "recipe": "auto"}  # from_dict's default recipe
    for field in dataclasses.fields(TrainConfig):
        add_config_flag(settings, field, defaults[field.name])
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    code = _train(args)
    from cnnlab.training.process import leave_group_and_exit, place

    if place().distributed:  # a torchrun worker: leave together, skip the C++ teardown
        leave_group_and_exit(code)
    return code


def _train(args: argparse.Namespace) -> int:
    from cnnlab.training.process import restart_count, writes_files
    from cnnlab.training.run import train

    config, out = _resolve_config(args)
    if args.nproc is not None:
        _refuse_sync_bn_without_cuda(config)  # once here, not once per process after the start
        if config.time_budget:  # planned once here, for every process of the group
            from cnnlab.training.budget import export_plan

            export_plan(config, None if args.quiet else sys.stderr)
        return _launch(args.nproc, getattr(args, "argv", sys.argv[1:]))
    resume = bool(args.resume) or _restarted(out, restart_count())
    if resume and not args.resume:
        config = _resolve_resumed(out, config)
    result = train(config, out, resume=resume, show_progress=not args.quiet)
    if not writes_files():  # another process of a torchrun group: rank 0 reports
        return 128 + result.signal_number if result.status == "interrupted" else 0
    summary = {
        "run": str(result.run),
        "status": result.status,
        "epochs_done": result.epochs_done,
        "global_step": result.global_step,
        "best": result.best,
        "last": result.last,
        "weights": {"ema": config.ema} if config.ema else "live",
        "tta": config.tta,
    }
    if args.test and result.status != "interrupted":
        from cnnlab.inference import evaluate_run

        test = evaluate_run(result.run, "test", data_dir=config.data_dir)
        summary["test"] = {k: test[k] for k in ("accuracy", "balanced_accuracy", "cohen_kappa")}
        summary["test"]["checkpoint"] = test["checkpoint"]["file"]
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    if result.status == "interrupted":
        if not args.json:
            print(f"Interrupted; resume with: cnnlab train --resume {result.run}", file=sys.stderr)
        return 128 + (result.signal_number or signal.SIGINT)
    return 0


def _refuse_sync_bn_without_cuda(config: Any) -> None:
    from cnnlab.runtime.device import resolve_device

    if config.sync_bn and resolve_device(config.device).type != "cuda":
        raise CnnlabError(
            "--sync-bn needs CUDA: PyTorch's SyncBatchNorm runs on GPUs only. On CPUs leave it "
            "out; each process then normalises over its own shard of the batch."
        )


# torchrun, ending with a failed worker's exit status rather than torchrun's traceback (the
# worker has printed its own one-line error above it).
TORCHRUN = """import sys
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main
try:
    main(sys.argv[1:])
except ChildFailedError as failure:
    code = failure.get_first_failure()[1].exitcode
    sys.exit(code if code > 0 else 128 - code if code < 0 else 1)
"""


def _launch(processes: int, given: list[str]) -> int:
    """`--nproc N`: this same command under torchrun, N processes on this machine."""
    import subprocess

    if processes < 1:
        raise CnnlabError(f"--nproc {processes}: give 1 or more processes.")
    if "WORLD_SIZE" in os.environ:
        raise CnnlabError("--nproc starts torchrun itself; under torchrun, leave it out.")
    argv, skip = [], False
    for arg in given[given.index("train") + 1 :] if "train" in given else given:
        if skip or arg == "--nproc" or arg.startswith("--nproc="):
            skip = arg == "--nproc" and not skip
            continue
        argv.append(arg)
    command = [sys.executable, "-c", TORCHRUN, "--standalone",
               f"--nproc-per-node={processes}", "-m", "cnnlab", "train", *argv]  # fmt: skip
    print(f"starting: torchrun --standalone --nproc-per-node={processes} -m cnnlab train "
          + " ".join(argv), file=sys.stderr)  # fmt: skip
    return subprocess.call(command)


def _restarted(out: Path, restarts: int) -> bool:
    """torchrun restarted the group after a failure: continue the run it was training."""
    from cnnlab.run.paths import RunDir

    return restarts > 0 and RunDir(out).has_training_state()


def _resolve_resumed(out: Path, given: TrainConfig) -> TrainConfig:
    from cnnlab.training.resolve import resume_config

    print(f"torchrun restarted the group: resuming '{out}' from its newest good checkpoint",
          file=sys.stderr)  # fmt: skip
    return resume_config(out, {"data_dir": given.data_dir, "device": given.device,
                               "threads": given.threads})  # fmt: skip


def _resolve_config(args: argparse.Namespace) -> tuple[TrainConfig, Path]:
    """(TrainConfig, run directory): the flags given over --config's TOML, or over the stored
    settings of the run that --resume continues (cnnlab.training.resolve, shared with the API)."""
    from cnnlab.training.resolve import default_out, resolve_config, resume_config

    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)
    }
    if args.resume:
        if args.config or args.out:
            extra = ["--config"] * bool(args.config) + ["--out"] * bool(args.out)
            raise CnnlabError(
                "--resume continues a run with the settings it was started with; these flags "
                f"cannot change it: {', '.join(extra)}."
            )
        return resume_config(args.resume, given), Path(args.resume)
    config = resolve_config(given, args.config, source=args.config or "flags")
    return config, Path(args.out) if args.out else default_out(config)


def _which(checkpoint_file: str) -> str:
    return "best" if checkpoint_file.startswith("best.") else "last"


def _print_summary(summary: dict[str, Any]) -> None:
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
            f"test ({_which(test['checkpoint'])} checkpoint): accuracy {test['accuracy']:.4f}, "
            f"balanced accuracy {test['balanced_accuracy']:.4f}, "
            f"Cohen's kappa {test['cohen_kappa']:.4f}; "
            f"details in {summary['run']}/eval/"
        )
    else:
        print(f"next: cnnlab evaluate {summary['run']}")
    weights, tta = summary["weights"], summary["tta"]
    used = [f"EMA weights (decay {weights['ema']:g})"] if weights != "live" else []
    used += [f"test-time augmentation {tta}"] if tta != "none" else []
    if used:
        print(f"scores above use: {', '.join(used)}")
