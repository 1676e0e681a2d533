"""Decode and cache timings of a folder: data set: the 60,000 CIFAR-10 JPEGs of ../shared/datasets.

Extracts the archive to a temporary folder (never into the repository), then in fresh processes,
with an empty private cache: a cold load (decode on every core, write the cache), a warm load (read
the cache), and optionally a cold load on one core for comparison. Prints one JSON summary.

    .venv/bin/python benchmarks/folder_decode_cifar10.py [--serial] [--keep /tmp/cifar10-jpg]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpg.tar.gz"
LOAD = """
import json, sys, time
start = time.perf_counter()
from cnnlab.data import decode
from cnnlab.data.sources import load_dataset
imported = time.perf_counter()
if len(sys.argv) > 2:
    decode.SERIAL_BELOW = 10**9
dataset = load_dataset("folder:" + sys.argv[1])
done = time.perf_counter()
print(json.dumps({
    "images": len(dataset.train_labels) + len(dataset.test_labels),
    "shape": list(dataset.train_images.shape[1:]),
    "from_cache": dataset.preprocess["from_cache"],
    "load_seconds": round(done - imported, 2),
    "import_seconds": round(imported - start, 2),
}))
"""


def timed_load(folder: Path, cache: Path, serial: bool = False) -> dict:
    env = {"XDG_CACHE_HOME": str(cache), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}
    command = [sys.executable, "-c", LOAD, str(folder)] + (["serial"] if serial else [])
    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    result = json.loads(done.stdout)
    result["process_seconds"] = round(time.perf_counter() - start, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--keep", type=Path, help="extract here and keep it (default: a temp dir)")
    parser.add_argument("--serial", action="store_true", help="also time a one-process decode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-") as scratch:
        folder = args.keep or Path(scratch) / "cifar10-jpg"
        if not (folder / "train").is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            with tarfile.open(args.archive) as tar:
                tar.extractall(folder, filter="data")
        summary = {
            "cold (decode, 2 processes)": timed_load(folder, Path(scratch) / "cache-a"),
            "warm (cache)": timed_load(folder, Path(scratch) / "cache-a"),
        }
        if args.serial:
            summary["cold (decode, 1 process)"] = timed_load(
                folder, Path(scratch) / "cache-b", True
            )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
