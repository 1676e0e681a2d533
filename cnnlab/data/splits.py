"""Seeded stratified splits and per-channel normalisation statistics of uint8 image tensors.

Both are pure functions of their inputs: the same labels and seed give the same split everywhere.
The grouped split keeps each group (a patient, a slide) whole on one side.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from cnnlab.errors import ConfigError, DataError

# Values counted at a time: torch.bincount costs ~15 ms a call beyond its 1.5 ns a value
# (measured), so chunks are large; when C > 1 a channel's chunk is copied (64 MB at most).
CHUNK_ELEMENTS = 1 << 26


def stratified_split(
    labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split sample indices into (train, val), taking about val_fraction of every class to val.

    Per class, floor(n_c * val_fraction + 0.5) samples go to val, clamped so that a class with at
    least two samples keeps at least one in each part; a class with one sample stays in train.
    Both index tensors are int64 and sorted.
    """
    _check_fraction(val_fraction)
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be a 1-D integer tensor, got dtype {labels.dtype} and shape "
            f"{tuple(labels.shape)}."
        )
    generator = torch.Generator().manual_seed(seed)
    # numpy for the index work: torch.unique and torch.nonzero on CPU take ~0.2 s and ~25 ms
    # per class on MNIST's 60,000 labels (measured), numpy's a millisecond; same indices.
    values = labels.cpu().numpy()
    in_val = np.zeros(len(values), dtype=bool)
    for label in np.unique(values):  # sorted
        members = np.flatnonzero(values == label)  # ascending
        count = len(members)
        num_val = math.floor(count * val_fraction + 0.5)
        if count < 2:
            num_val = 0
        elif val_fraction > 0:
            num_val = min(max(num_val, 1), count - 1)
        order = torch.randperm(count, generator=generator).numpy()
        in_val[members[order[:num_val]]] = True
    train_indices = torch.from_numpy(np.flatnonzero(~in_val).astype(np.int64))
    val_indices = torch.from_numpy(np.flatnonzero(in_val).astype(np.int64))
    return train_indices, val_indices


def stratified_group_split(
    labels: torch.Tensor, groups: list[str], fraction: float, seed: int, what: str = "split"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split sample indices into (kept, carved) with whole groups on each side and about
    `fraction` of every class's images carved.

    The engine is scikit-learn's StratifiedGroupKFold (shuffled, seeded) with K = round(1 / f)
    folds for f = min(fraction, 1 - fraction), at most one per group; one fold is carved (or,
    for fraction above 1/2, kept). GroupShuffleSplit would be simpler, but it draws a share of
    the groups, not of the images, and ignores the classes, so a class could vanish from the
    carved side; StratifiedGroupKFold assigns groups greedily to balance every class across the
    folds. The price: the carved share moves in steps of 1/K, and with few groups it is 1/groups.
    `what` names the split in the error for too few groups. Both index tensors are sorted int64.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    _check_fraction(fraction)
    if len(groups) != len(labels):
        raise ValueError(f"{len(groups)} group names for {len(labels)} labels.")
    everything = torch.arange(len(labels), dtype=torch.int64)
    if fraction == 0 or len(labels) == 0:
        return everything, everything[:0]
    names, codes = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    if len(names) < 2:
        raise DataError(
            f"The {what} needs at least 2 groups under --group-by, but its images form "
            f"{len(names)} ({', '.join(names[:3])}). Check the pattern (it should name the "
            "patient or slide, not the class), give more groups, or set the fraction to 0."
        )
    smaller = min(fraction, 1 - fraction)
    num_folds = int(min(len(names), max(2, round(1 / smaller))))
    folds = StratifiedGroupKFold(num_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "the least populated class has only N members"
        warnings.simplefilter("ignore", UserWarning)
        rest, fold = next(folds.split(np.zeros(len(labels)), labels.cpu().numpy(), codes))
    carved = fold if fraction <= 0.5 else rest
    share = len(carved) / len(labels)
    if num_folds < round(1 / smaller) and abs(share - fraction) > fraction / 2:
        warnings.warn(  # too few groups for the share asked: say what it is
            f"The {what} has only {len(names)} groups to draw from, so it takes "
            f"{share:.0%} of the images instead of {fraction:.0%}. Give more "
            "groups (a finer --group-by) for a share closer to the one asked.",
            stacklevel=2,
        )
    in_carved = torch.zeros(len(labels), dtype=torch.bool)
    in_carved[torch.from_numpy(np.asarray(carved, dtype=np.int64))] = True
    return everything[~in_carved], everything[in_carved]


def _check_fraction(val_fraction: float) -> None:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, int | float):
        raise ConfigError(
            f"The validation fraction must be a number, got {val_fraction!r}. "
            "Use a value such as 0.1."
        )
    if not 0 <= val_fraction < 1:
        raise ConfigError(
            f"The validation fraction must be at least 0 and below 1, got {val_fraction}. "
            "Use a value such as 0.1 (10% of each class for validation), or 0 for none."
        )


def channel_mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and population standard deviation of uint8 [N, C, H, W] images on [0, 1].

    Exact: a 256-bin histogram per channel gives the integer sums of x and x^2 (a chunk of images
    at a time, so memory stays small and the result does not depend on the chunking). Counting
    bytes is faster than summing an int64 copy: 0.07 s against 0.45 s for MNIST's 47 million
    values (measured on two cores).
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.numel() == 0:
        raise ValueError(
            f"channel_mean_std expects a non-empty uint8 tensor [N, C, H, W], got dtype "
            f"{images.dtype} and shape {tuple(images.shape)}."
        )
    num_channels = images.shape[1]
    histograms = torch.zeros((num_channels, 256), dtype=torch.int64)
    images_per_chunk = max(1, CHUNK_ELEMENTS // images[0, 0].numel())
    for chunk in images.split(images_per_chunk):
        for channel in range(num_channels):
            values = chunk[:, channel].reshape(-1)  # a view when C == 1
            histograms[channel] += torch.bincount(values, minlength=256)
    levels = list(range(256))
    count = images.numel() // num_channels
    means, stds = [], []
    for histogram in histograms.tolist():
        total = sum(n * v for n, v in zip(histogram, levels, strict=True))
        square_total = sum(n * v * v for n, v in zip(histogram, levels, strict=True))
        # Variance with exact integers: (count * sum(x^2) - sum(x)^2) / count^2, then to [0, 1].
        variance = (count * square_total - total * total) / (count * count * 255**2)
        means.append(total / (count * 255))
        stds.append(math.sqrt(variance))
    return means, stds
