"""The PyTorch MNIST example's network trained with PyTorch's dropout and with cnnlab's.

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/dropout_speed.py [--rounds 5]

The baseline's own network (benchmarks/mnist_baseline.py's ExampleNet: two dropout layers) with
Adadelta, trained the way speed.py's throughput part does (in-memory MNIST batches,
cnnlab.training.loop.train_one_epoch, this machine's fast path), once with torch.nn.Dropout and
once with cnnlab's (cnnlab.runtime.fastpath.fast_model), and once with cnnlab's as it was until
session 8 (its mask a bool tensor; now a 0/1 tensor in the activations' dtype), at batch 64, 128
and 256. The variants run interleaved, in reverse order every other round, a block of ~3,200
images each per round, so a slow moment of a shared machine hits all of them; the table gives
each one's median images/s over the rounds and the ratios.
BENCHMARKS.md ("Dropout") quotes it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch


class BoolMaskDropout(torch.autograd.Function):
    """The control: cnnlab's dropout as it was until 2026-12-01 (session 8), its mask kept as bool
    and multiplied in (a bfloat16 x bool product, and in the backward one over mixed layouts)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        from cnnlab.ops.dropout import keep_mask

        keep, probability = keep_mask(x, p)
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / probability
        return torch.mul(x, keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        out = torch.empty_like(keep, dtype=grad.dtype)
        torch.mul(grad, keep, out=out)
        return out.mul_(ctx.scale), None


KINDS = ("PyTorch's dropout", "cnnlab's, bool mask", "cnnlab's dropout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import cnnlab.ops.dropout as ops
    from cnnlab.data.sources import load_dataset
    from cnnlab.runtime.fastpath import choose_fast_path
    from cnnlab.training.config import TrainConfig

    data = load_dataset("mnist", None, False, TrainConfig(data="mnist").load_options())
    fast = choose_fast_path(torch.device("cpu"))
    from speed import example_trainer

    functions = {KINDS[1]: BoolMaskDropout, KINDS[2]: ops._MaskedDropout}
    variants = {(kind, batch): example_trainer(data, fast, batch, kind != KINDS[0])[2]
                for batch in (64, 128, 256) for kind in KINDS}  # fmt: skip
    rates: dict = {key: [] for key in variants}
    for round_ in range(args.rounds):
        for (kind, batch), run in variants.items() if round_ % 2 else list(variants.items())[::-1]:
            ops._MaskedDropout = functions.get(kind, ops._MaskedDropout)
            rates[(kind, batch)].append(run(3200 // batch))
    ops._MaskedDropout = functions[KINDS[2]]
    print(f"fast path: {fast.describe()}; {args.rounds} rounds, median images/s; load average "
          f"{os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"| batch | {' | '.join(KINDS)} | ratio to PyTorch's | ratio to the bool mask |")
    print("|---|---|---|---|---|---|")
    for batch in (64, 128, 256):
        rate = [statistics.median(rates[(kind, batch)]) for kind in KINDS]
        print(f"| {batch} | {' | '.join(f'{r:,.0f}' for r in rate)} | {rate[2] / rate[0]:.2f} "
              f"| {rate[2] / rate[1]:.2f} |")  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
