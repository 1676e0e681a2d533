"""Tests of cnnlab.data: IDX reading, search path and downloader, data sets, splits, image files.

Offline: downloads come from file:// URLs in a temporary folder, or fail on 127.0.0.1:9.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import (
    DATASETS,
    channel_mean_std,
    dataset_info,
    load_dataset,
    load_image_file,
    locate,
    read_idx,
    save_image_file,
    search_dirs,
    splits,
    stratified_split,
)
from cnnlab.data.locate import IDX_FILE_NAMES, Download
from cnnlab.errors import ConfigError, DataError, UnknownNameError

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
UNREACHABLE = "http://127.0.0.1:9/"


@pytest.fixture(autouse=True)
def isolated_locations(tmp_path, monkeypatch):
    """No test sees the real cache, $CNNLAB_DATA or /usr/share/datasets."""
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIRS", [tmp_path / "system"])


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_fake_mnist(folder: Path, compressed: bool = True, seed: int = 0) -> dict:
    """Four small MNIST-shaped IDX files: 12 train and 5 test images."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(12) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([7, 2, 1, 0, 4], dtype=np.uint8),
    }
    for stem, array in arrays.items():
        write_file(folder / (stem + (".gz" if compressed else "")), idx_bytes(array))
    return arrays


# IDX reader


@pytest.mark.parametrize(
    "type_code, dtype",
    [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32),
     (0x0D, np.float32), (0x0E, np.float64)],
)  # fmt: skip
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, type_code, dtype, suffix):
    array = (np.arange(2 * 3 * 4) * 7 - 40).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    path = write_file(tmp_path / f"data.idx{suffix}", idx_bytes(array, type_code))
    result = read_idx(path)
    assert result.dtype == np.dtype(dtype) and result.dtype.isnative
    assert result.shape == (2, 3, 4)
    np.testing.assert_array_equal(result, array)


def test_idx_big_endian_payload_by_hand(tmp_path):
    data = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2]) + bytes([0x01, 0x02, 0xFF, 0xFE])
    path = write_file(tmp_path / "two.idx", data)
    np.testing.assert_array_equal(read_idx(path), np.array([258, -2], dtype=np.int16))


MALFORMED = {
    "bad magic": (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
    "unknown type": (b"\x00\x00\x0a\x01" + struct.pack(">I", 1) + b"\x00", "type code 0x0A"),
    "zero dims": (b"\x00\x00\x08\x00", "declares 0 dimensions"),
    "short header": (b"\x00\x00", "too short"),
    "short dims": (b"\x00\x00\x08\x03" + struct.pack(">2I", 2, 2), "inside its header"),
    "truncated": (b"\x00\x00\x08\x02" + struct.pack(">2I", 3, 4) + bytes(11), "truncated"),
    "trailing": (b"\x00\x00\x08\x02" + struct.pack(">2I", 3, 4) + bytes(13), "trailing bytes"),
    "absurd": (b"\x00\x00\x0e\x03" + struct.pack(">3I", 2**31, 2**31, 2**31), "more than"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_malformed_gives_data_error(tmp_path, case, suffix):
    data, fragment = MALFORMED[case]
    path = write_file(tmp_path / f"bad.idx{suffix}", data)
    with pytest.raises(DataError) as caught:
        read_idx(path)
    assert fragment in str(caught.value)
    assert str(path) in str(caught.value)


def test_idx_not_gzip_despite_name(tmp_path):
    path = tmp_path / "raw.idx.gz"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DataError, match="not gzip-compressed"):
        read_idx(path)


def test_idx_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut.idx.gz"
    compressed = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32), 0x0C))
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match="truncated gzip"):
        read_idx(path)


def test_idx_gzip_without_gz_name_gets_a_hint(tmp_path):
    path = tmp_path / "packed.idx"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8))))
    with pytest.raises(DataError, match="gzip-compressed: give it a name ending in .gz"):
        read_idx(path)


def test_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nothing.idx")


# Search path


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    assert search_dirs("mnist", tmp_path / "explicit") == [
        tmp_path / "explicit" / "mnist",
        tmp_path / "explicit",
        tmp_path / "env" / "mnist",
        tmp_path / "env",
        tmp_path / "cache" / "cnnlab" / "datasets" / "mnist",
        tmp_path / "system" / "mnist",
    ]


def test_cache_defaults_to_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert search_dirs("mnist") == [
        tmp_path / "home" / ".cache" / "cnnlab" / "datasets" / "mnist",
        tmp_path / "system" / "mnist",
    ]


