"""What `train --layer-stats N` costs: the MNIST recipe's network on MNIST, side by side in one
process (issue 15, item 2).

    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/layer_stats.py
    CNNLAB_DATA=../shared/datasets .venv/bin/python benchmarks/layer_stats.py --data digits \
        --model small-cnn --rounds 3

Two measurements on one session (the recipe's settings, one process, this machine's fast path):
(a) the median time of a training step and of one record (the weights kept before the step,
norms after it, the probe forward of 256 images), so the overhead at interval N is
record / (N x step); (b) end to end, chunks of --steps training steps with the statistics off
and on (every --every steps), alternating for --rounds rounds, the ratio of the median chunk
times. Results go to benchmarks/results/layer-stats-<date>.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def chunk_seconds(session, state, steps: int, stats) -> float:
    from cnnlab.training import policy
    from cnnlab.training.loop import EpochTotals, train_one_epoch
    from cnnlab.training.process import epoch_indices, shard_batches

    order = epoch_indices(session.train.labels, "shuffle", state.global_step, 0)
    batches = shard_batches(
        session.train.images, session.train.labels, session.config.batch_size, order, 0
    )
    batches = itertools.islice(batches, steps)

    def after_step(totals, images) -> None:
        state.global_step += 1
        if stats is not None:
            policy.record_layer_stats(session, state, stats)

    if stats is not None:
        stats.before_step(state.global_step + 1)
    start = time.perf_counter()
    train_one_epoch(
        session.model, batches, session.optimizer, session.scheduler, session.loss_fn,
        session.settings, EpochTotals(), after_step=after_step,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--model", default=None, help="default: the data set's recipe")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import torch

    from cnnlab.training.config import TrainConfig
    from cnnlab.training.policy import RunState
    from cnnlab.training.run import layer_stats
    from cnnlab.training.session import open_session

    settings = {"data": args.data, "layer_stats": args.every, "threads": args.threads}
    if args.model:
        settings["model"] = args.model
    config = TrainConfig.from_dict(settings)
    with tempfile.TemporaryDirectory() as folder:
        session = open_session(config, Path(folder) / "run", False, sys.stderr, False)
        stats, state = layer_stats(session), RunState()
        chunk_seconds(session, state, 20, None)  # warm up
        steps, records = [], []
        for _ in range(30):
            steps.append(chunk_seconds(session, state, 1, None))
            stats.before_step(stats.every)
            start = time.perf_counter()
            stats.after_step(stats.every, 1)
            records.append(time.perf_counter() - start)
        off, on = [], []
        for _ in range(args.rounds):
            off.append(chunk_seconds(session, state, args.steps, None))
            on.append(chunk_seconds(session, state, args.steps, stats))
    step, record = statistics.median(steps), statistics.median(records)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            k: v for k, v in config.to_dict().items() if k in ("data", "model", "batch_size")
        },
        "threads": torch.get_num_threads(),
        "step_seconds": step,
        "record_seconds": record,
        "overhead_at": {n: record / (n * step) for n in (1, 10, 25, 50, 100, 200)},
        "end_to_end": {
            "steps": args.steps,
            "every": args.every,
            "off_seconds": off,
            "on_seconds": on,
            "ratio": statistics.median(on) / statistics.median(off),
        },  # fmt: skip
    }
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"layer-stats-{datetime.now(UTC):%Y-%m-%dT%H%M}.json"
    target.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
