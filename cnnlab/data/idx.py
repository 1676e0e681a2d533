"""Reader for the IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.

Header: two zero bytes, a type code, the number of dimensions, then each dimension as a big-endian
uint32; the payload follows in C order, big-endian. Every malformed file gets a DataError.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cnnlab.errors import DataError

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_DIMS = 8
READ_CHUNK_BYTES = 16 * 1024**2
MAX_PAYLOAD_BYTES = 1024**3  # the largest IDX file in use (MNIST train) holds 47 MB
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed when its name ends in .gz) into a native-endian array."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return _read_idx_stream(f, path)
        with open(path, "rb") as f:
            return _read_idx_stream(f, path)
    except FileNotFoundError:
        raise DataError(
            f"IDX file '{path}' does not exist. Check the path, or let cnnlab find or download "
            "the data set (--data-dir, CNNLAB_DATA)."
        ) from None
    except gzip.BadGzipFile as error:
        raise DataError(
            f"IDX file '{path}' is not gzip-compressed although its name ends in .gz ({error}). "
            "Rename it without .gz if it is a raw IDX file, or fetch a fresh copy."
        ) from None
    except (EOFError, zlib.error) as error:
        raise DataError(
            f"IDX file '{path}' is a damaged or truncated gzip file ({error}). "
            "Delete it and fetch a fresh copy."
        ) from None
    except OSError as error:
        raise DataError(
            f"IDX file '{path}' could not be read ({error}). Check that it is a readable file."
        ) from None


def _read_idx_stream(f: BinaryIO, path: Path) -> np.ndarray:
    dtype, shape = _read_header(f, path)
    size = dtype.itemsize * math.prod(shape)
    if size > MAX_PAYLOAD_BYTES:
        raise DataError(
            f"IDX file '{path}' declares dimensions {shape} ({size:,} bytes of data), more than "
            f"the {MAX_PAYLOAD_BYTES:,} bytes cnnlab accepts; the header is probably corrupt. "
            "Fetch a fresh copy of the file."
        )
    payload = _read_at_most(f, size)
    got = len(payload)
    if got < size:
        raise DataError(
            f"IDX file '{path}' is truncated: its header declares dimensions {shape} "
            f"({size:,} bytes of data) but only {got:,} bytes follow. Fetch a fresh copy."
        )
    if f.read(1):
        raise DataError(
            f"IDX file '{path}' has trailing bytes after the {size:,} bytes of data that its "
            f"header declares (dimensions {shape}). The file is corrupt or not an IDX file; "
            "fetch a fresh copy."
        )
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


def _read_header(f: BinaryIO, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    magic = f.read(4)
    if len(magic) < 4:
        raise DataError(
            f"IDX file '{path}' is too short to hold an IDX header ({len(magic)} bytes). "
            "Fetch a fresh copy."
        )
    if magic[:2] != b"\x00\x00":
        hint = ""
        if magic[:2] == GZIP_MAGIC:
            hint = " The file looks gzip-compressed: give it a name ending in .gz."
        raise DataError(
            f"IDX file '{path}' has a bad magic number 0x{magic.hex()}: an IDX file starts with "
            f"two zero bytes, a type code and the number of dimensions.{hint}"
        )
    type_code, num_dims = magic[2], magic[3]
    if type_code not in IDX_TYPES:
        known = ", ".join(f"0x{code:02X}" for code in IDX_TYPES)
        raise DataError(
            f"IDX file '{path}' has the unknown type code 0x{type_code:02X}; expected one of "
            f"{known}. The file is corrupt or not an IDX file."
        )
    if num_dims == 0 or num_dims > MAX_DIMS:
        raise DataError(
            f"IDX file '{path}' declares {num_dims} dimensions; expected 1 to {MAX_DIMS}. "
            "The file is corrupt or not an IDX file."
        )
    raw_dims = f.read(4 * num_dims)
    if len(raw_dims) < 4 * num_dims:
        raise DataError(
            f"IDX file '{path}' is truncated inside its header: {num_dims} dimensions declared "
            f"but only {len(raw_dims)} of {4 * num_dims} size bytes present. Fetch a fresh copy."
        )
    shape = struct.unpack(f">{num_dims}I", raw_dims)
    return IDX_TYPES[type_code], shape


def _read_at_most(f: BinaryIO, size: int) -> bytearray:
    """Up to size bytes of f, in chunks: memory grows with the bytes present, not with what a
    header declares (a corrupt 8-byte file declaring 1 GiB once cost 1 GiB and seconds)."""
    payload = bytearray()
    while len(payload) < size:
        chunk = f.read(min(size - len(payload), READ_CHUNK_BYTES))
        if not chunk:
            break
        payload += chunk
    return payload
