"""cifar10 from python batches the tests make: layout, search path, archive, downloader, safety."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.data import cifar, dataset_info, load_dataset, locate
from cnnlab.data.locate import Download
from cnnlab.errors import DataError


@pytest.fixture(autouse=True)
def isolated_locations(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(locate, "SYSTEM_DATA_DIRS", [tmp_path / "system"])


def batch_bytes(first_label: int, count: int = 3) -> bytes:
    """A batch as the official files hold it: bytes keys, uint8 data [N, 3072], a labels list."""
    data = np.zeros((count, 3072), dtype=np.uint8)
    for row in range(count):
        data[row, :1024] = 10 * row + 1  # red plane
        data[row, 1024:2048] = 10 * row + 2  # green plane
        data[row, 2048] = 10 * row + 3  # the first blue pixel
    labels = [(first_label + row) % 10 for row in range(count)]
    batch = {
        b"batch_label": b"fake",
        b"labels": labels,
        b"data": data,
        b"filenames": [b"x"] * count,
    }
    return pickle.dumps(batch, protocol=2)


def write_batches(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    contents = {name: batch_bytes(index) for index, name in enumerate(cifar.BATCH_FILES)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return contents


def archive_bytes(contents: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info in extra:
            tar.addfile(info, io.BytesIO(b"evil") if info.isfile() else None)
        for name, data in contents.items():
            info = tarfile.TarInfo(f"{cifar.FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_batches_load_in_channel_order(tmp_path):
    write_batches(tmp_path / "data" / "cifar10" / cifar.FOLDER)
    dataset = load_dataset("cifar10", data_dir=tmp_path / "data", download=False)
    assert dataset.train_images.shape == (15, 3, 32, 32) and dataset.test_images.shape == (
        3,
        3,
        32,
        32,
    )
    assert dataset.train_images.dtype == torch.uint8 and dataset.train_labels.dtype == torch.int64
    first = dataset.train_images[1]  # row 1 of data_batch_1
    assert first[0].unique().tolist() == [11] and first[1].unique().tolist() == [12]
    assert first[2, 0, 0] == 13 and first[2, 0, 1] == 0  # blue plane, row-major
    assert dataset.train_labels.tolist()[:6] == [0, 1, 2, 1, 2, 3]
    assert dataset.test_labels.tolist() == [5, 6, 7]
    assert dataset.class_names[0] == "airplane" and dataset.class_names[-1] == "truck"
    assert dataset.location == str(tmp_path / "data" / "cifar10" / cifar.FOLDER)
    assert dataset_info("cifar10", tmp_path / "data")["found_at"] == dataset.location


def test_legacy_numpy_module_name_is_accepted(tmp_path):
    folder = tmp_path / "cifar10"
    contents = write_batches(folder)
    legacy = contents["test_batch"].replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert legacy != contents["test_batch"]  # the official files name numpy.core
    (folder / "test_batch").write_bytes(legacy)
    assert load_dataset("cifar10", data_dir=tmp_path, download=False).test_labels.tolist() == [
        5,
        6,
        7,
    ]


class CreatesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    folder = tmp_path / "cifar10"
    write_batches(folder)
    marker = tmp_path / "pwned"
    payload = {b"data": CreatesAFile(marker), b"labels": [0]}
    (folder / "data_batch_3").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DataError, match="refused") as caught:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert "refused to load" in str(caught.value) and "data_batch_3" in str(caught.value)
    assert not marker.exists()
    # The classic payload: os.system("touch MARKER") in protocol 0.
    classic = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    (folder / "data_batch_3").write_bytes(classic)
    with pytest.raises(DataError, match="refused to load os.system"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert not marker.exists()
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": "os.system"}, protocol=2))
    with pytest.raises(DataError, match="lacks 'data'"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


def test_archive_is_extracted_safely(tmp_path):
    outside = tmp_path / "outside"
    evil = []
    for name in ("../outside", f"{cifar.FOLDER}/../../outside", "/tmp/outside-abs"):
        info = tarfile.TarInfo(name)
        info.size = 4
        evil.append(info)
    link = tarfile.TarInfo(f"{cifar.FOLDER}/batches.meta")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    evil.append(link)
    contents = {name: batch_bytes(i) for i, name in enumerate(cifar.BATCH_FILES)}
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / cifar.ARCHIVE).write_bytes(archive_bytes(contents, evil))
    dataset = load_dataset("cifar10", data_dir=tmp_path / "data", download=False)
    target = tmp_path / "cache" / "cnnlab" / "datasets" / "cifar10" / cifar.FOLDER
    assert dataset.location == str(target) and len(dataset.train_labels) == 15
    assert sorted(p.name for p in target.iterdir()) == sorted(cifar.BATCH_FILES)
    assert not outside.exists() and not Path("/tmp/outside-abs").exists()


def test_archive_with_a_linked_batch_is_refused(tmp_path):
    link = tarfile.TarInfo(f"{cifar.FOLDER}/data_batch_1")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    contents = {name: batch_bytes(0) for name in cifar.BATCH_FILES[1:]}
    (tmp_path / cifar.ARCHIVE).write_bytes(archive_bytes(contents, [link]))
    with pytest.raises(DataError, match="not a regular file"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


def test_download_checks_the_md5_and_extracts(tmp_path, monkeypatch):
    server = tmp_path / "server"
    server.mkdir()
    data = archive_bytes({name: batch_bytes(i) for i, name in enumerate(cifar.BATCH_FILES)})
    (server / cifar.ARCHIVE).write_bytes(data)
    md5 = {cifar.ARCHIVE: hashlib.md5(data).hexdigest()}
    assert locate.DOWNLOADS["cifar10"].md5[cifar.ARCHIVE] == "c58f30108f718f92721af3b95e74349a"
    mirrors = ("http://127.0.0.1:9/", server.as_uri() + "/")
    monkeypatch.setitem(locate.DOWNLOADS, "cifar10", Download(url_bases=mirrors, md5=md5))
    dataset = load_dataset("cifar10")
    assert len(dataset.test_labels) == 3
    monkeypatch.setitem(
        locate.DOWNLOADS, "cifar10", Download(url_bases=mirrors, md5={cifar.ARCHIVE: "0" * 32})
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other-cache"))
    with pytest.raises(DataError, match="wrong checksum"):
        load_dataset("cifar10")


def test_offline_error_names_the_archive_and_the_folder(tmp_path, monkeypatch):
    offline = Download(url_bases=("http://127.0.0.1:9/",), md5=locate.DOWNLOADS["cifar10"].md5)
    monkeypatch.setitem(locate.DOWNLOADS, "cifar10", offline)
    with pytest.raises(DataError) as caught:
        load_dataset("cifar10")
    message = str(caught.value)
    assert cifar.ARCHIVE in message and cifar.FOLDER in message and "127.0.0.1:9" in message
