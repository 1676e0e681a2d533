"""Fast path accuracy: bf16 / fp16 / channels_last train to fp32's test accuracy, within noise.

Trains a small conv-BN network on scikit-learn's digits (no download) for a few epochs on each
path, scores each run's test split in float32 NCHW, and checks every fast path lands within
`--tolerance` of the float32 NCHW reference (360 test images: one standard error at ~95% is ~1.1
points; the default allows about three). Moved out of tests/test_fastpath.py, which checks one
training step against float32 within the dtype's precision instead. Prints one JSON summary and
exits 1 if a path misses.

    .venv/bin/python benchmarks/fast_path_accuracy.py [--epochs 6] [--tolerance 0.035]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from cnnlab.inference import evaluate_run
from cnnlab.training.config import TrainConfig
from cnnlab.training.run import train

PATHS = [("fp32", False), ("fp32", True), ("bf16", True), ("fp16", False)]  # the first: reference


def score_path(out: Path, precision: str, channels_last: bool, epochs: int) -> dict:
    config = TrainConfig(
        data="digits",
        model="small-cnn",
        model_options={"widths": [16, 32], "depth": 1},
        download=False,
        val_fraction=0.2,
        epochs=epochs,
        batch_size=32,
        precision=precision,
        channels_last=channels_last,
    )
    start = time.perf_counter()
    train(config, out, show_progress=False)
    seconds = time.perf_counter() - start
    accuracy = evaluate_run(out, precision="fp32", channels_last=False)["accuracy"]
    recorded = json.loads((out / "config.json").read_text())["resolved"]["fast_path"]
    assert (recorded["precision"], recorded["channels_last"]) == (precision, channels_last)
    return {
        "precision": precision,
        "channels_last": channels_last,
        "test_accuracy": round(accuracy, 4),
        "train_seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--tolerance", type=float, default=0.035)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = [score_path(Path(folder) / f"{p}-{cl}", p, cl, args.epochs) for p, cl in PATHS]
    reference = rows[0]["test_accuracy"]
    for row in rows[1:]:
        row["within_tolerance"] = abs(row["test_accuracy"] - reference) <= args.tolerance
    ok = reference > 0.9 and all(row["within_tolerance"] for row in rows[1:])
    print(json.dumps({"epochs": args.epochs, "tolerance": args.tolerance, "ok": ok, "runs": rows}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
