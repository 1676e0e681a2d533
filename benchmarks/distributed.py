"""One process with all the cores against several processes of one core each (issue 14).

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/distributed.py
    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/distributed.py --parts mnist \
        --processes 2 --cifar-epochs 3

For each part, `cnnlab train` runs twice with the same settings and seed, one after the other so
each has the machine to itself: (a) one process with --threads equal to the cores; (b) `--nproc P`
(torchrun, gloo) with --threads cores/P each. Same global batch, same learning rate. Reported:
wall time from the command's start (includes torchrun's start and every process's imports),
training images/s and seconds per epoch (from metrics.jsonl), and test accuracy (the best
checkpoint, scored once at the end with `--test`).

  mnist    the MNIST recipe (5 epochs)
  cifar10  the CIFAR-10 recipe on the JPEG copy's train/test folders, for --cifar-epochs epochs
           (the full 21 take 20 minutes a side on 2 cores; the per-epoch rate is what is compared)

Results go to benchmarks/results/distributed-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import RESULTS, extract_cifar, machine, run_child  # noqa: E402


def train(data: str, extra: list[str], processes: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        command = [str(Path(sys.executable).parent / "cnnlab"), "train", "--data", data, "--out",
                   str(run), "--quiet", "--test", "--threads", str(threads), *extra]  # fmt: skip
        if processes > 1:
            command += ["--nproc", str(processes)]
        out, wall, rss, status = run_child(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if status != 0:
            raise SystemExit(f"`{' '.join(command)}` failed with status {status}")
        rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        epochs = [row for row in rows if row.get("kind") == "epoch"]
        test = json.loads((run / "eval" / "test.json").read_text())
        result = {
            "processes": processes,
            "threads_per_process": threads,
            "wall_seconds": round(wall, 1),
            "epoch_seconds": [e["epoch_seconds"] for e in epochs],
            "images_per_second": [e["images_per_second"] for e in epochs],
            "median_images_per_second": statistics.median(e["images_per_second"] for e in epochs),
            "val_accuracy": [round(e["val_accuracy"], 4) for e in epochs],
            "test_accuracy": test["accuracy"],
            "launcher_peak_rss_mib": round(rss),
        }
    rate = result["median_images_per_second"]
    print(f"  {processes} x {threads} thread(s): {rate:,.0f} img/s, {result['wall_seconds']:.0f} s,"
          f" test {result['test_accuracy']:.4f}", flush=True)  # fmt: skip
    return result


def compare(name: str, data: str, extra: list[str], processes: int, cores: int) -> dict:
    print(f"{name}:", flush=True)
    one = train(data, extra, 1, cores)
    many = train(data, extra, processes, max(1, cores // processes))
    return {
        "settings": [data, *extra],
        "one_process": one,
        "several_processes": many,
        "images_per_second_ratio": round(
            many["median_images_per_second"] / one["median_images_per_second"], 3
        ),
        "wall_ratio": round(many["wall_seconds"] / one["wall_seconds"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["mnist", "cifar10"])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--cifar-epochs", type=int, default=2)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cnnlab-bench"
    )
    args = parser.parse_args()
    data_dir = Path(os.environ.get("CNNLAB_DATA", "../shared/datasets")).resolve()
    results = {"machine": machine(), "date": datetime.now(UTC).isoformat(timespec="seconds")}
    if "mnist" in args.parts:
        results["mnist"] = compare("mnist", "mnist", [], args.processes, args.cores)
    if "cifar10" in args.parts:
        folder = extract_cifar(args.workdir, data_dir)
        extra = ["--recipe", "cifar10", "--epochs", str(args.cifar_epochs)]
        results["cifar10"] = compare(
            "cifar10", f"folder:{folder}", extra, args.processes, args.cores
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"distributed-{datetime.now(UTC).date()}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
