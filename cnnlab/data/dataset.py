"""A data set decoded into uint8 [N, C, H, W] tensors: what every source (sources.py for the named
ones, folder.py for `folder:PATH`) returns and what training reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class ImageDataset:
    """A data set decoded into tensors, with its class names and where it was found."""

    name: str
    class_names: list[str]
    train_images: torch.Tensor  # uint8 [N, C, H, W]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor  # uint8 [M, C, H, W]
    test_labels: torch.Tensor  # int64 [M]
    location: str  # a folder path, or "scikit-learn (bundled)"
    # A validation set of its own (a folder's val/), used instead of one carved from train.
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    # folder: sources only: paths relative to `location` per part (train, val, test), the files
    # and folders left out with a reason each, and how the images were preprocessed.
    files: dict[str, list[str]] | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    preprocess: dict[str, Any] | None = None

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.train_images.shape[2], self.train_images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
