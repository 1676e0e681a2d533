"""Time the stratified bootstrap of `cnnlab evaluate` (cnnlab.binary_metrics.bootstrap_intervals)
on 10,000 two-class predictions with 1,000 resamples (the issue's budget: about a second), and a
per-resample scikit-learn loop over the same resamples for comparison. Prints one JSON line.

    .venv/bin/python benchmarks/bootstrap_speed.py [--samples 10000] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from cnnlab.binary_metrics import _stratified_indices, bootstrap_intervals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1_000)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    targets = (torch.rand(args.samples, generator=generator) < 0.3).long()
    scores = (torch.randn(args.samples, generator=generator) + 1.2 * targets).sigmoid().double()
    predictions = (scores >= 0.5).long()

    start = time.perf_counter()
    bootstrap_intervals(predictions, targets, 2, scores, resamples=args.resamples)
    vectorised = time.perf_counter() - start

    indices = _stratified_indices(targets, args.resamples, seed=0)
    start = time.perf_counter()
    for row in indices:
        balanced_accuracy_score(targets[row], predictions[row])
        roc_auc_score(targets[row], scores[row])
    loop = time.perf_counter() - start
    print(json.dumps({
        "samples": args.samples, "resamples": args.resamples,
        "vectorised_seconds": round(vectorised, 3), "sklearn_loop_seconds": round(loop, 3),
        "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
