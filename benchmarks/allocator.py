"""Why the step benchmarks keep freed memory: a loop over one fixed batch faults its pages anew.

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/allocator.py [--rounds 3]

glibc's malloc serves a block over its mmap threshold with a mapping of its own and unmaps it on
free, and gives the top of a heap back to the system when more than its trim threshold lies free
there. A benchmark that trains on one fixed random batch in a loop (example_profile.py,
gradient_layout.py, network_steps.py, speed.py's profile) frees and allocates the same
activation-sized blocks every step, and on this machine that meant thousands of page faults per
step, each zeroing a page inside the step; `cnnlab train`'s loop, which also allocates its
batches, took 0-11 faults per step (measured here: the "training loop" row). So those
benchmarks call `keep_freed_memory()` first: glibc's mmap threshold at its ceiling (32 MiB) and a
trim threshold of 1 GiB, which brings their faults and images/s to what training sees. cnnlab
itself does not change the allocator: in `cnnlab train` runs the setting changed nothing
measurable (BENCHMARKS.md, "Levers").

Each measurement is a child process (the setting is per process), glibc as it comes or with the
thresholds raised, alternated, the order reversed every other round; medians of images/s,
minor page faults per step and peak resident memory.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
NETWORKS = ("example", "mnist", "fashion-mnist", "cifar10", "example, training loop")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where that is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 and mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1


def stepper(network: str):
    """(step, batch): one training step of `network` as the step benchmarks take it."""
    import torch

    from cnnlab.runtime.fastpath import choose_fast_path

    fast = choose_fast_path(torch.device("cpu"))
    if network == "example, training loop":
        from speed import _mnist, example_trainer

        run = example_trainer(_mnist(), fast, 64)[2]
        return (lambda: run(20)), 20 * 64  # a "step" here: 20 batches of train_one_epoch
    if network == "example":
        from example_profile import training_step

        return training_step(fast.channels_last, fast.precision, 64, True), 64
    from gradient_layout import NETWORKS as RECIPES
    from gradient_layout import stepper as recipe_stepper

    model, channels, size, batch, _ = RECIPES[network]
    return recipe_stepper(model, channels, size, batch, True), batch


def child(network: str, kept: bool, seconds: float) -> dict:
    import torch

    torch.set_num_threads(2)
    if kept:
        keep_freed_memory()
    step, batch = stepper(network)
    for _ in range(10):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "images_per_second": steps * batch / elapsed,
        "faults_per_step": (usage.ru_minflt - faults) / steps,
        "peak_mib": usage.ru_maxrss / 1024,
    }


def measure(network: str, kept: bool, seconds: float) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent)]))
    command = [sys.executable, __file__, "--child", network, "--seconds", str(seconds)]
    command += ["--kept"] if kept else []
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="timed steps per child")
    parser.add_argument("--network", action="append", choices=NETWORKS)
    parser.add_argument("--child", choices=NETWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--kept", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.kept, args.seconds)))
        return
    networks = args.network or list(NETWORKS)
    order = [(network, kept) for network in networks for kept in (False, True)]
    results: dict[tuple[str, bool], list[dict]] = {key: [] for key in order}
    for round_ in range(args.rounds):
        for network, kept in order if round_ % 2 == 0 else order[::-1]:
            results[network, kept].append(measure(network, kept, args.seconds))
            print(f"round {round_ + 1} {network} kept={kept}: {results[network, kept][-1]}",
                  file=sys.stderr, flush=True)  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("| steps of | glibc as it comes (images/s) | faults/step | thresholds raised (images/s) "
          "| faults/step | ratio | peak MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for network in networks:
        a, b = results[network, False], results[network, True]

        def median(runs: list[dict], key: str) -> float:
            return statistics.median(run[key] for run in runs)

        before, after = median(a, "images_per_second"), median(b, "images_per_second")
        print(f"| {network} | {before:,.0f} | {median(a, 'faults_per_step'):,.1f} | {after:,.0f} "
              f"| {median(b, 'faults_per_step'):,.1f} | {after / before:.2f}x "
              f"| {median(a, 'peak_mib'):,.0f} -> {median(b, 'peak_mib'):,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