def test_first_complete_folder_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    write_fake_mnist(tmp_path / "system" / "mnist", seed=1)
    env_arrays = write_fake_mnist(tmp_path / "env", compressed=False, seed=2)
    # An incomplete folder earlier in the path is passed over.
    write_file(tmp_path / "explicit" / "mnist" / "train-images-idx3-ubyte.gz", b"")
    dataset = load_dataset("mnist", data_dir=tmp_path / "explicit", download=False)
    assert dataset.location == str(tmp_path / "env")
    images = env_arrays["train-images-idx3-ubyte"]
    assert torch.equal(dataset.train_images, torch.from_numpy(images).unsqueeze(1))

    explicit_arrays = write_fake_mnist(tmp_path / "explicit" / "mnist", seed=3)
    dataset = load_dataset("mnist", data_dir=tmp_path / "explicit", download=False)
    assert dataset.location == str(tmp_path / "explicit" / "mnist")
    images = explicit_arrays["t10k-images-idx3-ubyte"]
    assert torch.equal(dataset.test_images, torch.from_numpy(images).unsqueeze(1))


def test_system_folder_is_searched_last(tmp_path):
    write_fake_mnist(tmp_path / "system" / "fashion-mnist")
    dataset = load_dataset("fashion-mnist", download=False)
    assert dataset.location == str(tmp_path / "system" / "fashion-mnist")
    assert dataset.class_names[0] == "T-shirt/top" and dataset.class_names[-1] == "Ankle boot"


def test_idx_dataset_shapes_and_labels(tmp_path):
    arrays = write_fake_mnist(tmp_path / "data")
    dataset = load_dataset("mnist", data_dir=tmp_path / "data", download=False)
    assert dataset.train_images.shape == (12, 1, 28, 28)
    assert dataset.train_images.dtype == torch.uint8
    assert dataset.train_labels.dtype == torch.int64
    assert dataset.test_labels.tolist() == [7, 2, 1, 0, 4]
    assert (dataset.channels, dataset.image_size, dataset.num_classes) == (1, (28, 28), 10)
    assert dataset.train_labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()


