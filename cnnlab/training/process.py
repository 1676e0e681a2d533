"""Where data-parallel training plugs in: which examples this process sees, who writes files, and
what the processes agree on at every step.

One process sees every example of the epoch's seeded order and writes the run directory. Under
`torchrun` (torch.distributed.elastic sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) the
processes form one group (gloo on CPUs, NCCL on CUDA) and train one model with
DistributedDataParallel: every process computes the same global order, each takes its contiguous
shard of every global batch (`--batch-size` is the global batch), only rank 0 writes. Once per step
the processes all-reduce six numbers (`StepSync.agree`): whether the loss was finite everywhere,
whether any process was asked to stop, and the step's image count, loss sum and correct count,
so every process holds the same epoch totals, skips the same non-finite steps and stops at the
same step. Validation is sharded and its confusion counts summed (`reduce_sums`).
"""

from __future__ import annotations

import atexit
import datetime
import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.data.loader import balanced_epoch_order, epoch_order, num_batches, train_batches
from cnnlab.errors import ConfigError
from cnnlab.training.interrupt import StopFlag


@dataclass(frozen=True)
class Place:
    """This process's place in its group (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1


def place() -> Place:
    """From the variables torchrun sets; one process of one without them."""
    env = os.environ
    try:
        return Place(
            rank=int(env.get("RANK", 0)),
            world=int(env.get("WORLD_SIZE", 1)),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            local_world=int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))),
        )
    except ValueError:
        raise ConfigError(
            "RANK, WORLD_SIZE, LOCAL_RANK or LOCAL_WORLD_SIZE is not a number; start several "
            "processes with torchrun (or `cnnlab train --nproc N`), which sets them."
        ) from None


def restart_count() -> int:
    """How often torchrun has restarted the group (0 on the first start, or without torchrun)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def join_group(device: torch.device) -> Place:
    """Join the process group torchrun describes (once); gloo on CPUs, NCCL on CUDA."""
    here = place()
    if not here.distributed:
        return here
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(minutes=10)
        store, rank, world = next(dist.rendezvous("env://", timeout=timeout))
        # The launcher's key-value store outlives a restart of the group: without a prefix per
        # restart, a new process can read the address its dead predecessor published and fail
        # to connect ("Connection refused"), which we saw in one restart of three.
        store = dist.PrefixStore(f"cnnlab/restart-{restart_count()}", store)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
        atexit.register(_leave_group)
    return here


