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
import time
from pathlib import Path

import torch


def trainer(cnnlab_dropout: bool, batch_size: int, data, fast):
    from mnist_baseline import ExampleNet

    from cnnlab.data.loader import Normalizer, epoch_order, train_batches
    from cnnlab.runtime.fastpath import fast_model
    from cnnlab.runtime.predict import StepSettings
    from cnnlab.training.loop import EpochTotals, train_one_epoch

    torch.manual_seed(1)
    model = ExampleNet()
    if cnnlab_dropout:
        model = fast_model(model, fast)
    elif fast.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    settings = StepSettings(Normalizer((0.1307,), (0.3081,)), fast.precision, fast.channels_last)
    order = epoch_order(len(data.train_labels), 1, 0)
    loss_fn = torch.nn.NLLLoss()

    def run(count: int) -> float:
        stream = train_batches(data.train_images, data.train_labels, batch_size, order)
        limited = (batch for _, batch in zip(range(count), stream, strict=False))
        start = time.perf_counter()
        train_one_epoch(model, limited, optimizer, scheduler, loss_fn, settings, EpochTotals())
        return count * batch_size / (time.perf_counter() - start)

    run(10)  # warm-up
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from cnnlab.data.sources import load_dataset
    from cnnlab.runtime.fastpath import choose_fast_path
    from cnnlab.training.config import TrainConfig

    data = load_dataset("mnist", None, False, TrainConfig(data="mnist").load_options())
    fast = choose_fast_path(torch.device("cpu"))
    variants = {(ours, batch): trainer(ours, batch, data, fast)
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
