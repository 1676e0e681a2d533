"""The PyTorch MNIST example's network trained with PyTorch's dropout and with cnnlab's.

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/dropout_speed.py [--rounds 5]

The baseline's own network (benchmarks/mnist_baseline.py's ExampleNet: two dropout layers) with
Adadelta, trained the way speed.py's throughput part does (in-memory MNIST batches,
cnnlab.training.loop.train_one_epoch, this machine's fast path), once with torch.nn.Dropout and
once with cnnlab's (cnnlab.runtime.fastpath.fast_model), at batch 64, 128 and 256. The variants
run interleaved, a block of ~3,200 images each per round, so a slow moment of a shared machine
hits all of them; the table gives each one's median images/s over the rounds and the ratio.
BENCHMARKS.md ("Dropout") quotes it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from cnnlab.data.sources import load_dataset
    from cnnlab.runtime.fastpath import choose_fast_path
    from cnnlab.training.config import TrainConfig

    data = load_dataset("mnist", None, False, TrainConfig(data="mnist").load_options())
    fast = choose_fast_path(torch.device("cpu"))
    from speed import example_trainer

    variants = {(ours, batch): example_trainer(data, fast, batch, ours)[2]
                for batch in (64, 128, 256) for ours in (False, True)}  # fmt: skip
    rates: dict = {key: [] for key in variants}
    for _ in range(args.rounds):
        for (ours, batch), run in variants.items():
            rates[(ours, batch)].append(run(3200 // batch))
    print(f"fast path: {fast.describe()}; {args.rounds} rounds, median images/s")
    print("| batch | PyTorch's dropout | cnnlab's dropout | ratio |")
    print("|---|---|---|---|")
    for batch in (64, 128, 256):
        theirs = statistics.median(rates[(False, batch)])
        ours = statistics.median(rates[(True, batch)])
        print(f"| {batch} | {theirs:,.0f} | {ours:,.0f} | {ours / theirs:.2f} |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
