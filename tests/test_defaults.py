"""Settings defined once: the augmentation settings (type, range, help) that TrainConfig's flags are
generated from, and each data set's recipe and augmentation declared in its DATASETS entry."""

import dataclasses
import re
import subprocess
import sys

import pytest

from cnnlab.cli import main
from cnnlab.data import DATASETS
from cnnlab.data.augment import default_augmentation, resolve_augmentation
from cnnlab.data.sources import FOLDER_PREFIX, default_recipe, folder_augmentation
from cnnlab.errors import ConfigError
from cnnlab.specs.augmentation import AUGMENTATION_FIELDS, Augmentation
from cnnlab.specs.recipes import RECIPES
from cnnlab.training.config import TrainConfig, resolve_recipe

# config.json's "train" keys, in order: the augmentation overrides keep their names and place.
CONFIG_KEYS = (
    "data data_dir download image_size aspect channels test_fraction split_seed group_by "
    "check_duplicates strict cache "
    "recipe model model_options dropout pretrained weights freeze_epochs lr_decay_per_stage "
    "freeze_bn epochs time_budget batch_size optimizer learning_rate momentum "
    "nesterov weight_decay schedule warmup_fraction step_epochs step_gamma label_smoothing "
    "whiten_stem ema progressive_resize "
    "class_weighted_loss sampler val_fraction monitor early_stopping keep max_nonfinite_steps "
    "checkpoint_every_steps layer_stats seed device precision channels_last fast_dropout threads "
    "sync_bn "
    "eval_batch_size tta augment "
    "hflip vflip crop_padding rotate scale pad_fill brightness contrast noise erase"
).split()


def test_config_fields_and_keys_are_unchanged_with_the_overrides_last():
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert names == list(TrainConfig().to_dict()) == CONFIG_KEYS
    assert tuple(names[-len(AUGMENTATION_FIELDS) :]) == AUGMENTATION_FIELDS
    assert dataclasses.is_dataclass(TrainConfig) and TrainConfig.__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().hflip = 0.5


RANGED = [f for f in dataclasses.fields(Augmentation) if "range" in f.metadata]  # pad_fill: choices


@pytest.mark.parametrize("setting", RANGED, ids=lambda f: f.name)
def test_each_augmentation_flag_is_generated_from_its_setting(setting):
    override = {f.name: f for f in dataclasses.fields(TrainConfig)}[setting.name]
    assert override.type == f"{setting.type} | None" and override.default is None
    low, high = setting.metadata["range"]
    help = override.metadata["help"]
    assert help.startswith("augment: ") and help.endswith(f"from {low} to {high}")
    assert setting.metadata["help"].replace("%", "%%") in help
    assert TrainConfig(**{setting.name: high}).to_dict()[setting.name] == high
    for bad in (low - 1, high + 1):
        flag = "--" + setting.name.replace("_", "-")
        with pytest.raises(ConfigError, match=f"{flag} {bad} is invalid: .* from {low} to {high}"):
            TrainConfig(**{setting.name: bad})
        with pytest.raises(ConfigError, match=f"{setting.name}={bad} is invalid"):
            Augmentation(**{setting.name: bad})


def test_the_flags_help_shows_each_setting_and_its_range(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for setting in RANGED:
        flag = "--" + setting.name.replace("_", "-")
        low, high = setting.metadata["range"]
        described = f"augment: {setting.metadata['help']}; {setting.name.upper()} from {low} to"
        assert f"{flag} {setting.name.upper()} {described} {high}" in text


def test_the_configuration_is_importable_without_torch():
    code = "import sys, cnnlab.training.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", DATASETS.names())
def test_a_data_set_declares_its_recipe_and_augmentation(name):
    source = DATASETS.get(name)
    assert source.recipe in RECIPES
    assert resolve_recipe("auto", name) is RECIPES[source.recipe]
    assert default_recipe(name) == source.recipe
    assert default_augmentation(name, source.image_size) == source.augmentation
    config = TrainConfig.from_dict({"data": name})
    assert config.recipe == source.recipe
    chosen = resolve_augmentation(config.to_dict(), name, source.image_size, config.augment)
    settings = {
        k: v for k, v in RECIPES[source.recipe].settings.items() if k in AUGMENTATION_FIELDS
    }
    assert chosen == dataclasses.replace(source.augmentation, **settings)


def test_folders_follow_the_folder_rule_and_unknown_names_get_nothing():
    folder = f"{FOLDER_PREFIX}/images"
    assert resolve_recipe("auto", folder).name == default_recipe(folder) == "folder"
    assert default_augmentation(folder, (64, 48)) == folder_augmentation((64, 48))
    assert folder_augmentation((64, 48)) == Augmentation(hflip=0.5, crop_padding=6)
    assert folder_augmentation((5, 5)).crop_padding == 1
    assert resolve_recipe("auto", "no-such-set").name == "none"
    assert not default_augmentation("no-such-set", (8, 8)).enabled


def _kind(augmentation: Augmentation) -> str:
    flips, shifts = augmentation.hflip > 0, augmentation.crop_padding > 0
    return {(False, False): "none", (False, True): "shifts", (True, True): "flips and shifts"}[
        (flips, shifts)
    ]


def test_the_augment_flags_help_tells_each_data_sets_default():
    """--augment's help cannot read DATASETS (that would import torch), so it is checked here."""
    groups: dict[str, list[str]] = {}
    for name in DATASETS.names():
        groups.setdefault(_kind(DATASETS.get(name).augmentation), []).append(name)
    groups.setdefault(_kind(folder_augmentation((32, 32))), []).append("folders")
    help = {f.name: f for f in dataclasses.fields(TrainConfig)}["augment"].metadata["help"]
    told = re.search(r"\((.*?)\)", help).group(1)
    said = {kind: names.split(", ") for names, kind in (p.split(": ") for p in told.split("; "))}
    assert {kind: sorted(names) for kind, names in said.items()} == {
        kind: sorted(names) for kind, names in groups.items()
    }


def test_a_folder_of_cifar10_class_folders_gets_the_cifar10_recipe_and_says_why(tmp_path, caplog):
    from PIL import Image

    from cnnlab.data.cifar import CLASS_NAMES

    flat, split = tmp_path / "cifar-jpeg", tmp_path / "cifar-split"
    for name in CLASS_NAMES:
        for folder in (flat / name, split / "train" / name, split / "test" / name):
            folder.mkdir(parents=True)
            Image.new("RGB", (32, 32), (len(name) * 20, 0, 0)).save(folder / "0001.jpg")
    with caplog.at_level("INFO", logger="cnnlab"):
        assert resolve_recipe("auto", f"{FOLDER_PREFIX}{flat}").name == "cifar10"
    assert "are CIFAR-10's ten classes" in caplog.text and str(flat) in caplog.text
    assert TrainConfig.from_dict({"data": f"{FOLDER_PREFIX}{split}"}).recipe == "cifar10"
    assert TrainConfig.from_dict({"data": f"{FOLDER_PREFIX}{flat}", "recipe": "none"}).recipe == (
        "none"
    )
    (flat / "truck").rename(flat / "lorry")  # nine of the ten: a folder like any other
    assert default_recipe(f"{FOLDER_PREFIX}{flat}") == "folder"
