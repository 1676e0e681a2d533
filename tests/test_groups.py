"""Grouped splits (--group-by): no patient in two splits of a run or two parts of a fold.

The oracle is the group named in each file's name (p03_cell2.png -> p03), read back from the
splits recorded in dataset.json: the group sets of train, val and test must be disjoint.
"""

import io
import json
import re
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.folder import LoadOptions, load_folder
from cnnlab.data.groups import resolve_groups
from cnnlab.data.splits import stratified_group_split
from cnnlab.errors import ConfigError, DataError
from cnnlab.run.records import DatasetRecord
from cnnlab.run.splits import make_record

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0"
PATIENTS = [f"p{n:02d}" for n in range(1, 11)]


def _write(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def patient_folder(root: Path, layout=None) -> Path:
    """Two classes, ten patients, three cells of each patient in each class (as in the malaria
    set, where every patient has cells of both kinds): a cell-level split mixes patients."""
    seed = 0
    for split, patients in (layout or {"": PATIENTS}).items():
        for label in ("infected", "uninfected"):
            for patient in patients:
                for cell in range(3):
                    seed += 1
                    _write(root / split / label / f"{patient}_cell{cell}.png", seed)
    return root


def _load(root: Path):
    return load_folder(root, LoadOptions(cache=False))


def _groups_per_split(record: DatasetRecord) -> dict[str, set[str]]:
    return {
        split: {PurePosixPath(name).name.split("_")[0] for name in entry["files"]}
        for split, entry in record.splits.items()
    }


def test_the_ungrouped_split_leaks_patients_and_the_grouped_one_does_not(tmp_path):
    dataset = _load(patient_folder(tmp_path / "cells"))
    plain = _groups_per_split(make_record(dataset, 0.2, seed=0, test_fraction=0.2))
    assert plain["train"] & plain["test"] and plain["train"] & plain["val"]  # the leak
    record = make_record(dataset, 0.2, seed=0, test_fraction=0.2, group_by="^[^_]+")
    grouped = _groups_per_split(record)
    assert not grouped["train"] & grouped["test"]
    assert not grouped["train"] & grouped["val"]
    assert not grouped["val"] & grouped["test"]
    assert grouped["train"] | grouped["val"] | grouped["test"] == set(PATIENTS)
    assert record.groups == {
        "group_by": "^[^_]+",
        "counts": {split: len(names) for split, names in grouped.items()},
        "shared": {},
    }
    # Whole patients hold 3 cells of each class: every class of test gets 3 per test patient.
    assert record.class_counts["test"] == [3 * len(grouped["test"])] * 2
    assert 1 <= len(grouped["test"]) <= 3  # about 20% of ten patients
    again = make_record(dataset, 0.2, seed=0, test_fraction=0.2, group_by="^[^_]+")
    assert again.splits == record.splits  # seeded: the same split every time


def test_a_capture_group_names_the_group_and_a_slash_matches_the_path(tmp_path):
    dataset = _load(patient_folder(tmp_path / "cells"))
    by_capture = resolve_groups(r"p(\d+)_", dataset)
    assert by_capture["train"][0] == "01" and len(set(by_capture["train"])) == 10
    by_path = resolve_groups(r"^[a-z]+/p\d+", dataset)  # class folder + patient
    assert by_path["train"][0] == "infected/p01" and len(set(by_path["train"])) == 20


def test_groups_from_a_csv_with_relative_and_absolute_paths(tmp_path):
    root = patient_folder(tmp_path / "cells")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    rows = ["file,group"]
    for index, name in enumerate(files):  # the group: patient 1-5 are "slideA", the rest "B" etc.
        shown = str(root / name) if index % 2 else name
        rows.append(f"{shown},slide{int(name.split('/p')[1][:2]) % 4}")
    table = tmp_path / "groups.csv"
    table.write_text("\n".join(rows) + "\n")
    dataset = _load(root)
    record = make_record(dataset, 0.25, seed=1, test_fraction=0.25, group_by=f"csv:{table}")
    slide = {name: group for name, group in (row.split(",") for row in rows[1:])}
    slide = {Path(k).as_posix().removeprefix(root.as_posix() + "/"): v for k, v in slide.items()}
    members = {s: {slide[f] for f in entry["files"]} for s, entry in record.splits.items()}
    assert not members["train"] & members["test"] and not members["train"] & members["val"]
    assert record.groups["counts"] == {s: len(m) for s, m in members.items()}


def test_bad_group_settings_are_one_line_errors(tmp_path):
    dataset = _load(patient_folder(tmp_path / "cells"))
    with pytest.raises(DataError, match=r"names no group in 60 file\(s\): infected/p01_cell0.png"):
        resolve_groups("patient(\\d+)", dataset)
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        resolve_groups("p(01", dataset)
    table = tmp_path / "partial.csv"
    table.write_text("file,group\ninfected/p01_cell0.png,a\n")
    with pytest.raises(DataError, match=r"59 image file\(s\) have no row: infected/p01_cell1"):
        resolve_groups(f"csv:{table}", dataset)
    (tmp_path / "wrong.csv").write_text("path,patient\nx,y\n")
    with pytest.raises(DataError, match="columns file and group"):
        resolve_groups(f"csv:{tmp_path / 'wrong.csv'}", dataset)
    with pytest.raises(DataError, match="needs at least 2 groups"):
        make_record(dataset, 0.2, seed=0, group_by="cell")  # one group: "cell" in every name


def test_group_by_on_a_named_data_set_is_a_config_error():
    from cnnlab.data import load_dataset

    with pytest.raises(ConfigError, match="--group-by applies to folder: data sets"):
        make_record(load_dataset("digits"), 0.1, seed=0, group_by="^[^_]+")


def test_split_folders_sharing_a_patient_are_warned_of_with_counts(tmp_path):
    layout = {"train": PATIENTS[:6], "test": PATIENTS[5:]}  # p06 in both
    dataset = _load(patient_folder(tmp_path / "cells", layout))
    with pytest.warns(UserWarning) as caught:
        record = make_record(dataset, 0.0, seed=0, group_by="^[^_]+")
    lines = [str(w.message) for w in caught if "LEAKAGE" in str(w.message)]
    assert len(lines) == 1
    assert "1 group(s)" in lines[0] and "(p06; 6 train and 6 test images)" in lines[0]
    assert record.groups["shared"] == {"train/test": 1}


def test_stratified_group_split_keeps_groups_whole_and_classes_near_the_fraction():
    rng = np.random.default_rng(0)
    groups = [f"g{g}" for g in range(40) for _ in range(rng.integers(3, 9))]
    labels = torch.tensor(rng.integers(0, 3, len(groups)))
    kept, carved = stratified_group_split(labels, groups, 0.25, seed=3)
    assert sorted(torch.cat([kept, carved]).tolist()) == list(range(len(groups)))
    assert not {groups[i] for i in kept.tolist()} & {groups[i] for i in carved.tolist()}
    per_class = torch.bincount(labels[carved], minlength=3) / torch.bincount(labels, minlength=3)
    assert torch.all((per_class > 0.15) & (per_class < 0.35)), per_class
    same = stratified_group_split(labels, groups, 0.25, seed=3)
    assert torch.equal(same[1], carved)
    big_kept, big_carved = stratified_group_split(labels, groups, 0.75, seed=3)
    assert 0.6 < len(big_carved) / len(groups) < 0.9


def test_dataset_records_round_trip_groups_and_old_runs_still_load(tmp_path):
    dataset = _load(patient_folder(tmp_path / "cells"))
    record = make_record(dataset, 0.2, seed=0, group_by="^[^_]+")
    again = DatasetRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record and again.groups["group_by"] == "^[^_]+"
    old = DatasetRecord.from_dict(json.loads((FIXTURE / "dataset.json").read_text()))
    assert old.groups is None and "groups" not in old.to_dict()


def test_training_with_group_by_keeps_validation_patients_out_of_training(tmp_path, tiny_config):
    from cnnlab.run.paths import RunDir
    from cnnlab.training.run import train

    root = patient_folder(tmp_path / "cells")
    config = tiny_config(data=f"folder:{root}", group_by="^[^_]+", epochs=1, cache=False)
    stream = io.StringIO()
    train(config, tmp_path / "run", show_progress=True, stream=stream)
    record = RunDir(tmp_path / "run").dataset_record()
    members = _groups_per_split(record)
    assert not members["train"] & members["val"] and not members["train"] & members["test"]
    assert record.groups["counts"]["train"] == len(members["train"])
    assert re.search(r"groups of --group-by '\^\[\^_\]\+': train \d+, val \d+", stream.getvalue())


def test_compare_folds_keep_every_group_in_one_part():
    from cnnlab.compare.runner import CompareSettings, make_folds

    rng = np.random.default_rng(1)
    groups = np.array([f"p{g}" for g in range(12) for _ in range(6)], dtype=object)
    labels = rng.integers(0, 2, len(groups))
    for settings in (CompareSettings(folds=3, curve=(0.5, 1.0)), CompareSettings(repeats=2)):
        plain = make_folds(labels, settings)
        assert any(set(groups[f.train]) & set(groups[f.test]) for f in plain)  # leaks
        for fold in make_folds(labels, settings, groups):
            parts = [set(groups[fold.train]), set(groups[fold.val]), set(groups[fold.test])]
            assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
            assert len(fold.train) + len(fold.val) + len(fold.test) == len(labels)
            for train, val in fold.curve.values():
                assert set(groups[train]) <= parts[0] and set(groups[val]) <= parts[1]
    grouped = CompareSettings(group_by="^[^_]+")
    assert grouped.splits_fingerprint() != CompareSettings().splits_fingerprint()
    with pytest.raises(ConfigError, match="at least 13 groups"):
        make_folds(labels, CompareSettings(folds=13), groups)


def test_too_few_groups_for_the_asked_share_are_said(tmp_path):
    dataset = _load(patient_folder(tmp_path / "cells", {"": PATIENTS[:3]}))
    with pytest.warns(UserWarning) as caught:
        record = make_record(dataset, 0.1, seed=0, test_fraction=0.2, group_by="^[^_]+")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert messages[0].startswith("The test split (--test-fraction) has only 3 groups")
    assert messages[1].startswith("The validation split (--val-fraction) has only 2 groups")
    assert "takes 33% of the images instead of 20%" in str(caught[0].message)
    assert record.groups["counts"] == {"train": 1, "val": 1, "test": 1}


def test_compare_pools_carry_each_folder_images_group(tmp_path):
    from cnnlab.compare.runner import CompareSettings, load_pool, make_folds

    layout = {"train": PATIENTS[:7], "test": PATIENTS[7:]}
    root = patient_folder(tmp_path / "cells", layout)
    settings = CompareSettings(data=f"folder:{root}", folds=3, group_by="^[^_]+", curve=(1.0,))
    pool = load_pool(settings)
    dataset = _load(root)
    files = dataset.files["train"] + dataset.files["test"]  # the pool's order: train, val, test
    assert list(pool.groups) == [PurePosixPath(f).name.split("_")[0] for f in files]
    for fold in make_folds(pool.labels, settings, pool.groups):
        assert not set(pool.groups[fold.train]) & set(pool.groups[fold.test])
