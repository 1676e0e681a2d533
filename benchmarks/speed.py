"""Speed: cnnlab's defaults against the PyTorch-MNIST-example baseline, side by side (issues 6, 17).

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/speed.py --write     # all parts
    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/speed.py --parts throughput mnist
    .venv/bin/python benchmarks/speed.py --report-all    # rewrite BENCHMARKS.md's block only

Parts (each measurement runs in a child process of its own, one after the other, so each side has
the machine to itself and its peak memory is its own max RSS):

  throughput  training and inference images/s of the baseline's own network on MNIST: (a) the way
              the baseline script runs it (DataLoader over per-image torchvision transforms, batch
              64, float32 NCHW), (b) the way cnnlab runs it (in-memory uint8 batches gathered with
              index_select, this machine's fast path with cnnlab's dropout, at batch 64, 128 and
              256; the target takes the best), same optimiser (Adadelta, lr 1.0); and
              inference of LeNet-5 and of the MNIST recipe's network in torch and ONNX Runtime.
  mnist       `cnnlab train --data mnist --test` (the default recipe) for every --seeds.
  fashion     `cnnlab train --data fashion-mnist --test` for every seed.
  cifar10     `cnnlab train --data folder:<cifar10-jpg/train,test> --recipe cifar10 --test` for
              every seed; the archive is extracted once to --workdir.
  profile     the measured peak (torch.mm, fp32 and bf16) and --profile-steps training steps of
              each recipe network under torch.profiler: time by operator kind, achieved GFLOP/s
              (benchmarks/machine_peak.py).

The targets (issue 17) are relative to the baseline recipe run in the same invocation: T is the
median wall time of its first epoch over --baseline-seeds seeds (default 3: seeds 1, 2, 3; for two
seeds the median is their mean), and whenever mnist, fashion or cifar10 runs, the baseline runs
too (--reuse never supplies T). Each seed runs in a worker process of its own, one after the
other, all of them before the target parts (so the baseline epochs sit side by side, and next to
the cnnlab runs judged against them): seed 1 trains --baseline-epochs epochs (at least 1; its
later epochs give the time-to-threshold table), the others one epoch each, all T needs, so a
default run costs two baseline epochs more than one seed would. One epoch alone is a noisy
yardstick on shared virtual machines (39.0 s in one run, 29.9 s in another, same code, idle
machine); the median of three moves less. MNIST >= 99.4% within 1.0 T,
Fashion-MNIST >= 93.0% within 3 T, CIFAR-10 >= 88% within 15 T (medians of the seeds), and the
baseline's network trained >= 2x (3x where bf16 is native) faster than the baseline script.
benchmarks/speed_report.py judges them and writes the block.

Results go to benchmarks/results/speed-<date>.json. --write (after a run) and --report-all
regenerate the "Speed" block of BENCHMARKS.md (between its markers) from every results file
there: one section per machine kind, the newest measurement of each part. Wall times of cnnlab
runs are from the command's start to its exit, so they include interpreter start-up, data
loading, validation and the test evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark modules

from speed_report import (  # noqa: E402
    TARGET_PARTS,
    baseline_record,
    baseline_seconds,
    check_reusable,
    judge,
    judge_throughput,
    load_results,
    markdown_all,
    merge_reused,
    native_bf16,
    t_line,
    time_to_threshold,
    write_block,
    yardstick,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ALL_PARTS = ("throughput", *TARGET_PARTS, "profile")
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
             "amx_int8", "avx_vnni")  # fmt: skip


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


def example_trainer(data, fast, batch_size: int, cnnlab_dropout: bool = True):
    """(model, settings, run): the baseline's network and optimiser the way cnnlab trains them
    (in-memory batches, the fast path, with or without cnnlab's dropout); run(count) trains
    `count` batches and returns their images/s. Also used by benchmarks/dropout_speed.py."""
    import torch
    from mnist_baseline import ExampleNet

    from cnnlab.data.loader import Normalizer, epoch_order, train_batches
    from cnnlab.runtime.fastpath import fast_model
    from cnnlab.runtime.predict import StepSettings
    from cnnlab.training.loop import EpochTotals, train_one_epoch

    torch.manual_seed(1)
    model = fast_model(ExampleNet(), fast, cnnlab_dropout)  # channels_last, as training does
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
    return model, settings, run


def worker_throughput_cnnlab(batches: int, batch_size: int) -> dict:
    """cnnlab's way with the baseline's network and optimiser: in-memory batches, fast path."""
    import torch

    from cnnlab.runtime.fastpath import choose_fast_path
    from cnnlab.runtime.predict import predict_logits

    data = _mnist()
    fast = choose_fast_path(torch.device("cpu"))
    model, settings, run = example_trainer(data, fast, batch_size)
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


def worker_baseline(epochs: int, seed: int = 1) -> dict:
    from mnist_baseline import run_baseline

    start = time.perf_counter()
    result = run_baseline(_mnist(), epochs, seed=seed, log=lambda *_: None)
    setup = time.perf_counter() - start - result.epochs[-1]["wall_seconds"]
    return {"epochs": result.epochs, "setup_seconds": round(setup, 2)}


def worker_peak() -> dict:
    import torch
    from machine_peak import measure_peak

    from cnnlab.runtime.fastpath import choose_fast_path

    choose_fast_path(torch.device("cpu"))  # the thread count training uses
    return measure_peak()


def worker_profile(recipe: str, steps: int) -> dict:
    from allocator import keep_freed_memory
    from machine_peak import RECIPE_SHAPES, profile_recipe

    keep_freed_memory()  # one fixed batch in a loop: as `cnnlab train`'s loop sees memory

    _, data, shape = next(row for row in RECIPE_SHAPES if row[0] == recipe)
    return profile_recipe(recipe, data, shape, steps)


WORKERS = {
    "throughput-baseline": lambda a: worker_throughput_baseline(int(a[0])),
    "throughput-cnnlab": lambda a: worker_throughput_cnnlab(int(a[0]), int(a[1])),
    "inference": lambda a: worker_inference(a[0]),
    "baseline": lambda a: worker_baseline(int(a[0]), int(a[1]) if len(a) > 1 else 1),
    "peak": lambda a: worker_peak(),
    "profile": lambda a: worker_profile(a[0], int(a[1])),
}


# ---------------------------------------------------------------- parts


def part_throughput(args) -> dict:
    batches = args.batches
    baseline = worker("throughput-baseline", str(batches))
    print(f"  baseline script: {baseline}", flush=True)
    cnnlab = {}
    for batch_size in (64, 128, 256):
        cnnlab[batch_size] = worker(
            "throughput-cnnlab", str(batches * 64 // batch_size), str(batch_size)
        )
        print(f"  cnnlab, batch {batch_size}: {cnnlab[batch_size]}", flush=True)
    from cnnlab.specs.recipes import MNIST_NET

    inference = [worker("inference", name) for name in ("lenet5", MNIST_NET)]
    for row in inference:
        print(f"  inference {row['model'][:40]}: {row['images_per_second']}", flush=True)
    return {"baseline": baseline, "cnnlab": cnnlab, "inference": inference}


def part_profile(args) -> dict:
    from machine_peak import OPERATOR_KINDS, RECIPE_SHAPES

    peak = worker("peak")
    print(f"  measured peak: {peak}", flush=True)
    rows = []
    for recipe, _, _ in RECIPE_SHAPES:
        rows.append(worker("profile", recipe, str(args.profile_steps)))
        print(f"  profile {recipe}: {rows[-1]}", flush=True)
    return {"peak": peak, "steps": args.profile_steps, "operator_kinds": list(OPERATOR_KINDS),
            "recipes": rows}  # fmt: skip


def part_baseline(args) -> dict:
    """The baseline recipe for T, seeds 1..--baseline-seeds back to back, each in a worker: seed 1
    trains --baseline-epochs epochs, the others one (T needs only their first epochs)."""
    print(
        f"  baseline recipe, seed 1 for {args.baseline_epochs} epochs, seeds 2-"
        f"{args.baseline_seeds} for 1 (about 30-40 s an epoch here)",
        flush=True,
    )
    runs = []
    for seed in range(1, args.baseline_seeds + 1):
        epochs = args.baseline_epochs if seed == 1 else 1
        result = worker("baseline", str(epochs), str(seed))
        for row in result["epochs"]:
            print(f"  baseline seed {seed} epoch {row['epoch']}: {row}", flush=True)
        runs.append((seed, result))
    record = baseline_record(runs)
    print(f"  {t_line(record)}", flush=True)
    return record


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
                "val_accuracy": [  # "-": a recipe without a validation split
                    round(e["val_accuracy"], 4) if "val_accuracy" in e else "-" for e in epochs
                ],
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
    """What the targets depend on: the CPU (model, family, the flags of its vector units), what
    torch detects of it, its cores, the versions; the load average says how quiet it was."""
    import torch

    from cnnlab.runtime.fastpath import cpu_description, cpu_supports_bf16

    info = {"model name": platform.processor(), "cpu family": None, "flags": ""}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in info and not info[key]:
                info[key] = value
    except OSError:  # not Linux: torch's capability string still says what matters
        pass
    present = set(info["flags"].split())
    return {
        "cpu": info["model name"],
        "cpu_family": int(info["cpu family"]) if info["cpu family"] else None,
        "capability": cpu_description(),
        "flags": [flag for flag in CPU_FLAGS if flag in present],
        "native_bf16": cpu_supports_bf16(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "load_average_at_start": os.getloadavg(),
    }


def target_part(key: str, runs: list[dict], results: dict) -> dict:
    """A target part's record: its runs, the verdict against this run's T, and thresholds."""
    baseline = results["baseline"] if key == "mnist" else None
    summary = judge(key, runs, baseline_seconds(results))
    return {
        "runs": runs,
        "summary": {**summary, "t_from": yardstick(results["baseline"]).how},
        "time_to_threshold": time_to_threshold(baseline, runs, key),
    }


def run_parts(args, results: dict) -> dict:
    """Measure the parts asked for, in an order that keeps the baseline next to the runs whose
    T it gives."""
    if "throughput" in args.parts:
        results["throughput"] = part_throughput(args)
        verdict = judge_throughput(results["throughput"], native_bf16(results["machine"]))
        print(f"  throughput target: {verdict['says']}, {verdict['ratio']}x", flush=True)
    if any(key in args.parts for key in TARGET_PARTS):
        results["baseline"] = part_baseline(args)
    data_dir = Path(os.environ.get("CNNLAB_DATA", "../shared/datasets")).resolve()
    for key in TARGET_PARTS:
        if key not in args.parts:
            continue
        if key == "cifar10":
            args.workdir.mkdir(parents=True, exist_ok=True)
            folder = extract_cifar(args.workdir, data_dir)
            runs = cnnlab_runs(key, f"folder:{folder}", ["--recipe", "cifar10"], args)
        else:
            runs = cnnlab_runs(key, "fashion-mnist" if key == "fashion" else "mnist", [], args)
        results[key] = target_part(key, runs, results)
        summary = results[key]["summary"]
        print(
            f"  {summary['target']}: {summary['says']}: {'met' if summary['met'] else 'not met'}",
            flush=True,
        )
    if "profile" in args.parts:
        results["profile"] = part_profile(args)
    return results


def positive_count(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a clear one-line error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of at least 1 (T is the median of that many "
            "baseline first epochs; 3 by default)"
        )
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--parts",
        nargs="+",
        default=list(ALL_PARTS),
        choices=ALL_PARTS,
        help="what to measure (default: all)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        help="seeds of the cnnlab runs; targets use their medians",
    )
    parser.add_argument(
        "--baseline-epochs",
        type=int,
        default=1,
        help="epochs of the baseline recipe's first seed, run whenever mnist, fashion or cifar10 "
        "is (its later epochs give the time-to-threshold table; at least 1 with those parts)",
    )
    parser.add_argument(
        "--baseline-seeds",
        type=positive_count,
        default=3,
        metavar="N",
        help="baseline runs for T, seeds 1..N, each in a process of its own (default 3): T is the "
        "median of their first-epoch wall times (for N = 2 the mean); seeds after the first "
        "train one epoch",
    )
    parser.add_argument("--batches", type=int, default=200, help="train batches of 64 timed")
    parser.add_argument(
        "--profile-steps",
        type=int,
        default=30,
        help="training steps timed, and as many profiled, per recipe network",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "cnnlab-speed",
        help="where the CIFAR-10 JPEG archive is extracted (once)",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="after the run, regenerate BENCHMARKS.md's block from all results",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        help="a results JSON of an earlier run on this machine kind: its parts not run now are "
        "kept, marked reused; never its baseline when a target part runs (T is this run's)",
    )
    parser.add_argument(
        "--report-all",
        action="store_true",
        help="measure nothing: regenerate BENCHMARKS.md's block from every "
        "benchmarks/results/speed-*.json",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="RESULTS_JSON",
        help="the same as --report-all (kept for older commands; the block is "
        "always made from every results file)",
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    return parser


def write_report() -> None:
    write_block(ROOT / "BENCHMARKS.md", markdown_all(load_results(RESULTS)))
    print(f"BENCHMARKS.md: speed block rewritten from {RESULTS.relative_to(ROOT)}/speed-*.json")


def main() -> None:
    arguments = parser()
    args = arguments.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker[0]](args.worker[1:])))
        return
    if args.report_all or args.report:
        write_report()
        return
    if any(key in args.parts for key in TARGET_PARTS) and args.baseline_epochs < 1:
        arguments.error(
            "--baseline-epochs must be at least 1 when mnist, fashion or cifar10 "
            "runs: their targets are multiples of this run's baseline epoch (T)"
        )
    results = {"machine": machine(), "argv": " ".join(sys.argv[1:])}
    print(f"machine: {results['machine']}", flush=True)
    if args.reuse:
        try:
            earlier = json.loads(args.reuse.read_text())
            check_reusable(earlier, results["machine"], args.reuse.name)
        except KeyError as missing:
            arguments.error(f"--reuse {args.reuse}: not a speed results file (no {missing}).")
        except (OSError, ValueError) as error:  # ForeignBaseline is a ValueError
            arguments.error(f"--reuse {args.reuse}: {error}")
    results = run_parts(args, results)
    if args.reuse:
        results = merge_reused(results, earlier, args.parts, args.reuse.name)
    results["machine"]["load_average_at_end"] = os.getloadavg()  # others' work shows here
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"speed-{datetime.now(UTC).strftime('%Y-%m-%dT%H%M')}.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2))
    print(markdown_all([(name, results)]))
    if args.write:
        write_report()


if __name__ == "__main__":
    main()
