"""The duplicate check across splits: a pixel digest for exact copies, a 64-bit difference hash
for near ones. Oracles: the `imagehash` package's dhash on the same photos, brute-force Hamming
distances in numpy, and copies planted by hand."""

import io
import json
from pathlib import Path

import imagehash
import numpy as np
import skimage.data
import torch
from PIL import Image

from cnnlab.data.duplicates import NEAR_DISTANCE, difference_hash, find_duplicates, nearest

PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket")


def _photo(name: str, size: int = 128) -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((size, size))


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)  # [C, H, W]


def _variants(image: Image.Image) -> dict[str, Image.Image]:
    """The same photo re-encoded as JPEG, 5 grey levels brighter, shifted right by a pixel."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    pixels = np.asarray(image).astype(int)
    shifted = np.concatenate([pixels[:, :1], pixels[:, :-1]], axis=1)  # edge column repeated
    return {
        "jpeg": Image.open(buffer).convert("RGB"),
        "brighter": Image.fromarray(np.clip(pixels + 5, 0, 255).astype(np.uint8)),
        "shifted": Image.fromarray(shifted.astype(np.uint8)),
    }


def _bits(image: Image.Image) -> np.ndarray:
    return difference_hash(_tensor(image)[None])[0].numpy()


def test_the_hash_agrees_with_imagehash_and_keeps_copies_close_and_photos_apart():
    photos = {name: _photo(name) for name in PHOTOS}
    ours = {name: _bits(photo) for name, photo in photos.items()}
    for name, photo in photos.items():
        theirs = imagehash.dhash(photo).hash.flatten()  # PIL's Lanczos thumbnail, same bit rule
        assert (ours[name] == theirs).sum() >= 52, name  # of 64; unrelated codes agree on ~32
        for variant, copy in _variants(photo).items():
            distance = int((_bits(copy) != ours[name]).sum())
            assert distance <= NEAR_DISTANCE, (name, variant, distance)
            assert imagehash.dhash(copy) - imagehash.dhash(photo) <= NEAR_DISTANCE + 2
        assert int((_bits(photo) != ours[name]).sum()) == 0
    for first in PHOTOS:
        for second in PHOTOS:
            if first < second:
                assert int((ours[first] != ours[second]).sum()) > 3 * NEAR_DISTANCE
                assert imagehash.dhash(photos[first]) - imagehash.dhash(photos[second]) > 8


def test_nearest_matches_brute_force_hamming_distances():
    rng = np.random.default_rng(0)
    queries, references = rng.random((50, 64)) > 0.5, rng.random((300, 64)) > 0.5
    distances, indices = nearest(torch.from_numpy(queries), torch.from_numpy(references))
    brute = (queries[:, None, :] != references[None, :, :]).sum(-1)  # [50, 300]
    assert distances.tolist() == brute.min(1).tolist()
    assert (brute[np.arange(50), indices.numpy()] == brute.min(1)).all()


def _distinct_images(count: int, seed: int, size: int = 48) -> torch.Tensor:
    """Smooth random pictures (8x8 noise, upsampled): their hashes are unrelated."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((count, 3, 8, 8), generator=generator) * 255
    return torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear").to(
        torch.uint8
    )


def _ids(split: str, count: int) -> list[str]:
    return [f"{split}/{i}.png" for i in range(count)]


