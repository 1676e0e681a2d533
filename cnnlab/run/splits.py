"""`dataset.json`: what a run was trained on, so later commands rebuild the exact same splits.

It records the source, class names, image size and bands, preprocessing, normalisation statistics
and split membership: indices into the source's own parts (train, val, test) plus a checksum of
each part's labels, and for folder: sources the file paths themselves and the files skipped. With
--group-by, the carved splits keep each group whole and the record counts the groups per split.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import torch

from cnnlab.data.duplicates import NEAR_DISTANCE, DuplicateReport, find_duplicates
from cnnlab.data.folder import LoadOptions
from cnnlab.data.groups import resolve_groups
from cnnlab.data.sources import ImageDataset, load_dataset
from cnnlab.data.splits import channel_mean_std, stratified_group_split, stratified_split
from cnnlab.errors import DataError
from cnnlab.run.records import SPLITS, DatasetRecord, Normalization


@dataclass
class SplitData:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    sample_ids: list[str]  # "<source part>:<index>", or the file path for folder: sources


def labels_checksum(labels: torch.Tensor) -> str:
    return hashlib.sha256(labels.to(torch.int64).numpy().tobytes()).hexdigest()


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels, minlength=num_classes).tolist()


def _part(dataset: ImageDataset, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "val":
        return dataset.val_images, dataset.val_labels
    if name == "test":
        return dataset.test_images, dataset.test_labels
    return dataset.train_images, dataset.train_labels


def _carve(
    labels: torch.Tensor,
    pool: torch.Tensor,
    fraction: float,
    seed: int,
    groups: list[str] | None = None,
    what: str = "split",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the indices `pool` of labels into (kept, carved), stratified and seeded; with
    groups (one per label), whole groups on each side."""
    if fraction <= 0 or len(pool) == 0:
        return pool, torch.empty(0, dtype=torch.int64)
    if groups is None:
        kept, carved = stratified_split(labels[pool], fraction, seed)
    else:
        pool_groups = [groups[i] for i in pool.tolist()]
        kept, carved = stratified_group_split(labels[pool], pool_groups, fraction, seed, what)
    return pool[kept], pool[carved]


def make_record(
    dataset: ImageDataset,
    val_fraction: float,
    seed: int,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    group_by: str | None = None,
) -> DatasetRecord:
    """Choose the splits and compute statistics on the train split.

    A data set without test images (a folder without test/) gets a test split of test_fraction
    of each class, seeded by split_seed so it does not move with the run's seed; one without its
    own validation images gets val_fraction of what remains for training, seeded by seed. With
    group_by (cnnlab.data.groups), both carved splits take whole groups, so validation (which
    picks the best epoch and stops early) and test never see a training group.
    """
    groups = resolve_groups(group_by, dataset) if group_by else None
    train_groups = groups["train"] if groups else None
    train_pool = torch.arange(len(dataset.train_labels))
    test_from, test_carved = "test", False
    test_indices = torch.arange(len(dataset.test_labels))
    if len(dataset.test_labels) == 0:
        what = "test split (--test-fraction)"
        train_pool, test_indices = _carve(dataset.train_labels, train_pool, test_fraction,
                                          split_seed, train_groups, what)  # fmt: skip
        test_from, test_carved = "train", True
    if dataset.val_labels is not None and len(dataset.val_labels):
        val_from, val_indices = "val", torch.arange(len(dataset.val_labels))
        train_indices = train_pool
    else:
        val_from = "train"
        what = "validation split (--val-fraction)"
        train_indices, val_indices = _carve(dataset.train_labels, train_pool, val_fraction, seed,
                                            train_groups, what)  # fmt: skip
    chosen = {
        "train": ("train", train_indices),
        "val": (val_from, val_indices),
        "test": (test_from, test_indices),
    }
    if not len(train_indices):
        raise DataError(f"Data set {dataset.name!r} leaves no images for training.")
    mean, std = channel_mean_std(dataset.train_images.index_select(0, train_indices))
    k = dataset.num_classes
    parts = ["train", "test"] + (["val"] if val_from == "val" else [])
    splits, counts = {}, {}
    for split, (source, indices) in chosen.items():
        splits[split] = {"from": source, "indices": indices.tolist()}
        if dataset.files is not None:
            names = dataset.files[source]
            splits[split]["files"] = [names[i] for i in indices.tolist()]
        counts[split] = class_counts(_part(dataset, source)[1][indices], k)
    source_counts = class_counts(dataset.train_labels, k)
    if test_carved:
        _check_carved(dataset, "test", counts["test"], test_fraction, source_counts)
    if val_from == "train":
        _check_carved(dataset, "val", counts["val"], val_fraction, counts["train"])
    return DatasetRecord(
        source=dataset.name,
        location=dataset.location,
        class_names=tuple(dataset.class_names),
        channels=dataset.channels,
        image_size=tuple(dataset.image_size),
        normalization=Normalization(tuple(mean), tuple(std)),
        preprocess=dataset.preprocess
        or {"resize": "bilinear", "aspect": "stretch", "image_size": list(dataset.image_size)},
        splits=splits,
        class_counts=counts,
        split_seed=seed,
        val_fraction=val_fraction,
        test_split={"carved_from_train": test_carved, "fraction": test_fraction,
                    "seed": split_seed} if test_carved else {"carved_from_train": False},
        source_checksums={part: labels_checksum(_part(dataset, part)[1]) for part in parts},
        skipped=tuple(dataset.skipped) if dataset.files is not None else None,
        groups=None if groups is None else group_summary(dataset, group_by, groups, chosen),
    )  # fmt: skip


