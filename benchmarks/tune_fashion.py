"""Does `cnnlab tune` find a configuration at least as good on validation as the hand-made
Fashion-MNIST recipe within a stated budget? Trains the recipe once, runs a TPE search with
median pruning over its learning rate, label smoothing, weight decay and batch size (same epochs,
model and augmentation), then scores both best checkpoints on the test split once, at the end.
Prints one JSON line (budget, validation of both, test of both) for BENCHMARKS.md.

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/tune_fashion.py \\
        [--trials 20] [--epochs 10] [--out benchmarks/results/tune-fashion]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cnnlab
from cnnlab.tuning.search import Search, run_search
from cnnlab.tuning.space import Dimension

SPACE = {
    "learning_rate": Dimension("learning_rate", "float", 0.01, 0.3, log=True),
    "label_smoothing": Dimension("label_smoothing", "float", 0.0, 0.2),
    "weight_decay": Dimension("weight_decay", "float", 1e-5, 1e-3, log=True),
    "batch_size": Dimension("batch_size", "choice", choices=(64, 128, 256)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/tune-fashion")
    args = parser.parse_args()
    out = Path(args.out)
    fixed = {"data": args.data, "epochs": args.epochs, "download": False}

    start = time.perf_counter()
    recipe = cnnlab.train(out=out / "recipe", progress=False, **fixed)
    recipe_seconds = time.perf_counter() - start

    start = time.perf_counter()
    search = Search(fixed=fixed, space=SPACE, out=out / "search", trials=args.trials)
    paths = run_search(search, report=lambda line: print(line, flush=True))
    search_seconds = time.perf_counter() - start
    results = json.loads(paths["json"].read_text())
    best = results["best"]
    best_run = out / "search" / "trials" / f"{best['number']:04d}"
    states = [row["state"] for row in results["trials"]]

    # The test split, read once for each of the two, after every choice was made on validation.
    recipe_test = cnnlab.evaluate(recipe.path, "test")["accuracy"]
    best_test = cnnlab.evaluate(best_run, "test")["accuracy"]
    print(json.dumps({
        "data": args.data,
        "budget": {"trials": args.trials, "epochs_per_trial": args.epochs,
                   "search_seconds": round(search_seconds), "pruner": "median", "sampler": "tpe"},
        "states": {s: states.count(s) for s in ("complete", "pruned")},
        "recipe": {"val_accuracy": recipe.best["best_score"], "test_accuracy": recipe_test,
                   "seconds": round(recipe_seconds)},
        "best": {"trial": best["number"], "params": best["params"], "val_accuracy": best["value"],
                 "test_accuracy": best_test},
        "at_least_as_good_on_val": best["value"] >= recipe.best["best_score"],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
