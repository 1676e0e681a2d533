"""GPU: cnnlab's CIFAR-10 recipe on a CUDA GPU, and airbench94 on the same JPEG copy in the same
run (issue 17, part 3). Needs a CUDA GPU; without one it stops with a message, before any work.

    .venv/bin/python benchmarks/gpu.py --data ../shared/datasets/cifar10-jpg.tar.gz
    .venv/bin/python benchmarks/gpu.py --data /tmp/cifar10-jpg --seeds 0 1 2 \\
        --airbench ~/src/cifar10-airbench/airbench94.py

--data is the JPEG copy: a folder with train/ and test/ class folders, or its .tar.gz archive
(extracted once into --workdir).

cnnlab: `cnnlab train --data folder:DATA --recipe cifar10 --device cuda --test` per seed, each in
a process of its own; recorded: wall time from the command's start to its exit (start-up, JPEG
decoding or its cache, training, validation, the test split), the epochs' own seconds, the test
accuracy (RUN/eval/test.json) and the fast path it chose.

airbench94 (KellerJordan/cifar10-airbench) is not part of this repository: --airbench names your
copy of airbench94.py. Its CifarLoader reads `cifar10/train.pt` and `cifar10/test.pt` under its
working directory ({'images': uint8 [N, 32, 32, 3], 'labels': int64 [N], 'classes': names}) and
downloads CIFAR-10 through torchvision only when they are missing. This script writes both files
from the same JPEG copy into --workdir/airbench/cifar10/, then, in a process of its own started
there, imports airbench94.py (its `__main__` block, 25 runs, does not run), calls its
`main('warmup')` once, as that block can, and `main(run)` once per seed. Recorded: the accuracy
main() returns (with its test-time augmentation), the time it prints in its last `eval` row (CUDA
events around training and evaluation; loading the data is not counted) and the wall time of the
call. A version whose main() takes other arguments or prints other columns needs
`run_airbench_worker` adapted.

First, before either, `sync_check` counts the synchronising CUDA calls of 100 steps of the loop
(torch.cuda.set_sync_debug_mode): one per read-back of the totals is expected, and any other is
listed with the line that made it.

Results go to benchmarks/results/gpu-<date>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def require_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(
            "benchmarks/gpu.py needs a CUDA GPU, and none is visible to torch here "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}). Run it on "
            "a machine with an NVIDIA GPU and a CUDA build of torch; the CPU benchmarks are in "
            "benchmarks/speed.py."
        )


def jpeg_folder(data: Path, workdir: Path) -> Path:
    """The folder with train/ and test/: `data` itself, or its archive extracted into workdir."""
    if data.is_dir():
        folder = data
    elif data.name.endswith((".tar.gz", ".tgz")) and data.is_file():
        folder = workdir / "cifar10-jpg"
        done = workdir / "cifar10-jpg.complete"  # outside the folder, which holds only classes
        if not done.exists():
            print(f"extracting {data} to {folder}", flush=True)
            folder.mkdir(parents=True, exist_ok=True)
            with tarfile.open(data) as tar:
                tar.extractall(folder, filter="data")
            done.touch()
    else:
        raise SystemExit(f"--data {data}: not a folder or a .tar.gz archive of the JPEG copy")
    if not (folder / "train").is_dir() or not (folder / "test").is_dir():
        raise SystemExit(f"--data {data}: expected train/ and test/ class folders in {folder}")
    return folder


# ---------------------------------------------------------------- host round-trips


def sync_check(steps: int = 100, batch_size: int = 128) -> dict:
    """The loop's synchronising CUDA calls, as torch reports them (`set_sync_debug_mode`): a
    small network trained for `steps` steps on images resident on the GPU, gathered, augmented
    (flip, shift, erase) and normalised there, bf16 autocast, channels_last, totals read back
    every READ_BACK_STEPS. Expected: one per read-back and one for the epoch order's copy to the
    GPU; more means a host round-trip in the loop, listed by the line that made it."""
    import collections
    import warnings

    import torch
    from torch import nn

    from cnnlab.data.augment import Augmentation, augmented_batches
    from cnnlab.data.loader import Normalizer, epoch_order, train_batches
    from cnnlab.runtime.predict import StepSettings
    from cnnlab.training.loop import READ_BACK_STEPS, EpochTotals, train_one_epoch

    device, count = torch.device("cuda"), steps * batch_size
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (count,), device=device)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(32, 10),
    ).to(device, memory_format=torch.channels_last)  # fmt: skip
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.05, total_steps=2 * steps)
    settings = StepSettings(Normalizer((0.5,) * 3, (0.25,) * 3), "bf16", True)
    augmentation = Augmentation(hflip=0.5, crop_padding=2, erase=0.25)

    def epoch(number: int) -> None:
        order = epoch_order(count, 0, number)
        batches = train_batches(images, labels, batch_size, order)
        batches = augmented_batches(batches, augmentation, (0.5,) * 3, 0, number)
        train_one_epoch(
            model, batches, optimizer, scheduler, nn.CrossEntropyLoss(), settings, EpochTotals(),
            read_back_every=READ_BACK_STEPS,
        )  # fmt: skip

    epoch(0)  # cached constants and cuDNN's plans are made once, here
    torch.cuda.synchronize()
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            epoch(1)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    return {
        "steps": steps,
        "expected_synchronising_calls": -(-steps // READ_BACK_STEPS) + 1,
        "synchronising_calls": len(syncs),
        "where": collections.Counter(f"{w.filename}:{w.lineno}" for w in syncs).most_common(8),
        "images_per_second": round(count / seconds),
    }


# ---------------------------------------------------------------- cnnlab


def cnnlab_run(folder: Path, seed: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        command = [
            str(Path(sys.executable).parent / "cnnlab"), "train", "--data", f"folder:{folder}",
            "--recipe", "cifar10", "--device", "cuda", "--test", "--quiet", "--seed", str(seed),
            "--out", str(run), *extra,
        ]  # fmt: skip
        started = time.perf_counter()
        finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if finished.returncode != 0:
            raise SystemExit(f"`{' '.join(command)}` failed:\n{finished.stderr[-2000:]}")
        rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        epochs = [row for row in rows if row.get("kind") == "epoch"]
        config = json.loads((run / "config.json").read_text())
        dataset = json.loads((run / "dataset.json").read_text())
        return {
            "seed": seed,
            "wall_seconds": round(wall, 2),
            "train_seconds": round(sum(row["epoch_seconds"] for row in epochs), 2),
            "test_accuracy": json.loads((run / "eval" / "test.json").read_text())["accuracy"],
            "val_accuracy": [round(row.get("val_accuracy", 0.0), 4) for row in epochs],
            "images_per_second": [row["images_per_second"] for row in epochs],
            "decoding": dataset.get("preprocess", {}),
            "fast_path": config["resolved"]["fast_path"],
        }


# ---------------------------------------------------------------- airbench94


def write_airbench_data(folder: Path, target: Path) -> None:
    """cifar10/train.pt and test.pt as airbench's CifarLoader saves them, from the JPEG copy
    (class folders in sorted order, as cnnlab reads them)."""
    import numpy as np
    import torch
    from PIL import Image

    target.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        path = target / f"{split}.pt"
        if path.exists():
            continue
        classes = sorted(p.name for p in (folder / split).iterdir() if p.is_dir())
        images, labels = [], []
        for label, name in enumerate(classes):
            for file in sorted((folder / split / name).iterdir()):
                with Image.open(file) as image:
                    images.append(np.asarray(image.convert("RGB")))  # [32, 32, 3] uint8
                labels.append(label)
        data = {
            "images": torch.from_numpy(np.stack(images)),  # [N, 32, 32, 3] uint8
            "labels": torch.tensor(labels, dtype=torch.int64),
            "classes": classes,
        }
        torch.save(data, path)
        print(f"wrote {path}: {len(labels)} images", flush=True)


def airbench_eval_seconds(printed: str) -> float | None:
    """The last column of airbench's last `eval` row (total_time_seconds)."""
    seconds = None
    for line in printed.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) > 2 and cells[1] == "eval":
            seconds = float(cells[-1])
    return seconds


