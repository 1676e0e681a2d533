"""`folder:PATH` data sets: one sub-folder per class, optionally inside train/, val/ and test/.

Scans the tree, skips junk (hidden files, other file types, unreadable images) with a reason for
each, decodes every image once (decode.py) and drops classes left without images.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.data.dataset import ImageDataset
from cnnlab.data.decode import Decoded, Preprocess, decode_files
from cnnlab.data.images import ASPECT_MODES, image_header_size
from cnnlab.errors import ConfigError, DataError

IMAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .dib .tif .tiff .webp .gif .ppm .pgm .pbm .pnm".split()
)
SPLIT_FOLDERS = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
AUTO_SIZE_LIMIT = 128  # an automatic image size is scaled down to at most this on its longer side
SIZE_SAMPLE = 256  # headers read to choose the automatic image size
WARN_LIST_LENGTH = 20
LAYOUT_HELP = (
    "Expected one sub-folder per class holding its images (PATH/cat/001.jpg, PATH/dog/002.png), "
    "optionally inside split folders train/, val/ and test/ (PATH/train/cat/001.jpg)."
)


@dataclass(frozen=True)
class LoadOptions:
    """How a folder: source is turned into tensors; named data sets accept only their own size."""

    image_size: tuple[int, int] | None = None  # None: automatic
    aspect: str = "pad"
    channels: int | None = None  # None: detected
    strict: bool = False
    cache: bool = True


@dataclass
class FolderScan:
    root: Path
    class_names: list[str]
    files: dict[str, list[str]]  # pool (train, val, test) -> paths relative to root, sorted
    labels: dict[str, list[int]]
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"file", "reason"}
    split_folders: bool = False


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """(H, W) from '32' (square) or '64x48' (WIDTHxHEIGHT, as image tools write it).

    None or 'auto' stays None (automatic)."""
    if text is None or str(text).strip().lower() in ("", "auto"):
        return None
    parts = str(text).lower().replace(" ", "").split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1 or max(values) > 4096:
        raise ConfigError(
            f"--image-size {text!r} is invalid: give N (square) or WIDTHxHEIGHT, e.g. 32 or "
            "64x48, each from 1 to 4096."
        )
    return (values[-1], values[0])


def scan_folder(root: str | os.PathLike) -> FolderScan:
    """Find the classes, splits and candidate image files under root, without decoding."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"folder: source '{root}' is not a folder. {LAYOUT_HELP}")
    skipped: list[dict[str, str]] = []
    subfolders = _visible_subfolders(root, skipped, "")
    split_names = {name.lower(): name for name in subfolders}
    pools = {
        pool: split_names[alias]
        for pool, aliases in SPLIT_FOLDERS.items()
        for alias in aliases
        if alias in split_names
    }
    if pools and "train" not in pools:
        raise DataError(
            f"Folder '{root}' has split folders {', '.join(sorted(pools.values()))}/ but no "
            f"train/ folder. {LAYOUT_HELP}"
        )
    if pools:
        bases = {pool: (root / name, f"{name}/") for pool, name in pools.items()}
        for name in subfolders:
            if name not in pools.values():
                skipped.append({"file": f"{name}/", "reason": "folder beside train/, val/, test/"})
    else:
        bases = {"train": (root, "")}
    found: dict[str, list[tuple[str, str]]] = {}  # pool -> [(class name, relative path)]
    class_names: set[str] = set()
    for pool, (base, prefix) in bases.items():
        classes = _visible_subfolders(base, skipped, prefix) if base != root else subfolders
        class_names.update(classes)
        found[pool] = [
            (name, relative)
            for name in classes
            for relative in _image_files(base / name, f"{prefix}{name}/", skipped)
        ]
    if not class_names:
        raise DataError(_no_classes_message(root))
    names = sorted(class_names)
    if not any(found.values()):
        looked = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DataError(
            f"Folder '{root}' has class folders ({', '.join(names[:10])}) but no image files in "
            f"them (looked for {looked}). {LAYOUT_HELP}"
        )
    label_of = {name: index for index, name in enumerate(names)}
    return FolderScan(
        root=root,
        class_names=names,
        files={pool: [path for _, path in items] for pool, items in found.items()},
        labels={pool: [label_of[name] for name, _ in items] for pool, items in found.items()},
        skipped=skipped,
        split_folders=bool(pools),
    )