def test_idx_dataset_count_mismatch(tmp_path):
    write_fake_mnist(tmp_path)
    write_file(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataError, match="same number of items"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_idx_dataset_wrong_image_size(tmp_path):
    write_fake_mnist(tmp_path)
    write_file(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(np.zeros((12, 8, 8), np.uint8)))
    with pytest.raises(DataError, match=r"shape \[N, 28, 28\]"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


# Downloader


def serve_fake_mnist(tmp_path: Path, monkeypatch, corrupt: str | None = None) -> dict:
    """Fake MNIST files behind a dead mirror and a file:// mirror, with their MD5s in the table."""
    server = tmp_path / "server"
    arrays = write_fake_mnist(server)
    md5 = {name: hashlib.md5((server / name).read_bytes()).hexdigest() for name in IDX_FILE_NAMES}
    if corrupt is not None:
        md5[corrupt] = "0" * 32
    mirrors = (UNREACHABLE, server.as_uri() + "/")
    monkeypatch.setitem(locate.DOWNLOADS, "mnist", Download(url_bases=mirrors, md5=md5))
    return arrays


def test_download_with_good_checksums(tmp_path, monkeypatch):
    arrays = serve_fake_mnist(tmp_path, monkeypatch)
    dataset = load_dataset("mnist")
    cache = tmp_path / "cache" / "cnnlab" / "datasets" / "mnist"
    assert dataset.location == str(cache)
    assert sorted(path.name for path in cache.iterdir()) == sorted(IDX_FILE_NAMES)
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"]).unsqueeze(1)
    assert torch.equal(dataset.train_images, expected)
    assert dataset_info("mnist")["found_at"] == str(cache)


def test_download_with_bad_checksum_keeps_no_file(tmp_path, monkeypatch):
    serve_fake_mnist(tmp_path, monkeypatch, corrupt="t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="wrong checksum") as caught:
        load_dataset("mnist")
    assert "t10k-images-idx3-ubyte.gz" in str(caught.value)
    cache = tmp_path / "cache" / "cnnlab" / "datasets" / "mnist"
    names = [path.name for path in cache.iterdir()]
    assert "t10k-images-idx3-ubyte.gz" not in names
    assert not [name for name in names if name.endswith(".tmp")]


def test_offline_error_lists_searched_folders(tmp_path, monkeypatch):
    offline = Download(url_bases=(UNREACHABLE,), md5=locate.DOWNLOADS["mnist"].md5)
    monkeypatch.setitem(locate.DOWNLOADS, "mnist", offline)
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    (tmp_path / "explicit").mkdir()
    with pytest.raises(DataError) as caught:
        load_dataset("mnist", data_dir=tmp_path / "explicit")
    message = str(caught.value)
    for folder in search_dirs("mnist", tmp_path / "explicit"):
        assert f"  {folder}\n" in message + "\n"
    for name in IDX_FILE_NAMES:
        assert name in message
    assert "--data-dir" in message and "CNNLAB_DATA" in message
    assert "127.0.0.1:9" in message


def test_no_download_when_turned_off(tmp_path, monkeypatch):
    def refuse(url):
        raise AssertionError(f"tried to fetch {url}")

    monkeypatch.setattr(locate, "_fetch", refuse)
    with pytest.raises(DataError, match="downloading is turned off"):
        load_dataset("fashion-mnist", download=False)


# Registry, info and digits


def test_registry_names_and_errors():
    assert DATASETS.names() == ["cifar10", "digits", "fashion-mnist", "mnist"]
    with pytest.raises(UnknownNameError, match="'mnist'"):
        load_dataset("mnsit")
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset("folder:/some/images")


def test_dataset_info_does_not_load_or_download(tmp_path, monkeypatch):
    monkeypatch.setattr(locate, "_fetch", lambda url: pytest.fail(f"fetched {url}"))
    info = dataset_info("fashion-mnist", data_dir=tmp_path / "explicit")
    assert info["found_at"] is None and info["downloadable"] is True
    assert info["searched"] == [str(p) for p in search_dirs("fashion-mnist", tmp_path / "explicit")]
    assert (info["num_classes"], info["channels"], info["image_size"]) == (10, 1, (28, 28))
    assert (info["train_count"], info["test_count"]) == (60_000, 10_000)
    digits = dataset_info("digits")
    assert digits["found_at"] == "scikit-learn (bundled)" and digits["downloadable"] is False
    assert (digits["train_count"], digits["test_count"]) == (1438, 359)


def test_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    expected = np.floor(bunch.images * 255 / 16 + 0.5).astype(np.uint8)
    torch.manual_seed(123)  # the run seed must not move the fixed test split
    dataset = load_dataset("digits")
    assert dataset.class_names == [str(d) for d in range(10)]
    assert dataset.train_images.shape == (1438, 1, 8, 8)
    assert dataset.test_images.shape == (359, 1, 8, 8)
    assert dataset.train_images.dtype == torch.uint8 and dataset.test_labels.dtype == torch.int64
    assert dataset.location == "scikit-learn (bundled)"
    # 20% of each class, rounded half up, is in the test split.
    class_counts = np.bincount(bunch.target)
    test_counts = np.bincount(dataset.test_labels.numpy(), minlength=10)
    assert test_counts.tolist() == [math.floor(n * 0.2 + 0.5) for n in class_counts]
    # The split is a partition of the original images, converted by round(v * 255 / 16).
    train_idx, test_idx = stratified_split(torch.from_numpy(bunch.target), 0.2, seed=0)
    np.testing.assert_array_equal(dataset.test_images[:, 0].numpy(), expected[test_idx.numpy()])
    np.testing.assert_array_equal(dataset.train_images[:, 0].numpy(), expected[train_idx.numpy()])
    assert dataset.train_images.max() == 255
    torch.manual_seed(456)
    assert torch.equal(load_dataset("digits").test_labels, dataset.test_labels)


# Splits and statistics


def test_stratified_split_proportions():
    counts = [50, 30, 7, 2, 1]
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))]
    train, val = stratified_split(labels, 0.2, seed=7)
    assert train.dtype == val.dtype == torch.int64
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(len(labels)))
    # 10, 6, round(1.4) = 1, at least 1 of 2, and a single sample stays in train.
    assert torch.bincount(labels[val], minlength=5).tolist() == [10, 6, 1, 1, 0]


def test_stratified_split_is_deterministic():
    labels = torch.arange(200) % 3
    first = stratified_split(labels, 0.25, seed=11)
    torch.manual_seed(0)
    again = stratified_split(labels, 0.25, seed=11)
    other = stratified_split(labels, 0.25, seed=12)
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    assert not torch.equal(first[1], other[1])


def test_stratified_split_zero_fraction():
    train, val = stratified_split(torch.tensor([0, 1, 1, 0]), 0.0, seed=0)
    assert train.tolist() == [0, 1, 2, 3] and val.tolist() == []


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan"), "0.1", True])
def test_stratified_split_rejects_bad_fractions(fraction):
    with pytest.raises(ConfigError, match="validation fraction"):
        stratified_split(torch.tensor([0, 1, 0, 1]), fraction, seed=0)


def test_channel_mean_std_matches_numpy(monkeypatch):
    images = torch.randint(0, 256, (37, 3, 5, 6), generator=torch.Generator().manual_seed(1))
    images = images.to(torch.uint8)
    values = images.numpy().astype(np.float64) / 255
    expected_mean = values.mean(axis=(0, 2, 3))
    expected_std = values.std(axis=(0, 2, 3))
    mean, std = channel_mean_std(images)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(std, expected_std, rtol=1e-12)
    monkeypatch.setattr(splits, "CHUNK_ELEMENTS", 100)  # many small chunks: the same answer
    assert channel_mean_std(images) == (mean, std)


