"""--progressive-resize (training/progressive.py): the option, the epoch rule against hand-computed
counts, the resize against PIL's antialiased bilinear, what the model sees in a run (forward
pre-hooks), exact resume, segments, and the errors."""

import io
import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.cli import main
from cnnlab.data.loader import Normalizer
from cnnlab.errors import ConfigError
from cnnlab.runtime.predict import StepSettings, prepare
from cnnlab.training import session as session_module
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import EpochTotals, train_one_epoch
from cnnlab.training.progressive import (
    ResizePlan,
    check_model_takes,
    resize_images,
    small_epochs,
    small_shape,
)
from cnnlab.training.run import train
from tests.test_training import StopAfter, epoch_rows, extend, final_weights

SIZE, SMALL = 16, 12  # the folder's images, and the size of the small epochs


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two classes of 16x16 colour PNGs that differ in brightness: 20 each, so 24 training
    images (3 steps of 8) after the test and validation splits."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        (root / name).mkdir()
        for index in range(20):
            pixels = rng.integers(0, 120, (SIZE, SIZE, 3)) + 100 * label
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{index:02d}.png")
    return root


def config(folder: Path, **overrides) -> TrainConfig:
    settings = dict(
        data=f"folder:{folder}", model="small-cnn", model_options={"widths": [8, 16], "depth": 1},
        epochs=3, batch_size=8, val_fraction=0.25, threads=1, check_duplicates=False,
        precision="fp32", layer_stats=0, dropout=0.3, progressive_resize=f"{SMALL}:0.5",
    )  # fmt: skip
    return TrainConfig(**{**settings, **overrides})


# ---------------------------------------------------------------- the option and the rule


@pytest.mark.parametrize(
    "text", ["24", "24:", ":0.5", "7:0.5", "24:0", "24:1", "24:1.5", "24:-0.5", "x:0.5",
             "24.5:0.5", "24:nan", "24:half", "24;0.5"],
)  # fmt: skip
def test_bad_values_are_refused_naming_the_flag_and_the_form(text):
    with pytest.raises(ConfigError, match=r"--progressive-resize .* give SIZE:FRACTION"):
        TrainConfig(progressive_resize=text)


def test_good_values_are_kept_in_the_config_and_round_trip():
    for text in ("", "24:0.5", "8:1/3", "24:0.25"):
        stored = json.loads(json.dumps(TrainConfig(progressive_resize=text).to_dict()))
        assert TrainConfig.from_dict(stored).progressive_resize == text


@pytest.mark.parametrize(
    "epochs, fraction, small",
    [(10, "0.5", 5), (3, "0.5", 2), (5, "0.5", 3), (2, "0.5", 1), (1, "0.5", 0),
     (10, "0.15", 2), (10, "0.14", 1), (10, "0.04", 0), (4, "0.9", 3), (20, "0.75", 15)],
)  # fmt: skip
def test_small_epochs_round_halves_up_and_leave_the_last_epoch_full(epochs, fraction, small):
    # hand-computed: 3 x 0.5 = 1.5 -> 2; 10 x 0.15 = 1.5 -> 2 (exact: no 1.4999...);
    # 4 x 0.9 = 3.6 -> 4, capped at 3 so the last epoch trains at the validated size
    assert small_epochs(epochs, Fraction(fraction)) == small


def test_the_size_depends_on_the_epoch_index_alone():
    plan = ResizePlan((24, 24), (32, 32), small_epochs(10, Fraction(1, 2)), 10)
    assert [plan.size_at(epoch) for epoch in range(10)] == [(24, 24)] * 5 + [None] * 5
    assert "epochs 1-5 of 10 train on 24x24 images, the rest at 32x32" in plan.describe()


def test_the_longer_side_becomes_size_and_the_aspect_ratio_stays():
    assert small_shape((32, 32), 24) == (24, 24)
    assert small_shape((40, 20), 24) == (24, 12)
    assert small_shape((30, 45), 30) == (20, 30)


# ---------------------------------------------------------------- the resize itself


