"""The fixed cost of a training process, cut without changing a result: normalisation statistics
from per-channel histograms, exact copies across splits found by 64-bit keys whose pixels are
then compared, stratified splits indexed in numpy, and the digits read without importing
scikit-learn. Oracles: numpy in float64, scikit-learn's own load_digits, a brute-force pixel
comparison, and the torch implementation the split had before."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from cnnlab.data import duplicates
from cnnlab.data.duplicates import find_duplicates, pixel_keys, twins_in
from cnnlab.data.splits import channel_mean_std, stratified_split


def _uint8(shape: tuple, seed: int, high: int = 256) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, shape, generator=generator).to(torch.uint8)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (300, 1, 28, 28), (64, 3, 7, 9), (5, 4, 2, 3)])
def test_channel_mean_std_equals_float64_numpy(shape):
    images = _uint8(shape, seed=sum(shape))
    images[0] = 255  # both ends of the histogram are used
    if shape[0] > 1:
        images[1] = 0
    values = images.numpy().astype(np.float64) / 255
    mean, std = channel_mean_std(images)
    np.testing.assert_allclose(mean, values.mean(axis=(0, 2, 3)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, values.std(axis=(0, 2, 3)), rtol=0, atol=1e-12)


def test_channel_mean_std_of_a_constant_image_is_exact():
    images = torch.full((10, 2, 3, 3), 51, dtype=torch.uint8)  # 51 / 255 = 0.2
    assert channel_mean_std(images) == ([51 / 255] * 2, [0.0, 0.0])
    strided = _uint8((20, 6, 4, 4), seed=3)[:, ::2]  # a non-contiguous view of 3 channels
    values = strided.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(channel_mean_std(strided)[1], values.std(axis=(0, 2, 3)), atol=1e-12)


def _old_stratified_split(labels: torch.Tensor, fraction: float, seed: int):
    """The torch version this split replaced (torch.unique and torch.nonzero per class)."""
    generator = torch.Generator().manual_seed(seed)
    val_parts = []
    for label in torch.unique(labels, sorted=True):
        members = torch.nonzero(labels == label).flatten()
        count = len(members)
        num_val = math.floor(count * fraction + 0.5)
        if count < 2:
            num_val = 0
        elif fraction > 0:
            num_val = min(max(num_val, 1), count - 1)
        val_parts.append(members[torch.randperm(count, generator=generator)[:num_val]])
    in_val = torch.zeros(len(labels), dtype=torch.bool)
    if val_parts:
        in_val[torch.cat(val_parts)] = True
    return torch.nonzero(~in_val).flatten(), torch.nonzero(in_val).flatten()


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9])
def test_stratified_split_picks_the_same_indices_as_before(fraction):
    generator = torch.Generator().manual_seed(5)
    cases = [
        torch.tensor([3, 3, 1, 5, 5, 5, 0]),
        torch.randint(-2, 40, (1000,), generator=generator),
        torch.randint(0, 3, (50,), generator=generator).to(torch.int32),
        torch.zeros(0, dtype=torch.int64),
    ]
    for labels in cases:
        for seed in (0, 7):
            new = stratified_split(labels, fraction, seed)
            old = _old_stratified_split(labels, fraction, seed)
            for ours, theirs in zip(new, old, strict=True):
                assert ours.dtype == torch.int64
                assert torch.equal(ours, theirs), (labels, fraction, seed)


def _brute_twins(first: torch.Tensor, second: torch.Tensor) -> list[int]:
    """For each image of second, the lowest index of an equal image of first, or -1."""
    flat_first, flat_second = first.flatten(1).numpy(), second.flatten(1).numpy()
    equal = (flat_second[:, None, :] == flat_first[None, :, :]).all(axis=2)  # [N2, N1]
    return [int(row.argmax()) if row.any() else -1 for row in equal]


@pytest.mark.parametrize("shape", [(8, 8), (28, 28), (5, 3)])  # 5x3 pads its 15 bytes
def test_planted_copies_are_all_found_and_nothing_else(shape):
    first = _uint8((400, 1, *shape), seed=1, high=3)  # few levels: chance copies too
    second = _uint8((150, 1, *shape), seed=2, high=3)
    second[10] = first[7]
    second[11] = first[7]
    first[300] = first[7]  # a later copy inside first: the lowest index is named
    second[149] = first[399]
    twins = twins_in(first, second, pixel_keys(first), pixel_keys(second))
    expected = _brute_twins(first, second)
    assert twins.tolist() == expected
    assert expected[10] == expected[11] == 7 and expected[149] <= 399


def test_shared_keys_never_pass_for_copies(monkeypatch):
    first, second = _uint8((50, 3, 4, 4), seed=3), _uint8((30, 3, 4, 4), seed=4)
    second[5] = first[20]
    same_key = np.zeros  # every image gets key 0: the pixels alone must decide
    monkeypatch.setattr(duplicates, "pixel_keys", lambda images: same_key(len(images), np.uint64))
    ids = {name: [f"{name}{i}" for i in range(n)] for name, n in (("train", 50), ("test", 30))}
    report = find_duplicates({"train": (first, ids["train"]), "test": (second, ids["test"])})
    assert [(p["train"], p["test"], p["kind"]) for p in report.pairs] == [
        ("train20", "test5", "exact")
    ]


def test_pixel_keys_are_equal_for_equal_images_and_spread_otherwise():
    images = _uint8((2000, 3, 9, 9), seed=6)
    images[1999] = images[0]
    keys = pixel_keys(images)
    assert keys.dtype == np.uint64 and keys[1999] == keys[0]
    assert len(np.unique(keys)) == 1999
    assert np.array_equal(pixel_keys(images[:100]), keys[:100])  # per image, not per batch


def test_digits_are_read_from_scikit_learns_file_as_load_digits_reads_them():
    """(test_training_no_longer_imports_torch_dynamo checks that scikit-learn is not imported.)"""
    from sklearn.datasets import load_digits

    from cnnlab.data.sources import _digits_arrays

    pixels, targets = _digits_arrays()
    bunch = load_digits()
    assert pixels.dtype == bunch.data.dtype and np.array_equal(pixels, bunch.data)
    assert np.array_equal(targets, bunch.target)


def test_an_empty_split_has_no_keys_and_no_twins():
    empty, images = torch.zeros((0, 3, 6, 6), dtype=torch.uint8), _uint8((4, 3, 6, 6), seed=8)
    assert pixel_keys(empty).shape == (0,)
    assert twins_in(images, empty, pixel_keys(images), pixel_keys(empty)).shape == (0,)
    assert twins_in(empty, images, pixel_keys(empty), pixel_keys(images)).tolist() == [-1] * 4


# The optimisers without torch._dynamo: torch.optim's own updates and state, oracle torch.optim.


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 3),
    )


def _optimizer(kind: str, model: torch.nn.Module, eager: bool) -> torch.optim.Optimizer:
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.optim import build_optimizer, parameter_groups

    if eager:  # what training builds
        return build_optimizer(TrainConfig(optimizer=kind, weight_decay=5e-4), model)
    groups = parameter_groups(model, 5e-4)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.05, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=0.002, betas=(0.9, 0.999))


def _steps(model, optimizer, scheduler, count: int, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        images = torch.randn((16, 1, 8, 8), generator=generator)
        labels = torch.randint(0, 3, (16,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_the_optimisers_update_bit_for_bit_as_torch_optim(kind, schedule):
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.optim import build_scheduler

    config = TrainConfig(optimizer=kind, schedule=schedule, epochs=2)
    results = []
    for eager in (True, False):
        model = _net()
        optimizer = _optimizer(kind, model, eager)
        _steps(model, optimizer, build_scheduler(config, optimizer, steps_per_epoch=4), 8)
        results.append((model.state_dict(), optimizer))
    (ours, our_optimizer), (theirs, their_optimizer) = results
    assert type(our_optimizer).__name__.startswith("Eager")
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor), name
    assert str(our_optimizer.state_dict()) == str(their_optimizer.state_dict())


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("saved_by_torch", [True, False])
def test_optimizer_state_moves_both_ways_between_torch_optim_and_ours(kind, saved_by_torch):
    """A checkpoint of either kind resumes in the other, and the run continues as if unbroken."""
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.optim import build_scheduler

    config = TrainConfig(optimizer=kind, schedule="cosine", epochs=2)
    unbroken = _net()
    optimizer = _optimizer(kind, unbroken, eager=True)
    scheduler = build_scheduler(config, optimizer, steps_per_epoch=4)
    _steps(unbroken, optimizer, scheduler, 4)
    _steps(unbroken, optimizer, scheduler, 4, seed=2)

    first = _net()
    optimizer = _optimizer(kind, first, eager=not saved_by_torch)
    scheduler = build_scheduler(config, optimizer, steps_per_epoch=4)
    _steps(first, optimizer, scheduler, 4)
    saved = (first.state_dict(), optimizer.state_dict(), scheduler.state_dict())
    resumed = _net()
    resumed.load_state_dict(saved[0])
    optimizer = _optimizer(kind, resumed, eager=saved_by_torch)
    optimizer.load_state_dict(saved[1])
    scheduler = build_scheduler(config, optimizer, steps_per_epoch=4)
    scheduler.load_state_dict(saved[2])
    _steps(resumed, optimizer, scheduler, 4, seed=2)
    for name, tensor in unbroken.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name


def test_the_step_hooks_run_once_a_step_and_a_closure_is_returned():
    model = _net()
    optimizer = _optimizer("sgd", model, eager=True)
    calls = []
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(lambda *a: calls.append(1))
    try:
        own = optimizer.register_step_pre_hook(lambda *a: calls.append(0))
        images = torch.randn(4, 1, 8, 8)

        def closure():
            optimizer.zero_grad()
            loss = model(images).sum()
            loss.backward()
            return loss

        assert torch.is_tensor(optimizer.step(closure))
        optimizer.step(closure)
        own.remove()
    finally:
        handle.remove()
    assert calls == [0, 1, 0, 1]
    assert torch.is_grad_enabled()


def test_training_no_longer_imports_torch_dynamo(tmp_path):
    """torch.optim's wrappers imported torch._dynamo (1.4-2.0 s of a run's start): a whole
    digits run and an optimiser's state round trip leave it (and scikit-learn) unimported."""
    code = f"""
import sys
from cnnlab.training.config import TrainConfig
from cnnlab.training.run import train
config = TrainConfig(data="digits", model="small-cnn", model_options={{"widths": [8], "depth": 1}},
                     epochs=1, batch_size=256, threads=1, download=False)
train(config, out={str(tmp_path / "run")!r}, show_progress=False)
import torch
from cnnlab.training.optim import build_optimizer
optimizer = build_optimizer(config, torch.nn.Linear(2, 2))
optimizer.load_state_dict(optimizer.state_dict())
print(sorted(m for m in ("torch._dynamo", "sympy", "sklearn", "scipy") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_fused_kernels_are_chosen_on_cuda_only():
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.optim import build_optimizer, fused_on

    assert fused_on(torch.device("cuda", 0)) is True
    assert fused_on(torch.device("cpu")) is None  # torch's default: bit-equal to torch.optim
    for name in ("sgd", "adamw"):
        optimizer = build_optimizer(TrainConfig(optimizer=name), torch.nn.Linear(3, 2))
        assert all(group["fused"] is None for group in optimizer.param_groups)


def test_a_training_start_selects_each_split_once(tmp_path, monkeypatch):
    """The duplicate check and training share one selection of the train and val images."""
    from cnnlab.run import splits
    from cnnlab.training import session
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.run import train

    calls = []
    real = splits.select_split
    spy = lambda d, r, split: calls.append(split) or real(d, r, split)  # noqa: E731
    monkeypatch.setattr(session, "select_split", spy)  # training's selection
    monkeypatch.setattr(splits, "select_split", spy)  # the duplicate check's
    config = TrainConfig(
        data="digits", model="small-cnn", model_options={"widths": [4], "depth": 1}, epochs=1,
        batch_size=64, val_fraction=0.2, download=False, threads=1, check_duplicates=True,
    )  # fmt: skip
    threads = torch.get_num_threads()
    try:
        train(config, tmp_path / "run", show_progress=False)
    finally:
        torch.set_num_threads(threads)
    assert sorted(calls) == ["test", "train", "val"]
    assert (tmp_path / "run" / "duplicates.json").is_file()
