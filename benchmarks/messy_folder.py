"""End-to-end check on a messy, imbalanced folder of synthetic micrographs with junk files inside.

Makes `impurity` (many), `egg` and `larva` (few) images of mixed sizes, formats and modes, plus
junk (truncated, empty, text-as-image, hidden, .DS_Store, Thumbs.db, an empty class folder); then
trains and evaluates with the CLI and checks that the junk is listed and the counts are right.

    .venv/bin/python benchmarks/messy_folder.py [--out runs/bench-messy] [--epochs 8]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COUNTS = {"impurity": 600, "egg": 90, "larva": 40}
SIZES = [(64, 48), (80, 80), (50, 70), (120, 90)]  # (width, height)


def micrograph(kind: str, rng: np.random.Generator) -> Image.Image:
    width, height = SIZES[rng.integers(len(SIZES))]
    background = int(rng.integers(150, 210))
    image = Image.new("L", (width, height), background)
    draw = ImageDraw.Draw(image)
    cx, cy = width / 2 + rng.normal(0, 4), height / 2 + rng.normal(0, 4)
    size = min(width, height) * rng.uniform(0.25, 0.4)
    tone = int(rng.integers(40, 100))
    if kind == "egg":  # an oval with a thick shell
        draw.ellipse(
            (cx - size, cy - size * 0.7, cx + size, cy + size * 0.7), outline=tone, width=4
        )
    elif kind == "larva":  # a long thin worm
        points = [(cx - size * 1.2 + i * size * 0.3, cy + 4 * np.sin(i)) for i in range(9)]
        draw.line(points, fill=tone, width=3)
    else:  # impurities: irregular blobs
        for _ in range(int(rng.integers(2, 6))):
            x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(2, size / 2)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.integers(60, 140)))
    noise = rng.normal(0, 6, (height, width))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def make_folder(root: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for kind, count in COUNTS.items():
        for i in range(count):
            image = micrograph(kind, rng)
            folder = root / kind / ("batch2" if i % 7 == 0 else "")  # some in a nested folder
            folder.mkdir(parents=True, exist_ok=True)
            style = i % 5
            if style == 0:
                image.save(folder / f"{i:04d}.jpg", quality=90)
            elif style == 1:
                image.convert("RGB").save(folder / f"{i:04d}.png")  # gray stored as RGB
            elif style == 2:
                Image.fromarray(np.asarray(image).astype(np.uint16) * 257).save(
                    folder / f"{i:04d}.tif"
                )
            elif style == 3:
                image.convert("LA").save(folder / f"{i:04d}.png")
            else:
                image.save(folder / f"{i:04d}.bmp")
    junk = {
        "impurity/scan-cut.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(200),
        "egg/empty.png": b"",
        "egg/notes.png": b"microscope settings: 40x",
        "larva/Thumbs.db": b"junk",
        "larva/._0001.bmp": b"\x00\x05\x16\x07",
        ".DS_Store": b"Bud1",
        "README.txt": b"one folder per class",
    }
    for name, data in junk.items():
        (root / name).write_bytes(data)
    (root / "unlabelled").mkdir()


def cnnlab(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cnnlab", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-messy")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--folder", type=Path, help="make the folder here (default: a temp dir)")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="cnnlab-messy-") as scratch:
        root = args.folder or Path(scratch) / "messy"
        shutil.rmtree(root, ignore_errors=True)
        make_folder(root)
        trained = cnnlab("train", "--data", f"folder:{root}", "--image-size", "48",
                         "--epochs", str(args.epochs), "--sampler", "balanced", "--vflip", "0.5",
                         "--rotate", "180", "--out", args.out)  # fmt: skip
        metrics = json.loads(cnnlab("evaluate", args.out, "--json").stdout)
    record = json.loads((Path(args.out) / "dataset.json").read_text())
    summary = {
        "classes": record["class_names"],
        "channels": record["channels"],
        "class_counts": record["class_counts"],
        "skipped": {row["file"]: row["reason"] for row in record["skipped"]},
        "test_accuracy": round(metrics["accuracy"], 4),
        "test_balanced_accuracy": round(metrics["balanced_accuracy"], 4),
        "test_cohen_kappa": round(metrics["cohen_kappa"], 4),
        "per_class_recall": {row["class"]: round(row["recall"], 3) for row in metrics["per_class"]},
        "train_log_tail": trained.stderr.strip().splitlines()[-4:],
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