def test_resize_matches_pils_antialiased_bilinear():
    image = np.random.default_rng(1).normal(size=(16, 12)).astype(np.float32)  # [H, W]
    expected = np.asarray(Image.fromarray(image, mode="F").resize((9, 12), Image.BILINEAR))
    x = torch.from_numpy(image)[None, None]  # [1, 1, 16, 12]
    got = resize_images(x, (12, 9), channels_last=False)[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    twice = torch.from_numpy(image[None, None]).repeat(2, 3, 1, 1)
    assert resize_images(twice, (12, 9), channels_last=True).is_contiguous(
        memory_format=torch.channels_last
    )


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_training_step_feeds_the_model_the_resized_prepared_batch(channels_last):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1])
    settings = StepSettings(Normalizer((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), "fp32", channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    train_one_epoch(
        model, [(images, labels)], optimizer, scheduler, nn.CrossEntropyLoss(), settings,
        EpochTotals(), resize=(12, 12),
    )  # fmt: skip
    expected = torch.nn.functional.interpolate(
        prepare(images, settings), size=(12, 12), mode="bilinear", antialias=True
    )
    assert len(seen) == 1 and torch.equal(seen[0], expected)
    assert seen[0].is_contiguous(memory_format=torch.channels_last) == channels_last


# ---------------------------------------------------------------- runs


def recording_model_inputs(monkeypatch) -> list:
    """(training mode, [H, W]) of every forward pass of the run's model."""
    calls = []
    build = session_module.build_model

    def build_and_hook(spec):
        model = build(spec)
        model.register_forward_pre_hook(
            lambda module, args: calls.append((module.training, tuple(args[0].shape[-2:])))
        )
        return model

    monkeypatch.setattr(session_module, "build_model", build_and_hook)
    return calls


def test_the_first_epochs_train_small_and_validation_sees_the_full_size(
    tmp_path, folder, monkeypatch
):
    calls = recording_model_inputs(monkeypatch)
    stream = io.StringIO()
    train(config(folder), tmp_path / "run", stream=stream)
    small, full = (SMALL, SMALL), (SIZE, SIZE)
    assert calls[0] == (False, small)  # the session's check that the model takes them
    training = [shape for mode, shape in calls[1:] if mode]
    assert training == [small] * 6 + [full] * 3  # 3 steps an epoch; epochs 1-2 of 3 small
    assert {shape for mode, shape in calls[1:] if not mode} == {full}  # validation
    rows = epoch_rows(tmp_path / "run")
    assert [row["image_size"] for row in rows] == [[12, 12], [12, 12], [16, 16]]
    shown = stream.getvalue()
    assert "epochs 1-2 of 3 train on 12x12 images, the rest at 16x16" in shown
    assert re.search(r"epoch 2/3 .* at 12x12 ", shown) and re.search(
        r"epoch 3/3 .* at 16x16 ", shown
    )
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["train"]["progressive_resize"] == "12:0.5"


# a stop check per step and one at each epoch's end: 6 stops after step 5 (mid-epoch 2, small),
# 8 at the end of epoch 2, where the full-size epoch 3 begins
@pytest.mark.parametrize("stop_after", [6, 8])
def test_a_resumed_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path, folder, stop_after):
    settings = config(folder)
    train(settings, tmp_path / "straight", show_progress=False)
    stopped = train(settings, tmp_path / "resumed", stop=StopAfter(stop_after), show_progress=False)
    assert stopped.status == "interrupted"
    assert train(settings, tmp_path / "resumed", resume=True, show_progress=False).status == (
        "complete"
    )
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert epoch_rows(tmp_path / "straight") == epoch_rows(tmp_path / "resumed")


def test_epochs_added_by_an_extension_train_at_full_size(tmp_path, folder):
    run = tmp_path / "run"
    train(config(folder, epochs=2), run, show_progress=False)
    extend(run, 4)  # round(0.5 x 4) = 2 would make epoch 2 small; the rule counts from 2 epochs
    assert [row["image_size"] for row in epoch_rows(run)] == [[12, 12]] + [[16, 16]] * 3


def test_off_changes_nothing_in_the_epoch_rows(tmp_path, folder):
    train(config(folder, progressive_resize="", epochs=1), tmp_path / "run", show_progress=False)
    assert "image_size" not in epoch_rows(tmp_path / "run")[0]


# ---------------------------------------------------------------- errors


def test_a_size_not_below_the_images_is_refused(tmp_path, folder):
    with pytest.raises(ConfigError, match=r"SIZE 16 is not smaller than the images \(16x16\)"):
        train(config(folder, progressive_resize="16:0.5"), tmp_path / "run", show_progress=False)


def test_a_network_with_a_dense_head_sized_for_the_images_is_refused(tmp_path, folder):
    with pytest.raises(ConfigError, match=r"model conv8 -> relu -> fc cannot take 12x12 images"):
        train(
            config(folder, model="conv8 -> relu -> fc", model_options={}, dropout=None),
            tmp_path / "run", show_progress=False,
        )  # fmt: skip
    assert not (tmp_path / "run" / "config.json").exists()
    with pytest.raises(ConfigError, match=r"sized for 16x16.* \"gap -> fc\" in place of"):
        train(
            config(folder, model="conv8 -> relu -> flatten -> fc", model_options={}, dropout=None),
            tmp_path / "run2", show_progress=False,
        )  # fmt: skip


class DrawsNumbers(nn.Module):
    def forward(self, x):
        return x.mean() + torch.rand(())


def test_the_models_check_leaves_the_random_stream_and_the_mode_as_they_were():
    model, plan = DrawsNumbers(), ResizePlan((12, 12), (16, 16), 1, 2)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    check_model_takes(model, 3, plan, TrainConfig(progressive_resize="12:0.5"))
    assert torch.equal(torch.rand(3), expected) and model.training


def test_the_flag_has_its_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--progressive-resize SIZE:FRACTION" in text
    assert "round(FRACTION x EPOCHS) epochs" in text