def class_folder_names(root: str | os.PathLike) -> list[str]:
    """The class folders' names under root (inside its train/ folder if it has split folders),
    without listing any image; [] when root is no folder. For choosing a recipe."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    ignored: list[dict[str, str]] = []
    subfolders = _visible_subfolders(root, ignored, "")
    for name in subfolders:
        if name.lower() in SPLIT_FOLDERS["train"]:
            return _visible_subfolders(root / name, ignored, f"{name}/")
    return subfolders


def _visible_subfolders(folder: Path, skipped: list[dict[str, str]], prefix: str) -> list[str]:
    """Sorted names of the sub-folders; hidden entries and loose files are listed as skipped."""
    names = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        relative = f"{prefix}{entry.name}"
        if entry.name.startswith("."):
            skipped.append({"file": relative, "reason": "hidden file or folder"})
        elif entry.is_dir():
            names.append(entry.name)
        else:
            skipped.append({"file": relative, "reason": "not inside a class folder"})
    return names


def _image_files(folder: Path, prefix: str, skipped: list[dict[str, str]]) -> list[str]:
    """Image files under a class folder, recursively, as sorted paths relative to the root."""
    files = []
    for directory, subdirectories, names in os.walk(folder):
        relative_dir = Path(directory).relative_to(folder).as_posix()
        relative_dir = "" if relative_dir == "." else relative_dir + "/"
        for hidden in [d for d in subdirectories if d.startswith(".")]:
            skipped.append({"file": f"{prefix}{relative_dir}{hidden}/", "reason": "hidden folder"})
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(names):
            relative = f"{prefix}{relative_dir}{name}"
            if name.startswith("."):
                skipped.append({"file": relative, "reason": "hidden file"})
            elif os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:  # not pathlib: fast
                suffix = os.path.splitext(name)[1] or "no extension"
                skipped.append({"file": relative, "reason": f"not an image file type ({suffix})"})
            else:
                files.append(relative)
    return sorted(files)


def _no_classes_message(root: Path) -> str:
    loose = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    detail = (
        f" It holds {len(loose)} image files directly, outside any class folder." if loose else ""
    )
    return f"Folder '{root}' has no class folders.{detail} {LAYOUT_HELP}"


def automatic_image_size(root: Path, files: list[str]) -> tuple[tuple[int, int], str]:
    """The most common (H, W) in an even sample of the headers, scaled to fit AUTO_SIZE_LIMIT."""
    step = max(1, len(files) // SIZE_SAMPLE)
    sizes = Counter(
        size for name in files[::step] if (size := image_header_size(root / name)) is not None
    )
    if not sizes:
        return (64, 64), "no readable image header; using 64x64"
    (height, width), _ = sizes.most_common(1)[0]
    scale = min(1.0, AUTO_SIZE_LIMIT / max(height, width))
    chosen = (max(1, math.floor(height * scale + 0.5)), max(1, math.floor(width * scale + 0.5)))
    note = f"most images are {height}x{width}"
    if scale < 1:
        note += f", scaled to at most {AUTO_SIZE_LIMIT} a side"
    return chosen, note


def load_folder(path: str | os.PathLike, options: LoadOptions | None = None) -> ImageDataset:
    """Scan, decode (or read from the cache) and assemble a folder: data set."""
    options = options or LoadOptions()
    if options.aspect not in ASPECT_MODES:
        raise ConfigError(f"--aspect {options.aspect!r}: choose one of {', '.join(ASPECT_MODES)}.")
    scan = scan_folder(path)
    root = scan.root.resolve()
    pools = [pool for pool in SPLIT_FOLDERS if pool in scan.files]
    all_files = [name for pool in pools for name in scan.files[pool]]
    size_note = "set by --image-size"
    image_size = options.image_size
    if image_size is None:
        image_size, size_note = automatic_image_size(root, all_files)
    preprocess = Preprocess(image_size, options.aspect, options.channels)
    decoded = decode_files(root, all_files, preprocess, cache=options.cache)
    failures = [{"file": all_files[i], "reason": reason} for i, reason in decoded.failures]
    if failures and options.strict:
        raise DataError(
            f"{len(failures)} image file(s) in '{root}' cannot be read, and --strict is on:\n"
            + _listing(failures)
            + "\nRemove or repair them, or train without --strict to skip them."
        )
    images_of, labels_of, files_of = _split_pools(scan, pools, decoded, image_size)
    class_names, labels_of, dropped = _drop_empty_classes(scan.class_names, labels_of)
    skipped = scan.skipped + failures + dropped
    _warn_skipped(root, skipped)
    if len(class_names) < 2:
        raise DataError(
            f"Folder '{root}' has {len(class_names)} class folder(s) with usable images "
            f"({', '.join(class_names) or 'none'}); a classifier needs at least two. {LAYOUT_HELP}"
        )
    if not len(labels_of["train"]):
        raise DataError(f"Folder '{root}' has no usable images in its train/ folder.")
    empty_val = torch.empty(0, dtype=torch.int64)
    return ImageDataset(
        name=f"folder:{root}",
        class_names=class_names,
        train_images=images_of["train"],
        train_labels=labels_of["train"],
        test_images=images_of.get("test", _empty(decoded.images, image_size)),
        test_labels=labels_of.get("test", empty_val),
        location=str(root),
        val_images=images_of.get("val"),
        val_labels=labels_of.get("val"),
        files={pool: files_of[pool] for pool in pools} | {"test": files_of.get("test", [])},
        skipped=skipped,
        preprocess={
            "image_size": list(image_size),
            "image_size_note": size_note,
            "aspect": options.aspect,
            "channels_requested": options.channels,
            "resize": "bilinear (antialiased)",
            "decode_seconds": round(decoded.seconds, 2),
            "from_cache": decoded.from_cache,
        },
    )


def _split_pools(
    scan: FolderScan, pools: list[str], decoded: Decoded, image_size: tuple[int, int]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, list[str]]]:
    """Images, labels and file names per pool (train, val, test) of the files that decoded; the
    decoded files are those of all pools in order."""
    position = {index: row for row, index in enumerate(decoded.kept)}
    images_of, labels_of, files_of = {}, {}, {}
    offset = 0
    for pool in pools:
        count = len(scan.files[pool])
        rows = [position[i] for i in range(offset, offset + count) if i in position]
        keep = [i - offset for i in range(offset, offset + count) if i in position]
        images_of[pool] = _rows(decoded.images, rows, image_size)
        labels_of[pool] = torch.tensor([scan.labels[pool][i] for i in keep], dtype=torch.int64)
        files_of[pool] = [scan.files[pool][i] for i in keep]
        offset += count
    return images_of, labels_of, files_of


def _rows(images: torch.Tensor, rows: list[int], image_size: tuple[int, int]) -> torch.Tensor:
    """images[rows]: a view when the rows are consecutive (no copy of a large array)."""
    if not rows:
        return _empty(images, image_size)
    if rows[-1] - rows[0] == len(rows) - 1:
        return images[rows[0] : rows[-1] + 1]
    return images.index_select(0, torch.tensor(rows, dtype=torch.int64))


def _empty(images: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    channels = images.shape[1] if images.ndim == 4 else 3
    return torch.empty((0, channels, *image_size), dtype=torch.uint8)


def _drop_empty_classes(
    class_names: list[str], labels_of: dict[str, torch.Tensor]
) -> tuple[list[str], dict[str, torch.Tensor], list[dict[str, str]]]:
    """Leave out classes without a usable image in any split; renumber the others."""
    counts = sum(
        torch.bincount(labels, minlength=len(class_names)) for labels in labels_of.values()
    )
    keep = [index for index, count in enumerate(counts.tolist()) if count > 0]
    if len(keep) == len(class_names):
        return class_names, labels_of, []
    dropped = [
        {"file": f"{name}/", "reason": "class folder without usable images; class left out"}
        for index, name in enumerate(class_names)
        if index not in keep
    ]
    remap = torch.full((len(class_names),), -1, dtype=torch.int64)
    remap[keep] = torch.arange(len(keep))
    relabelled = {pool: remap[labels] for pool, labels in labels_of.items()}
    return [class_names[i] for i in keep], relabelled, dropped


def _listing(rows: list[dict[str, str]]) -> str:
    lines = [f"  {row['file']}: {row['reason']}" for row in rows[:WARN_LIST_LENGTH]]
    if len(rows) > WARN_LIST_LENGTH:
        lines.append(f"  ... and {len(rows) - WARN_LIST_LENGTH} more")
    return "\n".join(lines)


def _warn_skipped(root: Path, skipped: list[dict[str, str]]) -> None:
    if skipped:
        warnings.warn(
            f"{len(skipped)} file(s) or folder(s) in '{root}' were skipped (all are listed in the "
            f"run's dataset.json); use --strict to stop on unreadable images instead:\n"
            + _listing(skipped),
            stacklevel=3,
        )