def leave_group_and_exit(code: int) -> None:
    """End a torchrun worker: wait for the others, take the group down, exit at once.

    Left to the interpreter's shutdown, the group's and the launcher store's C++ threads were
    seen to abort a finished worker ("terminate called without an active exception", SIGABRT) in
    one run of three, which torchrun counts as a failure (and a multi-node launcher then waited
    for a rendezvous that never came). Everything the run writes is on disk by now (atomic
    writes), so the worker skips the rest of the shutdown."""
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.barrier()
            dist.destroy_process_group()
        except Exception:  # a peer already gone: there is nobody left to wait for
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _leave_group() -> None:
    """Take the group down before the interpreter does: left to exit, gloo's threads can abort
    the process ("terminate called without an active exception") after a finished run."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def process_device(device: torch.device) -> torch.device:
    """One GPU per process under torchrun: cuda:LOCAL_RANK when CUDA was chosen."""
    here = place()
    if device.type == "cuda" and here.distributed and device.index is None:
        return torch.device("cuda", here.local_rank)
    return device


def process_threads(threads: int | None, cores: int) -> int | None:
    """Threads per process so that processes x threads fits the cores (None: torch's own)."""
    here = place()
    if threads or not here.distributed:
        return threads
    return max(1, cores // here.local_world)


def epoch_indices(labels: torch.Tensor, sampler: str, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's global order: a pure function of (labels, sampler, seed, epoch), the same in
    every process, so a resumed run (on any number of processes) sees the same global batches."""
    if sampler == "balanced":
        return balanced_epoch_order(labels, seed, epoch)
    return epoch_order(len(labels), seed, epoch)


def shard_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    order: torch.Tensor,
    start_batch: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's contiguous shard of each global batch of `order` (all of it alone)."""
    here = place()
    if not here.distributed:
        yield from train_batches(images, labels, batch_size, order, start_batch)
        return
    order = order.to(images.device)
    for index in range(start_batch, num_batches(len(order), batch_size)):
        batch = order[index * batch_size : (index + 1) * batch_size]
        shard = torch.tensor_split(batch, here.world)[here.rank]
        if len(shard):
            yield images.index_select(0, shard), labels.index_select(0, shard)
        else:  # a last global batch smaller than the group: one stand-in image, label -1, weight 0
            yield images.index_select(0, batch[:1]), torch.full_like(labels[:1], -1)


def augment_seed(seed: int) -> int:
    """The augmentation seed of this process: the run's seed on rank 0 (and alone), a derived one
    on the others, so shards of one batch are not augmented alike."""
    rank = place().rank
    if rank == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}:{rank}".encode()).digest()[:7], "little")


def writes_files() -> bool:
    """Whether this process writes checkpoints, metrics and progress (one writer per run)."""
    return place().rank == 0


class GroupStop(StopFlag):
    """A stop request every process acts on at the same step: a signal sets the local request
    (`inner`); the loop sees it once `StepSync.agree` has shared it."""

    def __init__(self, inner: StopFlag) -> None:
        super().__init__()
        self.inner = inner

    def request(self, signal_number: int = 2) -> None:
        self.inner.request(signal_number)

    def local_signal(self) -> int:
        return (self.inner.signal_number or 2) if self.inner() else 0


class StepSync:
    """What the processes of one group agree on once per step, and the model they step."""

    def __init__(self, stop: GroupStop | None = None) -> None:
        self.here = place()
        self.stop = stop or GroupStop(StopFlag())

    def agree(
        self, finite: bool, count: int, loss_sum: float, correct: int
    ) -> tuple[bool, int, float, int]:
        """(finite everywhere, images, loss sum, correct) over all processes; shares stops."""
        import torch.distributed as dist

        signal_number = self.stop.local_signal()
        values = torch.tensor(
            [0.0 if finite else 1.0, 1.0 if signal_number else 0.0, signal_number, count,
             loss_sum if finite else 0.0, correct],
            dtype=torch.float64,
        )  # fmt: skip
        dist.all_reduce(values)  # one call a step: sums of flags say "any"
        nonfinite, stopping, signals, total, loss_total, correct_total = values.tolist()
        if stopping and self.stop.signal_number is None:
            mean = signals / stopping  # SIGINT or SIGTERM, the same in every process that has one
            self.stop.signal_number = round(mean) if mean in (2, 15) else 15
        return nonfinite == 0, round(total), loss_total, round(correct_total)

    def loss_weight(self, count: int, total: int) -> float:
        """DDP averages gradients over processes; weighting each shard's mean loss by its share
        makes the result the mean over the global batch even when shards differ in size."""
        return count * self.here.world / max(total, 1)

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around `model` (its parameters broadcast from rank 0)."""
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)


def reduce_sums(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `tensor` over the group (itself alone)."""
    if not place().distributed:
        return tensor
    import torch.distributed as dist

    summed = tensor.to(torch.float64).clone()
    dist.all_reduce(summed)
    return summed


def split_for_this_process(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This process's contiguous part of each tensor (for sharded evaluation)."""
    here = place()
    if not here.distributed:
        return tensors
    return tuple(torch.tensor_split(t, here.world)[here.rank] for t in tensors)


def gather_objects(value: object) -> list:
    """`value` from every process, in rank order (itself alone)."""
    if not place().distributed:
        return [value]
    import torch.distributed as dist

    gathered: list = [None] * place().world
    dist.all_gather_object(gathered, value)
    return gathered
