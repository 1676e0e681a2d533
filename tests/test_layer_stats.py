"""`train --layer-stats N` (issue 15, item 2): per-layer norms, update ratios and probe-batch
outputs against hand-computed values; the run's layer_stats.jsonl, its PNG, resuming without
duplicates, and the report's section."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from cnnlab.data.loader import Normalizer
from cnnlab.errors import ConfigError
from cnnlab.fileio import read_jsonl
from cnnlab.run import RunDir
from cnnlab.run import checkpoints as ckpt
from cnnlab.run.layer_stats import read_rows
from cnnlab.runtime.predict import StepSettings
from cnnlab.training.config import TrainConfig
from cnnlab.training.interrupt import StopFlag
from cnnlab.training.layer_stats import LayerStats, parameter_layers, probe_stats
from cnnlab.training.run import train

PLAIN = StepSettings(Normalizer((0.0,), (1.0,)))  # x / 255


def linear_model(weight, bias) -> nn.Sequential:
    model = nn.Sequential(nn.Flatten(), nn.Linear(len(weight[0]), len(weight)))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(weight, dtype=torch.float32))
        model[1].bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return model


@torch.no_grad()
def sgd_step(model: nn.Module, lr: float) -> None:
    """Plain SGD, no momentum nor decay: w <- w - lr * g for every parameter with a gradient."""
    for parameter in model.parameters():
        if parameter.grad is not None:
            parameter -= lr * parameter.grad


def test_norms_and_update_ratio_are_the_hand_computed_ones_after_one_sgd_step():
    # W = [[2, 1, 2], [0, 0, 0]], b = [0, 4]: ||(W, b)|| = sqrt(4 + 1 + 4 + 16) = 5.
    # loss = sum(W x + b) with x = (1, 2, 2): dL/dW = [x, x], dL/db = [1, 1],
    # so ||g|| = sqrt(2 * 9 + 2) = sqrt(20); one plain SGD step moves the weights by lr * g.
    model = linear_model([[2, 1, 2], [0, 0, 0]], [0, 4])
    probe = torch.zeros(4, 1, 1, 3, dtype=torch.uint8)
    stats, lr = LayerStats(model, probe, PLAIN, every=1), 0.1
    stats.before_step(1)
    model(torch.tensor([[[[1.0, 2.0, 2.0]]]])).sum().backward()
    sgd_step(model, lr)
    row = stats.after_step(1, epoch=1)
    layer = row["layers"]["1"]
    after = torch.cat([model[1].weight.detach().flatten(), model[1].bias.detach()])
    assert layer["weight_norm"] == pytest.approx(float(torch.linalg.norm(after)), rel=1e-6)
    assert layer["grad_norm"] == pytest.approx(math.sqrt(20), rel=1e-6)
    assert layer["update_ratio"] == pytest.approx(lr * math.sqrt(20) / 5, rel=1e-5)
    assert row["step"] == 1 and row["epoch"] == 1 and list(row["layers"]) == ["1"]
    assert stats.after_step(2, epoch=1)["layers"]["1"]["update_ratio"] is None  # no weights kept


def test_a_relu_after_a_bias_of_minus_1000_is_dead_and_tanh_saturates():
    # Inputs are in [0, 1] and the weights 1: a bias of -1000 leaves nothing above zero.
    model = nn.Sequential(
        linear_model([[1.0] * 3] * 4, [-1000, -1000, -1000, -1000]), nn.ReLU(),
        linear_model([[1.0] * 4] * 4, [-1000, -1000, 1, 1]), nn.ReLU(),
        linear_model([[1.0] * 4] * 4, [-1000, 1000, 0, 0]), nn.Tanh(),
        nn.BatchNorm1d(4),
    )  # fmt: skip
    model.train()
    images = torch.randint(0, 256, (32, 1, 1, 3), dtype=torch.uint8)
    found = probe_stats(model, images, PLAIN, set(parameter_layers(model)))
    assert found["1"]["dead"] == 1.0
    assert found["3"]["dead"] == 0.5  # its input is all zeros: its outputs are relu(bias)
    assert found["5"]["saturated"] == 0.5  # tanh(2 -+ 1000) for two units, tanh(2) for two
    assert "saturated" not in found["1"] and "dead" not in found["0.1"]
    x = images.float().flatten(1) / 255
    first = torch.relu(x @ torch.ones(3, 4) - 1000)
    assert found["0.1"]["mean"] == pytest.approx(float((x @ torch.ones(3, 4) - 1000).mean()))
    assert found["1"]["mean"] == 0.0 and found["1"]["sd"] == 0.0 == float(first.std())
    # eval mode for the probe, the training mode back after it, and no hook left behind
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model[6].running_mean, torch.zeros(4))
    assert not any(m._forward_hooks for m in model.modules())


def test_a_frozen_layer_has_no_gradient_and_an_update_ratio_of_zero():
    model = nn.Sequential(
        linear_model([[1.0, 0.5, 0.0]] * 2, [0.1, 0.2]), linear_model([[1.0, -1.0]] * 2, [0, 0])
    )
    model[0][1].requires_grad_(False)
    stats = LayerStats(model, torch.zeros(2, 1, 1, 3, dtype=torch.uint8), PLAIN, every=1)
    stats.before_step(1)
    model(torch.ones(1, 1, 1, 3)).square().sum().backward()
    sgd_step(model, 0.5)
    layers = stats.after_step(1, epoch=1)["layers"]
    assert layers["0.1"]["grad_norm"] is None and layers["0.1"]["update_ratio"] == 0.0
    assert layers["1.1"]["grad_norm"] > 0 and layers["1.1"]["update_ratio"] > 0


def test_a_negative_interval_is_refused_naming_the_flag():
    with pytest.raises(ConfigError, match="--layer-stats -1 is invalid: it must be 0"):
        TrainConfig(layer_stats=-1)


def test_a_digits_run_records_every_nth_step_and_trains_the_same_weights(tmp_path, tiny_config):
    plain = train(tiny_config(epochs=1, layer_stats=0), tmp_path / "plain", show_progress=False)
    run = RunDir(tmp_path / "stats")
    result = train(tiny_config(epochs=1, layer_stats=5), run.path, show_progress=False)
    rows = read_rows(run)
    assert [row["step"] for row in rows] == list(range(5, result.global_step + 1, 5))
    assert not RunDir(plain.run).layer_stats.exists()
    # the statistics only look: the probe forward changes no weight nor batch-norm statistic
    a, b = (ckpt.latest_checkpoint(r / "checkpoints").weights for r in (plain.run, run.path))
    assert all(torch.equal(a[key], b[key]) for key in a)
    parameterised = {"features.stage1.conv1.0", "features.stage2.conv1.1", "head.fc"}
    for row in rows:
        assert parameterised <= set(row["layers"])
        assert all(row["layers"][n]["update_ratio"] > 0 for n in parameterised)
        assert row["layers"]["features.stage1.conv1.2"].keys() == {"mean", "sd", "dead"}
    assert run.layer_stats_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class CrashAfter(StopFlag):
    """Raises inside the step loop after `steps` checks, as a killed process stops: no
    checkpoint is saved on the way out."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.remaining = steps

    def __call__(self) -> bool:
        self.remaining -= 1
        if self.remaining <= 0:
            raise RuntimeError("crashed")
        return super().__call__()


