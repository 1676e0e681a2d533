"""A picture of what the network sees: a few training images per class (rows), each followed by
augmented versions drawn exactly as training draws them (columns). `cnnlab augment` writes it as a
labelled figure; the report shows the plain grid for a run's recorded augmentation.

Augmentation works on pixels before normalisation, so the tiles are the network's input
de-normalised with the training mean and standard deviation: the colours of the originals."""

from __future__ import annotations

import io
import os
import textwrap
from typing import Any

import torch

from cnnlab.data.augment import augment_batch, batch_seed
from cnnlab.fileio import atomic_write_bytes
from cnnlab.specs.augmentation import Augmentation

GAP = 2  # pixels between tiles
MIN_TILE = 64  # small images are enlarged (nearest neighbour) to at least this many pixels
TILE_INCHES = 1.1  # a tile of the labelled figure
LABEL_CHARS = 22  # a row label's class name is cut to this many characters


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


def augmentation_tiles(
    images: torch.Tensor,
    augmentation: Augmentation,
    mean: tuple[float, ...],
    std: tuple[float, ...] | None = None,
    seed: int = 0,
    variants: int = 7,
) -> torch.Tensor:
    """uint8 [R, C, H, W] images -> uint8 [R, 1 + variants, C, H, W]: each image, then `variants`
    augmented versions of it (the draws of epoch 0's first batches for `seed`), normalised with
    the training `mean` and `std` (per band, on 0..1) as the network gets them and shown through
    the same statistics. `mean` is also the colour of erased rectangles and of pad_fill=mean."""
    columns = [images.float()]
    for variant in range(variants):
        generator = torch.Generator().manual_seed(batch_seed(seed, 0, variant))
        columns.append(augment_batch(images, augmentation, generator, mean))
    pixels = torch.stack(columns, dim=1)  # [R, K, C, H, W] on 0..255
    centre = torch.tensor(mean, dtype=torch.float64).view(1, 1, -1, 1, 1)
    spread = torch.tensor(std or (1.0,) * len(mean), dtype=torch.float64).view(1, 1, -1, 1, 1)
    seen = (pixels.double() / 255 - centre) / spread  # what training feeds the network
    shown = (seen * spread + centre) * 255  # and that, de-normalised for the eye
    return shown.round().clamp(0, 255).to(torch.uint8)


def augmentation_grid(
    images: torch.Tensor,
    augmentation: Augmentation,
    fill: tuple[float, ...],
    seed: int = 0,
    variants: int = 7,
) -> torch.Tensor:
    """uint8 [R, C, H, W] images -> one uint8 [C, height, width] grid of augmentation_tiles,
    without labels; `fill` is the training mean."""
    return tile_grid(augmentation_tiles(images, augmentation, fill, None, seed, variants))


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


def grid_labels(
    class_names: list[str], labels: list[int], sample_ids: list[str], variants: int
) -> tuple[list[str], list[str]]:
    """Row labels ("cat\ntrain:1234": class name and sample, a file's name for folders) and
    column labels ("original", "augmented 1", ...)."""
    rows = []
    for label, sample in zip(labels, sample_ids, strict=True):
        name, sample = class_names[label], sample.replace("\\", "/").rsplit("/", 1)[-1]
        rows.append(f"{_cut(name)}\n{_cut(sample)}")
    return rows, ["original"] + [f"augmented {k}" for k in range(1, variants + 1)]


def _cut(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def augmentation_figure(
    tiles: torch.Tensor, row_labels: list[str], column_labels: list[str], title: str
) -> Any:
    """uint8 [R, K, C, H, W] tiles -> a matplotlib Figure: a panel per tile, the columns named
    above the first row, the rows named left of the first column."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, columns, bands = tiles.shape[:3]
    label_inches, title_inches = 1.5, 0.7
    width = label_inches + columns * TILE_INCHES
    height = title_inches + rows * TILE_INCHES
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    figure.subplots_adjust(
        left=label_inches / width, right=0.99, bottom=0.1 / height,
        top=1 - title_inches / height, wspace=0.06, hspace=0.06,
    )  # fmt: skip
    for r in range(rows):
        for k in range(columns):
            panel = axes[r, k]
            pixels = tiles[r, k].permute(1, 2, 0).numpy()  # [H, W, C]
            if bands == 1:
                panel.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="none")
            else:
                panel.imshow(pixels, interpolation="none")
            panel.set_xticks([])
            panel.set_yticks([])
            if r == 0:
                panel.set_title(column_labels[k], fontsize=8)
            if k == 0:
                panel.set_ylabel(row_labels[r], fontsize=8, rotation=0, ha="right", va="center")
    figure.suptitle(textwrap.fill(title, width=int(width * 12)), fontsize=9)
    return figure


def save_png(figure: Any, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
