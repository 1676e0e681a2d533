"""The loop with its totals deferred on the device (a GPU's mode), forced on the CPU: no host
reads between read-backs, the same numbers and weights as reading every step, non-finite steps
dropped on the device and the abort rule kept; and benchmarks/gpu.py's refusal without CUDA."""

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.data.augment import Augmentation, augmented_batches
from cnnlab.data.loader import Normalizer, device_constant, epoch_order, train_batches
from cnnlab.errors import TrainingAborted
from cnnlab.run.checkpoints import numbered_sidecars, read_checkpoint
from cnnlab.runtime.predict import StepSettings
from cnnlab.training import loop
from cnnlab.training.loop import (
    READ_BACK_STEPS,
    EpochTotals,
    read_back_interval,
    train_one_epoch,
)
from cnnlab.training.run import train

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = StepSettings(Normalizer((0.5,), (0.25,)))
READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny tensors on one thread (conftest's fixture)."""


def tiny_net(batch_norm: bool = True) -> nn.Module:
    torch.manual_seed(0)
    norm = [nn.BatchNorm2d(4)] if batch_norm else []
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), *norm, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 3),
    )  # fmt: skip


def make_optimizer(model: nn.Module, kind: str) -> torch.optim.Optimizer:
    fused = kind.endswith("-fused")
    if kind.startswith("sgd"):
        return torch.optim.SGD(
            model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
            fused=fused or None,
        )  # fmt: skip
    return torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.01, fused=fused or None)


def batches(count: int = 10, size: int = 6, nan_at: tuple[int, ...] = ()) -> list:
    """`count` seeded batches of 8x8 images; those in `nan_at` are float with one NaN pixel."""
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (count * size, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (count * size,), generator=generator)
    order = epoch_order(len(labels), seed=3, epoch=0)
    out = []
    for index, (x, y) in enumerate(train_batches(images, labels, size, order)):
        if index in nan_at:
            x = x.float()
            x[0, 0, 0, 0] = float("nan")
        out.append((x, y))
    return out


def run_epoch(model, optimizer, data, every, schedule="onecycle", **kwargs):
    """One epoch; returns (totals, summary, images passed to after_step, weights after each
    step)."""
    if schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=len(data))
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    totals, images, weights = EpochTotals(), [], []

    def after_step(totals, count):
        images.append(count)
        weights.append([p.detach().clone() for p in model.parameters()])

    summary = train_one_epoch(
        model, data, optimizer, scheduler, nn.CrossEntropyLoss(), SETTINGS, totals,
        after_step=after_step, read_back_every=every, **kwargs,
    )  # fmt: skip
    return totals, summary, images, weights