def test_planted_exact_and_near_copies_are_found_and_distinct_images_are_not():
    train, val, test = _distinct_images(20, 1), _distinct_images(5, 2), _distinct_images(5, 3)
    clean = find_duplicates({
        "train": (train, _ids("train", 20)), "val": (val, _ids("val", 5)),
        "test": (test, _ids("test", 5)),
    })  # fmt: skip
    assert clean.pairs == [] and clean.summary("X").startswith("duplicates across splits: none")
    brighter = (train[9].int() + 5).clamp(max=255).to(torch.uint8)
    val = torch.cat([val, train[3:4]])  # exact: val/5 = train/3
    test = torch.cat([test, train[7:8], brighter[None], val[1:2]])  # exact, near, near
    report = find_duplicates({
        "train": (train, _ids("train", 20)), "val": (val, _ids("val", 6)),
        "test": (test, _ids("test", 8)),
    })  # fmt: skip
    found = {
        (p["kind"], p["splits"], *(p[s] for s in p["splits"].split("/"))) for p in report.pairs
    }
    assert found == {
        ("exact", "train/val", "train/3.png", "val/5.png"),
        ("exact", "train/test", "train/7.png", "test/5.png"),
        ("near", "train/test", "train/9.png", "test/6.png"),
        ("exact", "val/test", "val/1.png", "test/7.png"),
    }
    summary = report.summary("RUN/duplicates.json")
    assert summary == (
        "duplicates across splits: 3 exact, 1 near (train/val 1, train/test 2, val/test 1); "
        "listed in RUN/duplicates.json"
    )
    data = report.to_dict()
    assert data["by_splits"]["train/test"] == {"exact": 1, "near": 1} and data["near_sought"]


def test_small_images_are_checked_for_exact_copies_only():
    train, test = _distinct_images(10, 4, size=28), _distinct_images(3, 5, size=28)
    brighter = (train[2].int() + 5).clamp(max=255).to(torch.uint8)
    test = torch.cat([test, train[1:2], brighter[None]])
    report = find_duplicates({"train": (train, _ids("train", 10)), "test": (test, _ids("test", 5))})
    assert [(p["kind"], p["train"], p["test"]) for p in report.pairs] == [
        ("exact", "train/1.png", "test/3.png")
    ]
    assert not report.to_dict()["near_sought"]


def _split_folder(root: Path) -> Path:
    """train/ and test/ folders of 40x40 pictures; one test picture is a copy of a train one."""
    images = _distinct_images(16, 6, size=40)
    for index, image in enumerate(images):
        split = "test" if index >= 12 else "train"
        path = root / split / ("a" if index % 2 else "b") / f"img{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    copy = root / "test" / "b" / "copy.png"
    Image.fromarray(images[4].permute(1, 2, 0).numpy()).save(copy)
    return root


def test_training_reports_duplicates_before_it_starts(tmp_path, tiny_config):
    from cnnlab.training.run import train

    root = _split_folder(tmp_path / "images")
    config = tiny_config(data=f"folder:{root}", epochs=1, cache=False, val_fraction=0)
    stream = io.StringIO()
    train(config, tmp_path / "run", show_progress=False, stream=stream)
    listed = tmp_path / "run" / "duplicates.json"
    line = f"duplicates across splits: 1 exact, 0 near (train/test 1); listed in {listed}"
    assert line in stream.getvalue().splitlines()
    data = json.loads(listed.read_text())
    assert data["exact"] == 1 and data["near"] == 0
    assert data["pairs"] == [{"splits": "train/test", "kind": "exact", "distance": 0,
                              "train": "train/b/img4.png", "test": "test/b/copy.png"}]  # fmt: skip


def test_the_duplicates_command_prints_json(tmp_path, capsys):
    from cnnlab.cli import main

    root = _split_folder(tmp_path / "images")
    out = tmp_path / "dups.json"
    code = main(["duplicates", "--data", f"folder:{root}", "--val-fraction", "0", "--json",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert [(p["kind"], p["train"], p["test"]) for p in printed["pairs"]] == [
        ("exact", "train/b/img4.png", "test/b/copy.png")
    ]


def test_the_duplicates_command_refuses_a_bad_distance(capsys):
    from cnnlab.cli import main

    assert main(["duplicates", "--data", "digits", "--distance", "40"]) == 2
    assert "--distance 40 is invalid: use 0 to 31" in capsys.readouterr().err


def test_the_duplicates_command_checks_a_trained_runs_splits(tmp_path, capsys):
    import shutil

    from cnnlab.cli import main

    run = tmp_path / "run"
    shutil.copytree(Path(__file__).parent / "fixtures" / "run-0.1.0", run)  # digits, cnnlab 0.1.0
    assert main(["duplicates", "--run", str(run), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    recorded = json.loads((run / "dataset.json").read_text())["class_counts"]
    assert printed["images"] == {split: sum(counts) for split, counts in recorded.items()}
    assert not printed["near_sought"]  # 8x8 digits: exact copies only