# Image files


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares a huge size but holds no pixels: enough for PIL to read its size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("channels", [1, 3])
def test_image_round_trip(tmp_path, channels):
    generator = torch.Generator().manual_seed(channels)
    image = torch.randint(0, 256, (channels, 9, 7), generator=generator).to(torch.uint8)
    save_image_file(image, tmp_path / "image.png")
    assert torch.equal(load_image_file(tmp_path / "image.png", channels, (9, 7)), image)


def test_image_resize_and_channel_conversion(tmp_path):
    save_image_file(torch.full((1, 20, 10), 77, dtype=torch.uint8), tmp_path / "gray.png")
    result = load_image_file(tmp_path / "gray.png", 3, (5, 4))
    assert result.shape == (3, 5, 4) and bool((result == 77).all())


def test_image_rgba_composited_on_black(tmp_path):
    pixels = np.array([[[255, 0, 0, 255], [0, 255, 0, 0], [200, 100, 50, 128]]], np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgba.png")
    result = load_image_file(tmp_path / "rgba.png", 3, (1, 3))
    assert result[:, 0, 0].tolist() == [255, 0, 0]
    assert result[:, 0, 1].tolist() == [0, 0, 0]
    assert result[:, 0, 2].tolist() == pytest.approx([100, 50, 25], abs=1)


def test_image_sixteen_bit_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    result = load_image_file(tmp_path / "deep.png", 1, (1, 5))
    assert result[0].tolist() == [[0, 1, 4, 128, 255]]  # round(v * 255 / 65535)


def test_image_palette_with_transparency(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.putdata([0, 1])
    image.save(tmp_path / "palette.png", transparency=1)
    result = load_image_file(tmp_path / "palette.png", 3, (1, 2))
    assert result[:, 0, 0].tolist() == [255, 0, 0] and result[:, 0, 1].tolist() == [0, 0, 0]


def test_image_exif_orientation(tmp_path):
    pixels = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rotated.png", exif=exif)
    result = load_image_file(tmp_path / "rotated.png", 1, (3, 2))
    assert result[0].tolist() == np.rot90(pixels, k=-1).tolist()


@pytest.mark.parametrize("size", [12_000, 100_000])  # over our limit; over PIL's hard limit
def test_image_bomb_refused(tmp_path, size):
    path = write_file(tmp_path / "bomb.png", png_header(size, size))
    with pytest.raises(DataError, match="bomb|too large") as caught:
        load_image_file(path, 1, (28, 28))
    assert str(path) in str(caught.value)


def test_image_pixel_limit_per_call(tmp_path):
    save_image_file(torch.zeros((1, 20, 20), dtype=torch.uint8), tmp_path / "small.png")
    with pytest.raises(DataError, match="limit of 100 pixels"):
        load_image_file(tmp_path / "small.png", 1, (20, 20), max_pixels=100)
    assert load_image_file(tmp_path / "small.png", 1, (20, 20)).shape == (1, 20, 20)


def test_image_errors_name_the_file(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 9, np.uint8)).save(buffer, "PNG", compress_level=0)
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:5000])
    for name, fragment in [
        ("missing.png", "does not exist"),
        ("notes.png", "not an image"),
        ("cut.png", "could not be decoded"),
    ]:
        with pytest.raises(DataError, match=fragment) as caught:
            load_image_file(tmp_path / name, 3, (64, 64))
        assert str(tmp_path / name) in str(caught.value)


# Real data from ../shared/datasets (see its README), when present


REAL_FACTS = {
    "mnist": (0.1307, 0.3081, [5, 0, 4, 1, 9, 2, 1, 3, 1, 4], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]),
    "fashion-mnist": (0.2860, 0.3530, None, None),
}


@pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason=f"{SHARED_DATASETS} not present")
@pytest.mark.parametrize("name", list(REAL_FACTS))
def test_real_dataset_facts(name):
    mean, std, first_train, first_test = REAL_FACTS[name]
    dataset = load_dataset(name, data_dir=SHARED_DATASETS, download=False)
    assert dataset.location == str(SHARED_DATASETS / name)
    assert dataset.train_images.shape == (60_000, 1, 28, 28)
    assert dataset.test_images.shape == (10_000, 1, 28, 28)
    assert len(dataset.train_labels) == 60_000 and len(dataset.test_labels) == 10_000
    if first_train is not None:
        assert dataset.train_labels[:10].tolist() == first_train
        assert dataset.test_labels[:10].tolist() == first_test
    means, stds = channel_mean_std(dataset.train_images)
    assert (round(means[0], 4), round(stds[0], 4)) == (mean, std)
    assert dataset_info(name, data_dir=SHARED_DATASETS)["found_at"] == dataset.location


def test_a_data_dir_that_is_not_a_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        load_dataset("mnist", data_dir=tmp_path / "typo", download=False)
