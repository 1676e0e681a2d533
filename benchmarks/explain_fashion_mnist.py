"""Time `cnnlab explain` on a trained Fashion-MNIST run: all 10,000 test images, every stage output,
t-SNE (the issue's budget: 3 minutes on the 2-core machine). Prints one JSON summary.

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/explain_fashion_mnist.py \\
        [--run runs/bench-fmnist-lenet5] [--method tsne] [--untrained]

Without an existing --run it first trains LeNet-5 for 15 epochs there (benchmarks/
fashion_mnist_lenet5.py's recipe). The load average before and after is printed too: the machines
are shared, and a busy neighbour can slow every step several times over; the CPU time of the
explain process is printed as well (on an idle 2-core machine the wall time is at least half of it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def cnnlab(*args: str) -> str:
    command = [sys.executable, "-m", "cnnlab", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/bench-fmnist-lenet5")
    parser.add_argument("--method", default="tsne", choices=("pca", "tsne", "umap"))
    parser.add_argument("--untrained", action="store_true", help="also the untrained state")
    parser.add_argument("--what", default="", help="parts to run (default: all)")
    args = parser.parse_args()
    if not (Path(args.run) / "checkpoints").is_dir():
        cnnlab(
            "train",
            "--data",
            "fashion-mnist",
            "--model",
            "lenet5",
            "--epochs",
            "15",
            "--out",
            args.run,
            "--quiet",
        )
    extra = ["--untrained"] if args.untrained else []
    extra += ["--what", args.what] if args.what else []
    load_before = os.getloadavg()
    start = time.perf_counter()
    summary = json.loads(
        cnnlab(
            "explain",
            args.run,
            "--method",
            args.method,
            "--max-points",
            "0",
            "--json",
            "--quiet",
            *extra,
        )
    )
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "run": args.run,
        "method": args.method,
        "untrained": args.untrained,
        "points": summary["points"],
        "layers": [f"{f['layer']} ({f['dimensions']}-D)" for f in summary.get("features", [])],
        "wall_seconds": round(wall, 1),
        "within_3_minutes": wall <= 180.0,
        # CPU time of the explain process: on an idle 2-core machine wall >= cpu / 2
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "timings_seconds": summary["timings_seconds"],
        "separability": summary.get("separability", {}).get("statement"),
        "neurons": {
            layer: entry.get("statement", entry["trained"]["mean_best_auc"])
            for layer, entry in summary.get("neurons", {}).items()
        },
        "files": len(summary["files"]),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
