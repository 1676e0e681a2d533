"""Batched augmentation, its per-batch seeding, the balanced sampler, and the epoch metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.data.augment import (
    Augmentation,
    _rotate_and_zoom,
    augment_batch,
    augmented_batches,
    default_augmentation,
    resolve_augmentation,
)
from cnnlab.data.loader import Normalizer, balanced_epoch_order
from cnnlab.runtime.predict import StepSettings
from cnnlab.training.loop import evaluate


def images(batch=6, bands=3, height=8, width=10, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (batch, bands, height, width), generator=generator).to(torch.uint8)


def run(x, seed=0, fill=(0.0,), **strengths) -> torch.Tensor:
    return augment_batch(x, Augmentation(**strengths), torch.Generator().manual_seed(seed), fill)


def test_nothing_enabled_is_the_identity_in_float():
    x = images()
    out = run(x)
    assert out.dtype == torch.float32 and torch.equal(out, x.float())
    assert not Augmentation().enabled and Augmentation(noise=0.1).enabled


def test_flips_are_exact_and_per_image():
    x = images(batch=64)
    assert torch.equal(run(x, hflip=1.0), x.flip(3).float())
    assert torch.equal(run(x, vflip=1.0), x.flip(2).float())
    half = run(x, hflip=0.5)
    flipped = [torch.equal(half[i], x[i].flip(2).float()) for i in range(64)]
    kept = [torch.equal(half[i], x[i].float()) for i in range(64)]
    assert all(a != b for a, b in zip(flipped, kept, strict=True)) and 15 < sum(flipped) < 49


def test_crop_padding_shifts_whole_pixels_and_shows_the_fill():
    x = images(batch=16)
    out = run(x, crop_padding=2, pad_fill="mean", fill=(0.5, 0.5, 0.5))
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2), value=127.5)
    for i in range(16):
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 10])
        ]
        assert matches, f"image {i} is not a crop of the padded image"


def test_rotation_by_90_degrees_is_rot90_and_zoom_one_is_identity():
    x = images(batch=2, height=6, width=6).float()
    fill = torch.zeros(1, 3, 1, 1)
    turned = _rotate_and_zoom(x, torch.full((2,), math.pi / 2), torch.ones(2), fill)
    expected = torch.rot90(x, k=1, dims=(2, 3))  # counter-clockwise on screen
    expected_other = torch.rot90(x, k=-1, dims=(2, 3))
    assert torch.allclose(turned, expected, atol=1e-3) or torch.allclose(
        turned, expected_other, atol=1e-3
    )
    same = _rotate_and_zoom(x, torch.zeros(2), torch.ones(2), fill)
    assert torch.allclose(same, x, atol=1e-3)
    zoomed_out = _rotate_and_zoom(x, torch.zeros(2), torch.full((2,), 0.5), fill)
    assert zoomed_out[:, :, 0].abs().max() == 0  # the border shows the fill


def test_photometric_ranges_noise_and_erasing():
    x = torch.full((200, 1, 16, 16), 100, dtype=torch.uint8)
    bright = run(x, brightness=0.3)
    factors = bright[:, 0, 0, 0] / 100
    assert factors.min() >= 0.7 - 1e-6 and factors.max() <= 1.3 + 1e-6 and factors.std() > 0.1
    assert torch.equal(run(x, contrast=0.5), x.float())  # a flat image has no contrast to change
    noisy = run(x, noise=0.1)
    assert abs((noisy - 100).std().item() - 25.5) < 1.0 and abs(noisy.mean().item() - 100) < 0.5
    erased = run(x, erase=1.0, fill=(0.2,))
    fraction = (erased == 51).float().mean(dim=(1, 2, 3))
    assert fraction.min() > 0 and fraction.max() <= 0.3 and (erased[erased != 51] == 100).all()
    assert run(x, erase=0.0, noise=0.0).eq(100).all()


def test_randomness_comes_from_seed_epoch_and_batch_only():
    x, labels = images(batch=4), torch.arange(4)
    strong = Augmentation(hflip=0.5, crop_padding=2, rotate=20, noise=0.05, erase=0.5)
    batches = [(x, labels)] * 3
    torch.manual_seed(1)
    first = [b for b, _ in augmented_batches(batches, strong, (0.5,), seed=3, epoch=2)]
    torch.manual_seed(999)  # the global RNG plays no part
    resumed = [b for b, _ in augmented_batches(batches[1:], strong, (0.5,), 3, 2, start_batch=1)]
    assert torch.equal(first[1], resumed[0]) and torch.equal(first[2], resumed[1])
    assert not torch.equal(first[0], first[1])
    other_epoch = next(augmented_batches(batches, strong, (0.5,), seed=3, epoch=3))[0]
    assert not torch.equal(first[0], other_epoch)


def test_defaults_per_data_set():
    for digits in ("digits", "mnist"):
        preset = default_augmentation(digits, (28, 28))
        assert preset.hflip == 0 and preset.vflip == 0 and preset.rotate <= 15
    cifar = default_augmentation("cifar10", (32, 32))
    assert cifar.hflip == 0.5 and cifar.crop_padding == 4
    assert default_augmentation("folder:/x", (64, 64)).crop_padding == 8
    chosen = resolve_augmentation({"hflip": 0.0, "rotate": 10}, "cifar10", (32, 32), True)
    assert (chosen.hflip, chosen.crop_padding, chosen.rotate) == (0.0, 4, 10)
    assert not resolve_augmentation({}, "cifar10", (32, 32), use_defaults=False).enabled


def test_balanced_order_draws_classes_equally_and_is_seeded():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    order = balanced_epoch_order(labels, seed=0, epoch=0)
    counts = torch.bincount(labels[order], minlength=3).tolist()
    assert len(order) == 1000 and all(abs(c - 333) < 60 for c in counts)
    assert torch.equal(order, balanced_epoch_order(labels, seed=0, epoch=0))
    assert not torch.equal(order, balanced_epoch_order(labels, seed=0, epoch=1))


def test_evaluate_reports_balanced_accuracy_and_kappa_like_the_evaluation_module():
    # cnnlab.metrics is itself tested against scikit-learn (tests/test_evaluation.py).
    from cnnlab.metrics import classification_metrics

    rng = np.random.default_rng(0)
    targets = torch.from_numpy(rng.choice(3, 200, p=[0.7, 0.2, 0.1]))
    logits = torch.from_numpy(rng.normal(size=(200, 3))).float()
    logits[torch.arange(200)[:150], targets[:150]] += 3  # mostly right

    class Fixed(nn.Module):
        def forward(self, x):
            return logits[x[:, 0, 0, 0].round().long()]

    index_images = torch.arange(200).view(200, 1, 1, 1).float()
    settings = StepSettings(Normalizer((0.0,), (1 / 255,)))
    metrics = evaluate(Fixed(), index_images, targets, settings, batch_size=64)
    expected = classification_metrics(logits, targets, ["a", "b", "c"], top_k=(1,))
    for key in ("accuracy", "balanced_accuracy", "cohen_kappa"):
        assert metrics[key] == pytest.approx(expected[key]), key
    assert 0.3 < metrics["cohen_kappa"] < metrics["accuracy"] < 1


def test_augment_command_writes_a_labelled_figure(tmp_path, capsys):
    out = tmp_path / "grid.png"
    code = main(["augment", "--data", "digits", "--rows", "3", "--variants", "2",
                 "--rotate", "20", "--out", str(out)])  # fmt: skip
    assert code == 0 and "rotate=20.0, pad_fill=zero" in capsys.readouterr().out
    from PIL import Image

    with Image.open(out) as grid:  # a figure: 1.5 in of row labels and 1.1 in per tile at 100 dpi
        assert grid.size == (150 + 3 * 110, 70 + 3 * 110) and grid.format == "PNG"
