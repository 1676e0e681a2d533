"""Start-up: where the time goes between `cnnlab train` starting and its first step finishing.

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/startup.py --before e91ae12 \
        --commands "--variant=--precision fp32" "--variant=--no-channels-last" --write
    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/startup.py --profile 60
    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/startup.py --cuts --before 6f1079c

Each run is a new process running `cnnlab train --data DATA --epochs 1 --quiet` (digits' and
MNIST's default recipes, --data) that stops as soon as the first optimiser step has finished. An
import hook in the child stamps the moments in between (wall clock, from the parent's time just
before it started the child), each phase named by the stamp that ends it:

  python      the interpreter is up (before cnnlab is imported)
  parsed      the command line is parsed (cnnlab.commands.train.run is called)
  torch       `import torch` has finished
  code        cnnlab.training.run, the training code, is imported
  data        cnnlab.data.sources.load_dataset has returned (decoded images, before the splits)
  model       the model is built (cnnlab.models.build_model returned): the splits, normalisation
              statistics and the duplicate check come before it
  optimizer   the optimiser is built (torch.optim's Optimizer.__init__ imports torch._dynamo:
              add_param_group is wrapped in torch._disable_dynamo, whatever foreach/fused say)
  loop        train_one_epoch is called
  step        the first optimiser step has finished (torch's global step post-hook): the first
              batch, its forward and backward in the run's precision and memory format

and lists the heavy packages the child had imported by then (and any module the first step
imported). --before REV adds the same runs, interleaved (before, after, before, ...), with the
package of commit REV (extracted with `git archive` to a temporary folder, compiled, and put first
on the child's sys.path); each --variant=ARGS adds runs of this checkout with extra train
arguments. The report gives the median of each phase over --runs runs and its ratio to the first
side's; --commands also times whole commands before and after (COMMANDS: --help of
explain and ops, `cnnlab evaluate RUN --json`). Results go to
benchmarks/results/startup-<date>.json; --write puts the tables into BENCHMARKS.md's "Start-up"
section (between its markers). --profile N instead runs each data set once under cProfile and
prints the N functions with the most cumulative time up to the first step. --cuts (with --before)
instead times the pieces of the fixed cost one by one, in a new process per run and side (see
CUTS), and prints their table.
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
STAMPS = ("python", "parsed", "torch", "code", "data", "model", "optimizer", "loop", "step")
HEAVY = (
    "torchvision",
    "torch._dynamo",
    "sympy",
    "sklearn",
    "scipy",
    "matplotlib",
    "optuna",
    "bokeh",
    "PIL",
    "onnxruntime",
)
BEGIN, END = "<!-- startup:begin -->", "<!-- startup:end -->"

# The child: stamps the moments above through an import hook (so nothing is imported earlier than
# cnnlab itself would), then runs the command line and leaves at the first optimiser step.
CHILD = r"""
import importlib.abc, json, os, sys, time
STAMPS = {"python": time.time()}
HEAVY = %(heavy)r
PROFILE = %(profile)r
if PROFILE:
    import cProfile
    PROFILER = cProfile.Profile()
    PROFILER.enable()

def finish():
    if PROFILE:
        PROFILER.disable()
        PROFILER.dump_stats(PROFILE)
    loaded = [name for name in HEAVY if name in sys.modules]
    package = os.path.dirname(sys.modules["cnnlab"].__file__)
    result = {"stamps": STAMPS, "loaded": loaded, "package": package, "step_imports": STEP_IMPORTS}
    print(json.dumps(result), flush=True)
    os._exit(0)

def stamp_after(module, name, stamp):
    function = getattr(module, name)
    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        STAMPS.setdefault(stamp, time.time())
        return result
    setattr(module, name, wrapped)

STEP_IMPORTS = []

def stamp_before(module, name, stamp):
    function = getattr(module, name)
    def wrapped(*args, **kwargs):
        STAMPS.setdefault(stamp, time.time())
        if stamp == "loop":
            BEFORE_STEP.update(sys.modules)
        return function(*args, **kwargs)
    setattr(module, name, wrapped)

BEFORE_STEP = set()

def on_step(optimizer, args, kwargs):
    STAMPS["step"] = time.time()
    STEP_IMPORTS.extend(sorted(set(sys.modules) - BEFORE_STEP))
    finish()

def torch_loaded(module):
    STAMPS["torch"] = time.time()
    optimizer = sys.modules["torch.optim.optimizer"]  # imported by torch itself
    optimizer.register_optimizer_step_post_hook(on_step)

