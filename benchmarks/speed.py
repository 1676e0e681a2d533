"""Speed: cnnlab's defaults against the PyTorch-MNIST-example baseline, side by side (issue 6).

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/speed.py              # all parts
    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/speed.py --parts throughput mnist

Parts (each measurement runs in a child process of its own, one after the other, so each side has
the machine to itself and its peak memory is its own max RSS):

  throughput  training and inference images/s of the baseline's own network on MNIST: (a) the way
              the baseline script runs it (DataLoader over per-image torchvision transforms, batch
              64, float32 NCHW), (b) the way cnnlab runs it (in-memory uint8 batches gathered with
              index_select, this machine's fast path), same optimiser (Adadelta, lr 1.0); and
              inference of LeNet-5 and of the MNIST recipe's network in torch and ONNX Runtime.
  mnist       (a) the baseline recipe for --baseline-epochs epochs, test accuracy after each;
              (b) `cnnlab train --data mnist --test` (the default recipe) for every --seeds:
              time to the accuracy thresholds, final test accuracy, peak memory.
  fashion     `cnnlab train --data fashion-mnist --test` for every seed (target: 93% in 3 min).
  cifar10     `cnnlab train --data folder:<cifar10-jpg/train,test> --recipe cifar10 --test` for
              every seed (target: 88% in 20 min); the archive is extracted once to --workdir.

Results go to benchmarks/results/speed-<date>.json and, with --write, into the "Speed" section of
BENCHMARKS.md (between its markers). Wall times of cnnlab runs are from the command's start to
its exit, so they include interpreter start-up, data loading, validation and the test evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
THRESHOLDS = {
    "mnist": (0.98, 0.99, 0.994),
    "fashion": (0.90, 0.92, 0.93),
    "cifar10": (0.80, 0.85, 0.88),
}
TARGETS = {"mnist": (0.994, 60), "fashion": (0.93, 180), "cifar10": (0.88, 1200)}
BEGIN, END = "<!-- speed:begin -->", "<!-- speed:end -->"


# ---------------------------------------------------------------- child processes


def run_child(command: list[str], env: dict | None = None) -> tuple[str, float, float, int]:
    """Run a command; return (stdout, wall seconds, peak RSS in MiB, exit status)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT
    )
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    return out, wall, usage.ru_maxrss / 1024, process.returncode


def worker(name: str, *extra: str) -> dict:
    """Run `speed.py --worker NAME` in a child; its last stdout line is a JSON object."""
    out, wall, rss, status = run_child([sys.executable, __file__, "--worker", name, *extra])
    if status != 0:
        raise SystemExit(f"worker {name} failed with status {status}")
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "process_wall_seconds": round(wall, 1), "peak_rss_mib": round(rss)}


def _mnist():
    from cnnlab.data.sources import load_dataset
    from cnnlab.training.config import TrainConfig

    return load_dataset("mnist", None, False, TrainConfig(data="mnist").load_options())


