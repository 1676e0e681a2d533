"""Fine-tuning: pretrained weights loaded before training, a frozen backbone for the first epochs,
learning rates per stage, frozen batch-norm statistics, exact resume across the unfreeze boundary.

A tiny EfficientNet-Lite variant and a weights file written here keep every run to a second or two.
"""

import pytest
import torch
from test_training import StopAfter, epoch_rows, final_weights

from cnnlab.models import ModelSpec, build_model
from cnnlab.run import checkpoints as ckpt
from cnnlab.run.paths import RunDir
from cnnlab.training.run import train

MODEL = "efficientnet-lite-tiny"


@pytest.fixture
def weights_file(tmp_path):
    """An RGB, 1000-class 'pretrained' state dict (random, seeded) in cnnlab's key names."""
    torch.manual_seed(1)
    model = build_model(ModelSpec(MODEL, 3, 1000, (8, 8)))
    path = tmp_path / "tiny-imagenet.pt"
    torch.save(model.state_dict(), path)
    return path


def _config(tiny_config, weights_file, **overrides):
    return tiny_config(model=MODEL, model_options={}, weights=str(weights_file), **overrides)


def _is_head(key: str) -> bool:
    return key.startswith("head.fc.")


def test_frozen_epochs_change_only_the_classifier(tmp_path, tiny_config, weights_file):
    train(_config(tiny_config, weights_file, epochs=1, freeze_epochs=1), tmp_path / "r",
          show_progress=False)  # fmt: skip
    start = torch.load(weights_file, weights_only=True)
    trained = final_weights(tmp_path / "r")
    assert torch.equal(
        trained["features.stem.0.weight"], start["features.stem.0.weight"].sum(1, True)
    )
    for key, value in trained.items():
        if _is_head(key):
            assert value.shape[0] == 10
        elif key != "features.stem.0.weight":  # batch-norm statistics too: frozen means eval
            assert torch.equal(value, start[key]), key
    assert not torch.equal(trained["head.fc.weight"], torch.zeros_like(trained["head.fc.weight"]))


def test_freeze_bn_keeps_statistics_and_trains_weights(tmp_path, tiny_config, weights_file):
    train(_config(tiny_config, weights_file, epochs=1, freeze_bn=True), tmp_path / "r",
          show_progress=False)  # fmt: skip
    start, trained = torch.load(weights_file, weights_only=True), final_weights(tmp_path / "r")
    assert torch.equal(trained["features.head_conv.1.running_mean"],
                       start["features.head_conv.1.running_mean"])  # fmt: skip
    assert not torch.equal(
        trained["features.head_conv.0.weight"], start["features.head_conv.0.weight"]
    )


def test_stage_learning_rates(tiny_config, weights_file):
    from cnnlab.training.optim import build_optimizer

    config = _config(tiny_config, weights_file, lr_decay_per_stage=0.5, learning_rate=0.1)
    model = build_model(ModelSpec(MODEL, 1, 10, (8, 8)))
    optimizer = build_optimizer(config, model)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["head.fc.weight"])] == pytest.approx(0.1)
    assert lr_of[id(named["features.head_conv.0.weight"])] == pytest.approx(0.05)  # deepest stage
    deepest = len(model.feature_layers)
    assert lr_of[id(named["features.stem.0.weight"])] == pytest.approx(0.1 * 0.5**deepest)
    assert len(lr_of) == len(named)  # every parameter in exactly one group


@pytest.mark.parametrize("stop_after", [18, 21])  # at the unfreeze boundary; inside epoch 2
def test_resume_across_the_unfreeze_boundary_is_exact(tmp_path, tiny_config, weights_file,
                                                      stop_after):  # fmt: skip
    config = _config(tiny_config, weights_file, epochs=2, freeze_epochs=1, lr_decay_per_stage=0.5)
    train(config, tmp_path / "straight", show_progress=False)
    stopped = train(config, tmp_path / "resumed", stop=StopAfter(stop_after), show_progress=False)
    assert stopped.status == "interrupted"
    weights_file.unlink()  # a resumed run takes its weights from its checkpoint
    assert (
        train(config, tmp_path / "resumed", resume=True, show_progress=False).status == "complete"
    )
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert epoch_rows(tmp_path / "straight") == epoch_rows(tmp_path / "resumed")


def test_the_run_records_the_start_and_rebuilds_without_the_file(tmp_path, tiny_config,
                                                                 weights_file):  # fmt: skip
    import cnnlab

    train(_config(tiny_config, weights_file, epochs=1), tmp_path / "r", show_progress=False)
    config = RunDir(tmp_path / "r").config_record()
    assert config.train["weights"] == str(weights_file) and config.train["freeze_epochs"] == 0
    pretrained = config.resolved["pretrained"]
    assert pretrained["band_adaptation"].startswith("first conv summed over RGB")
    assert pretrained["classifier"] == "new (reset_classifier)"
    weights_file.unlink()
    metrics = cnnlab.evaluate(tmp_path / "r")
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert ckpt.latest_checkpoint(tmp_path / "r" / "checkpoints") is not None


def test_pretrained_without_weights_names_the_backbones(tmp_path, tiny_config):
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="no pretrained weights.*efficientnet-lite0"):
        train(tiny_config(model=MODEL, model_options={}, pretrained=True), tmp_path / "r",
              show_progress=False)  # fmt: skip


def test_the_flags_are_documented():
    from dataclasses import fields

    from cnnlab.training.config import TrainConfig

    helps = {f.name: f.metadata["help"] for f in fields(TrainConfig)}
    for name in ("pretrained", "weights", "freeze_epochs", "lr_decay_per_stage", "freeze_bn"):
        assert helps[name]
