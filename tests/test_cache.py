"""The cache root ($CNNLAB_CACHE_DIR), the decoded cache's size cap with least-recently-used
eviction, and `cnnlab cache list|clear`."""

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import cache, decode, locate
from cnnlab.data.decode import Preprocess, decode_files
from cnnlab.errors import ConfigError

PREPROCESS = Preprocess(image_size=(8, 8), channels=1)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # must be ignored
    monkeypatch.delenv("CNNLAB_CACHE_MAX_GB", raising=False)
    return tmp_path / "cache"


def make_folder(root: Path, count: int = 3, value: int = 50) -> list[str]:
    root.mkdir(parents=True)
    names = []
    for i in range(count):
        Image.fromarray(np.full((8, 8), value + i, dtype=np.uint8)).save(root / f"{i}.png")
        names.append(f"{i}.png")
    return names


def decode_folder(root: Path, count: int = 3) -> decode.Decoded:
    names = make_folder(root, count) if not root.exists() else sorted(os.listdir(root))
    return decode_files(root, names, PREPROCESS, workers=1)


def set_last_use(key: str, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(cache.decoded_cache_dir() / f"{key}.json", (when, when))


def test_cnnlab_cache_dir_is_the_root_of_every_cache(tmp_path, cache_dir):
    assert locate.cache_root() == cache_dir
    assert locate.cache_dir("mnist") == cache_dir / "datasets" / "mnist"
    from cnnlab.transfer.features import features_cache_dir

    assert features_cache_dir() == cache_dir / "features"
    decode_folder(tmp_path / "images")
    assert len(list((cache_dir / "decoded").glob("*.npy"))) == 1
    assert not (tmp_path / "xdg").exists()


def test_without_cnnlab_cache_dir_the_xdg_folder_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNLAB_CACHE_DIR")
    assert locate.cache_root() == tmp_path / "xdg" / "cnnlab"


def test_an_entry_records_its_folder_images_size_and_last_use(tmp_path):
    decoded = decode_folder(tmp_path / "images", count=4)
    [entry] = cache.list_entries()
    assert entry.folder == str((tmp_path / "images").resolve())
    assert entry.num_images == 4 and decoded.images.shape == (4, 1, 8, 8)
    assert entry.size_bytes == cache.total_bytes() > 4 * 64
    set_last_use(entry.key, 3600)
    assert decode_folder(tmp_path / "images").from_cache
    assert time.time() - cache.list_entries()[0].last_used < 60  # a hit touches the index


def test_past_the_cap_the_least_recently_used_entries_go_first(tmp_path, monkeypatch, caplog):
    for name in ("a", "b", "c"):
        decode_folder(tmp_path / name)
    keys = {Path(e.folder).name: e.key for e in cache.list_entries()}
    set_last_use(keys["a"], 300)
    set_last_use(keys["b"], 100)
    set_last_use(keys["c"], 200)
    one_entry = cache.list_entries()[0].size_bytes
    monkeypatch.setenv("CNNLAB_CACHE_MAX_GB", str(2.5 * one_entry / 1e9))  # room for two
    with caplog.at_level(logging.INFO, logger="cnnlab"):
        decode_folder(tmp_path / "d")  # a fourth entry: a and then c (the oldest uses) go
    assert sorted(Path(e.folder).name for e in cache.list_entries()) == ["b", "d"]
    assert "removed 2 least recently used" in caplog.text
    assert f"{cache.decoded_cache_dir()} holds" in caplog.text
    assert not list(cache.decoded_cache_dir().glob(f"{keys['a']}*"))


def test_the_entry_being_written_is_never_evicted_even_over_the_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_MAX_GB", "0")
    decode_folder(tmp_path / "a")
    decode_folder(tmp_path / "b")
    assert [Path(e.folder).name for e in cache.list_entries()] == ["b"]
    assert decode_folder(tmp_path / "b").from_cache


def test_a_bad_cap_is_a_config_error(monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE_MAX_GB", "lots")
    with pytest.raises(ConfigError, match="CNNLAB_CACHE_MAX_GB='lots'"):
        cache.max_cache_bytes()


def test_cache_list_and_clear_through_the_cli(tmp_path, capsys):
    decode_folder(tmp_path / "old")
    decode_folder(tmp_path / "new", count=5)
    old_key = next(e.key for e in cache.list_entries() if e.folder.endswith("old"))
    set_last_use(old_key, 10 * 86_400)
    assert main(["cache", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["num_entries"] == 2 and listed["total_bytes"] == cache.total_bytes()
    assert [Path(e["folder"]).name for e in listed["entries"]] == ["old", "new"]
    assert [e["num_images"] for e in listed["entries"]] == [3, 5]
    assert main(["cache", "list"]) == 0
    text = capsys.readouterr().out
    assert "holds 2 entries" in text and text.index("/new\n") < text.index("/old\n")
    assert main(["cache", "clear", "--older-than", "7", "--json"]) == 0
    removed = json.loads(capsys.readouterr().out)
    assert [Path(e["folder"]).name for e in removed["entries"]] == ["old"]
    assert [Path(e.folder).name for e in cache.list_entries()] == ["new"]
    assert main(["cache", "clear"]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert cache.list_entries() == [] and cache.total_bytes() == 0


def test_clear_refuses_a_negative_age(capsys):
    assert main(["cache", "clear", "--older-than", "-1"]) == 2
    assert "--older-than -1" in capsys.readouterr().err
