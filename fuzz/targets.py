"""The one-input functions the fuzz harnesses and tests/test_fuzz.py share (issue 16, item 9).

Contract of every parser fed here: an input ends in a value or a CnnlabError with a message.
Each function returns normally in both cases and lets any other exception escape, which the
fuzzer reports as a crash (and the test as a failure).
"""

from __future__ import annotations

import atexit
import gzip
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from cnnlab.errors import CnnlabError

_SCRATCH = Path(tempfile.mkdtemp(prefix="cnnlab-fuzz-"))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)


def _expect_value_or_error(call: Callable[[], object]) -> object:
    try:
        return call()
    except CnnlabError as error:
        if not str(error).strip():
            raise AssertionError(f"{type(error).__name__} without a message") from error
        return error


def _scratch_file(name: str, data: bytes) -> Path:
    path = _SCRATCH / f"{os.getpid()}-{name}"
    path.write_bytes(data)
    return path


def spec_one_input(data: bytes) -> None:
    """The network spec grammar (`--model "conv32 -> relu -> fc"`); a parsed spec round-trips."""
    from cnnlab.specs.network import looks_like_spec, parse_spec

    text = data.decode("utf-8", errors="replace")
    looks_like_spec(text)
    spec = _expect_value_or_error(lambda: parse_spec(text))
    if not isinstance(spec, CnnlabError):
        assert parse_spec(spec.text()) == spec, f"{text!r} -> {spec.text()!r} does not round-trip"


def idx_one_input(data: bytes) -> None:
    """read_idx on a file: the first byte picks raw, gzip-compressed here, or raw named .gz."""
    from cnnlab.data.idx import read_idx

    mode, payload = (data[0] % 3, data[1:]) if data else (0, b"")
    if mode == 1:
        payload = gzip.compress(payload, compresslevel=1, mtime=0)
    path = _scratch_file("input.idx" + (".gz" if mode else ""), payload)
    _expect_value_or_error(lambda: read_idx(path))


def image_one_input(data: bytes) -> None:
    """decode_image (the entry point of folder data sets and predict) on a file's bytes."""
    from cnnlab.data.images import decode_image

    channels, size = (None, None) if not data or data[0] % 2 else (3, (16, 16))
    path = _scratch_file("input.img", data)
    _expect_value_or_error(lambda: decode_image(path, channels, size, aspect="pad"))


def toml_one_input(data: bytes) -> None:
    """A `--config` TOML file: load_toml, then TrainConfig.from_dict as `cnnlab train` does."""
    from cnnlab.training.config import TrainConfig, load_toml

    path = _scratch_file("config.toml", data)
    _expect_value_or_error(lambda: TrainConfig.from_dict(load_toml(path), str(path)))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "spec": spec_one_input,
    "idx": idx_one_input,
    "image": image_one_input,
    "toml": toml_one_input,
}
