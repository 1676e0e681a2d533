"""Training steps of two or more networks side by side: which change to a network pays in speed.

    .venv/bin/python benchmarks/network_steps.py --size 32 --channels 3 --batch 128 \
        --model "conv24x2p0 -> bn -> gelu -> ..." --model "conv24x2p0 -> gelu -> ..." [--rounds 6]
    .venv/bin/python benchmarks/network_steps.py --stem-bn
    .venv/bin/python benchmarks/network_steps.py --compile --size 28 --channels 1 --batch 256 \
        --model "$(.venv/bin/python -c 'import cnnlab.specs.recipes as r; print(r.FASHION_NET)')"

One SGD step at a time on random images (benchmarks/gradient_layout.py's `stepper`: the fast
path, 2 threads), three instances of each network (instances of the same network differ by up to
7% here), all interleaved, in reverse order every other round; median images/s per network and
the ratio to the first. `--compile` compares each network with itself under torch.compile
(inductor's C++ kernels, needs a C++ compiler; compiling is not timed). `--stem-bn` compares the
CIFAR-10 recipe network as it was before session 7 (a BatchNorm after its stem) with the
recipe's network now. BENCHMARKS.md ("Levers") quotes both.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from allocator import keep_freed_memory
from gradient_layout import stepper

from cnnlab.specs.recipes import CIFAR_NET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], help="a network (repeat)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6, help="steps per block")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--stem-bn",
        action="store_true",
        help="compare the CIFAR-10 recipe network with a BatchNorm after its stem against it",
    )
    parser.add_argument(
        "--compile", action="store_true", help="each network eager and under torch.compile"
    )
    args = parser.parse_args()
    models = list(args.model)
    if args.stem_bn:
        models = [CIFAR_NET.replace("conv24x2p0 -> gelu", "conv24x2p0 -> bn -> gelu", 1), CIFAR_NET]
    variants = [(model, False) for model in models]
    if args.compile:
        variants = [(model, compiled) for model in models for compiled in (False, True)]
    if len(variants) < 2:
        parser.error("give two --model networks, or --compile, or --stem-bn")
    torch.set_num_threads(2)
    keep_freed_memory()  # as `cnnlab train`'s loop sees memory (benchmarks/allocator.py)
    runs = [(index, stepper(model, args.channels, args.size, args.batch, True, compiled))
            for _ in range(3) for index, (model, compiled) in enumerate(variants)]  # fmt: skip
    rates: dict[int, list[float]] = {index: [] for index in range(len(variants))}
    for round_ in range(args.rounds):
        for index, step in runs if round_ % 2 else runs[::-1]:
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            rates[index].append(args.batch * args.steps / (time.perf_counter() - start))
    first = statistics.median(rates[0])
    print("| network | images/s | ratio |")
    print("|---|---|---|")
    for index, (model, compiled) in enumerate(variants):
        rate = statistics.median(rates[index])
        shown = f"`{model}`" + (" (torch.compile)" if compiled else "")
        print(f"| {shown} | {rate:,.0f} | {rate / first:.2f}x |")


if __name__ == "__main__":
    main()