def group_summary(
    dataset: ImageDataset,
    group_by: str,
    groups: dict[str, list[str]],
    chosen: dict[str, tuple[str, torch.Tensor]],
) -> dict:
    """dataset.json's "groups": the setting, the groups per split and the groups two splits
    share. Carved splits share none; a folder's own train/, val/, test/ may, and a shared group
    is warned of, one line per pair of splits."""
    members = {
        split: {groups[source][i] for i in indices.tolist()}
        for split, (source, indices) in chosen.items()
    }
    shared = {}
    for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
        common = members[first] & members[second]
        if not common:
            continue
        shared[f"{first}/{second}"] = len(common)
        images = {
            split: sum(groups[chosen[split][0]][i] in common for i in chosen[split][1].tolist())
            for split in (first, second)
        }
        names = ", ".join(sorted(common)[:5]) + (" ..." if len(common) > 5 else "")
        warnings.warn(
            f"LEAKAGE: {len(common)} group(s) of --group-by {group_by!r} are in both the {first} "
            f"and {second} splits of {dataset.name!r} ({names}; {images[first]} {first} and "
            f"{images[second]} {second} images): {second} scores will be inflated. Move each "
            "group's images into one split folder.",
            stacklevel=3,
        )
    return {
        "group_by": group_by,
        "counts": {split: len(names) for split, names in members.items()},
        "shared": shared,
    }


def _check_carved(
    dataset: ImageDataset, split: str, counts: list[int], fraction: float, pool: list[int]
) -> None:
    """Refuse an empty test split and warn of an empty validation split carved by a fraction.

    stratified_split leaves a class of one image wholly in training, so tiny folders (one or two
    images per class) can come out with nothing to test or validate on; say so before training
    rather than fail at evaluation.
    """
    if fraction <= 0 or sum(counts) > 0:
        return
    per_class = ", ".join(f"{n}: {c}" for n, c in zip(dataset.class_names, pool, strict=True))
    flag = f"--{split}-fraction"
    if split == "test":
        raise DataError(
            f"The test split of {dataset.name!r} comes out empty: {flag} {fraction} takes no "
            f"image from classes of these sizes ({per_class}), since a class keeps at least one "
            "image for training. Give every class at least 2 images (3 to also validate), put "
            f"test images in a test/ sub-folder, or set {flag} 0 to train without a test split."
        )
    warnings.warn(
        f"The validation split of {dataset.name!r} comes out empty: {flag} {fraction} takes no "
        f"image from the training classes of these sizes ({per_class}), since a class keeps at "
        "least one image for training. Training runs without validation (no best epoch "
        "is chosen). Give every class at least 3 images, or put validation images in a val/ "
        f"sub-folder; {flag} 0 silences this warning.",
        stacklevel=3,
    )


def load_options(record: DatasetRecord, cache: bool = True) -> LoadOptions | None:
    """How to reload a run's folder: source so its images come out exactly as in training."""
    if not record.source.startswith("folder:"):
        return None
    preprocess = record.preprocess
    return LoadOptions(
        image_size=tuple(record.image_size),
        aspect=preprocess.get("aspect", "pad"),
        channels=preprocess.get("channels_requested"),
        cache=cache,
    )