def test_a_resumed_run_redoes_the_rows_after_its_checkpoint_without_duplicates(
    tmp_path, tiny_config
):
    config = tiny_config(layer_stats=3, checkpoint_every_steps=4)
    train(config, tmp_path / "straight", show_progress=False)
    with pytest.raises(RuntimeError, match="crashed"):
        # 11 checks: one per step, and one before each checkpoint (steps 4 and 8)
        train(config, tmp_path / "crashed", stop=CrashAfter(11), show_progress=False)
    crashed = RunDir(tmp_path / "crashed")
    assert ckpt.latest_checkpoint(crashed.checkpoints).meta["global_step"] == 8
    assert [row["step"] for row in read_jsonl(crashed.layer_stats)] == [3, 6, 9]
    train(config, crashed.path, resume=True, show_progress=False)
    lines = read_jsonl(crashed.layer_stats)
    assert len({row["step"] for row in lines}) == len(lines)  # the file holds no duplicate
    assert lines == read_jsonl(RunDir(tmp_path / "straight").layer_stats)


def test_the_report_shows_the_layer_statistics_and_reports_a_run_without_them(
    tmp_path, tiny_config
):
    from cnnlab.report.build import render_report
    from cnnlab.report.collect import ReportInputs, collect
    from cnnlab.report.training_sections import layers_section

    run = RunDir(tmp_path / "run")
    train(tiny_config(epochs=1, layer_stats=4), run.path, show_progress=False)
    html, _ = render_report(collect(run.path))
    section = html.split('<section id="layers">')[1].split("</section>")[0]
    last = read_rows(run)[-1]
    assert "data:image/png;base64," in section and f"At step {last['step']} " in section
    assert f"{last['layers']['head.fc']['weight_norm']:.3g}" in section
    assert json.loads(run.config.read_text())["train"]["layer_stats"] == 4
    run.layer_stats.unlink()
    section = layers_section(ReportInputs(run, "test", run.dataset_record()))
    assert "No layer statistics were recorded" in section.body and not section.missing


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo, as tests/test_distributed")
def test_two_processes_record_once_with_the_gradients_of_the_global_batch(tmp_path):
    # Only rank 0 records, with no collective; after DDP's all-reduce its gradients are those of
    # the whole global batch, so the rows match one process training on the same batches.
    settings = dict(
        data="digits", model="[conv8 -> relu -> pool]*2 -> fc", epochs=1, batch_size=64,
        val_fraction=0.2, precision="fp32", learning_rate=0.05, layer_stats=4,
    )  # fmt: skip
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]
    command = [sys.executable, "-m", "cnnlab", "train", "--nproc", "2", "--quiet",
               "--out", str(tmp_path / "two"), *flags]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    train(TrainConfig(**settings, download=False, threads=1), tmp_path / "one", show_progress=False)
    two, one = read_rows(RunDir(tmp_path / "two")), read_rows(RunDir(tmp_path / "one"))
    assert len(read_jsonl(RunDir(tmp_path / "two").layer_stats)) == len(two) == len(one) > 0
    for row_two, row_one in zip(two, one, strict=True):
        assert (
            row_two["step"] == row_one["step"]
            and row_two["layers"].keys() == row_one["layers"].keys()
        )
        for layer, values in row_one["layers"].items():
            for key, value in values.items():
                assert row_two["layers"][layer][key] == pytest.approx(value, rel=1e-3, abs=1e-6)
