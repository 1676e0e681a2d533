"""CIFAR-10 from its canonical python batches (`cifar-10-batches-py/`), read without running code.

The batches are pickles; a restricted unpickler accepts only what they hold (a dict of bytes, ints
and one uint8 numpy array), so a crafted file that would run code is refused. The official
archive is found on disk or downloaded, and only the known members are taken out of it.
"""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.locate import cache_dir, locate_dataset, search_dirs
from cnnlab.errors import DataError
from cnnlab.fileio import atomic_write_bytes

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

NAME = "cifar10"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_BATCH = "test_batch"
BATCH_FILES = (*TRAIN_BATCHES, TEST_BATCH)
CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
MAX_MEMBER_BYTES = 64 * 1024**2  # a real batch is 31 MB


def _encode_latin1(text: str, encoding: str = "latin1") -> bytes:
    """Python 3 pickles of bytes at protocol 2 call _codecs.encode(text, 'latin1'); only that."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is allowed")
    return text.encode("latin1")


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # how the official files name it
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy >= 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _encode_latin1,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS; any other class or function stops the load."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}") from None


def read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file as uint8 images [N, 3, 32, 32] and int64 labels [N]."""
    try:
        with open(path, "rb") as f:
            batch = RestrictedUnpickler(f, encoding="bytes").load()
    except OSError as error:
        raise DataError(f"CIFAR-10 batch '{path}' cannot be read ({error}).") from None
    except Exception as error:  # UnpicklingError, EOFError, ValueError, ... from a bad file
        raise DataError(
            f"CIFAR-10 batch '{path}' was refused: it is not a plain CIFAR-10 python batch "
            f"({type(error).__name__}: {error}). cnnlab never loads code from data files; "
            "replace the file with one from the official archive."
        ) from None
    return _check_batch(batch, path)


def _check_batch(batch: Any, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, dict):
        raise DataError(f"CIFAR-10 batch '{path}' holds a {type(batch).__name__}, not a dict.")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(
            f"CIFAR-10 batch '{path}' lacks 'data' as a uint8 array [N, 3072]; replace the file."
        )
    if data.shape[1] != 3 * 32 * 32:
        raise DataError(f"CIFAR-10 batch '{path}' has rows of {data.shape[1]} values, not 3072.")
    if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
        raise DataError(f"CIFAR-10 batch '{path}' lacks a 'labels' list as long as its data.")
    try:
        label_array = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"CIFAR-10 batch '{path}' has labels that are not integers.") from None
    if len(label_array) and not 0 <= label_array.min() <= label_array.max() < 10:
        raise DataError(f"CIFAR-10 batch '{path}' has labels outside 0..9.")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())  # rows are R, G, B planes
    return images, torch.from_numpy(label_array)


def read_batches(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels) from a cifar-10-batches-py folder."""
    parts = [read_batch(folder / name) for name in TRAIN_BATCHES]
    test_images, test_labels = read_batch(folder / TEST_BATCH)
    train_images = torch.cat([images for images, _ in parts])
    train_labels = torch.cat([labels for _, labels in parts])
    return train_images, train_labels, test_images, test_labels


def find_batches(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first searched folder holding the batches (itself or its cifar-10-batches-py/)."""
    for folder in search_dirs(NAME, data_dir):
        for candidate in (folder / FOLDER, folder):
            if all((candidate / name).is_file() for name in BATCH_FILES):
                return candidate
    return None


def find_cifar10(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Where CIFAR-10 would be read from: extracted batches, or else a folder with the archive."""
    found = find_batches(data_dir)
    if found is not None:
        return found
    for folder in search_dirs(NAME, data_dir):
        if (folder / ARCHIVE).is_file():
            return folder / ARCHIVE
    return None


def locate_cifar10(data_dir: str | os.PathLike | None, download: bool) -> Path:
    """A folder of extracted batches: found, or extracted from a found or downloaded archive."""
    found = find_batches(data_dir)
    if found is not None:
        return found
    try:
        archive_folder = locate_dataset(NAME, (ARCHIVE,), data_dir, download)
    except DataError as error:
        raise DataError(
            f"{error}\nThe extracted folder {FOLDER}/ (data_batch_1 ... data_batch_5, test_batch) "
            "is accepted in the same places."
        ) from None
    target = cache_dir(NAME)
    extract_batches(archive_folder / ARCHIVE, target)
    return target / FOLDER


def extract_batches(archive: Path, target: Path) -> None:
    """Take exactly the known batch files out of the archive into target/cifar-10-batches-py/.

    Member names never become paths: each wanted name is looked up, must be a regular file of a
    sane size, and is written under a name cnnlab chose. Links and other members are ignored.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {member.name: member for member in tar.getmembers()}
            for name in BATCH_FILES:
                member = members.get(f"{FOLDER}/{name}")
                if member is None or not member.isfile():
                    kind = "missing" if member is None else "not a regular file (a link?)"
                    raise DataError(
                        f"Archive '{archive}' is not the CIFAR-10 python archive: its member "
                        f"{FOLDER}/{name} is {kind}. Fetch a fresh copy."
                    )
                if member.size > MAX_MEMBER_BYTES:
                    raise DataError(
                        f"Archive '{archive}': member {member.name} is {member.size:,} bytes, far "
                        "larger than a CIFAR-10 batch. Fetch a fresh copy."
                    )
                data = tar.extractfile(member).read()
                atomic_write_bytes(target / FOLDER / name, data)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(
            f"Archive '{archive}' cannot be read ({error}); it is damaged or not a tar.gz file. "
            "Delete it and fetch a fresh copy."
        ) from None
