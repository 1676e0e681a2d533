"""`cnnlab augment`: a PNG figure of augmented training images, to see what the network will see.

Each row is one image of the training split (one per class first), labelled with its class and
sample; the first column is the image, the others what the training augmentation (augment.py, the
same flags as `cnnlab train`) makes of it, shown through the training split's normalisation.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from cnnlab.commands import COMMANDS
from cnnlab.commands.common import add_config_flag
from cnnlab.errors import CnnlabError
from cnnlab.specs.augmentation import AUGMENTATION_FIELDS, strengths
from cnnlab.training.config import TrainConfig

DATA_FIELDS = ("data", "data_dir", "download", "image_size", "aspect", "channels", "cache", "seed")
SPLIT_FIELDS = ("val_fraction", "test_fraction", "split_seed")  # the training split's images
EPILOG = """examples:
  cnnlab augment --data cifar10 --out cifar-augment.png
  cnnlab augment --data folder:~/parasites --vflip 0.5 --rotate 180 --out parasites.png
  cnnlab augment --data mnist --no-augment --rotate 15 --scale 0.1 --out mnist.png
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "augment",
        help=COMMANDS["augment"],
        description="Write a figure of training images (rows, labelled with class and sample) and "
        "augmented versions of them (columns) as a PNG, using the same training split, "
        "normalisation, augmentation flags and per-data-set defaults as `cnnlab train`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="augment.png", help="PNG to write (default: augment.png)")
    parser.add_argument("--rows", type=int, default=8, help="images, one per row (default: 8)")
    parser.add_argument(
        "--variants", type=int, default=7, help="augmented versions per image (default: 7)"
    )
    defaults = TrainConfig()
    wanted = DATA_FIELDS + SPLIT_FIELDS + ("augment",) + AUGMENTATION_FIELDS
    for field in dataclasses.fields(TrainConfig):
        if field.name in wanted:
            add_config_flag(parser, field, getattr(defaults, field.name))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.data.augment import resolve_augmentation
    from cnnlab.data.augment_grid import (
        augmentation_figure,
        augmentation_tiles,
        grid_labels,
        pick_rows,
        save_png,
    )
    from cnnlab.data.sources import load_dataset
    from cnnlab.run.splits import make_record, select_split

    if args.rows < 1 or args.variants < 1:
        raise CnnlabError("--rows and --variants must be at least 1.")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig.from_dict({k: v for k, v in vars(args).items() if k in names}, "flags")
    dataset = load_dataset(config.data, config.data_dir, config.download, config.load_options())
    augmentation = resolve_augmentation(
        config.to_dict(), dataset.name, dataset.image_size, config.augment
    )
    # the training split and its normalisation, chosen as `cnnlab train` chooses them
    record = make_record(
        dataset, config.val_fraction, config.seed, config.test_fraction, config.split_seed
    )
    train = select_split(dataset, record, "train")
    rows = pick_rows(train.labels, args.rows)
    images = train.images.index_select(0, rows)
    normalization = record.normalization
    tiles = augmentation_tiles(
        images, augmentation, normalization.mean, normalization.std, config.seed, args.variants
    )
    row_labels, column_labels = grid_labels(
        list(record.class_names), train.labels[rows].tolist(),
        [train.sample_ids[i] for i in rows.tolist()], args.variants,
    )  # fmt: skip
    shown = strengths(augmentation)
    title = f"{dataset.name}: training images, then augmented versions ({shown})"
    save_png(augmentation_figure(tiles, row_labels, column_labels, title), args.out)
    print(f"augmentation: {shown}")
    print(f"written: {args.out} ({len(images)} images x {args.variants} variants)")
    return 0
