"""Seed inputs per target (valid files and near misses), and seeded mutations of them: the
fuzzers' starting corpus and the deterministic short run of tests/test_fuzz.py."""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import numpy as np
from PIL import Image

SPECS = [
    "INPUT -> [[CONV32 -> RELU]*2 -> POOL]*3 -> FC",
    "conv16 -> dn -> pool -> flatten -> fc10 -> fc",
    "conv8x3 -> relu -> fc",
    "[conv32x3/2 -> bn -> lrelu]*2 -> gap -> dropout0.5 -> fc",
    "sep64 -> se -> res[conv16 -> relu] -> avgpool3/2 -> fc",
    "conv0 -> fc", "[conv8]*0 -> fc", "((conv8", "conv8x3x3/0 -> fc", "fc -> conv8",
]  # fmt: skip
TOMLS = [
    '[train]\nmodel = "conv8 -> relu -> fc"\nepochs = 1\n',
    'data = "digits"\nbatch_size = 32\nlearning_rate = 0.01\nval_fraction = 0.2\n',
    '[train]\nepochs = "two"\n',
    "epochs = 0\n",
    "train = 5\n",
    'recipe = "nope"\n',
    "model_options = { widths = [8, 16] }\n",
    "[train\n",
]


def _idx(array: np.ndarray, type_code: int) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _image(kind: str, mode: str = "RGB") -> bytes:
    pixels = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


def seeds(name: str) -> list[bytes]:
    if name == "spec":
        return [text.encode() for text in SPECS]
    if name == "toml":
        return [text.encode() for text in TOMLS]
    if name == "idx":
        labels = np.arange(10, dtype=np.uint8)
        images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
        floats = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
        raw = [_idx(labels, 0x08), _idx(images, 0x08), _idx(floats, 0x0D), _idx(labels, 0x0B)]
        huge = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 2**30 - 1)  # 8 bytes declaring 1 GiB
        raw.append(huge)
        return [bytes([mode]) + data for data in raw for mode in (0, 1)] + [b"", b"\0\0\x08"]
    if name == "image":
        kinds = [("PNG", "RGB"), ("PNG", "L"), ("PNG", "P"), ("JPEG", "RGB"), ("GIF", "P")]
        kinds += [
            ("BMP", "RGB"),
            ("WEBP", "RGB"),
            ("TIFF", "RGB"),
            ("PNG", "RGBA"),
            ("PNG", "I;16"),
        ]
        files = [_image(kind, mode) for kind, mode in kinds]
        return files + [data[: len(data) // 2] for data in files] + [b"", b"\x89PNG\r\n\x1a\n"]
    raise KeyError(name)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four byte flips, insertions, deletions or splices: a cheap, seeded mutation."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        position = rng.randint(0, len(data))
        if choice < 0.4 and data:
            data[min(position, len(data) - 1)] = rng.randrange(256)
        elif choice < 0.6:
            data[position:position] = bytes([rng.randrange(256)] * rng.randint(1, 4))
        elif choice < 0.8:
            del data[position : position + rng.randint(1, 8)]
        else:
            data = data[:position] + data[: rng.randint(0, len(data))]
    return bytes(data)


def corpus(name: str, count: int, seed: int = 0) -> list[bytes]:
    """The seeds, then count - len(seeds) seeded mutations of them."""
    rng = random.Random(f"{name}-{seed}")
    start = seeds(name)
    return start + [mutate(rng.choice(start), rng) for _ in range(count - len(start))]


def write_seeds(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(seeds(name)):
        (folder / f"seed-{index:03d}").write_bytes(data)
    return folder
