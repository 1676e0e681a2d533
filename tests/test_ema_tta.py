"""--ema (training/ema.py) and --tta (runtime/predict.py): against hand-rolled averages, torch's
own reflect padding and direct model calls; exact resume; what evaluate and predict use."""

import dataclasses
import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.cli import main
from cnnlab.data.loader import Normalizer
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.inference import evaluate_run, predict_files
from cnnlab.run import checkpoints as ckpt
from cnnlab.run.load import load_run
from cnnlab.run.splits import load_run_split
from cnnlab.runtime.predict import StepSettings, predict_logits, with_tta
from cnnlab.training.config import TrainConfig
from cnnlab.training.ema import WeightAverage, restore_ema
from cnnlab.training.run import train
from tests.test_training import StopAfter, epoch_rows, final_weights

# ---------------------------------------------------------------- EMA


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()


def test_ema_matches_a_hand_rolled_average_with_its_warm_up():
    model, decay = tiny_net(), 0.5  # the warm-up (1 + n) / (10 + n) reaches 0.5 at n = 8
    average = WeightAverage(model, decay)
    oracle = {name: p.detach().clone() for name, p in model.named_parameters()}
    start = {name: p.clone() for name, p in oracle.items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    for step in range(12):
        x = torch.randn(16, 4, generator=generator, dtype=torch.float64)
        y = torch.randint(0, 3, (16,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        average.update()
        d = min(decay, (1 + step) / (10 + step))
        for name, p in model.named_parameters():
            oracle[name] = d * oracle[name] + (1 - d) * p.detach()
    averaged, live = dict(average.module.named_parameters()), dict(model.named_parameters())
    # the first layer's bias feeds a BatchNorm: its gradient is 0 up to rounding, so it moves by
    # an ulp or not at all, and its average may round to the same number
    moved = [n for n in oracle if not torch.allclose(live[n], start[n], rtol=0, atol=1e-9)]
    assert len(moved) == len(oracle) - 1
    for name, expected in oracle.items():
        torch.testing.assert_close(averaged[name], expected, rtol=1e-12, atol=1e-12)
        if name in moved:
            assert not torch.equal(averaged[name], live[name])
    for live, copied in zip(model.buffers(), average.module.buffers(), strict=True):
        assert torch.equal(live, copied)  # BatchNorm statistics copied, not averaged
    assert average.updates == 12 and average.current_decay() == decay


@pytest.mark.parametrize("stop_after", [5, 23])  # mid-epoch 1; exactly at its end
def test_resume_with_ema_is_bit_exact(tmp_path, tiny_config, stop_after):
    config = tiny_config(epochs=3, dropout=0.3, ema=0.9)
    train(config, tmp_path / "straight", show_progress=False)
    stopped = train(config, tmp_path / "resumed", stop=StopAfter(stop_after), show_progress=False)
    assert stopped.status == "interrupted"
    train(config, tmp_path / "resumed", resume=True, show_progress=False)
    for part in ("weights", "live"):
        a, b = (
            final_weights(run) if part == "weights" else _live(run)
            for run in (tmp_path / "straight", tmp_path / "resumed")
        )
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (part, key)
    assert epoch_rows(tmp_path / "straight") == epoch_rows(tmp_path / "resumed")


def _live(run) -> dict:
    return ckpt.latest_checkpoint(run / "checkpoints").state["ema"]["live_weights"]


def test_checkpoints_hold_the_average_of_the_live_weights(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(ckpt, "KEEP_NUMBERED", 10_000)  # keep every step's checkpoint
    run = tmp_path / "run"
    train(tiny_config(ema=0.9, checkpoint_every_steps=1), run, show_progress=False)
    sidecars = sorted((run / "checkpoints").glob("step-*.json"))
    saved = [ckpt.read_checkpoint(sidecar) for sidecar in sidecars]
    assert len(saved) == saved[-1].meta["global_step"] >= 30  # one per step
    for before, after in itertools.pairwise(saved[3:]):  # E_k+1 = d_k E_k + (1 - d_k) L_k+1
        n = after.state["ema"]["updates"] - 1
        assert n == before.state["ema"]["updates"]
        d = min(0.9, (1 + n) / (10 + n))
        live = after.state["ema"]["live_weights"]
        for key, value in after.weights.items():
            if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                assert torch.equal(value, live[key]), key  # copied from the live model
                continue
            expected = d * before.weights[key] + (1 - d) * live[key]
            torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
            assert not torch.equal(value, live[key]), key
    best = ckpt.read_checkpoint(run / "checkpoints" / "best.json", with_state=False)
    at_best = next(c for c in saved if c.meta["global_step"] == best.meta["global_step"])
    for key in best.weights:
        assert torch.equal(best.weights[key], at_best.weights[key]), key
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["weights"]["kind"] == "ema"
    assert config["resolved"]["weights"]["decay"] == 0.9
    # validation scored the average: evaluate of the saved best weights gives the same accuracy
    rows = [r for r in epoch_rows(run) if r["epoch"] == best.meta["epoch"]]
    assert evaluate_run(run, "val", bootstrap=0)["accuracy"] == rows[0]["val_accuracy"]


def test_resuming_with_ema_from_a_checkpoint_without_it_is_refused():
    model = tiny_net()
    with pytest.raises(CheckpointError, match="saved without --ema"):
        restore_ema(model, WeightAverage(model, 0.9), model.state_dict(), {"optimizer": {}})


def test_ema_and_tta_are_checked():
    with pytest.raises(ConfigError, match="--ema 1.0 is invalid"):
        TrainConfig(ema=1.0)
    with pytest.raises(ConfigError, match="--tta 'mirror' is invalid"):
        TrainConfig(tta="mirror")


# ---------------------------------------------------------------- TTA

SETTINGS = StepSettings(Normalizer((0.4, 0.5, 0.6), (0.2, 0.25, 0.3)))


def images(count: int = 5, size: int = 7) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (count, 3, size, size + 1), generator=generator, dtype=torch.uint8)


def asymmetric_net() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)).eval()


def test_flip_tta_is_the_mean_of_the_image_and_its_mirror():
    model, x = asymmetric_net(), images()
    with torch.no_grad():
        model(SETTINGS.normalizer(x))  # sizes the lazy layer
        plain = model(SETTINGS.normalizer(x))
        mirrored = model(SETTINGS.normalizer(x.flip(-1)))
    flip = dataclasses.replace(SETTINGS, tta="flip")
    got = predict_logits(model, x, flip, batch_size=2)
    torch.testing.assert_close(got, (plain + mirrored) / 2, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(got, plain)  # the model is not mirror-symmetric
    assert torch.equal(predict_logits(model, x, SETTINGS), plain)


def test_flip_shift_tta_matches_torch_reflect_padding():
    model, x = asymmetric_net(), images()
    with torch.no_grad():
        model(SETTINGS.normalizer(x))
        normalized = SETTINGS.normalizer(x)  # [B, C, H, W]; normalising commutes with shifts
        height, width = normalized.shape[-2:]
        padded = F.pad(normalized, (1, 1, 1, 1), mode="reflect")
        copies = [normalized, padded[..., :height, :width], padded[..., 2:, 2:]]
        mirror = [(model(c) + model(c.flip(-1))) / 2 for c in copies]
    expected = mirror[0] / 2 + (mirror[1] + mirror[2]) / 4
    got = predict_logits(model, x, dataclasses.replace(SETTINGS, tta="flip-shift"))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    onnx_like = with_tta(lambda view, batch: predict_logits(model, view, SETTINGS, batch), "flip")
    torch.testing.assert_close(
        onnx_like(x, 3), predict_logits(model, x, dataclasses.replace(SETTINGS, tta="flip"))
    )


def test_a_mirror_symmetric_model_gives_the_same_logits_with_flip_tta():
    torch.manual_seed(4)  # pointwise convolution, then a global mean: blind to mirroring
    model = nn.Sequential(
        nn.Conv2d(3, 5, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)
    )
    x = images()
    plain = predict_logits(model, x, SETTINGS)
    got = predict_logits(model, x, dataclasses.replace(SETTINGS, tta="flip"))
    torch.testing.assert_close(got, plain, rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def tta_run(tmp_path_factory):
    from cnnlab.training.config import TrainConfig

    threads = torch.get_num_threads()
    run = tmp_path_factory.mktemp("tta") / "run"
    config = TrainConfig(
        data="digits", model="small-cnn", model_options={"widths": [8, 16], "depth": 1},
        epochs=1, batch_size=64, val_fraction=0.2, download=False, threads=1, tta="flip",
    )  # fmt: skip
    train(config, run, show_progress=False)
    torch.set_num_threads(threads)
    return run


def _oracle_accuracy(run, tta: str) -> float:
    loaded = load_run(run)
    split = load_run_split(loaded.record, "val")
    plain = predict_logits(loaded.model, split.images, loaded.settings)
    logits = plain
    if tta == "flip":
        logits = (plain + predict_logits(loaded.model, split.images.flip(-1), loaded.settings)) / 2
    return float((logits.argmax(1) == split.labels).double().mean())


def test_evaluate_uses_the_runs_tta_and_the_flag_overrides_it(tta_run, capsys):
    lines = []
    recorded = evaluate_run(tta_run, "val", bootstrap=0, notify=lines.append)
    assert recorded["tta"] == "flip"
    assert recorded["accuracy"] == pytest.approx(_oracle_accuracy(tta_run, "flip"), abs=1e-12)
    assert any("not mirror-invariant" in line for line in lines)  # digits: warned
    row = epoch_rows(tta_run)[-1]  # validation during training used it too
    assert row["val_accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-12)
    assert main(["evaluate", str(tta_run), "--split", "val", "--tta", "none", "--json"]) == 0
    overridden = json.loads(capsys.readouterr().out)
    assert overridden["tta"] == "none"
    assert overridden["accuracy"] == pytest.approx(_oracle_accuracy(tta_run, "none"), abs=1e-12)
    config = json.loads((tta_run / "config.json").read_text())
    assert config["train"]["tta"] == config["resolved"]["tta"] == "flip"


def test_an_evaluation_with_another_tta_keeps_the_runs_own(tta_run, capsys):
    assert main(["evaluate", str(tta_run), "--split", "val"]) == 0
    assert main(["evaluate", str(tta_run), "--split", "val", "--tta", "none"]) == 0
    assert f"{tta_run / 'eval' / 'val-tta-none'}.json" in capsys.readouterr().out  # "written:"
    own = json.loads((tta_run / "eval" / "val.json").read_text())
    other = json.loads((tta_run / "eval" / "val-tta-none.json").read_text())
    assert (own["tta"], other["tta"]) == ("flip", "none")
    assert (tta_run / "eval" / "val-tta-none-confusion.png").is_file()
    assert main(["evaluate", str(tta_run), "--split", "val", "--tta", "flip"]) == 0  # its own
    assert not (tta_run / "eval" / "val-tta-flip.json").exists()


def test_predict_uses_the_runs_tta(tta_run, tmp_path):
    from PIL import Image

    loaded = load_run(tta_run)
    split = load_run_split(loaded.record, "val")
    path = tmp_path / "one.png"
    Image.fromarray(split.images[0, 0].numpy()).save(path)
    image = split.images[:1]
    plain = predict_logits(loaded.model, image, loaded.settings)
    flipped = predict_logits(loaded.model, image.flip(-1), loaded.settings)
    for tta, logits in ((None, (plain + flipped) / 2), ("none", plain)):
        row = predict_files(tta_run, [path], tta=tta, calibration=False)[0]
        expected = torch.softmax(logits, 1).max().item()
        assert row["confidence"] == pytest.approx(expected, rel=1e-5)


def test_onnx_runtime_honours_tta(tta_run):
    pytest.importorskip("onnxruntime")
    on_torch = evaluate_run(tta_run, "val", precision="fp32", bootstrap=0)
    on_onnx = evaluate_run(tta_run, "val", runtime="onnx", bootstrap=0)
    assert on_onnx["tta"] == on_torch["tta"] == "flip"
    assert on_onnx["confusion_matrix"] == on_torch["confusion_matrix"]


def test_train_says_the_scores_use_ema_weights_and_tta(tmp_path, capsys):
    from tests.test_cli import TINY, _train_in_this_process

    run = tmp_path / "run"
    _train_in_this_process(
        *TINY, "--epochs", "1", "--ema", "0.9", "--tta", "flip", "--test", "--out", run
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "scores above use: EMA weights (decay 0.9), test-time augmentation flip"
    test = json.loads((run / "eval" / "test.json").read_text())
    assert test["tta"] == "flip"
    best = ckpt.read_checkpoint(run / "checkpoints" / "best.json", with_state=False).weights
    live = _live(run)
    assert any(not torch.equal(best[key], live[key]) for key in best)  # --test scored the average
    loaded = load_run(run).model.state_dict()
    assert all(torch.equal(loaded[key].cpu(), best[key]) for key in best)


def test_the_library_loader_uses_the_runs_tta_and_the_argument_overrides_it(tta_run):
    import cnnlab

    loaded = load_run(tta_run)
    images = load_run_split(loaded.record, "val").images[:8]
    plain = predict_logits(loaded.model, images, loaded.settings)
    flipped = predict_logits(loaded.model, images.flip(-1), loaded.settings)
    for tta, logits in ((None, (plain + flipped) / 2), ("none", plain)):
        model = cnnlab.load(tta_run, calibration=False, tta=tta)
        got = model.predict(images).probabilities
        torch.testing.assert_close(got, torch.softmax(logits, 1), rtol=1e-5, atol=1e-6)


def test_predictions_run_in_batches_of_256_on_a_cpu_unless_told():
    from cnnlab.data.loader import Normalizer
    from cnnlab.runtime.predict import StepSettings, eval_batch_size

    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(len(x))
            return x.flatten(1)[:, :3]

    images = torch.zeros(600, 1, 4, 4, dtype=torch.uint8)
    settings = StepSettings(Normalizer((0.5,), (0.5,)))
    assert eval_batch_size(torch.device("cpu")) == 256
    assert eval_batch_size(torch.device("cuda", 0)) == 1024
    assert predict_logits(Recorder(), images, settings).shape == (600, 3)
    assert seen == [256, 256, 88]
    seen.clear()
    predict_logits(Recorder(), images, settings, batch_size=500)
    assert seen == [500, 100]