def _images_per_second(step, batches: int, batch_size: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(batches):
        step()
    return batches * batch_size / (time.perf_counter() - start)


def worker_throughput_baseline(batches: int) -> dict:
    """The baseline script's way: DataLoader over per-image transforms, batch 64, fp32 NCHW."""
    import torch
    import torch.nn.functional as F
    from mnist_baseline import ExampleNet, PerImageDataset
    from torch.utils.data import DataLoader
    from torchvision import transforms

    torch.manual_seed(1)
    data = _mnist()
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    loader = DataLoader(
        PerImageDataset(data.train_images, data.train_labels, transform),
        batch_size=64,
        shuffle=True,
    )
    model = ExampleNet()
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    iterator = iter(loader)

    def step() -> None:
        images, labels = next(iterator)
        optimizer.zero_grad()
        F.nll_loss(model(images), labels).backward()
        optimizer.step()

    train = _images_per_second(step, batches, 64)
    test_loader = DataLoader(
        PerImageDataset(data.test_images, data.test_labels, transform), batch_size=1000
    )
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for images, _ in test_loader:
            model(images)
    infer = len(data.test_labels) / (time.perf_counter() - start)
    return {
        "train_images_per_second": round(train),
        "infer_images_per_second": round(infer),
        "threads": torch.get_num_threads(),
    }


def worker_throughput_cnnlab(batches: int, batch_size: int) -> dict:
    """cnnlab's way with the baseline's network and optimiser: in-memory batches, fast path."""
    import torch
    from mnist_baseline import ExampleNet

    from cnnlab.data.loader import Normalizer, epoch_order, train_batches
    from cnnlab.runtime.fastpath import choose_fast_path
    from cnnlab.runtime.predict import StepSettings, predict_logits
    from cnnlab.training.loop import EpochTotals, train_one_epoch

    torch.manual_seed(1)
    data = _mnist()
    fast = choose_fast_path(torch.device("cpu"))
    model = ExampleNet()
    if fast.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    settings = StepSettings(Normalizer((0.1307,), (0.3081,)), fast.precision, fast.channels_last)
    order = epoch_order(len(data.train_labels), 1, 0)
    loss_fn = torch.nn.NLLLoss()  # ExampleNet ends in log_softmax, as in the example

    def run(count: int) -> float:
        stream = train_batches(data.train_images, data.train_labels, batch_size, order)
        limited = (batch for _, batch in zip(range(count), stream, strict=False))
        start = time.perf_counter()
        train_one_epoch(model, limited, optimizer, scheduler, loss_fn, settings, EpochTotals())
        return count * batch_size / (time.perf_counter() - start)

    run(10)  # warm-up: oneDNN builds its kernels for these shapes
    train = run(batches)
    predict_logits(model, data.test_images[:2048], settings, 1024)
    start = time.perf_counter()
    predict_logits(model, data.test_images, settings, 1024)
    infer = len(data.test_labels) / (time.perf_counter() - start)
    return {
        "train_images_per_second": round(train),
        "infer_images_per_second": round(infer),
        "fast_path": fast.to_dict(),
    }


def worker_inference(model_name: str) -> dict:
    """Images/s of an (untrained) network on 10,000 MNIST test images: torch vs ONNX Runtime."""
    import torch

    from cnnlab.data.loader import Normalizer
    from cnnlab.models import ModelSpec, build_model, resolve_model_argument
    from cnnlab.runtime.fastpath import choose_fast_path
    from cnnlab.runtime.predict import StepSettings, predict_logits

    data = _mnist()
    name, options = resolve_model_argument(model_name, {})
    spec = ModelSpec(name, 1, 10, (28, 28), options)
    model = build_model(spec).eval()
    normalizer = Normalizer((0.1307,), (0.3081,))
    rates = {}
    for label, precision, channels_last in (
        ("torch NCHW fp32", "fp32", False),
        ("torch fast path", "auto", True),
    ):
        fast = choose_fast_path(torch.device("cpu"), precision, channels_last)
        model = model.to(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format
        )
        settings = StepSettings(normalizer, fast.precision, fast.channels_last)
        predict_logits(model, data.test_images[:2048], settings, 1024)
        start = time.perf_counter()
        for _ in range(3):
            predict_logits(model, data.test_images, settings, 1024)
        rates[label] = round(3 * len(data.test_labels) / (time.perf_counter() - start))
    rates.update(_onnx_rate(model.to(memory_format=torch.contiguous_format), data, normalizer))
    return {"model": model_name, "images_per_second": rates}


def _onnx_rate(model, data, normalizer) -> dict:
    """cnnlab's ONNX Runtime path (OnnxClassifier) on the same network, exported here."""
    import warnings

    import torch

    try:
        from cnnlab.inference.onnx import OnnxClassifier
    except ImportError as error:
        return {"onnxruntime": f"unavailable ({error})"}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), path, input_names=["images"],
                              output_names=["logits"], dynamic_axes={"images": {0: "batch"}},
                              dynamo=False)  # fmt: skip
        classifier = OnnxClassifier(path, normalizer)
        classifier.predict_logits(data.test_images[:2048])
        start = time.perf_counter()
        for _ in range(3):
            classifier.predict_logits(data.test_images)
        return {"onnxruntime": round(3 * len(data.test_labels) / (time.perf_counter() - start))}


def worker_baseline(epochs: int) -> dict:
    from mnist_baseline import run_baseline

    start = time.perf_counter()
    result = run_baseline(_mnist(), epochs, log=lambda *_: None)
    setup = time.perf_counter() - start - result.epochs[-1]["wall_seconds"]
    return {"epochs": result.epochs, "setup_seconds": round(setup, 2)}


