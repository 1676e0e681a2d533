"""Where a training step of the PyTorch MNIST example's network goes, on this machine's fast path.

    .venv/bin/python benchmarks/example_profile.py [--steps 60] [--batch 64]

The baseline's own network (benchmarks/mnist_baseline.py's ExampleNet) with Adadelta, on random
28x28 images: images/s in fp32 / bf16 autocast x NCHW / channels_last, then torch.profiler's
operators by self time over 20 steps of the fast path's choice, then the two dropout masks'
cost against drawing as many random bytes. BENCHMARKS.md ("Issue 17's targets") quotes it.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from cnnlab.runtime.fastpath import choose_fast_path


def training_step(channels_last: bool, precision: str, batch: int):
    from mnist_baseline import ExampleNet  # benchmarks/, put on sys.path below

    torch.manual_seed(0)
    model = ExampleNet()
    x = torch.randn(batch, 1, 28, 28)
    if channels_last:
        model, x = (
            model.to(memory_format=torch.channels_last),
            x.contiguous(memory_format=torch.channels_last),
        )
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
    fast = choose_fast_path(torch.device("cpu"))
    for channels_last in (False, True):
        for precision in ("fp32", "bf16"):
            step = training_step(channels_last, precision, args.batch)
            for _ in range(10):
                step()
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            rate = args.steps * args.batch / (time.perf_counter() - start)
            layout = "channels_last" if channels_last else "NCHW"
            print(f"{precision} {layout}: {rate:,.0f} images/s", flush=True)
    step = training_step(fast.channels_last, fast.precision, args.batch)
    for _ in range(10):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(20):
            step()
    print(f"fast path ({fast.precision}, channels_last={fast.channels_last}), 20 steps:")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    mask = torch.randn(args.batch, 64, 12, 12).to(torch.bfloat16)  # dropout1's input
    dropout = microseconds(lambda: F.dropout(mask, 0.25, True))
    random_bytes = microseconds(lambda: torch.randint(0, 256, mask.shape, dtype=torch.uint8))
    print(f"dropout of {mask.numel():,} elements: {dropout:,.0f} us; as many random bytes: "
          f"{random_bytes:,.0f} us")  # fmt: skip


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    main()
