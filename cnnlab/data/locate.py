"""Where named data sets are looked for on disk, and the checksummed downloader into the user cache.

Search order (DESIGN.md "Data sources"): --data-dir, $CNNLAB_DATA, the user cache, then
/usr/share/datasets; only then a download from the official mirrors.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.request import Request, urlopen

from cnnlab import __version__
from cnnlab.errors import DataError
from cnnlab.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_SECONDS = 30.0
# Debian's dataset-fashion-mnist installs into /usr/share/datasets/fashion-mnist/.
SYSTEM_DATA_DIRS: list[Path] = [Path("/usr/share/datasets")]

IDX_FILE_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class Download:
    """Where a data set's files are served (mirrors tried in order) and the MD5 of each file."""

    url_bases: tuple[str, ...]
    md5: dict[str, str]


DOWNLOADS: dict[str, Download] = {
    "mnist": Download(
        url_bases=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": Download(
        url_bases=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "cifar10": Download(
        url_bases=("https://www.cs.toronto.edu/~kriz/",),
        md5={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
    ),
}


def cache_root() -> Path:
    """The root of every cnnlab cache (data sets, decoded images, features, weights):
    $CNNLAB_CACHE_DIR, else $XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab."""
    chosen = os.environ.get("CNNLAB_CACHE_DIR")
    if chosen:
        return Path(chosen).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root).expanduser() / "cnnlab"


def cache_dir(name: str) -> Path:
    """The user cache folder of one data set: cache_root()/datasets/<name>."""
    return cache_root() / "datasets" / name


def search_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for a data set's files, in order, without duplicates."""
    folders: list[Path] = []
    for base in (data_dir, os.environ.get("CNNLAB_DATA") or None):
        if base is not None:
            base = Path(base).expanduser()
            folders += [base / name, base]
    folders.append(cache_dir(name))
    folders += [system_dir / name for system_dir in SYSTEM_DATA_DIRS]
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def find_file(folder: Path, file_name: str) -> Path | None:
    """The file in folder under its name, compressed (.gz) or not; None when neither exists."""
    stem = file_name.removesuffix(".gz")
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def find_dataset_dir(
    name: str, file_names: Sequence[str], data_dir: str | os.PathLike | None = None
) -> Path | None:
    """The first searched folder that holds every one of file_names, or None."""
    for folder in search_dirs(name, data_dir):
        if all(find_file(folder, file_name) for file_name in file_names):
            return folder
    return None


def locate_dataset(
    name: str,
    file_names: Sequence[str],
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Path:
    """The folder holding a data set's files: found on disk, or else downloaded into the cache."""
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise DataError(
            f"--data-dir '{data_dir}' is not a folder. Give the folder that holds {name}/ (or "
            f"its files {', '.join(file_names)}), or leave --data-dir out to use the search path."
        )
    folder = find_dataset_dir(name, file_names, data_dir)
    if folder is not None:
        return folder
    if not download or name not in DOWNLOADS:
        reason = "downloading is turned off" if name in DOWNLOADS else "it cannot be downloaded"
        raise DataError(_not_found_message(name, file_names, data_dir, reason))
    try:
        return download_dataset(name, file_names)
    except _DownloadFailed as error:
        raise DataError(_not_found_message(name, file_names, data_dir, str(error))) from None


def download_dataset(name: str, file_names: Sequence[str]) -> Path:
    """Download the missing files of a data set into its cache folder, checking each MD5."""
    source = DOWNLOADS[name]
    folder = cache_dir(name)
    for file_name in file_names:
        if find_file(folder, file_name) is None:
            data = _fetch_verified(source, file_name)
            try:
                atomic_write_bytes(folder / file_name, data)
            except OSError as error:
                raise DataError(
                    f"Could not save the downloaded '{file_name}' into the cache folder "
                    f"'{folder}' ({error}). Make that folder writable, set CNNLAB_CACHE_DIR to a "
                    "writable folder, or put the files into a folder given by --data-dir."
                ) from None
    return folder


class _DownloadFailed(Exception):
    """No mirror could be reached; the caller turns this into the 'not found' DataError."""


def _fetch_verified(source: Download, file_name: str) -> bytes:
    expected = source.md5[file_name]
    failures: list[str] = []
    bad_checksums: list[str] = []
    for base in source.url_bases:
        url = base + file_name
        log.info("Downloading %s", url)
        try:
            data = _fetch(url)
        except (OSError, http.client.HTTPException) as error:
            failures.append(f"{url}: {error}")
            continue
        actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if actual == expected:
            return data
        bad_checksums.append(f"{url} (MD5 {actual})")
    if bad_checksums:
        raise DataError(
            f"Downloaded '{file_name}' has the wrong checksum: expected MD5 {expected}, got "
            f"{'; '.join(bad_checksums)}. The file was not saved. The download was damaged or the "
            "server sends a different file; try again later, or put a good copy into one of the "
            "folders that cnnlab searches (--data-dir, CNNLAB_DATA)."
        )
    raise _DownloadFailed("the download failed (" + "; ".join(failures) + ")")


def _fetch(url: str) -> bytes:
    request = Request(url, headers={"User-Agent": f"cnnlab/{__version__}"})
    with urlopen(request, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
        return response.read()


def _not_found_message(
    name: str, file_names: Sequence[str], data_dir: str | os.PathLike | None, reason: str
) -> str:
    lines = []
    for folder in search_dirs(name, data_dir):
        missing = [file_name for file_name in file_names if find_file(folder, file_name) is None]
        note = ""
        if 0 < len(missing) < len(file_names):
            note = f" (holds some of the files, but not {', '.join(missing)})"
        lines.append(f"  {folder}{note}")
    searched = "\n".join(lines)
    wanted = ", ".join(file_names)
    return (
        f"The {name} data set was not found, and {reason}.\n"
        f"Looked for {wanted} (each may also be uncompressed, without .gz) in:\n{searched}\n"
        f"Put these files into one of those folders (for example {cache_dir(name)}), "
        "or point --data-dir or CNNLAB_DATA at a folder that holds them."
    )
