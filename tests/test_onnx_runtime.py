"""The ONNX Runtime path: export, logits against torch (the oracle), staleness, errors, CLI."""

import json
import shutil
import sys

import pytest
import torch

from cnnlab.cli import main
from cnnlab.data import load_dataset, save_image_file
from cnnlab.errors import CnnlabError
from cnnlab.inference import evaluate_run, load_run
from cnnlab.inference.onnx import (
    OnnxClassifier,
    default_export_path,
    export_onnx,
    export_record_path,
)
from cnnlab.run import checkpoints as ckpt
from cnnlab.run.splits import load_run_split
from cnnlab.runtime.predict import predict_logits
from cnnlab.training.config import TrainConfig
from cnnlab.training.run import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    # tiny_config's settings (module-scoped, so written out here), learning in two epochs.
    config = TrainConfig(
        data="digits",
        model="small-cnn",
        model_options={"widths": [8, 16], "depth": 1},
        epochs=2,
        learning_rate=0.1,
        batch_size=32,
        val_fraction=0.2,
        download=False,
        threads=1,
    )
    run = tmp_path_factory.mktemp("onnx") / "run"
    train(config, run, show_progress=False)
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A copy of the run, without exports, to change or break, leaving the shared one intact."""
    return shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("export"))


def torch_logits(run, split="test"):
    """The oracle: the run's model in PyTorch, float32, NCHW."""
    loaded = load_run(run, "best", device="cpu", precision="fp32", channels_last=False)
    images = load_run_split(loaded.record, split).images
    return images, predict_logits(loaded.model, images, loaded.settings), loaded


def test_onnx_logits_match_torch(trained_run):
    path = export_onnx(trained_run)
    assert path == default_export_path(trained_run, "best") and path.is_file()
    record = json.loads(export_record_path(path).read_text())
    assert record["input"]["shape"] == ["batch", 1, 8, 8]
    assert record["output"]["shape"] == ["batch", 10]
    assert record["checkpoint"]["weights_sha256"] and record["opset"] >= 13
    images, expected, loaded = torch_logits(trained_run)
    classifier = OnnxClassifier(path, loaded.settings.normalizer, threads=1)
    actual = classifier.predict_logits(images, batch_size=100)  # 359 images: a partial batch
    assert actual.dtype == torch.float32 and actual.shape == expected.shape == (359, 10)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    assert classifier.predict_logits(images[:0]).shape == (0, 0)  # as loop.predict_logits


def test_evaluate_with_onnx_gives_the_torch_accuracy(trained_run):
    on_torch = evaluate_run(trained_run, precision="fp32", channels_last=False, device="cpu")
    on_onnx = evaluate_run(trained_run, runtime="onnx")
    assert (on_torch["runtime"], on_onnx["runtime"]) == ("torch", "onnx")
    assert on_onnx["accuracy"] == on_torch["accuracy"] > 0.3
    assert on_onnx["confusion_matrix"] == on_torch["confusion_matrix"]
    assert json.loads((trained_run / "eval" / "test-onnx.json").read_text())["runtime"] == "onnx"
    assert json.loads((trained_run / "eval" / "test.json").read_text())["runtime"] == "torch"


def test_a_current_export_is_reused_and_a_stale_one_replaced(run_copy):
    path = export_onnx(run_copy)
    written = path.stat().st_mtime_ns
    assert export_onnx(run_copy).stat().st_mtime_ns == written  # same checkpoint: reused
    # A new best checkpoint (as after more training): different weights, different SHA-256.
    loaded = load_run(run_copy, "best", device="cpu", precision="fp32", channels_last=False)
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter.mul_(1.5)
    meta = {k: v for k, v in loaded.checkpoint.meta.items() if not k.endswith("sha256")}
    ckpt.save_checkpoint(run_copy / "checkpoints", "best", loaded.model, None, meta)
    old_sha = json.loads(export_record_path(path).read_text())["checkpoint"]["weights_sha256"]
    assert export_onnx(run_copy) == path
    record = json.loads(export_record_path(path).read_text())
    assert record["checkpoint"]["weights_sha256"] != old_sha
    images, expected, loaded = torch_logits(run_copy)
    actual = OnnxClassifier(path, loaded.settings.normalizer, threads=1).predict_logits(images)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_missing_onnxruntime_is_a_clear_error(trained_run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(CnnlabError, match="pip install onnxruntime"):
        evaluate_run(trained_run, runtime="onnx")
    assert main(["evaluate", str(trained_run), "--runtime", "onnx"]) == 2
    assert "pip install onnxruntime" in capsys.readouterr().err


def test_a_model_that_cannot_be_exported_names_itself(run_copy, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'custom::op' to ONNX is not supported")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with pytest.raises(CnnlabError, match=r"Model 'small-cnn'.*--runtime torch"):
        export_onnx(run_copy)
    assert not default_export_path(run_copy, "best").exists()  # nothing half-written is left


def test_onnx_runtime_refuses_a_gpu_device(trained_run):
    with pytest.raises(CnnlabError, match="--runtime onnx runs on the CPU"):
        evaluate_run(trained_run, runtime="onnx", device="cuda")


def test_cli_export_evaluate_and_predict(trained_run, tmp_path, capsys):
    out = tmp_path / "lenet.onnx"
    assert main(["export", str(trained_run), "--which", "last", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["onnx"] == str(out) and out.is_file()
    assert record["checkpoint"]["file"].startswith("step-")
    assert main(["export", str(trained_run), "--force"]) == 0
    captured = capsys.readouterr()
    assert "input: images [batch, 1, 8, 8] float32" in captured.out
    assert "warning" not in captured.err  # the exporter's deprecation notice stays quiet

    assert main(["evaluate", str(trained_run), "--split", "val", "--runtime", "onnx"]) == 0
    assert "runtime: onnx" in capsys.readouterr().out
    assert json.loads((trained_run / "eval" / "val-onnx.json").read_text())["runtime"] == "onnx"

    images = load_dataset("digits").test_images[:4]  # PNG keeps these 8x8 uint8 images exactly
    paths = [tmp_path / f"{i}.png" for i in range(len(images))]
    for image, path in zip(images, paths, strict=True):
        save_image_file(image, path)
    assert main(["predict", str(trained_run), *map(str, paths), "--runtime", "onnx", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    loaded = load_run(trained_run, "best", device="cpu", precision="fp32", channels_last=False)
    confidence, predicted = predict_logits(loaded.model, images, loaded.settings).softmax(1).max(1)
    assert [r["predicted_index"] for r in rows] == predicted.tolist()
    assert [r["confidence"] for r in rows] == pytest.approx(confidence.tolist(), abs=1e-4)
    assert {r["runtime"] for r in rows} == {"onnx"}
