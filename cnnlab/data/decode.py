"""Decode a list of image files once, on every core, into one uint8 [N, C, H, W] array, cached.

The cache (cache_root()/decoded/, see cache.py) holds a raw .npy (loaded with allow_pickle=False)
and a JSON index, keyed by the files' paths, sizes and modification times and by the
preprocessing; it is capped in size ($CNNLAB_CACHE_MAX_GB), least recently used entries first out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data import cache as decoded_cache
from cnnlab.data.cache import decoded_cache_dir
from cnnlab.data.images import UnreadableImage, decode_image
from cnnlab.fileio import atomic_write_json, atomic_writer

log = logging.getLogger(__name__)

CACHE_FORMAT = "cnnlab-decoded-1"
CHUNK_FILES = 256  # files per task sent to a worker process
SERIAL_BELOW = 512  # fewer files than this are decoded in-process (no pool start-up cost)
PROGRESS_SECONDS = 5.0


@dataclass(frozen=True)
class Preprocess:
    """How every file is turned into a tensor; part of the cache key."""

    image_size: tuple[int, int]  # (H, W)
    aspect: str = "pad"  # pad, crop or stretch (see images.py)
    channels: int | None = None  # 1 or 3; None: 3 if any image has colour, else 1


@dataclass
class Decoded:
    images: torch.Tensor  # uint8 [N, C, H, W]: the files that decoded, in the order given
    kept: list[int]  # index into the file list of each image
    failures: list[tuple[int, str]]  # (index into the file list, short reason)
    from_cache: bool
    seconds: float


def decode_files(
    root: Path,
    files: list[str],
    preprocess: Preprocess,
    *,
    cache: bool = True,
    workers: int | None = None,
) -> Decoded:
    """Decode root/f for every relative path f; a file that fails is reported, never fatal."""
    start = time.perf_counter()
    key = cache_key(root, files, preprocess)
    if cache:
        hit = _read_cache(key, len(files))
        if hit is not None:
            decoded_cache.touch(key)
            images, failures = hit
            failed = {index for index, _ in failures}
            kept = [index for index in range(len(files)) if index not in failed]
            return Decoded(images, kept, failures, True, time.perf_counter() - start)
    pixels, failures = _decode_all(root, files, preprocess, workers)
    images = torch.from_numpy(pixels)
    if cache:
        _write_cache(key, root, preprocess, pixels, failures, len(files))
        _bound_cache(key)
    failed = {index for index, _ in failures}
    kept = [index for index in range(len(files)) if index not in failed]
    return Decoded(images, kept, failures, False, time.perf_counter() - start)


def cache_key(root: Path, files: list[str], preprocess: Preprocess) -> str:
    """SHA-256 over the folder, each file's path, size and mtime, and the preprocessing."""
    digest = hashlib.sha256()
    header = {"format": CACHE_FORMAT, "root": str(root.resolve()), **asdict(preprocess)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    base = str(root)
    for name in files:
        try:
            stat = os.stat(os.path.join(base, name))  # not pathlib: 60,000 files add up
            signature = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            signature = "missing"
        digest.update(f"\n{name}\0{signature}".encode())
    return digest.hexdigest()[:32]


def is_cached(root: Path, files: list[str], preprocess: Preprocess) -> bool:
    """Whether decode_files would read these files from the cache instead of decoding them."""
    return _paths(cache_key(root, files, preprocess))[1].exists()


def _decode_all(
    root: Path, files: list[str], preprocess: Preprocess, workers: int | None
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    height, width = preprocess.image_size
    bands = preprocess.channels or 3
    out = np.zeros((len(files), bands, height, width), dtype=np.uint8)
    is_color = np.zeros(len(files), dtype=bool)
    ok = np.zeros(len(files), dtype=bool)
    failures: list[tuple[int, str]] = []
    starts = range(0, len(files), CHUNK_FILES)
    chunks = [(start, files[start : start + CHUNK_FILES]) for start in starts]
    workers = workers or _available_cores()
    serial = workers <= 1 or len(files) < SERIAL_BELOW
    log.info(
        "decoding %d images from %s (%s)",
        len(files), root, "1 process" if serial else f"{workers} processes",
    )  # fmt: skip
    tasks = [(str(root), names, preprocess, start) for start, names in chunks]
    done, last_report, began = 0, time.perf_counter(), time.perf_counter()
    if serial:
        results = map(_decode_chunk, tasks)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers, mp_context=_pool_context())
        results = pool.map(_decode_chunk, tasks)
    try:
        for start, pixels, color, reasons in results:
            out[start : start + len(pixels)] = pixels
            is_color[start : start + len(pixels)] = color
            for offset, reason in enumerate(reasons):
                if reason is None:
                    ok[start + offset] = True
                else:
                    failures.append((start + offset, reason))
            done += len(pixels)
            if time.perf_counter() - last_report > PROGRESS_SECONDS:
                last_report = time.perf_counter()
                rate = done / (last_report - began)
                log.info("  decoded %d/%d images (%.0f images/s)", done, len(files), rate)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if preprocess.channels is None and not is_color.any():
        out = np.ascontiguousarray(out[:, :1])
    return out[ok] if not ok.all() else out, failures


def _decode_chunk(
    task: tuple[str, list[str], Preprocess, int],
) -> tuple[int, np.ndarray, np.ndarray, list[str | None]]:
    """Decode consecutive files into one packed array (cheap to send back from a worker).

    Returns (start, uint8 [n, bands, H, W], colour flags [n], failure reason or None per file);
    a gray image fills every band when bands is 3.
    """
    root, names, preprocess, start = task
    height, width = preprocess.image_size
    pixels = np.zeros((len(names), preprocess.channels or 3, height, width), dtype=np.uint8)
    color = np.zeros(len(names), dtype=bool)
    reasons: list[str | None] = []
    for index, name in enumerate(names):
        try:
            image = decode_image(
                Path(root) / name,
                preprocess.channels,
                preprocess.image_size,
                aspect=preprocess.aspect,
            )
        except UnreadableImage as error:
            reasons.append(error.reason)
            continue
        pixels[index] = image
        color[index] = image.shape[0] == 3
        reasons.append(None)
    return start, pixels, color, reasons


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers at once and they share the parent's imports; they only run PIL and
    # numpy, never torch, so forking a process that has torch threads is safe here.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _paths(key: str) -> tuple[Path, Path]:
    folder = decoded_cache_dir()
    return folder / f"{key}.npy", folder / f"{key}.json"


def _read_cache(key: str, num_files: int) -> tuple[torch.Tensor, list[tuple[int, str]]] | None:
    """The cached images and failures, or None when absent or not as the index describes."""
    array_path, index_path = _paths(key)
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("format") != CACHE_FORMAT or index.get("num_files") != num_files:
            return None
        pixels = np.load(array_path, allow_pickle=False)
        failures = [(int(i), str(reason)) for i, reason in index["failures"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    expected = [num_files - len(failures), *index["shape"][1:]]
    if pixels.dtype != np.uint8 or list(pixels.shape) != expected:
        return None
    return torch.from_numpy(pixels), failures


def _write_cache(
    key: str,
    root: Path,
    preprocess: Preprocess,
    pixels: np.ndarray,
    failures: list[tuple[int, str]],
    num_files: int,
) -> None:
    """Write the array, then the index (its presence marks a complete entry); drop stale ones."""
    array_path, index_path = _paths(key)
    index: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "root": str(root.resolve()),
        "preprocess": json.loads(json.dumps(asdict(preprocess))),  # tuples as JSON lists
        "num_files": num_files,
        "shape": list(pixels.shape),
        "failures": [[i, reason] for i, reason in failures],
    }
    try:
        with atomic_writer(array_path) as f:
            np.lib.format.write_array(f, pixels, allow_pickle=False)
        atomic_write_json(index_path, index)
    except OSError as error:
        log.warning("could not write the decoded-image cache in %s (%s)", array_path.parent, error)
        return
    _remove_stale(key, index)


def _remove_stale(key: str, index: dict[str, Any]) -> None:
    """Entries for the same folder and preprocessing but older file lists are never hit again."""
    for other in decoded_cache_dir().glob("*.json"):
        if other.stem == key:
            continue
        try:
            data = json.loads(other.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("root") == index["root"] and data.get("preprocess") == index["preprocess"]:
            other.unlink(missing_ok=True)
            other.with_suffix(".npy").unlink(missing_ok=True)


def _bound_cache(key: str) -> None:
    """Evict the least recently used entries past the cap (never key), then log the cache size."""
    limit = decoded_cache.max_cache_bytes()
    try:
        removed = decoded_cache.evict(limit, keep=frozenset({key}))
    except OSError as error:
        log.warning("could not trim the decoded-image cache in %s (%s)", decoded_cache_dir(), error)
        return
    if removed:
        freed = sum(entry.size_bytes for entry in removed) / 1e6
        log.info("  cache: removed %d least recently used entries (%.1f MB)", len(removed), freed)
    log.info(
        "  cache: %s holds %.1f MB of %.1f GB (CNNLAB_CACHE_MAX_GB; `cnnlab cache list` shows it)",
        decoded_cache_dir(), decoded_cache.total_bytes() / 1e6, limit / 1e9,
    )  # fmt: skip
