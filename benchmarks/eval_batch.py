"""Images/s of the recipe networks' inference at several batch sizes, on this machine's fast path.

    .venv/bin/python benchmarks/eval_batch.py [--batches 128 256 512 1024] [--repeats 3]

Untrained networks on random images of their data set's shape (the speed of a forward pass does
not depend on the weights), eval mode, torch.inference_mode, the precision and memory format
`cnnlab.runtime.fastpath` picks here; each cell the best of --repeats timings of >= 8,192 images
after two warm-up batches. It is why `runtime.predict.EVAL_BATCH` is 256 on CPUs.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from cnnlab.models import ModelSpec, build_model, resolve_model_argument
from cnnlab.runtime.fastpath import choose_fast_path, cpu_description
from cnnlab.runtime.predict import autocast
from cnnlab.specs.recipes import CIFAR_NET, FASHION_NET, MNIST_NET

NETWORKS = {"mnist": (MNIST_NET, (1, 28, 28)), "fashion-mnist": (FASHION_NET, (1, 28, 28)),
            "cifar10": (CIFAR_NET, (3, 32, 32))}  # fmt: skip


def images_per_second(model, shape, batch, fast, repeats: int) -> float:
    x = torch.randn(batch, *shape)
    if fast.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    count = max(2, 8192 // batch)
    best = 0.0
    with torch.inference_mode(), autocast(x.device, fast.precision):
        model(x), model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(count):
                model(x)
            best = max(best, count * batch / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    fast = choose_fast_path(torch.device("cpu"))
    print(f"# {cpu_description()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{fast.precision}, channels_last={fast.channels_last}")  # fmt: skip
    rows = {}
    for data, (spec, shape) in NETWORKS.items():
        name, options = resolve_model_argument(spec, {})
        model = build_model(ModelSpec(name, shape[0], 10, shape[1:], options)).eval()
        if fast.channels_last:
            model = model.to(memory_format=torch.channels_last)
        rates = {
            b: round(images_per_second(model, shape, b, fast, args.repeats)) for b in args.batches
        }
        rows[data] = rates
        print(f"| {data} | " + " | ".join(f"{rates[b]:,}" for b in args.batches) + " |", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