def run_airbench_worker(script: Path, seeds: list[int]) -> list[dict]:
    """In the child, started in the folder that holds cifar10/: airbench's main() per seed."""
    import torch

    spec = importlib.util.spec_from_file_location("airbench94", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with contextlib.redirect_stdout(io.StringIO()):
        module.main("warmup")  # cudnn's autotuning and CUDA's start-up, on random labels
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        printed = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(printed):
            accuracy = module.main(seed)
        wall = time.perf_counter() - started
        runs.append({
            "seed": seed,
            "test_accuracy": float(accuracy),
            "airbench_seconds": airbench_eval_seconds(printed.getvalue()),
            "call_wall_seconds": round(wall, 2),
        })  # fmt: skip
        print(f"  airbench94 seed {seed}: {runs[-1]}", file=sys.stderr, flush=True)
    return runs


def airbench_runs(script: Path, folder: Path, workdir: Path, seeds: list[int]) -> list[dict]:
    if not script.is_file():
        raise SystemExit(f"--airbench {script}: no such file; give the path of airbench94.py")
    home = workdir / "airbench"
    write_airbench_data(folder, home / "cifar10")
    command = [sys.executable, str(Path(__file__).resolve()), "--airbench-worker",
               str(script.resolve()), *map(str, seeds)]  # fmt: skip
    finished = subprocess.run(command, cwd=home, stdout=subprocess.PIPE, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"airbench94 failed (status {finished.returncode}); see above")
    return json.loads(finished.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- report


def machine() -> dict:
    import torch

    properties = torch.cuda.get_device_properties(0)
    return {
        "gpu": properties.name,
        "gpu_memory_gib": round(properties.total_memory / 2**30, 1),
        "compute_capability": f"{properties.major}.{properties.minor}",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def summary(runs: list[dict], seconds: str) -> dict:
    return {
        "median_test_accuracy": statistics.median(run["test_accuracy"] for run in runs),
        f"median_{seconds}": statistics.median(run[seconds] for run in runs),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="the CIFAR-10 JPEG copy: folder or .tar.gz")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--airbench", type=Path, help="your copy of airbench94.py (optional)")
    parser.add_argument(
        "--cnnlab-flags", default="", help="more `cnnlab train` flags, one string (e.g. '--ema')"
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cnnlab-gpu",
        help="where the archive is extracted and airbench's tensors are written",
    )  # fmt: skip
    parser.add_argument("--airbench-worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    require_cuda()
    if args.airbench_worker:
        script, seeds = Path(args.airbench_worker[0]), [int(s) for s in args.airbench_worker[1:]]
        print(json.dumps(run_airbench_worker(script, seeds)))
        return
    if args.data is None:
        raise SystemExit("--data is required: the CIFAR-10 JPEG copy (folder or .tar.gz)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    folder = jpeg_folder(args.data.resolve(), args.workdir)
    results = {"machine": machine(), "argv": " ".join(sys.argv[1:]), "data": str(folder)}
    print(f"machine: {results['machine']}", flush=True)
    results["sync_check"] = sync_check()
    print(f"  host round-trips in the loop: {results['sync_check']}", flush=True)
    runs = []
    for seed in args.seeds:
        runs.append(cnnlab_run(folder, seed, args.cnnlab_flags.split()))
        print(f"  cnnlab seed {seed}: {runs[-1]}", flush=True)
    results["cnnlab"] = {"runs": runs, **summary(runs, "train_seconds")}
    if args.airbench:
        bench = airbench_runs(args.airbench, folder, args.workdir, args.seeds)
        results["airbench94"] = {"runs": bench, **summary(bench, "airbench_seconds")}
        results["train_seconds_over_airbench_seconds"] = round(
            results["cnnlab"]["median_train_seconds"]
            / results["airbench94"]["median_airbench_seconds"],
            2,
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"gpu-{datetime.now(UTC).strftime('%Y-%m-%dT%H%M')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps({key: v for key, v in results.items() if key not in ("cnnlab", "airbench94")}))
    print(f"wrote {out}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
