"""The registry of named data sets: their loaders (uint8 [N, C, H, W] tensors) and their defaults.

`digits` is scikit-learn's bundled 8x8 digits (offline default); `mnist` and `fashion-mnist`
are read from IDX files and `cifar10` from its python batches (cifar.py), found on disk or
downloaded (see locate.py); `folder:PATH` is any folder of class sub-folders (folder.py). Each
entry, and the rule for folders, is the one place for a data set's recipe and augmentation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data import cifar
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.folder import LoadOptions, class_folder_names, load_folder, scan_folder
from cnnlab.data.idx import read_idx
from cnnlab.data.locate import (
    DOWNLOADS,
    IDX_FILE_NAMES,
    find_dataset_dir,
    find_file,
    locate_dataset,
    search_dirs,
)
from cnnlab.data.splits import stratified_split
from cnnlab.errors import ConfigError, DataError
from cnnlab.registry import Registry
from cnnlab.specs.augmentation import Augmentation

BUNDLED = "scikit-learn (bundled)"
# digits has no test split of its own: a fixed one, independent of any run seed.
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
FOLDER_PREFIX = "folder:"
FOLDER_RECIPE = "folder"  # the plain defaults, cosine schedule (unless --recipe, or CIFAR-10's)

log = logging.getLogger(__name__)


Loader = Callable[["DatasetSource", str | os.PathLike | None, bool], ImageDataset]


@dataclass(frozen=True)
class DatasetSource:
    """What is known about a named data set before loading it, and the function that loads it."""

    name: str
    description: str
    class_names: tuple[str, ...]
    channels: int
    image_size: tuple[int, int]
    train_count: int
    test_count: int
    file_names: tuple[str, ...]  # files looked for on disk; empty when bundled with a library
    loader: Loader
    # Where the files are, when more than "a searched folder holding file_names" (cifar10).
    find: Callable[[str | os.PathLike | None], Path | None] | None = None
    recipe: str = "none"  # the recipe `--recipe auto` picks (cnnlab/specs/recipes.py)
    augmentation: Augmentation = Augmentation()  # the default augmentation (`--augment`)


DATASETS: Registry[DatasetSource] = Registry("data set")


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    options: LoadOptions | None = None,
) -> ImageDataset:
    """Load a named data set (found in data_dir, $CNNLAB_DATA, the caches, or downloaded), or a
    folder given as `folder:PATH`; options set a folder's image size, aspect and bands."""
    if name.startswith(FOLDER_PREFIX):
        return load_folder(_folder_path(name), options)
    source = _get_source(name)
    _check_options(source, options)
    return source.loader(source, data_dir, download)


def _folder_path(name: str) -> str:
    path = name[len(FOLDER_PREFIX) :]
    if not path:
        raise DataError("--data folder: needs a path, e.g. --data folder:~/images/parasites.")
    return path


def _check_options(source: DatasetSource, options: LoadOptions | None) -> None:
    if options is None:
        return
    if options.image_size is not None and tuple(options.image_size) != source.image_size:
        height, width = source.image_size
        raise ConfigError(
            f"--image-size applies to folder: sources; {source.name} images are {height}x{width}. "
            "Leave --image-size out for this data set."
        )
    if options.channels is not None and options.channels != source.channels:
        raise ConfigError(
            f"--channels applies to folder: sources; {source.name} has {source.channels} "
            "band(s). Leave --channels out for this data set."
        )


