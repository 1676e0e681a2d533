"""How much a folder's validation accuracy swings from epoch to epoch, per learning-rate setting.

Builds an imbalanced three-class folder from the CIFAR-10 JPEG copy (airplane 1000, cat 600,
dog 400 training images, 32x32), trains small-cnn for --epochs with each candidate setting and
--seeds seeds, and prints per candidate: the mean absolute change of validation accuracy between
consecutive epochs, the largest drop, and the final and best validation accuracy (means over the
seeds). Used to choose the folder default (BENCHMARKS.md, "Folder default schedule").

    .venv/bin/python benchmarks/folder_swings.py [--cifar /tmp/cnnlab-bench/cifar10-jpg]
        [--seeds 3] [--first-seed 0] [--epochs 10] [--only NAME ...] [--json results.json]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from cnnlab.training.config import TrainConfig
from cnnlab.training.run import train

COUNTS = {"airplane": 1000, "cat": 600, "dog": 400}
CANDIDATES = {  # name -> settings over the folder defaults
    "default (sgd 0.05, one-cycle, warm-up 0.2)": {},
    "peak 0.02": {"learning_rate": 0.02},
    "peak 0.02, warm-up 0.3": {"learning_rate": 0.02, "warmup_fraction": 0.3},
    "cosine 0.05 (no warm-up)": {"schedule": "cosine"},
    "one-cycle, warm-up 0.05": {"warmup_fraction": 0.05},
}


def make_folder(cifar: Path, out: Path) -> Path:
    for name, count in COUNTS.items():
        (out / name).mkdir(parents=True)
        for source in sorted((cifar / "train" / name).iterdir())[:count]:
            shutil.copy(source, out / name / source.name)
    return out


def swings(accuracies: list[float]) -> tuple[float, float]:
    changes = [b - a for a, b in zip(accuracies, accuracies[1:], strict=False)]
    return statistics.mean(abs(c) for c in changes), max(0.0, -min(changes))


def run(folder: Path, settings: dict, seed: int, epochs: int, out: Path) -> dict:
    config = TrainConfig(
        data=f"folder:{folder}",
        epochs=epochs,
        seed=seed,
        check_duplicates=False,
        cache=False,
        **settings,
    )
    started = time.perf_counter()
    train(config, out, show_progress=False, stream=io.StringIO())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    accuracies = [row["val_accuracy"] for row in rows if "train_loss" in row]
    mean_swing, largest_drop = swings(accuracies)
    return {
        "accuracies": accuracies, "mean_swing": mean_swing, "largest_drop": largest_drop,
        "final": accuracies[-1], "best": max(accuracies),
        "seconds": time.perf_counter() - started,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", type=Path, default=Path("/tmp/cnnlab-bench/cifar10-jpg"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = make_folder(args.cifar, Path(temporary) / "folder")
        for name, settings in CANDIDATES.items():
            if args.only and name not in args.only:
                continue
            runs = [
                run(folder, settings, seed, args.epochs, Path(temporary) / f"run-{name}-{seed}")
                for seed in range(args.first_seed, args.first_seed + args.seeds)
            ]
            summary = {
                key: statistics.mean(r[key] for r in runs)
                for key in ("mean_swing", "largest_drop", "final", "best", "seconds")
            }
            results[name] = {"settings": settings, **summary, "runs": runs}
            print(
                f"{name:45s} swing {summary['mean_swing']:.3f}  largest drop "
                f"{summary['largest_drop']:.3f}  final {summary['final']:.3f}  best "
                f"{summary['best']:.3f}  ({summary['seconds']:.0f} s/run)",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