AFTER_IMPORT = {
    "torch": torch_loaded,
    "cnnlab.commands.train": lambda m: stamp_before(m, "run", "parsed"),
    "cnnlab.training.run": lambda m: STAMPS.setdefault("code", time.time()),
    "cnnlab.data.sources": lambda m: stamp_after(m, "load_dataset", "data"),
    "cnnlab.models": lambda m: stamp_after(m, "build_model", "model"),
    "cnnlab.training.optim": lambda m: stamp_after(m, "build_optimizer", "optimizer"),
    "cnnlab.training.loop": lambda m: stamp_before(m, "train_one_epoch", "loop"),
}

class Stamper(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in AFTER_IMPORT:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader, action = spec.loader, AFTER_IMPORT[name]
        execute = loader.exec_module
        def exec_module(module):
            execute(module)
            action(module)
        loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Stamper())
from cnnlab.cli import main
main(sys.argv[1:])
finish()  # a run that took no step
"""


def child_run(
    data: str, package_root: Path | None, out: Path, profile: str = "", extra: tuple = ()
) -> dict:
    """One `cnnlab train` process up to its first step: {"stamps": {...}, "loaded": [...]}, the
    stamps in seconds since just before the process was started."""
    env = dict(os.environ)
    if package_root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(package_root), env.get("PYTHONPATH", "")])
    argv = [
        sys.executable,
        "-c",
        CHILD % {"heavy": HEAVY, "profile": profile},
        "train",
        "--data",
        data,
    ]
    argv += ["--epochs", "1", "--quiet", "--out", str(out), *extra]
    start = time.time()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=out.parent)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stamps"] = {k: v - start for k, v in result["stamps"].items()}
    return result


def extract(revision: str, folder: Path) -> Path:
    """The cnnlab package of commit `revision`, extracted under `folder`."""
    archive = folder / "before.tar"
    with archive.open("wb") as file:
        subprocess.run(["git", "archive", revision, "cnnlab"], cwd=ROOT, stdout=file, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder / "before", filter="data")
    # compiled once here, as the checkout's own modules are, so no run pays for compiling them
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(folder / "before")], check=True)
    return folder / "before"


def measure(datasets: list[str], runs: int, before: str | None, variants: list[str]) -> dict:
    """Median stamps per data set and side, runs interleaved side by side. The sides: "before"
    (the package of commit `before`), "after" (this checkout), and this checkout with each
    variant's extra `cnnlab train` arguments."""
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sides = {"before": (extract(before, work), ())} if before else {}
        sides["after"] = (ROOT, ())
        sides |= {f"after {v}": (ROOT, tuple(v.split())) for v in variants}
        for data in datasets:
            samples: dict[str, list[dict]] = {side: [] for side in sides}
            for run in range(runs):
                for number, (side, (root, extra)) in enumerate(sides.items()):
                    out = work / f"{data}-{number}-{run}"
                    sample = child_run(data, root, out, extra=extra)
                    if not sample["package"].startswith(str(root)):
                        raise SystemExit(f"{side} imported cnnlab from {sample['package']}")
                    samples[side].append(sample)
                    print(f"{data} {side} run {run + 1}: {_row(sample)}", flush=True)
            results[data] = {side: _summary(rows) for side, rows in samples.items()}
    return results


COMMANDS = ("--help", "explain --help", "ops --help", "evaluate RUN --json")


