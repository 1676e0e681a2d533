"""The run directory package: typed records round-trip, refuse newer or damaged files, and a run
written by cnnlab 0.1.0 (before records had format numbers) still works with every command."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.run import ConfigRecord, DatasetRecord, ModelRecord, RecordError, RunDir

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0"  # `cnnlab train` of commit 96cabc2


@pytest.fixture
def old_run(tmp_path):
    run = tmp_path / "old"
    shutil.copytree(FIXTURE, run)
    return run


def test_records_of_an_old_run_read_as_format_1_and_round_trip(old_run):
    run = RunDir(old_run)
    for record in (run.dataset_record(), run.model_record(), run.config_record()):
        assert record.format == 1
        assert type(record).from_dict(json.loads(json.dumps(record.to_dict()))) == record
    dataset = run.dataset_record()
    assert dataset.class_names == tuple(str(i) for i in range(10)) and dataset.num_classes == 10
    assert dataset.image_size == (8, 8) and dataset.channels == 1
    assert len(dataset.normalization.mean) == 1 and dataset.normalization.std[0] > 0
    # every key today's cnnlab wrote is kept, with "format" added
    old = json.loads((old_run / "dataset.json").read_text())
    assert dataset.to_dict() == {**old, "format": 1}
    assert run.model_record().spec_dict() == json.loads((old_run / "model.json").read_text())
    assert run.config_record().to_dict() == {
        **json.loads((old_run / "config.json").read_text()),
        "format": 1,
    }


@pytest.mark.parametrize("record_type", [DatasetRecord, ModelRecord, ConfigRecord])
def test_a_file_from_a_newer_cnnlab_is_refused_with_the_fix(old_run, record_type):
    path = old_run / record_type.FILE
    data = json.loads(path.read_text())
    with pytest.raises(RecordError, match=r"newer cnnlab \(format 2.*Upgrade cnnlab"):
        record_type.from_dict({**data, "format": 2}, str(path))


@pytest.mark.parametrize(
    ("record_type", "key", "value", "expected"),
    [
        (DatasetRecord, "class_names", None, "has no 'class_names'"),
        (DatasetRecord, "channels", "three", "'channels' should be int, not str"),
        (DatasetRecord, "image_size", [8], "damaged"),
        (ModelRecord, "name", None, "has no 'name'"),
        (ModelRecord, "in_channels", True, "'in_channels' should be int, not bool"),
        (ConfigRecord, "train", [], "'train' should be dict, not list"),
    ],
)
def test_a_damaged_file_names_itself_and_the_key(old_run, record_type, key, value, expected):
    path = old_run / record_type.FILE
    data = json.loads(path.read_text())
    if value is None:
        del data[key]
    else:
        data[key] = value
    path.write_text(json.dumps(data))
    reader = {
        DatasetRecord: RunDir.dataset_record,
        ModelRecord: RunDir.model_record,
        ConfigRecord: RunDir.config_record,
    }[record_type]
    with pytest.raises(RecordError, match=expected) as error:
        reader(RunDir(old_run))
    assert str(path) in str(error.value)
    command = ["train", "--resume"] if record_type is ConfigRecord else ["evaluate"]
    assert main([*command, str(old_run)]) == 2  # one line, no traceback


def test_every_command_works_on_a_run_written_by_cnnlab_0_1_0(old_run, capsys, tmp_path):
    recorded = json.loads((FIXTURE / "eval" / "test.json").read_text())
    assert main(["evaluate", str(old_run), "--json", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(recorded["accuracy"], abs=1e-12)
    assert metrics["confusion_matrix"] == recorded["confusion_matrix"]
    image = tmp_path / "digit.png"
    from cnnlab.data import load_dataset, save_image_file

    digits = load_dataset("digits")
    save_image_file(digits.test_images[0], image)
    assert main(["predict", str(old_run), str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["predicted"] in [str(i) for i in range(10)]
    assert (
        main(["explain", str(old_run), "--what", "filters,activations", "--max-points", "50"]) == 0
    )
    assert (old_run / "explain" / "test" / "summary.json").is_file()
    assert main(["export", str(old_run)]) == 0
    assert (old_run / "export" / "model-best.onnx").is_file()
    capsys.readouterr()
    assert main(["train", "--resume", str(old_run), "--quiet", "--json"]) == 0  # already complete
    assert json.loads(capsys.readouterr().out)["status"] == "complete"


def test_loading_a_run_imports_no_training_code():
    code = (
        "import sys, cnnlab\n"
        f"model = cnnlab.load({str(FIXTURE)!r}, device='cpu')\n"
        "import torch\n"
        "print(model.predict(torch.zeros(2, 1, 8, 8, dtype=torch.uint8)).labels)\n"
        "import cnnlab.inference, cnnlab.explain\n"
        "print(sorted(m for m in sys.modules if m.startswith('cnnlab.training')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