def dataset_info(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Describe a data set and where it would be loaded from, without loading or downloading."""
    if name.startswith(FOLDER_PREFIX):
        return _folder_info(_folder_path(name))
    source = _get_source(name)
    if source.find is not None:
        found = source.find(data_dir)
        found_at = None if found is None else str(found)
        searched = [str(folder) for folder in search_dirs(source.name, data_dir)]
    elif source.file_names:
        found = find_dataset_dir(source.name, source.file_names, data_dir)
        found_at = None if found is None else str(found)
        searched = [str(folder) for folder in search_dirs(source.name, data_dir)]
    else:
        found_at, searched = BUNDLED, []
    return {
        "name": source.name,
        "description": source.description,
        "num_classes": len(source.class_names),
        "class_names": list(source.class_names),
        "channels": source.channels,
        "image_size": source.image_size,
        "train_count": source.train_count,
        "test_count": source.test_count,
        "found_at": found_at,
        "searched": searched,
        "downloadable": source.name in DOWNLOADS,
    }


def _folder_info(path: str) -> dict[str, Any]:
    scan = scan_folder(path)
    return {
        "name": f"{FOLDER_PREFIX}{scan.root.resolve()}",
        "description": "class-per-folder images"
        + (" with split folders" if scan.split_folders else ""),
        "num_classes": len(scan.class_names),
        "class_names": scan.class_names,
        "files": {pool: len(files) for pool, files in scan.files.items()},
        "skipped": len(scan.skipped),
        "found_at": str(scan.root.resolve()),
    }


def _get_source(name: str) -> DatasetSource:
    return DATASETS.get(name)


def folder_augmentation(image_size: tuple[int, int]) -> Augmentation:
    """A folder's default: natural images or micrographs, where left-right is arbitrary; shifts
    of up to an eighth of the shorter side."""
    return Augmentation(hflip=0.5, crop_padding=max(1, round(min(image_size) / 8)))


def default_augmentation(source: str, image_size: tuple[int, int]) -> Augmentation:
    """The augmentation the data set `source` declares (a folder's from its image size); none for
    a name not in DATASETS."""
    if source.startswith(FOLDER_PREFIX):
        return folder_augmentation(image_size)
    return DATASETS.get(source).augmentation if source in DATASETS else Augmentation()


def default_recipe(source: str) -> str:
    """The name of the recipe the data set `source` declares, which `--recipe auto` picks: "none"
    for a name not in DATASETS, "folder" for folders, but "cifar10" for a folder whose class
    folders are exactly CIFAR-10's ten classes (a JPEG copy of CIFAR-10), saying so."""
    if source.startswith(FOLDER_PREFIX):
        root = source[len(FOLDER_PREFIX) :]
        names = sorted(name.lower() for name in class_folder_names(root))
        if names == sorted(cifar.CLASS_NAMES):
            log.info(
                "recipe auto: the class folders of '%s' are CIFAR-10's ten classes (%s), so "
                "recipe cifar10 applies; --recipe none trains without it.",
                root, ", ".join(cifar.CLASS_NAMES),
            )  # fmt: skip
            return "cifar10"
        return FOLDER_RECIPE
    return DATASETS.get(source).recipe if source in DATASETS else "none"


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (float64 [1797, 64] pixels 0..16, int [1797] labels), read from
    the package's digits.csv.gz without importing scikit-learn: its import (scipy with it) cost
    ~1 s of a digits run's start. The same parse as sklearn.datasets.load_digits."""
    import gzip
    from importlib.util import find_spec

    spec = find_spec("sklearn")  # finds the package folder; runs none of its code
    folders = (spec and spec.submodule_search_locations) or []
    for folder in folders:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as file:
                data = np.loadtxt(file, delimiter=",")
            return data[:, :-1], data[:, -1].astype(int)
    from sklearn.datasets import load_digits  # a layout this does not know: ask scikit-learn

    bunch = load_digits()
    return bunch.data, bunch.target


def _load_digits(
    source: DatasetSource, data_dir: str | os.PathLike | None, download: bool
) -> ImageDataset:
    pixels, targets = _digits_arrays()
    scaled = np.floor(pixels.reshape(-1, 8, 8) * 255 / 16 + 0.5)  # values 0..16 -> 0..255
    images = torch.from_numpy(scaled.astype(np.uint8)).unsqueeze(1)  # [1797, 1, 8, 8]
    labels = torch.from_numpy(targets.astype(np.int64))
    train, test = stratified_split(labels, DIGITS_TEST_FRACTION, seed=DIGITS_SPLIT_SEED)
    return ImageDataset(
        name=source.name,
        class_names=list(source.class_names),
        train_images=images[train],
        train_labels=labels[train],
        test_images=images[test],
        test_labels=labels[test],
        location=BUNDLED,
    )


def _load_idx_dataset(
    source: DatasetSource, data_dir: str | os.PathLike | None, download: bool
) -> ImageDataset:
    folder = locate_dataset(source.name, source.file_names, data_dir, download)
    names = source.file_names  # train images, train labels, test images, test labels
    train_images, train_labels = _read_idx_pair(folder, names[0], names[1], source)
    test_images, test_labels = _read_idx_pair(folder, names[2], names[3], source)
    return ImageDataset(
        name=source.name,
        class_names=list(source.class_names),
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        location=str(folder),
    )


def _read_idx_pair(
    folder: Path, images_name: str, labels_name: str, source: DatasetSource
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and cross-check one split: uint8 images [N, H, W] and uint8 labels [N]."""
    images_path = find_file(folder, images_name)
    labels_path = find_file(folder, labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    height, width = source.image_size
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (height, width):
        raise DataError(
            f"IDX file '{images_path}' holds {images.dtype} data of shape {images.shape}; "
            f"{source.name} images are uint8 of shape [N, {height}, {width}]. "
            "The file is probably from another data set; replace it."
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"IDX file '{labels_path}' holds {labels.dtype} data of shape {labels.shape}; "
            "labels are uint8 of shape [N]. The file is probably from another data set; replace it."
        )
    if len(images) != len(labels):
        raise DataError(
            f"IDX files '{images_path}' ({len(images):,} images) and '{labels_path}' "
            f"({len(labels):,} labels) do not match: they must hold the same number of items. "
            "One of them is from another data set or damaged; replace it."
        )
    num_classes = len(source.class_names)
    if len(labels) and int(labels.max()) >= num_classes:
        raise DataError(
            f"IDX file '{labels_path}' holds the label {int(labels.max())}, but {source.name} "
            f"has {num_classes} classes (labels 0 to {num_classes - 1}). Replace the file."
        )
    images_tensor = torch.from_numpy(images).unsqueeze(1)  # [N, 1, H, W]
    return images_tensor, torch.from_numpy(labels.astype(np.int64))


def _load_cifar10(
    source: DatasetSource, data_dir: str | os.PathLike | None, download: bool
) -> ImageDataset:
    folder = cifar.locate_cifar10(data_dir, download)
    train_images, train_labels, test_images, test_labels = cifar.read_batches(folder)
    return ImageDataset(
        name=source.name,
        class_names=list(source.class_names),
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        location=str(folder),
    )


DIGIT_NAMES = tuple(str(digit) for digit in range(10))
FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

for _source in (
    DatasetSource(
        name="digits",
        description="scikit-learn's bundled 8x8 handwritten digits; needs no files (offline)",
        class_names=DIGIT_NAMES,
        channels=1,
        image_size=(8, 8),
        train_count=1438,
        test_count=359,
        file_names=(),
        loader=_load_digits,
        recipe="none",
        # No flips: a mirrored 2 is no digit, and 6 and 9 swap. No shifts: at 8x8 one pixel is
        # already an eighth of the image.
        augmentation=Augmentation(),
    ),
    DatasetSource(
        name="mnist",
        description="MNIST handwritten digits, 28x28 grayscale",
        class_names=DIGIT_NAMES,
        channels=1,
        image_size=(28, 28),
        train_count=60_000,
        test_count=10_000,
        file_names=IDX_FILE_NAMES,
        loader=_load_idx_dataset,
        recipe="mnist",
        augmentation=Augmentation(crop_padding=2),  # digits never flip
    ),
    DatasetSource(
        name="fashion-mnist",
        description="Fashion-MNIST (Zalando) clothing and shoes, 28x28 grayscale",
        class_names=FASHION_NAMES,
        channels=1,
        image_size=(28, 28),
        train_count=60_000,
        test_count=10_000,
        file_names=IDX_FILE_NAMES,
        loader=_load_idx_dataset,
        recipe="fashion-mnist",
        augmentation=Augmentation(hflip=0.5, crop_padding=2),
    ),
    DatasetSource(
        name="cifar10",
        description="CIFAR-10 (Krizhevsky) objects and animals, 32x32 colour, python batches",
        class_names=cifar.CLASS_NAMES,
        channels=3,
        image_size=(32, 32),
        train_count=50_000,
        test_count=10_000,
        file_names=(cifar.ARCHIVE,),
        loader=_load_cifar10,
        find=cifar.find_cifar10,
        recipe="cifar10",
        augmentation=Augmentation(hflip=0.5, crop_padding=4),
    ),
):
    DATASETS.add(_source.name, _source)
del _source
