"""The fast path: chosen per machine, shown, each choice switchable, and as accurate as fp32."""

import json

import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.inference import evaluate_run
from cnnlab.recipes import RECIPES, apply_recipe, resolve_recipe
from cnnlab.runtime import fastpath
from cnnlab.training.config import TrainConfig
from cnnlab.training.run import train


def _pretend_cpu(monkeypatch, bf16: bool, amx: bool = False) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("bf16, amx, expected", [(False, False, "fp32"), (True, False, "bf16"),
                                                 (False, True, "bf16")])  # fmt: skip
def test_auto_precision_follows_the_cpu(monkeypatch, bf16, amx, expected):
    _pretend_cpu(monkeypatch, bf16, amx)
    fast = fastpath.choose_fast_path(torch.device("cpu"))
    assert fast.precision == expected
    assert fast.channels_last and fast.threads <= fastpath.available_cores()
    assert torch.get_num_threads() == fast.threads
    assert (fast.autocast_dtype is torch.bfloat16) == (expected == "bf16")
    text = fast.describe()
    assert f"precision {expected}" in text and "channels_last" in text and "threads" in text


def test_each_choice_can_be_turned_off(monkeypatch):
    _pretend_cpu(monkeypatch, True)
    threads = torch.get_num_threads()
    try:
        fast = fastpath.choose_fast_path(torch.device("cpu"), "fp32", False, 1)
        assert (fast.precision, fast.channels_last, fast.threads) == ("fp32", False, 1)
        assert torch.get_num_threads() == 1 and "NCHW" in fast.describe()
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ConfigError, match="--precision 'fp8'"):
        fastpath.choose_fast_path(torch.device("cpu"), "fp8")


def test_forced_bf16_on_a_cpu_without_it_says_it_is_emulated(monkeypatch):
    _pretend_cpu(monkeypatch, False)
    fast = fastpath.choose_fast_path(torch.device("cpu"), "bf16")
    assert fast.precision == "bf16" and "emulated" in fast.reason
    assert fastpath.choose_fast_path(torch.device("cpu"), "fp16").needs_grad_scaler


def _digits(**overrides) -> TrainConfig:
    # A small conv-BN network on 8x8 digits: ~95% test accuracy in a few seconds.
    settings = dict(data="digits", model="small-cnn", download=False, val_fraction=0.2, epochs=6,
                    batch_size=32, model_options={"widths": [16, 32], "depth": 1})  # fmt: skip
    return TrainConfig(**{**settings, **overrides})


def _test_accuracy(path, config) -> float:
    train(config, path, show_progress=False)
    return evaluate_run(path, precision="fp32", channels_last=False)["accuracy"]


@pytest.fixture(scope="module")
def fp32_accuracy(tmp_path_factory):
    """The reference: float32, NCHW."""
    config = _digits(precision="fp32", channels_last=False)
    return _test_accuracy(tmp_path_factory.mktemp("fp32") / "run", config)


@pytest.mark.parametrize(
    "precision, channels_last", [("fp32", True), ("bf16", True), ("fp16", False)]
)
def test_fast_path_accuracy_matches_fp32_within_noise(
    tmp_path, fp32_accuracy, precision, channels_last
):
    config = _digits(precision=precision, channels_last=channels_last)
    fast = _test_accuracy(tmp_path / "run", config)
    # 360 test images: one standard error at ~95% is ~1.1 points; allow about three.
    assert fp32_accuracy > 0.9 and abs(fast - fp32_accuracy) <= 0.035, (fp32_accuracy, fast)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]
    assert recorded["fast_path"]["precision"] == precision
    assert recorded["fast_path"]["channels_last"] is channels_last


def test_fp16_runs_keep_their_loss_scale_in_the_checkpoint(tmp_path):
    from cnnlab.run import checkpoints as ckpt

    train(_digits(precision="fp16", epochs=1), tmp_path / "run", show_progress=False)
    state = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints").state
    assert state["scaler"]["scale"] > 0


# ---------------------------------------------------------------- recipes


def test_recipes_sit_beneath_toml_and_flags():
    config = TrainConfig.from_dict({"data": "mnist", "epochs": 7})
    assert config.recipe == "mnist" and config.epochs == 7  # the flag wins
    assert config.model == RECIPES["mnist"].settings["model"]  # the recipe fills the rest
    plain = TrainConfig.from_dict({"data": "mnist", "recipe": "none"})
    assert plain.model == TrainConfig().model and plain.epochs == TrainConfig().epochs
    assert TrainConfig.from_dict({"data": "digits"}).recipe == "none"
    assert resolve_recipe("auto", "folder:/x").name == "none"
    with pytest.raises(ConfigError, match="--recipe 'fastest'"):
        apply_recipe({"recipe": "fastest"}, "digits")


def test_every_recipe_is_a_valid_configuration():
    for name, recipe in RECIPES.items():
        data = "mnist" if name == "none" else name
        config = TrainConfig.from_dict({"data": data, "recipe": name})
        for key, value in recipe.settings.items():
            assert getattr(config, key) == value, (name, key)


# ---------------------------------------------------------------- command line


def test_train_shows_the_fast_path_and_tests_in_the_same_process(tmp_path, capsys):
    from cnnlab.cli import main

    run = tmp_path / "run"
    args = ["train", "--data", "digits", "--no-download", "--epochs", "1", "--learning-rate",
            "0.1", "--model-options", "widths=[8,16]", "--model-options", "depth=1",
            "--out", str(run), "--test", "--json", "--no-channels-last",
            "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "precision fp32" in captured.err or "precision bf16" in captured.err
    assert "NCHW (channels_last off)" in captured.err and "1 threads" in captured.err
    summary = json.loads(captured.out)
    stored = json.loads((run / "eval" / "test.json").read_text())
    assert summary["test"]["accuracy"] == stored["accuracy"] and stored["num_samples"] == 359
    assert json.loads((run / "config.json").read_text())["resolved"]["fast_path"]["threads"] == 1


def test_recipes_command_lists_every_recipe(capsys):
    from cnnlab.cli import main

    assert main(["recipes", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(RECIPES)
    assert rows["mnist"]["settings"]["model"] == RECIPES["mnist"].settings["model"]
    assert main(["recipes"]) == 0 and "--epochs" in capsys.readouterr().out
