"""The Python API of the README: train, evaluate, load, predict on every kind of image input; the
API and the command line resolve the same settings; a family registered in the user's own module
round-trips through model.json into another process."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.data import load_dataset, save_image_file
from cnnlab.errors import CnnlabError, DataError


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "x"
    run = cnnlab.train(
        data="digits", model="conv8 -> bn -> relu -> maxpool2 -> fc", epochs=3, batch_size=64,
        out=out, progress=False,
    )  # fmt: skip
    return run


def test_the_readme_example(digits_run):
    assert isinstance(digits_run, cnnlab.Run) and digits_run.status == "complete"
    assert digits_run.epochs_done == 3 and os.fspath(digits_run) == str(digits_run.path)
    metrics = cnnlab.evaluate(digits_run)
    assert metrics["accuracy"] > 0.8 and (digits_run.path / "eval" / "test.json").is_file()
    model = cnnlab.load(digits_run.path)
    assert model.class_names == tuple(str(i) for i in range(10))
    test = load_dataset("digits")
    predictions = model.predict(test.test_images[:200])
    accuracy = (predictions.indices == test.test_labels[:200]).float().mean().item()
    assert accuracy > 0.8 and len(predictions) == 200
    assert torch.allclose(predictions.probabilities.sum(1), torch.ones(200), atol=1e-5)


def test_every_kind_of_input_gives_the_same_probabilities(digits_run, tmp_path):
    model = cnnlab.load(digits_run, device="cpu")
    images = load_dataset("digits").test_images[:3]  # uint8 [3, 1, 8, 8]
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"{index}.png")
        save_image_file(image, paths[-1])
    reference = model.predict(images).probabilities
    hwc = [image.numpy().transpose(1, 2, 0) for image in images]
    variants = {
        "paths": [str(p) for p in paths],
        "pathlib": paths,
        "pil": [Image.fromarray(array[:, :, 0]) for array in hwc],
        "numpy hwc": hwc,
        "numpy hw": [array[:, :, 0] for array in hwc],
        "numpy batch": np.stack(hwc),
        "tensors chw": list(images),
        "float tensor": images.float() / 255,
        "rgb pil": [Image.fromarray(np.repeat(array, 3, axis=2)) for array in hwc],
    }
    for name, given in variants.items():
        got = model.predict(given).probabilities
        assert torch.allclose(got, reference, atol=1e-6), name
    top = model.predict(paths[0]).top(2)[0]
    assert top["predicted"] == model.predict(images[:1]).labels[0] and len(top["top"]) == 2
    from cnnlab.inference import predict_files

    rows = predict_files(digits_run.path, paths, device="cpu")
    assert [row["confidence"] for row in rows] == pytest.approx(
        reference.max(1).values.tolist(), abs=1e-6
    )


def test_predict_files_returns_the_readable_rows_and_lists_the_failures(digits_run, tmp_path):
    from cnnlab.inference import iter_file_predictions, predict_files

    model = cnnlab.load(digits_run)
    good = []
    for index in range(5):
        good.append(tmp_path / f"{index}.png")
        save_image_file(torch.full((1, 8, 8), index * 40, dtype=torch.uint8), good[-1])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    rows = predict_files(digits_run.path, [good[0], bad, *good[1:]], device="cpu")
    assert [row["file"] for row in rows] == [str(p) for p in good]
    assert rows.failures == [{"file": str(bad), "reason": rows.failures[0]["reason"]}]
    assert rows.failures[0]["reason"].startswith("not an image")
    assert [r["predicted"] for r in rows] == model.predict(good).labels
    batches = list(iter_file_predictions(digits_run.path, [tmp_path], device="cpu", batch_size=2))
    assert [len(rows) for rows, _ in batches] == [2, 2, 1]  # sorted: bad.png comes last
    assert [len(failures) for _, failures in batches] == [0, 0, 1]
    with pytest.raises(DataError, match="None of the 1 given image files could be read"):
        predict_files(digits_run.path, [bad], device="cpu")


def test_bad_inputs_say_what_is_expected(digits_run):
    model = cnnlab.load(digits_run)
    with pytest.raises(DataError, match=r"float images must lie in \[0, 1\]"):
        model.predict(torch.full((1, 8, 8), 3.0))
    with pytest.raises(DataError, match="expected"):
        model.predict(np.zeros((8, 8, 5), dtype=np.uint8))
    with pytest.raises(DataError, match="give file paths"):
        model.predict([1, 2])
    with pytest.raises(CnnlabError, match="does not exist"):
        cnnlab.load(digits_run.path.parent / "nothing-here")


def test_the_api_and_the_command_line_resolve_the_same_settings(monkeypatch):
    from cnnlab.cli import main
    from cnnlab.training.resolve import resolve_config

    captured = {}

    def fake_train(config, out, **kwargs):
        captured["config"] = config
        raise CnnlabError("stop here")

    monkeypatch.setattr("cnnlab.training.run.train", fake_train)
    args = ["--data", "mnist", "--epochs", "2", "--model-options", "dropout=0.1"]
    assert main(["train", *args]) == 2
    api = resolve_config({"data": "mnist", "epochs": 2, "model_options": ["dropout=0.1"]})
    assert captured["config"] == api
    assert api.recipe == "mnist" and api.model == "spec" and api.batch_size == 128  # the recipe's


USER_MODULE = """
    import cnnlab


    @cnnlab.register_model("user-tiny-net", "a net defined outside cnnlab")
    def user_tiny_net(*, in_channels, num_classes, image_size, width: int = 4):
        from cnnlab.models.specnet import spec_network

        spec = f"conv{width} -> relu -> gap -> fc"
        return spec_network(
            in_channels=in_channels, num_classes=num_classes, image_size=image_size, spec=spec
        )
"""


def test_a_family_registered_in_the_users_module_round_trips(tmp_path, monkeypatch):
    from cnnlab.models import MODELS

    (tmp_path / "userlab_nets.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))  # undone after the test
    import userlab_nets  # noqa: F401  (registers the family)

    run = cnnlab.train(
        data="digits", model="user-tiny-net", epochs=1, out=tmp_path / "run", progress=False
    )
    record = json.loads((run.path / "model.json").read_text())
    assert record["name"] == "user-tiny-net" and record["module"] == "userlab_nets"
    command = [sys.executable, "-m", "cnnlab", "evaluate", str(run.path), "--json"]
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}
    found = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=120)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["num_samples"] == 359
    environment.pop("PYTHONPATH")
    missing = subprocess.run(
        command, capture_output=True, text=True, env=environment, cwd="/", timeout=120
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "'userlab_nets'" in missing.stderr and "PYTHONPATH" in missing.stderr


def test_the_readme_python_example_runs_as_shown(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert "cnnlab.train(" in code and "model.predict(" in code
    monkeypatch.chdir(tmp_path)
    digits = load_dataset("digits")
    save_image_file(digits.test_images[0], tmp_path / "a.png")
    Image.fromarray(digits.test_images[1, 0].numpy()).save(tmp_path / "b.jpg")
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("complete")
    assert (tmp_path / "runs" / "x" / "eval" / "test.json").is_file()
