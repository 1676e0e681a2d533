"""End-to-end check of the foundation on real data: LeNet-5 on Fashion-MNIST.

Trains with the CLI, evaluates on the test set, writes test images to PNG files, predicts them with
`cnnlab predict`, and checks the predicted classes equal `evaluate`'s. Prints one JSON summary.

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/fashion_mnist_lenet5.py [--epochs 15]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnlab.data import load_dataset, save_image_file


def cnnlab(*args: str) -> str:
    command = [sys.executable, "-m", "cnnlab", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", default="runs/bench-fmnist-lenet5")
    parser.add_argument("--images", type=int, default=200, help="test images to predict as PNGs")
    parser.add_argument(
        "--augment",
        action="store_true",
        help="use the data set's default augmentation (the recorded numbers are without it)",
    )
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)

    start = time.perf_counter()
    augment = "--augment" if args.augment else "--no-augment"
    cnnlab("train", "--data", "fashion-mnist", "--model", "lenet5", "--epochs", str(args.epochs),
           "--out", args.out, "--quiet", augment)  # fmt: skip
    train_seconds = time.perf_counter() - start
    metrics = json.loads(cnnlab("evaluate", args.out, "--json"))

    with open(Path(args.out) / "eval" / "test-predictions.csv") as f:
        rows = list(csv.DictReader(f))[: args.images]
    test = load_dataset("fashion-mnist")
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for row in rows:
            index = int(row["sample"].split(":")[1])
            paths.append(str(Path(folder) / f"test-{index}.png"))
            save_image_file(test.test_images[index], paths[-1])
        predictions = json.loads(cnnlab("predict", args.out, *paths, "--json"))
    agree = sum(p["predicted"] == r["predicted"] for p, r in zip(predictions, rows, strict=True))
    summary = {
        "epochs": args.epochs,
        "augment": args.augment,
        "train_seconds": round(train_seconds, 1),
        "test_accuracy": round(metrics["accuracy"], 4),
        "test_balanced_accuracy": round(metrics["balanced_accuracy"], 4),
        "test_cohen_kappa": round(metrics["cohen_kappa"], 4),
        "predict_agrees_with_evaluate": f"{agree}/{len(rows)}",
    }
    print(json.dumps(summary, indent=2))
    if agree != len(rows):
        sys.exit("predict and evaluate disagree")


if __name__ == "__main__":
    main()
