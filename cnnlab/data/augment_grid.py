"""A picture of what the network sees: a few training images per class (rows), each followed by
augmented versions drawn exactly as training draws them (columns). `cnnlab augment` writes it;
the report shows it for a run's recorded augmentation."""

from __future__ import annotations

import torch

from cnnlab.data.augment import augment_batch, batch_seed
from cnnlab.specs.augmentation import Augmentation

GAP = 2  # pixels between tiles
MIN_TILE = 64  # small images are enlarged (nearest neighbour) to at least this many pixels


def pick_rows(labels: torch.Tensor, count: int) -> torch.Tensor:
    """The first image of each class in turn, so every class shows up before any repeats."""
    picked: list[int] = []
    members = [torch.nonzero(labels == c).flatten().tolist() for c in labels.unique().tolist()]
    depth = 0
    while len(picked) < min(count, len(labels)):
        for indices in members:
            if depth < len(indices) and len(picked) < count:
                picked.append(indices[depth])
        depth += 1
    return torch.tensor(picked, dtype=torch.int64)


def augmentation_grid(
    images: torch.Tensor,
    augmentation: Augmentation,
    fill: tuple[float, ...],
    seed: int = 0,
    variants: int = 7,
) -> torch.Tensor:
    """uint8 [R, C, H, W] images -> one uint8 [C, height, width] grid: each image, then
    `variants` augmented versions of it (the draws of epoch 0's first batches for `seed`)."""
    columns = [images.float()]
    for variant in range(variants):
        generator = torch.Generator().manual_seed(batch_seed(seed, 0, variant))
        columns.append(augment_batch(images, augmentation, generator, fill))
    return tile_grid(torch.stack(columns, dim=1).round().clamp(0, 255).to(torch.uint8))


def tile_grid(tiles: torch.Tensor) -> torch.Tensor:
    """uint8 [R, K, C, H, W] -> one uint8 [C, height, width] image with gaps between tiles."""
    rows, columns, bands, height, width = tiles.shape
    factor = max(1, -(-MIN_TILE // max(height, width)))
    tiles = tiles.repeat_interleave(factor, dim=3).repeat_interleave(factor, dim=4)
    height, width = height * factor, width * factor
    grid = torch.full(
        (bands, rows * (height + GAP) + GAP, columns * (width + GAP) + GAP), 255, dtype=torch.uint8
    )
    for r in range(rows):
        for k in range(columns):
            top, left = GAP + r * (height + GAP), GAP + k * (width + GAP)
            grid[:, top : top + height, left : left + width] = tiles[r, k]
    return grid