def time_commands(runs: int, before: str) -> dict:
    """Wall seconds (median) of whole `cnnlab` commands before and after, interleaved: the help
    of the commands that imported torch for it, and `cnnlab evaluate` (RUN: a 1-epoch digits
    run), which loads a model and never builds an optimiser."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sides = {"before": extract(before, work), "after": ROOT}
        run_dir = work / "digits-run"
        train = [sys.executable, "-m", "cnnlab", "train", "--data", "digits", "--epochs", "1"]
        subprocess.run([*train, "--quiet", "--out", str(run_dir)], cwd=ROOT, check=True)
        walls: dict = {command: {side: [] for side in sides} for command in COMMANDS}
        for _ in range(runs):
            for command in COMMANDS:
                for side, root in sides.items():
                    words = [str(run_dir) if w == "RUN" else w for w in command.split()]
                    env = dict(os.environ, PYTHONPATH=str(root))
                    start = time.perf_counter()
                    subprocess.run(
                        [sys.executable, "-m", "cnnlab", *words],
                        cwd=work,
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                    walls[command][side].append(time.perf_counter() - start)
        return {
            command: {side: statistics.median(v) for side, v in values.items()}
            for command, values in walls.items()
        }


def _row(sample: dict) -> str:
    stamps = sample["stamps"]
    return " ".join(f"{k} {stamps[k]:.2f}" for k in STAMPS if k in stamps)


def _summary(samples: list[dict]) -> dict:
    stamps = {
        key: statistics.median(s["stamps"][key] for s in samples)
        for key in STAMPS
        if all(key in s["stamps"] for s in samples)
    }
    return {"median_s": stamps, "loaded": samples[-1]["loaded"], "runs": len(samples)}


def phases(stamps: dict[str, float]) -> dict[str, float]:
    """Seconds spent between consecutive stamps, named by the stamp that ends each."""
    present = [k for k in STAMPS if k in stamps]
    return {k: stamps[k] - (stamps[present[i - 1]] if i else 0.0) for i, k in enumerate(present)}


def profile(datasets: list[str], top: int) -> None:
    """One run per data set under cProfile (slower than a plain run): the functions with the
    most cumulative time up to the first step."""
    import pstats

    with tempfile.TemporaryDirectory() as tmp:
        for data in datasets:
            stats_file = str(Path(tmp) / f"{data}.prof")
            child_run(data, ROOT, Path(tmp) / data, stats_file)
            print(f"== {data}: cumulative time up to the first step (cProfile)")
            pstats.Stats(stats_file).sort_stats("cumulative").print_stats(top)


# --cuts: the pieces of a training process's fixed cost, timed one after the other in one new
# process, on MNIST's 60,000 training images (the first call of each, as in `cnnlab train`).
CUTS_CHILD = r"""
import json, time
clock = time.perf_counter
seconds = {}
start = clock(); import torch; seconds["import torch"] = clock() - start
from cnnlab.data.sources import load_dataset
start = clock(); load_dataset("digits"); seconds["load digits (imports included)"] = clock() - start
mnist = load_dataset("mnist")
from cnnlab.data.splits import channel_mean_std, stratified_split
from cnnlab.run.splits import make_record, split_duplicates
start = clock(); stratified_split(mnist.train_labels, 0.1, 0)
seconds["stratified_split (MNIST)"] = clock() - start
start = clock(); channel_mean_std(mnist.train_images)
seconds["channel_mean_std (MNIST)"] = clock() - start
record = make_record(mnist, 0.1, 0)
start = clock(); split_duplicates(mnist, record)
seconds["split_duplicates (MNIST)"] = clock() - start
from cnnlab.training.config import TrainConfig
from cnnlab.training.optim import build_optimizer
model = torch.nn.Linear(8, 2)
model(torch.randn(4, 8)).sum().backward()
start = clock(); optimizer = build_optimizer(TrainConfig(), model); optimizer.step()
seconds["build_optimizer + step (imports included)"] = clock() - start
print(json.dumps(seconds))
"""


def measure_cuts(runs: int, before: str) -> dict:
    """{piece: {side: median seconds}}: each side's CUTS_CHILD, runs interleaved side by side."""
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"before": extract(before, Path(tmp)), "after": ROOT}
        samples: dict[str, list[dict]] = {side: [] for side in sides}
        for run in range(runs):
            for side, root in sides.items():
                env = dict(os.environ, PYTHONPATH=str(root))
                argv = [sys.executable, "-c", CUTS_CHILD]
                done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp)
                if done.returncode != 0:
                    raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
                samples[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"cuts {side} run {run + 1}: {samples[side][-1]}", flush=True)
    pieces = samples["after"][0]
    return {
        piece: {side: statistics.median(s[piece] for s in rows) for side, rows in samples.items()}
        for piece in pieces
    }


def cuts_table(cuts: dict) -> str:
    sides = list(next(iter(cuts.values())))
    lines = ["| piece | " + " | ".join(sides) + " | after / " + sides[0] + " |"]
    lines.append("|---" + "|---:" * (len(sides) + 1) + "|")
    for piece, values in cuts.items():
        ratio = values["after"] / values[sides[0]]
        cells = " | ".join(f"{values[side]:.3f}" for side in sides)
        lines.append(f"| {piece} | {cells} | {ratio:.2f} |")
    return "\n".join(lines)


