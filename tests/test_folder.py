"""folder: data sets: layout, splits, preprocessing, the decode cache, and every kind of bad file.

Every image is made by the test in a temporary folder; pixel values are checked, not just shapes.
"""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import dataset_info, decode, locate
from cnnlab.data.folder import LoadOptions, load_folder, parse_image_size, scan_folder
from cnnlab.data.images import decode_image, load_image_file
from cnnlab.errors import ConfigError, DataError
from cnnlab.run.records import DatasetRecord
from cnnlab.run.splits import make_record, select_split


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIRS", [tmp_path / "system"])


def save(path: Path, pixels: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **options)
    return path


def solid(value, size=(6, 6), channels=3) -> np.ndarray:
    shape = (*size, channels) if channels == 3 else size
    return np.full(shape, value, dtype=np.uint8)


def make_classes(root: Path, counts: dict[str, int], size=(6, 6), channels=3) -> None:
    """counts[name] PNG images per class; class c's images have the value 40 * (c + 1)."""
    for index, (name, count) in enumerate(counts.items()):
        for i in range(count):
            save(root / name / f"{i:03d}.png", solid(40 * (index + 1), size, channels))


def png_bomb(width: int, height: int) -> bytes:
    """A PNG header declaring a huge size, with no pixel data: decoding it could not succeed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def jpeg_bytes(pixels: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, **options)
    return buffer.getvalue()


def load_quietly(root, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_folder(root, LoadOptions(**options))
    return dataset, [str(w.message) for w in caught]


def reason_of(dataset, name: str) -> str:
    return next(row["reason"] for row in dataset.skipped if row["file"] == name)


# ---------------------------------------------------------------- bad files, one test each


@pytest.fixture
def good_folder(tmp_path):
    root = tmp_path / "images"
    make_classes(root, {"a": 3, "b": 3})
    return root


def test_truncated_jpeg_is_skipped(good_folder):
    data = jpeg_bytes(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    (good_folder / "a" / "cut.jpg").write_bytes(data[: len(data) // 2])
    dataset, messages = load_quietly(good_folder)
    assert reason_of(dataset, "a/cut.jpg").startswith("damaged or truncated")
    assert len(dataset.train_labels) == 6 and len(messages) == 1 and "a/cut.jpg" in messages[0]


def test_zero_byte_file_is_skipped(good_folder):
    (good_folder / "b" / "empty.png").write_bytes(b"")
    dataset, messages = load_quietly(good_folder)
    assert reason_of(dataset, "b/empty.png") == "empty file (0 bytes)"
    assert "b/empty.png: empty file" in messages[0]


def test_text_file_named_jpg_is_skipped(good_folder):
    (good_folder / "a" / "notes.jpg").write_text("these are my notes, not a picture")
    dataset, _ = load_quietly(good_folder)
    assert reason_of(dataset, "a/notes.jpg").startswith("not an image")
    assert "a/notes.jpg" not in dataset.files["train"]


def test_decompression_bomb_is_refused_before_decoding(good_folder):
    (good_folder / "a" / "bomb.png").write_bytes(png_bomb(12_000, 12_000))  # over cnnlab's limit
    (good_folder / "b" / "bomb.png").write_bytes(png_bomb(30_000, 30_000))  # over PIL's as well
    tracemalloc.start()
    dataset, _ = load_quietly(good_folder)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # "too large", not "damaged": the size was refused from the header, before any pixel data
    # (which these files do not even have) was looked for.
    assert reason_of(dataset, "a/bomb.png").startswith("too large (12000x12000 pixels")
    assert reason_of(dataset, "b/bomb.png").startswith("too large")
    assert peak < 20 * 1024**2 and len(dataset.train_labels) == 6


def test_cmyk_jpeg_gives_rgb(tmp_path):
    cyan = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    cyan.save(tmp_path / "cmyk.jpg", quality=100)
    pixels = load_image_file(tmp_path / "cmyk.jpg", 3, (8, 8))
    assert pixels[:, 4, 4].tolist() == pytest.approx([0, 255, 255], abs=3)


def test_sixteen_bit_gray_png_keeps_its_levels(tmp_path):
    values = np.array([[0, 4096, 20000, 40000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    pixels = decode_image(tmp_path / "deep.png", None, (1, 5))
    assert pixels.shape == (1, 1, 5)  # stays one band
    assert pixels[0, 0].tolist() == [0, 16, 78, 156, 255]  # round(v * 255 / 65535), not clipped


def test_palette_png_with_transparency(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([200, 30, 10, 0, 255, 0] + [0] * 762)
    image.putdata([0, 1])
    image.save(tmp_path / "palette.png", transparency=1)
    pixels = decode_image(tmp_path / "palette.png", None, (1, 2))
    assert pixels[:, 0, 0].tolist() == [200, 30, 10] and pixels[:, 0, 1].tolist() == [0, 0, 0]


def test_rgba_is_composited_on_black(tmp_path):
    rgba = np.array([[[255, 255, 255, 255], [255, 255, 255, 0], [100, 200, 50, 51]]], np.uint8)
    save(tmp_path / "rgba.png", rgba)
    pixels = decode_image(tmp_path / "rgba.png", None, (1, 3))
    assert pixels[:, 0].T.tolist() == [[255, 255, 255], [0, 0, 0], [20, 40, 10]]


def test_one_bit_image_gives_0_and_255(tmp_path):
    image = Image.new("1", (3, 1))
    image.putdata([0, 1, 0])
    image.save(tmp_path / "bits.png")
    pixels = decode_image(tmp_path / "bits.png", None, (1, 3))
    assert pixels.shape == (1, 1, 3) and pixels[0, 0].tolist() == [0, 255, 0]


def test_exif_rotated_jpeg_is_turned_upright(tmp_path):
    stored = np.zeros((16, 32), np.uint8)
    stored[:, :16] = 255  # stored: left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: the white half ends up on top
    (tmp_path / "rotated.jpg").write_bytes(jpeg_bytes(stored, exif=exif))
    pixels = decode_image(tmp_path / "rotated.jpg", None, None)
    assert pixels.shape == (1, 32, 16)
    assert pixels[0, :14].min() > 240 and pixels[0, 18:].max() < 15


def test_hidden_files_and_junk_are_skipped_with_reasons(good_folder):
    (good_folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (good_folder / "a" / "._000.png").write_bytes(b"\x00\x05\x16\x07")  # AppleDouble
    (good_folder / "b" / "Thumbs.db").write_bytes(b"junk")
    (good_folder / "b" / ".hidden").mkdir()
    save(good_folder / "b" / ".hidden" / "x.png", solid(1))
    (good_folder / "README.txt").write_text("class folders below")
    dataset, _ = load_quietly(good_folder)
    reasons = {row["file"]: row["reason"] for row in dataset.skipped}
    assert reasons == {
        ".DS_Store": "hidden file or folder",
        "README.txt": "not inside a class folder",
        "a/._000.png": "hidden file",
        "b/.hidden/": "hidden folder",
        "b/Thumbs.db": "not an image file type (.db)",
    }
    assert len(dataset.train_labels) == 6


def test_empty_class_folder_is_left_out(good_folder):
    (good_folder / "c-empty").mkdir()
    (good_folder / "d-broken").mkdir()
    (good_folder / "d-broken" / "x.png").write_bytes(b"not a png")
    dataset, messages = load_quietly(good_folder)
    assert dataset.class_names == ["a", "b"]
    assert reason_of(dataset, "c-empty/").startswith("class folder without usable images")
    assert reason_of(dataset, "d-broken/").startswith("class folder without usable images")
    assert sorted(dataset.train_labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert len(messages) == 1


def test_folder_without_images_is_an_error(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "x" / name).mkdir(parents=True)
        (tmp_path / "x" / name / "notes.txt").write_text("nothing")
    with pytest.raises(DataError, match="but no image files in them"):
        load_folder(tmp_path / "x")


def test_no_class_folders_says_what_layout_was_expected(tmp_path):
    save(tmp_path / "flat" / "one.png", solid(1))
    with pytest.raises(DataError) as caught:
        load_folder(tmp_path / "flat")
    message = str(caught.value)
    assert "no class folders" in message and "1 image files directly" in message
    assert "one sub-folder per class" in message and "train/" in message
    with pytest.raises(DataError, match="is not a folder"):
        load_folder(tmp_path / "missing")


def test_strict_stops_at_unreadable_files(good_folder):
    (good_folder / "a" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="--strict") as caught:
        load_folder(good_folder, LoadOptions(strict=True))
    assert "a/empty.jpg: empty file" in str(caught.value)


def test_one_class_is_not_enough(tmp_path):
    make_classes(tmp_path / "one", {"only": 3})
    with pytest.raises(DataError, match="at least two"):
        load_folder(tmp_path / "one")


# ---------------------------------------------------------------- layout, channels, sizes


def test_formats_channels_and_labels(tmp_path):
    root = tmp_path / "formats"
    value = {"bmp": 10, "tiff": 20, "webp": 30, "jpg": 40, "png": 50}
    for name, v in value.items():
        for i in range(2):
            save(root / name / f"{i}.{name}", solid(v, (8, 8), channels=1), **(
                {"lossless": True} if name == "webp" else {}))  # fmt: skip
    dataset, messages = load_quietly(root)
    assert messages == [] and dataset.channels == 1 and dataset.image_size == (8, 8)
    assert dataset.class_names == sorted(value)
    for label, name in enumerate(dataset.class_names):
        images = dataset.train_images[dataset.train_labels == label]
        assert len(images) == 2 and (images.float() - value[name]).abs().max() <= 1


def test_colour_anywhere_makes_three_bands_and_channels_can_be_forced(tmp_path):
    root = tmp_path / "mixed"
    make_classes(root, {"gray": 2}, channels=1)
    save(root / "red" / "0.png", np.tile(np.array([200, 0, 0], np.uint8), (6, 6, 1)))
    save(root / "red" / "1.png", np.tile(np.array([200, 0, 0], np.uint8), (6, 6, 1)))
    colour = load_folder(root)
    assert colour.channels == 3
    gray_images = colour.train_images[colour.train_labels == 0]
    assert torch.equal(gray_images[:, 0], gray_images[:, 2])  # gray images fill all bands
    forced = load_folder(root, LoadOptions(channels=1))
    red = forced.train_images[forced.train_labels == 1]
    assert forced.channels == 1 and red.unique().tolist() == [60]  # luma of (200, 0, 0)


def test_aspect_pad_crop_and_stretch(tmp_path):
    wide = np.zeros((4, 8), np.uint8)
    wide[:, 2:6] = 255  # a white centre band on black
    save(tmp_path / "wide.png", wide)
    padded = decode_image(tmp_path / "wide.png", 1, (8, 8), aspect="pad")[0]
    assert padded[:2].max() == 0 and padded[6:].max() == 0  # black bars above and below
    assert padded[2:6].tolist() == wide.tolist()  # the image itself, unscaled
    cropped = decode_image(tmp_path / "wide.png", 1, (4, 4), aspect="crop")[0]
    assert cropped.min() == 255  # only the white centre remains
    stretched = decode_image(tmp_path / "wide.png", 1, (8, 8), aspect="stretch")[0]
    assert stretched[:, 0].max() == 0 and stretched[:, 4].min() == 255


def test_mixed_sizes_and_automatic_size(tmp_path):
    root = tmp_path / "sizes"
    make_classes(root, {"a": 3, "b": 3}, size=(300, 200))
    save(root / "a" / "odd.png", solid(40, (50, 90)))
    dataset, _ = load_quietly(root)
    assert dataset.image_size == (128, 85)  # most are 300x200 (H x W), scaled to 128 at most
    assert dataset.preprocess["image_size_note"].startswith("most images are 300x200")
    assert len(dataset.train_labels) == 7
    sized = load_folder(root, LoadOptions(image_size=parse_image_size("24x16")))
    assert sized.image_size == (16, 24)
    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        parse_image_size("12x")


def test_split_folders_are_used(tmp_path):
    make_classes(tmp_path / "s" / "train", {"a": 4, "b": 4})
    make_classes(tmp_path / "s" / "val", {"a": 1, "b": 1})
    make_classes(tmp_path / "s" / "test", {"a": 2, "b": 1})
    (tmp_path / "s" / "notes").mkdir()
    dataset, _ = load_quietly(tmp_path / "s")
    record = make_record(dataset, val_fraction=0.5, seed=0)
    assert {name: record.splits[name]["from"] for name in record.splits} == {
        "train": "train", "val": "val", "test": "test"}  # fmt: skip
    assert record.class_counts == {"train": [4, 4], "val": [1, 1], "test": [2, 1]}
    assert record.splits["test"]["files"] == ["test/a/000.png", "test/a/001.png",
                                                 "test/b/000.png"]  # fmt: skip
    assert reason_of(dataset, "notes/") == "folder beside train/, val/, test/"


def test_carved_test_split_is_seeded_recorded_and_reselected(tmp_path):
    root = tmp_path / "c"
    make_classes(root, {"a": 20, "b": 10})
    dataset = load_folder(root)
    first = make_record(dataset, 0.1, seed=1, test_fraction=0.2, split_seed=0)
    other_run_seed = make_record(dataset, 0.1, seed=2, test_fraction=0.2, split_seed=0)
    test_files = first.splits["test"]["files"]
    assert first.class_counts["test"] == [4, 2] and len(test_files) == 6
    assert other_run_seed.splits["test"]["files"] == test_files  # the run seed does not move it
    assert first.splits["val"]["files"] != other_run_seed.splits["val"]["files"]
    all_files = [f for s in ("train", "val", "test") for f in first.splits[s]["files"]]
    assert sorted(all_files) == sorted(dataset.files["train"])
    # A new file in the folder changes the cache key, but the recorded split stays the same.
    save(root / "a" / "new.png", solid(1))
    again = load_folder(root)
    split = select_split(
        again, DatasetRecord.from_dict(json.loads(json.dumps(first.to_dict()))), "test"
    )
    assert split.sample_ids == test_files
    expected = torch.tensor([0 if f.startswith("a/") else 1 for f in test_files])
    assert torch.equal(split.labels, expected)
    assert (split.images.float().mean(dim=(1, 2, 3)) == 40 * (expected + 1)).all()
    (root / test_files[0]).unlink()
    with pytest.raises(DataError, match="missing or unreadable"):
        select_split(load_folder(root), first, "test")


# ---------------------------------------------------------------- cache and parallel decoding


def test_cache_is_used_safely_and_invalidated_by_changes(tmp_path, monkeypatch):
    root = tmp_path / "cached"
    make_classes(root, {"a": 2, "b": 2})
    first = load_folder(root)
    assert first.preprocess["from_cache"] is False
    entries = sorted(p.suffix for p in decode.decoded_cache_dir().iterdir())
    assert entries == [".json", ".npy"]
    np.load(next(decode.decoded_cache_dir().glob("*.npy")), allow_pickle=False)
    again = load_folder(root)
    assert again.preprocess["from_cache"] is True
    assert torch.equal(first.train_images, again.train_images)
    save(root / "a" / "000.png", solid(7))  # same name and size, new content and mtime
    changed = load_folder(root)
    assert changed.preprocess["from_cache"] is False and changed.train_images[0].max() == 7
    assert len(list(decode.decoded_cache_dir().glob("*.npy"))) == 1  # the stale entry is gone
    assert load_folder(root, LoadOptions(cache=False)).preprocess["from_cache"] is False


class CreatesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_cache_entry_holding_a_pickle_is_never_unpickled(tmp_path):
    root = tmp_path / "cached"
    make_classes(root, {"a": 2, "b": 2})
    load_folder(root)
    entry = next(decode.decoded_cache_dir().glob("*.npy"))
    marker = tmp_path / "pwned"
    np.save(entry, np.array([CreatesAFile(marker)], dtype=object), allow_pickle=True)
    again = load_folder(root)
    assert again.preprocess["from_cache"] is False and not marker.exists()
    assert again.train_images.shape == (4, 1, 6, 6)  # solid gray pictures: one band
    info = dataset_info(f"folder:{root}")
    assert info["num_classes"] == 2 and info["files"] == {"train": 4}


def test_parallel_decoding_equals_serial(tmp_path, monkeypatch):
    root = tmp_path / "many"
    rng = np.random.default_rng(0)
    for i in range(40):
        save(root / f"c{i % 2}" / f"{i}.png", rng.integers(0, 255, (5, 7, 3), dtype=np.uint8))
    (root / "c0" / "bad.png").write_bytes(b"x")
    files = scan_folder(root).files["train"]
    preprocess = decode.Preprocess((6, 6), "pad", None)
    serial = decode.decode_files(root, files, preprocess, cache=False, workers=1)
    monkeypatch.setattr(decode, "SERIAL_BELOW", 1)
    monkeypatch.setattr(decode, "CHUNK_FILES", 7)
    parallel = decode.decode_files(root, files, preprocess, cache=False, workers=2)
    assert torch.equal(serial.images, parallel.images) and serial.kept == parallel.kept
    assert parallel.failures == serial.failures
    assert [files[i] for i, _ in parallel.failures] == ["c0/bad.png"]
    assert len(parallel.images) == 40 and parallel.images.shape[1:] == (3, 6, 6)


# ---------------------------------------------------------------- end to end through the CLI


def test_train_evaluate_predict_on_a_messy_folder(tmp_path, capsys):
    import csv

    from cnnlab.cli import main

    root = tmp_path / "messy"
    rng = np.random.default_rng(0)
    for index, (name, count) in enumerate({"common": 24, "rare": 6}.items()):
        for i in range(count):
            height, width = (12, 16) if i % 3 else (20, 10)  # mixed sizes and aspect ratios
            pixels = rng.integers(0, 80, (height, width, 3), dtype=np.uint8) + 120 * index
            save(root / name / f"{i:02d}.png", pixels)
    (root / "rare" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / ".DS_Store").write_bytes(b"junk")
    run = tmp_path / "run"
    args = ["train", "--data", f"folder:{root}", "--image-size", "12", "--epochs", "2",
            "--batch-size", "8", "--model-options", "widths=[8]", "--model-options", "depth=1",
            "--val-fraction", "0.2", "--out", str(run)]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "rare/broken.jpg" in err and "skipped 2 file(s)" in err and "kappa" in err
    record = json.loads((run / "dataset.json").read_text())
    assert record["class_counts"]["test"] == [5, 1] and sum(record["class_counts"]["train"]) == 19
    assert record["preprocess"]["aspect"] == "pad" and record["image_size"] == [12, 12]
    assert {row["file"] for row in record["skipped"]} == {".DS_Store", "rare/broken.jpg"}
    assert main(["evaluate", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_samples"] == 6 and "balanced_accuracy" in metrics
    with open(run / "eval" / "test-predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["sample"] for row in rows] == record["splits"]["test"]["files"]
    paths = [str(root / row["sample"]) for row in rows]
    assert main(["predict", str(run), *paths, "--json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    assert [p["predicted"] for p in predictions] == [row["predicted"] for row in rows]
    confidences = [float(row["confidence"]) for row in rows]  # the same pixels, the same numbers
    assert [p["confidence"] for p in predictions] == pytest.approx(confidences, abs=2e-6)
