"""Where a training step of the PyTorch MNIST example's network goes, on this machine's fast path.

    .venv/bin/python benchmarks/example_profile.py [--steps 60] [--batch 64]

The baseline's own network (benchmarks/mnist_baseline.py's ExampleNet) with Adadelta, on random
28x28 images: images/s in fp32 / bf16 autocast x NCHW / channels_last, then torch.profiler's
operators by self time over 20 steps of the fast path's choice (with cnnlab's dropout, as
`cnnlab train` runs it: cnnlab.runtime.fastpath.fast_model), then the first dropout's cost with
PyTorch's mask and with cnnlab's. BENCHMARKS.md ("Issue 17's targets") quotes it.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from allocator import keep_freed_memory
from torch.profiler import ProfilerActivity, profile

from cnnlab.ops.dropout import dropout
from cnnlab.runtime.fastpath import choose_fast_path, fast_model


def training_step(channels_last: bool, precision: str, batch: int, cnnlab_dropout: bool = False):
    from mnist_baseline import ExampleNet  # benchmarks/, put on sys.path below

    torch.manual_seed(0)
    model = ExampleNet()
    x = torch.randn(batch, 1, 28, 28)
    if channels_last:
        model, x = (
            model.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        )
    if cnnlab_dropout:
        model = fast_model(model, choose_fast_path(torch.device("cpu"), precision, channels_last))
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x)
        F.nll_loss(out.float(), y).backward()
        optimizer.step()

    return step


def microseconds(function, repeats: int = 200) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    keep_freed_memory()  # as `cnnlab train`'s loop sees memory (benchmarks/allocator.py)
    fast = choose_fast_path(torch.device("cpu"))
    for channels_last, precision, ours in [
        (False, "fp32", False), (False, "bf16", False), (True, "fp32", False),
        (True, "bf16", False), (True, "bf16", True),
    ]:  # fmt: skip
        step = training_step(channels_last, precision, args.batch, ours)
        for _ in range(10):
            step()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        rate = args.steps * args.batch / (time.perf_counter() - start)
        layout = "channels_last" if channels_last else "NCHW"
        mask = "cnnlab's" if ours else "PyTorch's"
        print(f"{precision} {layout}, {mask} dropout: {rate:,.0f} images/s", flush=True)
    step = training_step(fast.channels_last, fast.precision, args.batch, True)
    for _ in range(10):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(20):
            step()
    print(f"fast path ({fast.precision}, channels_last={fast.channels_last}), 20 steps:")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    mask = torch.randn(args.batch, 64, 12, 12).to(torch.bfloat16)  # dropout1's input
    torch_dropout = microseconds(lambda: F.dropout(mask, 0.25, True))
    ours = microseconds(lambda: dropout(mask, 0.25, True))
    print(f"dropout of {mask.numel():,} elements: PyTorch's {torch_dropout:,.0f} us, cnnlab's "
          f"{ours:,.0f} us")  # fmt: skip


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    main()
