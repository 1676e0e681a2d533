"""`cnnlab augment`: a PNG grid of augmented training images, to see what the network will see.

Each row is one image (one per class first); the first column is the image as decoded, the others
are what the training augmentation (augment.py, the same flags as `cnnlab train`) makes of it.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from cnnlab.commands import COMMANDS
from cnnlab.commands.common import add_config_flag
from cnnlab.errors import CnnlabError
from cnnlab.specs.augmentation import AUGMENTATION_FIELDS
from cnnlab.training.config import TrainConfig

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
    from cnnlab.data.augment import resolve_augmentation
    from cnnlab.data.augment_grid import augmentation_grid, pick_rows
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
    images = dataset.train_images.index_select(0, pick_rows(dataset.train_labels, args.rows))
    mean, _ = channel_mean_std(images)
    grid = augmentation_grid(images, augmentation, tuple(mean), config.seed, args.variants)
    save_image_file(grid, args.out)
    shown = ", ".join(f"{k}={v}" for k, v in augmentation.to_dict().items() if v) or "none"
    print(f"augmentation: {shown}")
    print(f"written: {args.out} ({len(images)} images x {args.variants} variants)")
    return 0
