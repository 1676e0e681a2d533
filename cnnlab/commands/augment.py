"""`cnnlab augment`: a PNG grid of augmented training images, to see what the network will see.

Each row is one image (one per class first); the first column is the image as decoded, the others
are what the training augmentation (augment.py, the same flags as `cnnlab train`) makes of it.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from cnnlab.commands import COMMANDS
from cnnlab.commands.common import add_config_flag
from cnnlab.errors import CnnlabError
from cnnlab.specs.augmentation import AUGMENTATION_FIELDS
from cnnlab.training.config import TrainConfig

if TYPE_CHECKING:  # torch is imported when the grid is drawn, so `--help` stays fast
    import torch

GAP = 2  # pixels between tiles
MIN_TILE = 64  # small images are enlarged (nearest neighbour) to at least this many pixels
DATA_FIELDS = ("data", "data_dir", "download", "image_size", "aspect", "channels", "cache", "seed")
EPILOG = """examples:
  cnnlab augment --data cifar10 --out cifar-augment.png
  cnnlab augment --data folder:~/parasites --vflip 0.5 --rotate 180 --out parasites.png
  cnnlab augment --data mnist --no-augment --rotate 15 --scale 0.1 --out mnist.png
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "augment",
        help=COMMANDS["augment"],
        description="Write a grid of training images and augmented versions of them as a PNG, "
        "using the same augmentation flags and per-data-set defaults as `cnnlab train`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="augment.png", help="PNG to write (default: augment.png)")
    parser.add_argument("--rows", type=int, default=8, help="images, one per row (default: 8)")
    parser.add_argument(
        "--variants", type=int, default=7, help="augmented versions per image (default: 7)"
    )
    defaults = TrainConfig()
    wanted = DATA_FIELDS + ("augment",) + AUGMENTATION_FIELDS
    for field in dataclasses.fields(TrainConfig):
        if field.name in wanted:
            add_config_flag(parser, field, getattr(defaults, field.name))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.data.augment import augment_batch, batch_seed, resolve_augmentation
    from cnnlab.data.images import save_image_file
    from cnnlab.data.sources import load_dataset
    from cnnlab.data.splits import channel_mean_std

    if args.rows < 1 or args.variants < 1:
        raise CnnlabError("--rows and --variants must be at least 1.")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig.from_dict({k: v for k, v in vars(args).items() if k in names}, "flags")
    dataset = load_dataset(config.data, config.data_dir, config.download, config.load_options())
    augmentation = resolve_augmentation(
        config.to_dict(), dataset.name, dataset.image_size, config.augment
    )
    images = dataset.train_images.index_select(0, _pick_rows(dataset.train_labels, args.rows))
    mean, _ = channel_mean_std(images)
    columns = [images.float()]
    for variant in range(args.variants):
        generator = torch.Generator().manual_seed(batch_seed(config.seed, 0, variant))
        columns.append(augment_batch(images, augmentation, generator, tuple(mean)))
    grid = _grid(torch.stack(columns, dim=1).round().to(torch.uint8))  # [rows, columns, C, H, W]
    save_image_file(grid, args.out)
    shown = ", ".join(f"{k}={v}" for k, v in augmentation.to_dict().items() if v) or "none"
    print(f"augmentation: {shown}")
    print(f"written: {args.out} ({len(images)} images x {args.variants} variants)")
    return 0


def _pick_rows(labels: torch.Tensor, count: int) -> torch.Tensor:
    """The first image of each class in turn, so every class shows up before any repeats."""
    import torch

    picked: list[int] = []
    members = [torch.nonzero(labels == c).flatten().tolist() for c in labels.unique().tolist()]
    depth = 0
    while len(picked) < min(count, len(labels)):
        for indices in members:
            if depth < len(indices) and len(picked) < count:
                picked.append(indices[depth])
        depth += 1
    return torch.tensor(picked, dtype=torch.int64)


def _grid(tiles: torch.Tensor) -> torch.Tensor:
    """uint8 [R, K, C, H, W] -> one uint8 [C, height, width] image with gaps between tiles."""
    import torch

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
