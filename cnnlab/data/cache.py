"""The decoded-image cache on disk (cache_root()/decoded/): list, size, clear, and a size cap with
least-recently-used eviction.

An entry is KEY.npy (the pixels) and KEY.json (its index, written last). The index's modification
time is the entry's last use: decode.py touches it on every hit. Eviction never removes the
entries named in `keep` (the one being written or read), and tolerates another process removing
files at the same time (a missing file is skipped, never an error).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data.locate import cache_root
from cnnlab.errors import ConfigError

DEFAULT_MAX_GB = 4.0
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class CacheEntry:
    key: str
    folder: str  # the image folder the entry was decoded from
    num_images: int  # images in the array (files that decoded)
    size_bytes: int  # the array and the index together
    last_used: float  # seconds since the epoch (the index file's mtime)

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "folder": self.folder,
            "num_images": self.num_images,
            "size_bytes": self.size_bytes,
            "last_used": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.last_used)),
        }


def decoded_cache_dir() -> Path:
    return cache_root() / "decoded"


def max_cache_bytes() -> int:
    """The cap on the decoded cache: $CNNLAB_CACHE_MAX_GB gigabytes (default 4; 0 keeps nothing)."""
    text = os.environ.get("CNNLAB_CACHE_MAX_GB")
    if not text:
        return int(DEFAULT_MAX_GB * 1e9)
    try:
        gigabytes = float(text)
    except ValueError:
        gigabytes = -1.0
    if not gigabytes >= 0:  # also refuses nan
        raise ConfigError(
            f"CNNLAB_CACHE_MAX_GB='{text}' is not a size in gigabytes. Set it to a number >= 0 "
            f"(for example 4 or 0.5), or unset it for the default of {DEFAULT_MAX_GB:g} GB."
        )
    return int(gigabytes * 1e9)


def list_entries() -> list[CacheEntry]:
    """Every complete entry (one with an index), least recently used first."""
    entries = []
    for index_path in decoded_cache_dir().glob("*.json"):
        entry = _read_entry(index_path)
        if entry is not None:
            entries.append(entry)
    return sorted(entries, key=lambda entry: entry.last_used)


def total_bytes() -> int:
    """The size of every file in the decoded cache, partial writes and orphans included."""
    total = 0
    for path in decoded_cache_dir().glob("*"):
        try:
            total += path.stat().st_size
        except OSError:
            continue
    return total


def touch(key: str) -> None:
    """Mark an entry as used now (its index file's mtime)."""
    try:
        os.utime(decoded_cache_dir() / f"{key}.json")
    except OSError:
        pass


def remove(key: str) -> None:
    """Remove the index first (the entry stops being complete), then the array."""
    folder = decoded_cache_dir()
    (folder / f"{key}.json").unlink(missing_ok=True)
    (folder / f"{key}.npy").unlink(missing_ok=True)


def evict(max_bytes: int, keep: frozenset[str] = frozenset()) -> list[CacheEntry]:
    """Remove least recently used entries until the cache fits max_bytes; returns those removed."""
    entries = list_entries()
    size = sum(entry.size_bytes for entry in entries)
    removed = []
    for entry in entries:
        if size <= max_bytes:
            break
        if entry.key in keep:
            continue
        remove(entry.key)
        size -= entry.size_bytes
        removed.append(entry)
    return removed


def clear(older_than_days: float | None = None) -> list[CacheEntry]:
    """Remove every entry, or those not used for more than older_than_days; returns them."""
    cutoff = None if older_than_days is None else time.time() - older_than_days * SECONDS_PER_DAY
    removed = []
    for entry in list_entries():
        if cutoff is None or entry.last_used < cutoff:
            remove(entry.key)
            removed.append(entry)
    return removed


def _read_entry(index_path: Path) -> CacheEntry | None:
    try:
        stat = index_path.stat()
        index = json.loads(index_path.read_text(encoding="utf-8"))
        array_bytes = index_path.with_suffix(".npy").stat().st_size
        shape = index["shape"]
        return CacheEntry(
            key=index_path.stem,
            folder=str(index.get("root", "?")),
            num_images=int(shape[0]),
            size_bytes=array_bytes + stat.st_size,
            last_used=stat.st_mtime,
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # being written or removed by another process, or not ours
