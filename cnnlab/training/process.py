"""Where data-parallel training plugs in: which examples this process sees, and who writes files.

One process sees every example of the epoch's seeded order and writes the run directory. Under
torchrun each process will take its shard of the same order and only rank 0 will write; these two
functions are the only places that will change, not conditionals through the loop.
"""

from __future__ import annotations

import torch

from cnnlab.data.loader import balanced_epoch_order, epoch_order


def epoch_indices(labels: torch.Tensor, sampler: str, seed: int, epoch: int) -> torch.Tensor:
    """The training examples this process visits in `epoch`, in order: a pure function of
    (labels, sampler, seed, epoch), so a resumed run sees the same batches."""
    if sampler == "balanced":
        return balanced_epoch_order(labels, seed, epoch)
    return epoch_order(len(labels), seed, epoch)


def writes_files() -> bool:
    """Whether this process writes checkpoints, metrics and progress (one writer per run)."""
    return True