def run_cuts(runs: int, before: str) -> None:
    """--cuts: measure, write benchmarks/results/startup-cuts-<date>.json, print the table."""
    cuts = measure_cuts(runs, before)
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    report |= {"before": before, "runs": runs, "median_s": cuts}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"startup-cuts-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    about = report["machine"]
    print(f"{about['cpu']}, torch {about['torch']}, {report['date']}, median of {runs}, "
          f"before = {before}\n\n{cuts_table(cuts)}\n\nwritten: {out}")  # fmt: skip


def machine() -> dict:
    import torch

    flags = ""
    model = platform.processor()
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        model = fields.get("Model name", model).strip()
        wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
        flags = " ".join(f for f in fields.get("Flags", "").split() if f in wanted)
    except OSError:
        pass
    return {
        "cpu": model,
        "flags": flags,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def table(results: dict) -> str:
    """Per data set: each side's phases (median seconds), the ratio of each side's phase to the
    first side's, the time of the first step and what had been imported by then."""
    lines = []
    for data, sides in results.items():
        names = list(sides)
        first = phases(sides[names[0]]["median_s"])
        lines += [f"\n`{data}`: seconds per phase (median); ratios to {names[0]}", ""]
        lines.append(
            "| phase ends at | "
            + " | ".join(names)
            + "".join(f" | {n} / {names[0]}" for n in names[1:])
            + " |"
        )
        lines.append("|---" + "|---:" * (2 * len(names) - 1) + "|")
        for key in STAMPS:
            if not all(key in sides[n]["median_s"] for n in names):
                continue
            own = [phases(sides[n]["median_s"])[key] for n in names]
            ratios = [f"{o / first[key]:.2f}" if first[key] > 0.005 else "-" for o in own[1:]]
            lines.append(
                f"| {key} | "
                + " | ".join(f"{o:.2f}" for o in own)
                + "".join(f" | {r}" for r in ratios)
                + " |"
            )
        steps = [sides[n]["median_s"].get("step") for n in names]
        if all(steps):
            lines.append(
                "| **first step, from the start** | "
                + " | ".join(f"**{t:.2f}**" for t in steps)
                + "".join(f" | **{t / steps[0]:.2f}**" for t in steps[1:])
                + " |"
            )
        for side, values in sides.items():
            lines.append(f"\n{side}: imported by the first step: {', '.join(values['loaded'])}")
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    content = path.read_text(encoding="utf-8")
    if BEGIN not in content:
        raise SystemExit(f"BENCHMARKS.md has no {BEGIN} marker")
    head, rest = content.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["digits", "mnist"], help="data sets")
    parser.add_argument("--runs", type=int, default=5, help="runs per data set and side")
    parser.add_argument("--before", metavar="REV", help="also time the package of commit REV")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="ARGS",
        help="also time this checkout with these extra train arguments (e.g. '--precision fp32')",
    )
    parser.add_argument(
        "--commands",
        action="store_true",
        help="with --before: also time whole commands on both sides (--help, evaluate)",
    )
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md's section")
    parser.add_argument(
        "--profile", metavar="N", type=int, help="instead: cProfile one run, print the top N"
    )
    parser.add_argument(
        "--cuts",
        action="store_true",
        help="instead: time the fixed cost's pieces (imports, splits, statistics, duplicate "
        "check, optimiser) before (--before) and after, and print their table",
    )
    args = parser.parse_args()
    if args.profile:
        profile(args.data, args.profile)
        return
    if args.cuts:
        if not args.before:
            parser.error("--cuts needs --before REV (the side to compare with)")
        run_cuts(args.runs, args.before)
        return
    results = measure(args.data, args.runs, args.before, args.variant)
    about = machine()
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": about}
    report |= {"before": args.before, "variants": args.variant, "runs": args.runs}
    report["results"] = results
    if args.commands and args.before:
        report["commands_s"] = time_commands(args.runs, args.before)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"startup-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    text = (
        f"{about['cpu']} ({about['cores']} cores; {about['flags'] or 'no avx2'}), torch "
        f"{about['torch']}, Python {about['python']}, {report['date']}, median of {args.runs}"
        + (f", before = {args.before}" if args.before else "")
        + "\n"
        + table(results)
    )
    if "commands_s" in report:
        text += "\n\nwhole commands, wall seconds (median), `python -m cnnlab ...`:\n\n"
        text += "| command | before | after | after / before |\n|---|---:|---:|---:|\n"
        for command, walls in report["commands_s"].items():
            text += (
                f"| `{command}` | {walls['before']:.2f} | {walls['after']:.2f} | "
                f"{walls['after'] / walls['before']:.2f} |\n"
            )
    print(text)
    print(f"\nwritten: {out}")
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