def select_split(dataset: ImageDataset, record: DatasetRecord, split: str) -> SplitData:
    """The images of `split` as recorded, after checking the data is the one trained on."""
    if split not in SPLITS:
        raise DataError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if list(dataset.class_names) != list(record.class_names):
        raise DataError(
            f"Data set {dataset.name!r} has classes {dataset.class_names}, but the run was trained "
            f"on {list(record.class_names)}."
        )
    entry = record.splits[split]
    if "files" in entry:
        return _select_files(dataset, entry["files"], split)
    source = entry["from"]
    images, labels = _part(dataset, source)
    if labels is None:
        raise DataError(f"Data set {dataset.name!r} has no {source} part, but the run used one.")
    expected = record.source_checksums.get(source)
    if expected is not None and labels_checksum(labels) != expected:
        raise DataError(
            f"The {source} labels of data set {dataset.name!r} found at {dataset.location} differ "
            "from those this run was trained on, so split indices would point at other images. "
            "Point --data-dir at the copy used for training."
        )
    indices = torch.tensor(entry["indices"], dtype=torch.int64)
    if len(indices) and int(indices.max()) >= len(labels):
        raise DataError(f"dataset.json's {split} indices run past the {source} set's size.")
    return SplitData(
        images=images.index_select(0, indices),
        labels=labels.index_select(0, indices),
        sample_ids=[f"{source}:{i}" for i in entry["indices"]],
    )


def _select_files(dataset: ImageDataset, files: list[str], split: str) -> SplitData:
    """A folder split by file path, so it survives files added to or removed from the folder."""
    if dataset.files is None:
        raise DataError(
            f"The run's {split} split lists image files, but {dataset.name!r} is not a folder: "
            "source. Use --data folder:PATH with the folder the run was trained on."
        )
    where = {
        name: (part, i) for part, names in dataset.files.items() for i, name in enumerate(names)
    }
    missing = [name for name in files if name not in where]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise DataError(
            f"{len(missing)} image file(s) of the run's {split} split are missing or unreadable in "
            f"'{dataset.location}': {shown}. Restore them, or point --data at the folder the run "
            "was trained on."
        )
    images, labels, positions = [], [], []
    for part in ("train", "val", "test"):
        picked = [k for k, name in enumerate(files) if where[name][0] == part]
        if picked:
            rows = torch.tensor([where[files[k]][1] for k in picked], dtype=torch.int64)
            part_images, part_labels = _part(dataset, part)
            images.append(part_images.index_select(0, rows))
            labels.append(part_labels.index_select(0, rows))
            positions += picked
    if not positions:
        height, width = dataset.image_size
        empty = torch.empty((0, dataset.channels, height, width), dtype=torch.uint8)
        return SplitData(empty, torch.empty(0, dtype=torch.int64), [])
    order = torch.tensor(positions).argsort()  # back to the recorded order of files
    return SplitData(
        images=torch.cat(images).index_select(0, order),
        labels=torch.cat(labels).index_select(0, order),
        sample_ids=list(files),
    )


def load_run_split(
    record: DatasetRecord, split: str, data_dir: str | None = None, data: str | None = None
) -> SplitData:
    """Reload the run's data set (or `data`, a source of the same images); select a split."""
    dataset = load_dataset(data or record.source, data_dir=data_dir, options=load_options(record))
    return select_split(dataset, record, split)


DUPLICATES_FILE = "duplicates.json"  # RUN/duplicates.json: the check made before training


def split_duplicates(
    dataset: ImageDataset,
    record: DatasetRecord,
    threshold: int = NEAR_DISTANCE,
    parts: dict[str, SplitData] | None = None,
) -> DuplicateReport:
    """Exact and near duplicates across the record's train, val and test splits; pairs are
    named by file path (folder: sources) or "<source part>:<index>". `parts`: splits already
    selected (select_split), e.g. the train and val images a caller trains on; the others are
    selected here."""
    parts = {split: (parts or {}).get(split) or select_split(dataset, record, split)
             for split in SPLITS}  # fmt: skip
    return find_duplicates(
        {split: (part.images, part.sample_ids) for split, part in parts.items()}, threshold
    )


def describe_counts(record: DatasetRecord) -> str:
    """A short table of class counts per split, shown before training."""
    names = record.class_names
    counts = record.class_counts
    width = max(8, *(len(n) for n in names))
    lines = [f"{'class':<{width}} " + " ".join(f"{s:>7}" for s in SPLITS)]
    for index, name in enumerate(names):
        lines.append(f"{name:<{width}} " + " ".join(f"{counts[s][index]:>7}" for s in SPLITS))
    lines.append(f"{'total':<{width}} " + " ".join(f"{sum(counts[s]):>7}" for s in SPLITS))
    return "\n".join(lines)
