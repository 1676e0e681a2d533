"""Recipes: sets of training settings that reach good accuracy fast on a data set without tuning.

A recipe is a set of `cnnlab train` settings. With `--recipe auto` (the default of the command line
and of `TrainConfig.from_dict`; the plain constructor applies none) a named data set gets the
recipe its entry in cnnlab.data.DATASETS names; a folder gets `folder` (the plain defaults with a
cosine schedule) unless one is named, e.g. `--recipe cifar10` for a folder copy of CIFAR-10.
Precedence, lowest first: TrainConfig's defaults, the recipe, a `--config` TOML file, flags on the
command line. The resolved name is recorded in config.json, so `--resume` and a rerun use the same
settings.

Every recipe was chosen on the validation split (never the test split) and measured end to end
with `benchmarks/speed.py`; the numbers in `measured` are in BENCHMARKS.md with the commands.
Candidates were compared by their last epoch's validation accuracy, so the MNIST and
Fashion-MNIST recipes keep the last epoch's weights (`keep = "last"`) rather than those of the
best validation epoch, a maximum over noisy epochs of a schedule that anneals to zero
(BENCHMARKS.md, "Levers", also gives the test accuracy of both, seen when this was decided).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    settings: dict[str, Any] = field(default_factory=dict)
    measured: str = ""  # what it reached, where (a line of BENCHMARKS.md)


# A conv -> max-pool -> BN -> ReLU pyramid (16-32-64 maps, flattened 3x3x64 into the classifier)
# for 28x28 grey images, ~1.9 M multiply-accumulates per image. Pooling before BatchNorm and ReLU
# (as airbench does) gives them a quarter of the elements: 1.5x faster training here than
# conv -> BN -> ReLU -> pool, at the same validation accuracy (BENCHMARKS.md, "Speed").
MNIST_NET = (
    "[conv16 -> maxpool2 -> bn -> relu] -> [conv32 -> maxpool2 -> bn -> relu] -> "
    "conv64 -> maxpool2 -> bn -> relu -> flatten -> fc"
)

# The same with a second 3x3 conv at 7x7 and no last pooling: the classifier reads all 7x7x64
# maps (~3.7 M multiply-accumulates; +0.13-0.40 points of validation accuracy over pooling them to
# 3x3 first, at the same images/s: BENCHMARKS.md, "Levers").
FASHION_NET = MNIST_NET.replace(
    "conv64 -> maxpool2 -> bn -> relu", "conv64 -> bn -> relu -> conv64 -> bn -> relu"
)

# After airbench (Keller Jordan, 2024: a 2x2 patch stem, then blocks of conv -> pool -> BN -> GELU
# -> conv -> BN -> GELU, global max pooling), narrowed to widths 32-64-128 so that 2 CPU cores
# train it at ~900 images/s in fp32 (Zen 3) and ~3,000-3,800 in bf16 (Zen 5); ~19.9 M
# multiply-accumulates per 32x32 image. As in airbench, no BatchNorm after the (whitened) stem:
# its backward over 24 channels at 31x31 was 8% of a step; without it steps run 1.18x faster at
# the same validation accuracy (BENCHMARKS.md, "Levers").
CIFAR_NET = (
    "conv24x2p0 -> gelu -> "
    + " -> ".join(
        f"conv{w} -> maxpool2 -> bn -> gelu -> conv{w} -> bn -> gelu" for w in (32, 64, 128)
    )
    + " -> gmp -> fc"
)

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "none",
            "no recipe: TrainConfig's plain defaults (small-cnn, 10 epochs, SGD one-cycle)",
        ),
        Recipe(
            "folder",
            "folders: the plain defaults with a cosine schedule (SGD from 0.05 down to 0, no "
            "warm-up), whose validation accuracy swings less between epochs than one-cycle's",
            {"schedule": "cosine"},
            "3 seeds on a 3-class imbalanced CIFAR-10 JPEG folder: mean epoch-to-epoch change of "
            "validation accuracy 0.022 against one-cycle's 0.045, largest drop 0.021 against "
            "0.100, final 0.740 against 0.727",
        ),
        Recipe(
            "mnist",
            "a 1.9 M-MAC conv-pool-BN pyramid, 8 epochs of batch 128, SGD one-cycle to 0.1, "
            "2-pixel shifts, the last epoch's weights",
            {
                "model": MNIST_NET,
                "epochs": 8,
                "batch_size": 128,
                "learning_rate": 0.1,
                "keep": "last",
            },
            "99.50% test accuracy in 27 s from the command's start (median of 3 seeds, 2 Zen 5 "
            "cores, bf16; 0.65-0.89 T of the PyTorch MNIST example's first epoch in the same run)",
        ),
        Recipe(
            "fashion-mnist",
            "the MNIST network with a second conv64 and no last pooling, 20 epochs of batch 256, "
            "SGD one-cycle to 0.24, weight decay 2.4e-5, label smoothing 0.061 (`cnnlab tune`'s "
            "best), flips and 2-pixel shifts, flip test-time augmentation, the last epoch's "
            "weights",
            {
                "model": FASHION_NET,
                "epochs": 20,
                "batch_size": 256,
                "learning_rate": 0.24,
                "weight_decay": 2.4e-5,
                "label_smoothing": 0.061,
                "augment": True,
                "hflip": 0.5,
                "crop_padding": 2,
                "tta": "flip",
                "keep": "last",
            },
            "93.08% test accuracy in 85 s from the command's start (median of 3 seeds, 2 Zen 5 "
            "cores, bf16; 2.60 T)",
        ),
        Recipe(
            "cifar10",
            "a narrow airbench-style network with a whitened stem, 31 epochs of batch 128 on every "
            "training image (no validation split: --val-fraction brings one back), SGD one-cycle "
            "to 0.07, label smoothing 0.2, flips and 2-pixel shifts, flip-shift test-time "
            "augmentation",
            {
                "model": CIFAR_NET,
                "epochs": 31,
                "whiten_stem": True,
                "val_fraction": 0.0,
                "batch_size": 128,
                "learning_rate": 0.07,
                "label_smoothing": 0.2,
                "augment": True,
                "hflip": 0.5,
                "crop_padding": 2,
                "tta": "flip-shift",
            },
            "88.47% test accuracy in 433 s from the command's start on the JPEG folder copy, "
            "decoded images cached (median of 3 seeds, 2 Zen 5 cores, bf16; 12.5 T, where T "
            "was 34.5 s)",
        ),
    )
}


def recipe_names() -> tuple[str, ...]:
    return ("auto", *RECIPES)
