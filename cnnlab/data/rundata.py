"""`dataset.json`: what a run was trained on, so later commands rebuild the exact same splits.

It records the source, class names, image size and bands, normalisation statistics, and split
membership as indices into the source's own train/test sets, plus a checksum of each source split's
labels so that evaluating against different data is caught instead of silently mis-scored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.data.sources import ImageDataset, load_dataset
from cnnlab.data.splits import channel_mean_std, stratified_split
from cnnlab.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass
class SplitData:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    sample_ids: list[str]  # "<source split>:<index>"


def labels_checksum(labels: torch.Tensor) -> str:
    return hashlib.sha256(labels.to(torch.int64).numpy().tobytes()).hexdigest()


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels, minlength=num_classes).tolist()


def make_record(dataset: ImageDataset, val_fraction: float, seed: int) -> dict[str, Any]:
    """Split train into train/val (stratified, seeded), compute statistics on the train part."""
    if val_fraction > 0:
        train_idx, val_idx = stratified_split(dataset.train_labels, val_fraction, seed)
    else:
        train_idx = torch.arange(len(dataset.train_labels))
        val_idx = torch.empty(0, dtype=torch.int64)
    mean, std = channel_mean_std(dataset.train_images.index_select(0, train_idx))
    k = dataset.num_classes
    return {
        "source": dataset.name,
        "location": dataset.location,
        "class_names": list(dataset.class_names),
        "num_classes": k,
        "channels": dataset.channels,
        "image_size": list(dataset.image_size),
        "normalization": {"mean": mean, "std": std, "applied_as": "(x / 255 - mean) / std"},
        "preprocess": {"resize": "bilinear", "keep_aspect": False},
        "split_seed": seed,
        "val_fraction": val_fraction,
        "source_checksums": {
            "train": labels_checksum(dataset.train_labels),
            "test": labels_checksum(dataset.test_labels),
        },
        "splits": {
            "train": {"from": "train", "indices": train_idx.tolist()},
            "val": {"from": "train", "indices": val_idx.tolist()},
            "test": {"from": "test", "indices": list(range(len(dataset.test_labels)))},
        },
        "class_counts": {
            "train": class_counts(dataset.train_labels[train_idx], k),
            "val": class_counts(dataset.train_labels[val_idx], k),
            "test": class_counts(dataset.test_labels, k),
        },
    }


def select_split(dataset: ImageDataset, record: dict[str, Any], split: str) -> SplitData:
    """The images of `split` as recorded, after checking the data is the one trained on."""
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    entry = record["splits"][split]
    source = entry["from"]
    images = dataset.train_images if source == "train" else dataset.test_images
    labels = dataset.train_labels if source == "train" else dataset.test_labels
    expected = record.get("source_checksums", {}).get(source)
    if expected is not None and labels_checksum(labels) != expected:
        raise DataError(
            f"The {source} labels of data set {dataset.name!r} found at {dataset.location} differ "
            "from those this run was trained on, so split indices would point at other images. "
            "Point --data-dir at the copy used for training."
        )
    if list(dataset.class_names) != list(record["class_names"]):
        raise DataError(
            f"Data set {dataset.name!r} has classes {dataset.class_names}, but the run was trained "
            f"on {record['class_names']}."
        )
    indices = torch.tensor(entry["indices"], dtype=torch.int64)
    if len(indices) and int(indices.max()) >= len(labels):
        raise DataError(f"dataset.json's {split} indices run past the {source} set's size.")
    return SplitData(
        images=images.index_select(0, indices),
        labels=labels.index_select(0, indices),
        sample_ids=[f"{source}:{i}" for i in entry["indices"]],
    )


def load_run_split(
    record: dict[str, Any], split: str, data_dir: str | None = None, data: str | None = None
) -> SplitData:
    """Reload the run's data set (or `data`, a source of the same images); select a split."""
    dataset = load_dataset(data or record["source"], data_dir=data_dir)
    return select_split(dataset, record, split)


def describe_counts(record: dict[str, Any]) -> str:
    """A short table of class counts per split, shown before training."""
    names = record["class_names"]
    counts = record["class_counts"]
    width = max(8, *(len(n) for n in names))
    lines = [f"{'class':<{width}} " + " ".join(f"{s:>7}" for s in SPLITS)]
    for index, name in enumerate(names):
        lines.append(f"{name:<{width}} " + " ".join(f"{counts[s][index]:>7}" for s in SPLITS))
    lines.append(f"{'total':<{width}} " + " ".join(f"{sum(counts[s]):>7}" for s in SPLITS))
    return "\n".join(lines)