def same_tensors(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_deferred_totals_read_nothing_back_between_read_backs(monkeypatch):
    """Gathering, augmentation, normalisation and 10 steps read back to the host only at steps
    4 and 8 (one tolist each) and at the last; reading every step reads at every step."""
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (60, 1, 8, 8), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (60,), generator=generator)
    augmentation = Augmentation(hflip=0.5, crop_padding=2, brightness=0.2, erase=0.5)

    def epoch(every):
        data = augmented_batches(
            train_batches(images, labels, 6, epoch_order(60, 0, 0)), augmentation, (0.5,), 0, 0
        )
        model = tiny_net()
        optimizer = make_optimizer(model, "sgd")
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=10)
        seen, totals = [], EpochTotals()
        train_one_epoch(
            model, data, optimizer, scheduler, nn.CrossEntropyLoss(), SETTINGS, totals,
            after_step=lambda totals, count: seen.append(sum(reads.values())),
            read_back_every=every,
        )  # fmt: skip
        return seen, sum(reads.values())

    reads = dict.fromkeys(READS, 0)
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            reads[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    seen, total = epoch(4)
    assert seen == [0, 0, 0, 1, 1, 1, 1, 2, 2, 3] and total == 3  # and the last step
    assert reads["tolist"] == 3 and sum(reads.values()) == 3
    reads.update(dict.fromkeys(READS, 0))
    seen, _ = epoch(0)  # the oracle that the counting sees reads: today's loop reads each step
    assert all(later > earlier for earlier, later in zip([0, *seen], seen, strict=False))


@pytest.mark.parametrize("kind", ["sgd", "adamw", "sgd-fused"])
@pytest.mark.parametrize("every", [1, 3, 4])
def test_deferred_epoch_equals_reading_every_step(kind, every):
    """Totals, summary, weights, batch-norm statistics and optimiser state after an epoch with
    deferred totals are bit-identical to the loop that reads every step; after_step's images add
    up to the same count, passed only where the totals are current."""
    data = batches()
    results = []
    for mode in (0, every):
        model = tiny_net()
        optimizer = make_optimizer(model, kind)
        totals, summary, images, _ = run_epoch(model, optimizer, data, mode)
        state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        results.append((totals, summary, images, model.state_dict(), state))
    (totals, summary, images, weights, state), deferred = results[0], results[1]
    assert deferred[0] == totals and deferred[0].to_dict() == totals.to_dict()
    assert deferred[1] == summary and totals.seen == 60 and totals.steps == 10
    assert sum(deferred[2]) == sum(images) == 60
    assert all(n == 0 for i, n in enumerate(deferred[2][:-1], 1) if i % every)
    assert same_tensors(weights.values(), deferred[3].values())
    assert same_tensors(state, deferred[4])


@pytest.mark.parametrize("kind", ["sgd", "adamw", "sgd-fused", "adamw-fused"])
def test_nonfinite_steps_are_dropped_on_the_device(kind):
    """NaN batches 0 and 4: each step leaves the weights as the step before left them (the first
    as they started), and the epoch ends where the loop that reads every step (and never steps
    on a NaN) ends: same totals, weights and optimiser state (constant rate: the schedule is the
    one thing a deferred skip advances)."""
    data = batches(nan_at=(0, 4))
    results = []
    for every in (0, 3):
        model = tiny_net(batch_norm=False)  # a NaN batch would poison the running statistics
        start = [p.detach().clone() for p in model.parameters()]
        optimizer = make_optimizer(model, kind)
        totals, _, _, weights = run_epoch(model, optimizer, data, every, schedule="constant")
        state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        results.append((totals, weights, state, start))
    (totals, weights, state, start), (d_totals, d_weights, d_state, d_start) = results
    assert same_tensors(d_weights[0], d_start) and same_tensors(d_weights[4], d_weights[3])
    assert not same_tensors(d_weights[5], d_weights[4])  # finite steps do move the weights
    assert d_totals == totals and totals.skipped_steps == 2 and totals.seen == 48
    assert same_tensors(d_weights[-1], weights[-1]) and same_tensors(d_state, state)


def test_consecutive_nonfinite_steps_abort_at_the_next_read_back():
    """NaN from batch 2 on, at most 3 in a row: reading every step aborts in step 5 (its third
    NaN); deferred by 4, at the read-back after step 8, naming the 6 it saw, with the weights the
    last finite step (2) left."""
    data = batches(nan_at=tuple(range(2, 10)))
    model = tiny_net(batch_norm=False)
    totals = EpochTotals()
    with pytest.raises(TrainingAborted, match="in 3 consecutive steps; each"):
        run_epoch(model, make_optimizer(model, "sgd"), data, 0, max_nonfinite_steps=3)
    model = tiny_net(batch_norm=False)
    optimizer = make_optimizer(model, "sgd")
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    weights = []
    with pytest.raises(TrainingAborted, match="6 consecutive steps .seen when the totals were"):
        train_one_epoch(
            model, data, optimizer, scheduler, nn.CrossEntropyLoss(), SETTINGS, totals,
            after_step=lambda *_: weights.append([p.detach().clone() for p in model.parameters()]),
            max_nonfinite_steps=3, read_back_every=4,
        )  # fmt: skip
    assert totals.steps == 8 and totals.skipped_steps == 6 and totals.seen == 12
    assert len(weights) == 7  # the abort came before step 8's after_step
    assert same_tensors([p.detach() for p in model.parameters()], weights[1])


def test_read_back_interval_defers_on_cuda_alone():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert read_back_interval("auto", cpu, None, None) == 0
    assert read_back_interval("auto", cuda, None, None) == READ_BACK_STEPS
    assert read_back_interval(7, cpu, None, None) == 7
    assert read_back_interval("auto", cuda, object(), None) == 0  # a torchrun group
    assert read_back_interval(7, cuda, None, object()) == 0  # a float16 gradient scaler


def test_normalizer_constants_are_made_once_and_normalise_as_before():
    """The per-band mean and std tensors are cached per device (no host-to-GPU copy per batch);
    the output equals the formula with fresh tensors."""
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    normalizer = Normalizer((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    mean = torch.tensor(normalizer.mean).view(1, 3, 1, 1)
    std = torch.tensor(normalizer.std).view(1, 3, 1, 1)
    assert torch.equal(normalizer(images), (images.float() / 255.0 - mean) / std)
    first = device_constant(normalizer.mean, torch.float32, torch.device("cpu"))
    assert device_constant(normalizer.mean, torch.float32, torch.device("cpu")) is first
    with torch.inference_mode():  # made there first, it still serves autograd later
        made = device_constant((0.25, 0.75), torch.float32, torch.device("cpu"))
    assert not made.is_inference()


def test_train_with_deferred_totals_matches_reading_every_step(tmp_path, tiny_config, monkeypatch):
    """A whole run (checkpoints every 3 steps, read-backs every 2) logs the same epoch rows and
    ends with the same weights as the default run; checkpoint totals are exact too."""
    config = tiny_config(checkpoint_every_steps=3, augment=True, hflip=0.5, crop_padding=1)
    rows, checkpoints, steps = [], [], []
    for name, every in (("default", 0), ("deferred", 2)):
        monkeypatch.setattr(loop, "read_back_interval", lambda *_, n=every: n)
        result = train(copy.deepcopy(config), tmp_path / name, show_progress=False)
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        epochs = [json.loads(line) for line in lines if '"epoch"' in line]
        keep = ("train_loss", "train_accuracy", "skipped_steps", "val_loss", "step")
        rows.append([{k: row.get(k) for k in keep} for row in epochs if row["kind"] == "epoch"])
        saved = [
            read_checkpoint(path) for path in numbered_sidecars(tmp_path / name / "checkpoints")
        ]
        checkpoints.append(
            [(c.meta["global_step"], c.state["totals"], sorted(c.weights.items())) for c in saved]
        )
        steps.append(result.global_step)
    assert rows[0] == rows[1] and len(rows[0]) == 2 and steps[0] == steps[1]
    assert len(checkpoints[0]) == len(checkpoints[1]) > 1
    for (step, totals, weights), (d_step, d_totals, d_weights) in zip(*checkpoints, strict=True):
        assert (step, totals) == (d_step, d_totals) and [k for k, _ in weights] == [
            k for k, _ in d_weights
        ]
        assert same_tensors([w for _, w in weights], [w for _, w in d_weights])


def _gpu_script():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_benchmark_refuses_to_run_without_cuda(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="needs a CUDA GPU.*none is visible"):
        _gpu_script().main(["--data", str(tmp_path)])


def test_gpu_benchmark_writes_airbench_tensors_from_the_jpeg_copy(tmp_path):
    """train.pt/test.pt hold what airbench's CifarLoader saves: uint8 [N, H, W, 3], int64 labels
    in sorted class order, the class names; pixels as PIL decodes the files."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    pixels = {}
    for split in ("train", "test"):
        for name in ("cat", "airplane"):
            (tmp_path / "jpg" / split / name).mkdir(parents=True)
            for index in range(2):
                array = torch.randint(0, 256, (4, 4, 3), dtype=torch.uint8, generator=generator)
                path = tmp_path / "jpg" / split / name / f"{index}.jpg"
                Image.fromarray(array.numpy()).save(path)
                with Image.open(path) as image:
                    pixels[split, name, index] = torch.from_numpy(np.array(image.convert("RGB")))
    script = _gpu_script()
    assert script.jpeg_folder(tmp_path / "jpg", tmp_path) == tmp_path / "jpg"
    script.write_airbench_data(tmp_path / "jpg", tmp_path / "cifar10")
    data = torch.load(tmp_path / "cifar10" / "train.pt")
    assert data["classes"] == ["airplane", "cat"] and data["labels"].tolist() == [0, 0, 1, 1]
    assert data["images"].dtype == torch.uint8 and data["images"].shape == (4, 4, 4, 3)
    assert torch.equal(data["images"][3], pixels["train", "cat", 1])
    with pytest.raises(SystemExit, match="expected train/ and test/ class folders"):
        script.jpeg_folder(tmp_path / "jpg" / "train", tmp_path)


def test_gpu_benchmark_reads_airbench_time_from_its_eval_row():
    """The table airbench94 prints: its last `eval` row's total_time_seconds."""
    printed = "\n".join([
        "|  run     |  epoch  |  train_loss  |  val_loss  |  total_time_seconds  |",
        "|       0  |      1  |      1.2345  |    1.1111  |              0.9000  |",
        "|          |   eval  |              |            |              3.8312  |",
    ])  # fmt: skip
    assert _gpu_script().airbench_eval_seconds(printed) == 3.8312
    assert _gpu_script().airbench_eval_seconds("no table") is None
