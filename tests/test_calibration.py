"""`cnnlab calibrate` on a small trained two-class run, and evaluate/predict using (or, with
--no-calibration, ignoring) RUN/calibration.json. Oracles: the run's own logits recomputed here
with torch, scikit-learn's metrics, and hand-checked decisions (p(positive) >= threshold)."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix, roc_auc_score

from cnnlab.calibration import fit_temperature
from cnnlab.cli import main
from cnnlab.run.load import load_run
from cnnlab.run.splits import load_run_split

CLASSES = ("benign", "malignant")  # the second is the positive class by default


@pytest.fixture(scope="module")
def isolated_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("cache")
        patch.setenv("XDG_CACHE_HOME", str(cache))
        patch.setenv("CNNLAB_CACHE_DIR", str(cache))
        yield


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    """A two-class folder of 8x8 noise images whose classes overlap (means 110 and 140, sd 40)."""
    root = tmp_path_factory.mktemp("lesions")
    rng = np.random.default_rng(0)
    for name, mean in zip(CLASSES, (110, 140), strict=True):
        (root / name).mkdir()
        for i in range(80):
            pixels = np.clip(rng.normal(mean, 40, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory, lesions, isolated_cache, one_torch_thread):
    """A run trained for 2 epochs on `lesions`."""
    from cnnlab.training.config import TrainConfig
    from cnnlab.training.run import train

    config = TrainConfig(
        data=f"folder:{lesions}",
        model="small-cnn",
        model_options={"widths": [4, 8], "depth": 1},
        epochs=2,
        batch_size=32,
        val_fraction=0.3,
        test_fraction=0.3,
        download=False,
        threads=1,
        cache=False,
    )
    run = tmp_path_factory.mktemp("binary") / "run"
    train(config, run, show_progress=False)
    return run


@pytest.fixture
def run(binary_run, tmp_path):
    """A fresh copy of the trained run for each test (calibration.json and eval/ start empty)."""
    copy = tmp_path / "run"
    shutil.copytree(binary_run, copy)
    return copy


def logits_of(run, split):
    loaded = load_run(run, "best", "cpu")
    data = load_run_split(loaded.record, split)
    with torch.no_grad():
        from cnnlab.runtime.predict import predict_logits

        logits = predict_logits(loaded.model, data.images, loaded.settings).double()
    return logits, data.labels, data.sample_ids


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_calibrate_fits_on_val_and_the_target_sensitivity_holds_there(run, capsys):
    record, _ = run_json(capsys, "calibrate", str(run), "--threshold", "sensitivity:0.9", "--json")
    logits, labels, _ = logits_of(run, "val")
    assert record["split"] == "val" and record["validation"]["num_samples"] == len(labels)
    assert record["checkpoint"] == "best" and record["positive_class"] == "malignant"
    assert record["temperature"] == pytest.approx(fit_temperature(logits, labels), rel=1e-4)
    scores = torch.softmax(logits / record["temperature"], dim=1)[:, 1]
    called = scores >= record["threshold"]
    sensitivity = (called & (labels == 1)).sum().item() / (labels == 1).sum().item()
    assert sensitivity >= 0.9
    assert record["validation"]["sensitivity_at_threshold"] == pytest.approx(sensitivity)
    assert json.loads((run / "calibration.json").read_text()) == record


def test_evaluate_and_predict_use_calibration_json(run, lesions, capsys):
    record, _ = run_json(capsys, "calibrate", str(run), "--json")  # Youden's J
    metrics, err = run_json(capsys, "evaluate", str(run), "--json")
    assert err.count("using threshold") == 1 and str(run / "calibration.json") in err
    assert "Youden's J on val" in err and "temperature" in err
    logits, labels, sample_ids = logits_of(run, "test")
    probabilities = torch.softmax(logits / record["temperature"], dim=1)
    expected = (probabilities[:, 1] >= record["threshold"]).long()
    assert metrics["confusion_matrix"] == confusion_matrix(labels, expected).tolist()
    binary = metrics["binary"]
    assert binary["threshold"] == record["threshold"] and binary["positive_class"] == "malignant"
    assert binary["roc_auc"] == pytest.approx(roc_auc_score(labels, probabilities[:, 1]))
    assert metrics["calibration"]["temperature"] == record["temperature"]
    rows = {row["sample"]: row for row in read_csv(run / "eval" / "test-predictions.csv")}
    for sample, p, decided in zip(sample_ids, probabilities[:, 1], expected, strict=True):
        assert float(rows[sample]["positive_probability"]) == pytest.approx(p.item(), abs=2e-6)
        assert rows[sample]["predicted"] == CLASSES[decided]
    for name in ("test-roc-pr.png", "test-reliability.png", "test-confusion.png"):
        with Image.open(run / "eval" / name) as image:
            assert image.format == "PNG" and image.size[0] > 300

    _, err = run_json(capsys, "evaluate", str(run), "--split", "val", "--bootstrap", "0", "--json")
    assert "fitted on the val split, so its scores here are optimistic" in err
    files = [str(lesions / sample) for sample in sample_ids[:12]]
    found = _predict(run, capsys, files)
    assert [row["predicted"] for row in found] == [rows[s]["predicted"] for s in sample_ids[:12]]
    for row in found:
        assert row["positive_probability"] == pytest.approx(
            float(rows[row["file"][len(str(lesions)) + 1 :]]["positive_probability"]), abs=2e-6
        )
        assert (row["predicted"] == "malignant") == (
            row["positive_probability"] >= record["threshold"]
        )
    import cnnlab  # the Python API decides as `cnnlab predict` does, or not at all if told so

    model = cnnlab.load(run, device="cpu")
    assert model.predict(files).labels == [row["predicted"] for row in found]
    raw = cnnlab.load(run, device="cpu", calibration=False).predict(files)
    assert raw.labels == [CLASSES[i] for i in raw.probabilities.argmax(dim=1).tolist()]


def _predict(run, capsys, files, *flags):
    assert main(["predict", str(run), *files, "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_no_calibration_is_argmax_of_the_raw_softmax(run, lesions, capsys):
    run_json(capsys, "calibrate", str(run), "--threshold", "0.9", "--json")
    metrics, err = run_json(capsys, "evaluate", str(run), "--json", "--no-calibration")
    assert "using" not in err
    logits, labels, sample_ids = logits_of(run, "test")
    assert metrics["confusion_matrix"] == confusion_matrix(labels, logits.argmax(1)).tolist()
    assert metrics["calibration"]["file"] is None and metrics["binary"]["threshold"] is None
    files = [str(lesions / sample) for sample in sample_ids[:8]]
    raw = torch.softmax(logits[:8], dim=1)
    found = _predict(run, capsys, files, "--no-calibration")
    for row, p in zip(found, raw, strict=True):
        assert row["positive_probability"] == pytest.approx(p[1].item(), abs=2e-6)
        assert row["predicted"] == CLASSES[int(p.argmax())]


def test_a_run_without_calibration_json_evaluates_as_before(run, capsys):
    metrics, err = run_json(capsys, "evaluate", str(run), "--json", "--bootstrap", "200")
    assert "calibration.json" not in err
    logits, labels, _ = logits_of(run, "test")
    assert metrics["confusion_matrix"] == confusion_matrix(labels, logits.argmax(1)).tolist()
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1) == labels).double().mean())
    assert metrics["calibration"]["temperature"] is None
    low, high = metrics["confidence_intervals"]["accuracy"]
    assert (
        low <= metrics["accuracy"] <= high and metrics["confidence_intervals"]["resamples"] == 200
    )
    # --positive-class chooses which class's sensitivity is reported
    other, _ = run_json(capsys, "evaluate", str(run), "--json", "--positive-class", "benign")
    assert other["binary"]["sensitivity"] == pytest.approx(metrics["binary"]["specificity"])
    assert other["binary"]["roc_auc"] == pytest.approx(metrics["binary"]["roc_auc"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: {**d, "threshold": 2.0}, "threshold"),
        (lambda d: {**d, "temperature": -1}, "temperature -1.0 is not positive"),
        (lambda d: {**d, "temperature": "hot"}, "is not a number"),
        (lambda d: {**d, "class_names": list(CLASSES[::-1])}, "fitted for the classes"),
        (lambda d: {**d, "format": 7}, "newer cnnlab"),
    ],
)
def test_a_damaged_calibration_json_is_one_line_naming_the_file(run, capsys, change, expected):
    run_json(capsys, "calibrate", str(run), "--json")
    path = run / "calibration.json"
    changed = change(json.loads(path.read_text()))
    path.write_text(changed if isinstance(changed, str) else json.dumps(changed))
    for command in (["evaluate", str(run)], ["predict", str(run), str(run / "eval")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and expected in err


def test_calibration_of_another_checkpoint_is_not_used(run, capsys):
    run_json(capsys, "calibrate", str(run), "--json", "--checkpoint", "last")
    metrics, err = run_json(capsys, "evaluate", str(run), "--json")
    assert "fitted on the last checkpoint" in err and metrics["calibration"]["file"] is None


def test_bad_flags_are_one_line_errors(run, capsys):
    assert main(["calibrate", str(run), "--threshold", "sensitivty:0.9"]) == 2
    assert "youden, sensitivity:0.95" in capsys.readouterr().err
    assert main(["calibrate", str(run), "--positive-class", "cat"]) == 2
    assert "benign, malignant" in capsys.readouterr().err
    run_json(capsys, "calibrate", str(run), "--json")
    assert main(["evaluate", str(run), "--positive-class", "benign"]) == 2
    assert "--no-calibration" in capsys.readouterr().err


def test_report_shows_the_curves_and_numbers_when_present(run, capsys):
    from cnnlab.report.collect import collect
    from cnnlab.report.evaluation_sections import metrics_section

    run_json(capsys, "evaluate", str(run), "--json", "--bootstrap", "100")
    body = metrics_section(collect(run)).body
    assert "ROC AUC" in body and "expected calibration error" in body and "95% CI" in body
    assert body.count("data:image/png;base64,") == 2  # reliability diagram, ROC/PR curves


def test_multiclass_run_gets_calibration_but_no_two_class_metrics(
    tmp_path, tiny_config, isolated_cache, capsys
):
    from cnnlab.report.collect import collect
    from cnnlab.report.evaluation_sections import metrics_section
    from cnnlab.training.run import train

    run = tmp_path / "digits"
    train(tiny_config(epochs=1), run, show_progress=False)
    record, _ = run_json(capsys, "calibrate", str(run), "--json")
    assert record["threshold"] is None and record["positive_class"] is None
    assert record["temperature"] > 0 and math.isfinite(record["validation"]["ece_after"])
    assert record["validation"]["nll_after"] <= record["validation"]["nll_before"] + 1e-9
    metrics, err = run_json(capsys, "evaluate", str(run), "--json", "--bootstrap", "50")
    assert "using temperature" in err and "threshold" not in err
    assert "binary" not in metrics and 0 <= metrics["calibration_error"]["ece"] <= 1
    assert set(metrics["confidence_intervals"]) >= {"accuracy", "balanced_accuracy"}
    assert "sensitivity" not in metrics["confidence_intervals"]
    assert (run / "eval" / "test-reliability.png").is_file()
    assert not (run / "eval" / "test-roc-pr.png").exists()
    rows = read_csv(run / "eval" / "test-predictions.csv")
    assert "positive_probability" not in rows[0]
    body = metrics_section(collect(run)).body
    assert "expected calibration error" in body and "ROC AUC" not in body


def test_report_of_a_run_evaluated_before_these_metrics_still_works(tmp_path):
    from pathlib import Path

    from cnnlab.report.collect import collect
    from cnnlab.report.evaluation_sections import metrics_section

    fixture = Path(__file__).parent / "fixtures" / "run-0.1.0"
    shutil.copytree(fixture, tmp_path / "old")
    body = metrics_section(collect(tmp_path / "old")).body
    assert "accuracy" in body and "ROC AUC" not in body and "data:image/png" not in body