WORKERS = {
    "throughput-baseline": lambda a: worker_throughput_baseline(int(a[0])),
    "throughput-cnnlab": lambda a: worker_throughput_cnnlab(int(a[0]), int(a[1])),
    "inference": lambda a: worker_inference(a[0]),
    "baseline": lambda a: worker_baseline(int(a[0])),
}


# ---------------------------------------------------------------- parts


def part_throughput(args) -> dict:
    batches = args.batches
    baseline = worker("throughput-baseline", str(batches))
    print(f"  baseline script: {baseline}", flush=True)
    cnnlab = {}
    for batch_size in (64, 128):
        cnnlab[batch_size] = worker(
            "throughput-cnnlab", str(batches * 64 // batch_size), str(batch_size)
        )
        print(f"  cnnlab, batch {batch_size}: {cnnlab[batch_size]}", flush=True)
    from cnnlab.specs.recipes import MNIST_NET

    inference = [worker("inference", name) for name in ("lenet5", MNIST_NET)]
    for row in inference:
        print(f"  inference {row['model'][:40]}: {row['images_per_second']}", flush=True)
    return {"baseline": baseline, "cnnlab": cnnlab, "inference": inference}


def part_baseline(args) -> dict:
    print(f"  baseline recipe, {args.baseline_epochs} epochs (about 2-3 min each here)", flush=True)
    result = worker("baseline", str(args.baseline_epochs))
    for row in result["epochs"]:
        print(f"  baseline epoch {row['epoch']}: {row}", flush=True)
    return result


def cnnlab_runs(key: str, data: str, extra: list[str], args) -> list[dict]:
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            run = Path(folder) / "run"
            command = [
                str(Path(sys.executable).parent / "cnnlab"),
                "train",
                "--data",
                data,
                "--seed",
                str(seed),
                "--out",
                str(run),
                "--quiet",
                "--test",
                *extra,
            ]
            out, wall, rss, status = run_child(command)
            if status != 0:
                raise SystemExit(f"`{' '.join(command)}` failed with status {status}")
            test = json.loads((run / "eval" / "test.json").read_text())
            config = json.loads((run / "config.json").read_text())
            epochs = [json.loads(line) for line in (run / "metrics.jsonl").open()]
            epochs = [row for row in epochs if row.get("kind") == "epoch"]
            row = {
                "seed": seed,
                "wall_seconds": round(wall, 1),
                "train_seconds": round(sum(e["epoch_seconds"] for e in epochs), 1),
                "test_accuracy": test["accuracy"],
                "val_accuracy": [round(e["val_accuracy"], 4) for e in epochs],
                "images_per_second": [e["images_per_second"] for e in epochs],
                "peak_rss_mib": round(rss),
                "recipe": config["train"]["recipe"],
                "fast_path": config["resolved"]["fast_path"],
            }
            print(
                f"  {key} seed {seed}: {row['test_accuracy']:.4f} test accuracy in "
                f"{row['wall_seconds']:.0f} s (val {row['val_accuracy']})",
                flush=True,
            )
            rows.append(row)
    return rows


def summarise(key: str, rows: list[dict]) -> dict:
    accuracy, target_seconds = TARGETS[key]
    walls = [r["wall_seconds"] for r in rows]
    accuracies = [r["test_accuracy"] for r in rows]
    return {
        "median_wall_seconds": statistics.median(walls),
        "median_test_accuracy": statistics.median(accuracies),
        "target": f">= {accuracy:.1%} within {target_seconds} s",
        "met": statistics.median(accuracies) >= accuracy
        and statistics.median(walls) <= target_seconds,
    }


def extract_cifar(workdir: Path, data_dir: Path) -> Path:
    """The archive holds train/ and test/ class folders; extract them once into workdir."""
    target = workdir / "cifar10-jpg"
    done = workdir / "cifar10-jpg.complete"  # outside the folder, which must hold only classes
    if done.exists():
        return target
    archive = data_dir / "cifar10-jpg.tar.gz"
    print(f"  extracting {archive} to {target}", flush=True)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    done.touch()
    return target


# ---------------------------------------------------------------- report


def machine() -> dict:
    import torch

    from cnnlab.runtime.fastpath import cpu_description

    model_name = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model_name,
        "capability": cpu_description(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "load_average_at_start": os.getloadavg(),
    }


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['capability']}, {m['cores']} cores), torch "
        f"{m['torch']}, Python {m['python']}; load average at start "
        f"{m['load_average_at_start'][0]:.2f}. Command: `CNNLAB_DATA=../shared/datasets "
        f".venv/bin/python benchmarks/speed.py {results['argv']}`.",
        "",
    ]
    reused = [
        key for key, part in results.items() if isinstance(part, dict) and "reused_from" in part
    ]
    if reused:
        kept = ", ".join(f"{key} from `{results[key]['reused_from']}`" for key in reused)
        lines += [
            f"Parts kept from earlier runs on this machine (benchmarks/results/): {kept}.",
            "",
        ]
    t = results.get("throughput")
    if t:
        base = t["baseline"]
        lines += [
            "**The baseline's own network** (PyTorch MNIST example: conv32-conv64-maxpool-"
            "fc128, Adadelta), images/s:",
            "",
            "| | train | inference | train ratio | inference ratio | peak memory |",
            "|---|---|---|---|---|---|",
            f"| (a) baseline script, batch 64 | {base['train_images_per_second']:,} | "
            f"{base['infer_images_per_second']:,} | 1.00 | 1.00 | "
            f"{base['peak_rss_mib']} MiB |",
        ]
        for batch_size, row in t["cnnlab"].items():
            lines.append(
                f"| (b) cnnlab, batch {batch_size} | {row['train_images_per_second']:,} | "
                f"{row['infer_images_per_second']:,} | "
                f"{row['train_images_per_second'] / base['train_images_per_second']:.2f} | "
                f"{row['infer_images_per_second'] / base['infer_images_per_second']:.2f} | "
                f"{row['peak_rss_mib']} MiB |"
            )
        lines += [
            "",
            "**Inference**, images/s on the 10,000 MNIST test images (batch 1024):",
            "",
            "| network | torch NCHW fp32 | torch fast path | ONNX Runtime |",
            "|---|---|---|---|",
        ]
        for row in t["inference"]:
            r = row["images_per_second"]
            name = "LeNet-5" if row["model"] == "lenet5" else "MNIST recipe network"
            lines.append(
                f"| {name} | {r['torch NCHW fp32']:,} | {r['torch fast path']:,} | "
                f"{r['onnxruntime']:,} |"
            )
        lines.append("")
    if "baseline" in results:
        lines += [
            "**Baseline recipe on MNIST** (test accuracy after each epoch, wall from the "
            "start of training):",
            "",
            "| epoch | wall (s) | train images/s | test accuracy |",
            "|---|---|---|---|",
        ]
        for row in results["baseline"]["epochs"]:
            lines.append(
                f"| {row['epoch']} | {row['wall_seconds']} | "
                f"{row['train_images_per_second']:,.0f} | {row['test_accuracy']:.4f} |"
            )
        lines.append("")
    for key in ("mnist", "fashion", "cifar10"):
        if key not in results:
            continue
        part = results[key]
        summary = part["summary"]
        lines += [
            f"**{key}**, `cnnlab train --test` with the default recipe "
            f"({part['runs'][0]['recipe']}); target {summary['target']}: "
            f"**{'met' if summary['met'] else 'not met'}** (median wall "
            f"{summary['median_wall_seconds']:.0f} s, median test accuracy "
            f"{summary['median_test_accuracy']:.4f}).",
            "",
            "| seed | wall (s) | training (s) | test accuracy | val accuracy per epoch | "
            "train images/s | peak memory |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in part["runs"]:
            rates = row["images_per_second"]
            lines.append(
                f"| {row['seed']} | {row['wall_seconds']} | {row['train_seconds']} | "
                f"{row['test_accuracy']:.4f} | {', '.join(map(str, row['val_accuracy']))}"
                f" | {min(rates):,.0f}-{max(rates):,.0f} | {row['peak_rss_mib']} MiB |"
            )
        thresholds = part.get("time_to_threshold")
        if thresholds and key == "mnist":
            lines += ["", "| test accuracy reached | baseline recipe | cnnlab (median) | ratio |",
                      "|---|---|---|---|"]  # fmt: skip
            for name, row in thresholds.items():
                lines.append(f"| {name} | {row['baseline']} | {row['cnnlab']} | {row['ratio']} |")
        elif thresholds:
            shown = ", ".join(f"{name}: {row['cnnlab']}" for name, row in thresholds.items())
            lines += ["", f"Time to test accuracy (median): {shown}."]
        lines.append("")
    return "\n".join(lines)


def time_to_threshold(baseline: dict | None, runs: list[dict], key: str) -> dict:
    """Seconds to reach each test-accuracy threshold: the baseline after the first epoch that
    reached it (wall since the start of its training), cnnlab the whole command when its final
    test accuracy reached it (an upper bound: cnnlab scores the test split only at the end)."""
    table = {}
    for threshold in THRESHOLDS[key]:
        base = None
        if baseline:
            base = next(
                (
                    row["wall_seconds"]
                    for row in baseline["epochs"]
                    if row["test_accuracy"] >= threshold
                ),
                None,
            )
        reached = [r["wall_seconds"] for r in runs if r["test_accuracy"] >= threshold]
        ours = statistics.median(reached) if len(reached) * 2 > len(runs) else None
        ratio = f"{base / ours:.1f}x faster" if base and ours else "-"
        table[f"{threshold:.1%}"] = {
            "baseline": f"{base:.0f} s" if base else "not reached",
            "cnnlab": f"{ours:.0f} s" if ours else "not reached",
            "ratio": ratio,
        }
    return table


def write_benchmarks_md(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    content = path.read_text()
    if BEGIN in content:
        head, rest = content.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        content = f"{head}{BEGIN}\n{text}\n{END}{tail}"
    else:
        content += f"\n## Speed: cnnlab against the baseline (issue 6)\n\n{BEGIN}\n{text}\n{END}\n"
    path.write_text(content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["throughput", "mnist", "fashion", "cifar10"],
        choices=["throughput", "mnist", "fashion", "cifar10"],
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--baseline-epochs",
        type=int,
        default=3,
        help="epochs of the baseline recipe (0 with --reuse: keep the earlier run's)",
    )
    parser.add_argument("--batches", type=int, default=200, help="train batches of 64 timed")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cnnlab-speed"
    )
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument(
        "--reuse",
        type=Path,
        help="a results JSON of an earlier run on this machine: its parts not run now (the "
        "baseline recipe's epochs included) are kept, and marked as reused in the report",
    )
    parser.add_argument(
        "--report", type=Path, help="only rewrite the BENCHMARKS.md block from a results JSON"
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    if args.worker:
        print(json.dumps(WORKERS[args.worker[0]](args.worker[1:])))
        return
    if args.report:
        write_benchmarks_md(markdown(json.loads(args.report.read_text())))
        return
    data_dir = Path(os.environ.get("CNNLAB_DATA", "../shared/datasets")).resolve()
    results = {"machine": machine(), "argv": " ".join(sys.argv[1:])}
    print(f"machine: {results['machine']}", flush=True)
    if "throughput" in args.parts:
        results["throughput"] = part_throughput(args)
    earlier = json.loads(args.reuse.read_text()) if args.reuse else {}
    for key in ("throughput", "baseline", "mnist", "fashion", "cifar10"):
        if key in earlier and (key == "baseline" or key not in args.parts):
            source = earlier[key].get("reused_from", args.reuse.name)  # where it was measured
            results[key] = {**earlier[key], "reused_from": source}
    if "mnist" in args.parts:
        if "baseline" not in results or args.baseline_epochs:
            results["baseline"] = part_baseline(args)
        runs = cnnlab_runs("mnist", "mnist", [], args)
        results["mnist"] = {
            "runs": runs,
            "summary": summarise("mnist", runs),
            "time_to_threshold": time_to_threshold(results["baseline"], runs, "mnist"),
        }
    if "fashion" in args.parts:
        runs = cnnlab_runs("fashion", "fashion-mnist", [], args)
        results["fashion"] = {
            "runs": runs,
            "summary": summarise("fashion", runs),
            "time_to_threshold": time_to_threshold(None, runs, "fashion"),
        }
    if "cifar10" in args.parts:
        args.workdir.mkdir(parents=True, exist_ok=True)
        folder = extract_cifar(args.workdir, data_dir)
        runs = cnnlab_runs("cifar10", f"folder:{folder}", ["--recipe", "cifar10"], args)
        results["cifar10"] = {
            "runs": runs,
            "summary": summarise("cifar10", runs),
            "time_to_threshold": time_to_threshold(None, runs, "cifar10"),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M")
    (RESULTS / f"speed-{stamp}.json").write_text(json.dumps(results, indent=2))
    text = markdown(results)
    print(text)
    if args.write:
        write_benchmarks_md(text)


if __name__ == "__main__":
    main()
