"""Training steps with and without the fast path's channels_last gradient at the features' output.

    .venv/bin/python benchmarks/gradient_layout.py [--rounds 5]

cnnlab.runtime.fastpath.fast_model turns the gradient that a model's head hands back to its
`features` channels_last (a flatten or a global pooling gives it back NCHW, and PyTorch's
elementwise backward kernels are much slower on mixed layouts). This times one SGD training step
(bf16 autocast where the CPU has it natively, channels_last, random images of the network's
input shape, 2 threads) of each recipe network and of small-cnn at 128x128 (a folder's default),
on the fast path and with the same model only made channels_last, three instances of each (one
instance of a network can run several percent faster than another of the same weights, measured
here). The six run interleaved, a block of steps each, in reverse order every other round; the
table gives each variant's median images/s over its instances and rounds, and the ratio.
BENCHMARKS.md ("Levers") quotes it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from allocator import keep_freed_memory

from cnnlab.layers.dropout import use_fast_dropout
from cnnlab.models import ModelSpec, build_model, resolve_model_argument
from cnnlab.runtime.fastpath import choose_fast_path, fast_model
from cnnlab.specs.recipes import CIFAR_NET, FASHION_NET, MNIST_NET

# name: (model, channels, size, batch, steps per round)
NETWORKS = {
    "mnist": (MNIST_NET, 1, 28, 128, 20),
    "fashion-mnist": (FASHION_NET, 1, 28, 256, 20),
    "cifar10": (CIFAR_NET, 3, 32, 128, 8),
    "small-cnn 128x128": ("small-cnn", 3, 128, 64, 2),
}


def stepper(
    model_name: str, channels: int, size: int, batch: int, aligned: bool, compiled: bool = False
):
    """A function that runs one training step; `compiled`: the model's forward under
    torch.compile (inductor; its first steps, taken here, compile it)."""
    fast = choose_fast_path(torch.device("cpu"))
    name, options = resolve_model_argument(model_name, {})
    torch.manual_seed(0)
    model = build_model(ModelSpec(name, channels, 10, (size, size), options))
    if aligned:
        model = fast_model(model, fast)
    else:  # the same, minus the gradient's layout
        model = model.to(memory_format=torch.channels_last)
        use_fast_dropout(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    forward = torch.compile(model) if compiled else model
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast.precision == "bf16"):
            logits = forward(x)
        F.cross_entropy(logits.float(), y).backward()
        optimizer.step()

    for _ in range(3):  # oneDNN builds its kernels for these shapes
        step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    keep_freed_memory()  # as `cnnlab train`'s loop sees memory (benchmarks/allocator.py)
    print(f"fast path: {choose_fast_path(torch.device('cpu')).to_dict()}")
    print("| network | batch | NCHW gradient (images/s) | channels_last gradient | ratio |")
    print("|---|---|---|---|---|")
    for label, (model_name, channels, size, batch, steps) in NETWORKS.items():
        variants = [(aligned, stepper(model_name, channels, size, batch, aligned))
                    for _ in range(3) for aligned in (False, True)]  # fmt: skip
        rates: dict[bool, list[float]] = {False: [], True: []}
        for round_ in range(args.rounds):
            for aligned, step in variants if round_ % 2 else variants[::-1]:
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                rates[aligned].append(batch * steps / (time.perf_counter() - start))
        before, after = statistics.median(rates[False]), statistics.median(rates[True])
        print(f"| {label} | {batch} | {before:,.0f} | {after:,.0f} | {after / before:.2f}x |")


if __name__ == "__main__":
    main()
