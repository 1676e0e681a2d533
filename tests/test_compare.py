"""cnnlab compare on scikit-learn's digits (offline): identical splits for every pipeline, the
statistics against hand computation and scipy, resuming skips finished work, outputs written."""

import json

import numpy as np
import pytest
import torch
from scipy import stats

from cnnlab.cli import main
from cnnlab.compare import runner as compare
from cnnlab.compare.pipelines import PIPELINES, FeaturePipeline, register_pipeline
from cnnlab.transfer.classical import CLASSIFIERS

SEEN: list[dict] = []  # what the spy pipeline was given, one entry per fit


if "spy-svm" not in PIPELINES:

    @register_pipeline("spy-svm", "raw pixels + classifier, recording the images it is given")
    class Spy(FeaturePipeline):
        def fit(self, train, val):
            SEEN.append({"train": train.images.clone(), "val": val.images.clone()})
            super().fit(train, val)

        def features(self, images):
            SEEN[-1].setdefault("scored", []).append(images.clone())
            return images.flatten(1).float().numpy() / 255


SETTINGS = compare.CompareSettings(
    data="digits", pipelines="raw-svm,spy-svm", folds=3, curve=(0.5, 1.0), max_images=240
)


def test_every_pipeline_sees_exactly_the_saved_splits(tmp_path):
    SEEN.clear()
    summary = compare.run_comparison(SETTINGS, tmp_path, stream=open("/dev/null", "w"))
    splits = json.loads((tmp_path / "splits.json").read_text())
    pool = compare.load_pool(SETTINGS)
    assert len(SEEN) == 6 and len(splits["folds"]) == 3
    tests = [set(f["test"]) for f in splits["folds"]]
    assert set().union(*tests) == set(range(240)) and sum(map(len, tests)) == 240  # a partition
    for fold in splits["folds"]:
        assert not set(fold["train"]) & set(fold["test"]) and not set(fold["val"]) & set(
            fold["test"]
        )
        for share in ("050", "100"):
            seen = SEEN.pop(0)
            part = fold["curve"][share]
            assert torch.equal(seen["train"], pool.images[part["train"]])
            assert torch.equal(seen["val"], pool.images[part["val"]])
            assert torch.equal(seen["scored"][-1], pool.images[fold["test"]])
            for name in ("raw-svm", "spy-svm"):  # both pipelines record the same digests
                record = json.loads(
                    compare.result_path(tmp_path, name, fold["fold"], share).read_text()
                )
                assert record["seen"]["test"] == compare.index_digest(np.array(fold["test"]))
                assert record["seen"]["train"] == compare.index_digest(np.array(part["train"]))
    assert [r["pipeline"] for r in summary["pipelines"]] == ["raw-svm", "spy-svm"]


def test_statistics_match_hand_computation_and_scipy(tmp_path):
    summary = compare.run_comparison(SETTINGS, tmp_path, stream=open("/dev/null", "w"))
    per_fold = {}
    for record in summary["pipelines"]:
        name = record["pipeline"]
        rows = [
            json.loads(compare.result_path(tmp_path, name, k, "100").read_text()) for k in range(3)
        ]
        for metric in compare.METRICS:
            values = [r[metric] for r in rows]
            mean = sum(values) / 3
            sd = (sum((v - mean) ** 2 for v in values) / 2) ** 0.5
            assert record[metric] == pytest.approx(mean) and record[
                f"{metric}_sd"
            ] == pytest.approx(sd)
        per_fold[name] = [r["accuracy"] for r in rows]
    test = summary["paired_test"]
    expected = stats.ttest_rel(per_fold[test["better"]], per_fold[test["worse"]]).pvalue
    if np.isfinite(expected):
        assert test["p_value"] == pytest.approx(expected)
    for name in ("summary.json", "summary.csv", "learning_curve.csv", "learning_curve.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert len(summary["learning_curve"]) == 4


def test_read_comparison_gives_the_report_what_it_shows(tmp_path):
    from cnnlab.compare.outputs import read_comparison
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="not a finished comparison"):
        read_comparison(tmp_path)
    summary = compare.run_comparison(SETTINGS, tmp_path, stream=open("/dev/null", "w"))
    read = read_comparison(tmp_path)
    assert read["summary"] == json.loads(json.dumps(summary))
    assert read["learning_curve"] == summary["learning_curve"]
    assert read["learning_curve_png"].endswith("learning_curve.png")
    assert [len(rows) for rows in read["results"].values()] == [6, 6]  # 3 folds x 2 points
    assert read["splits"]["num_images"] == 240 and len(read["splits"]["folds"]) == 3
    fold = read["splits"]["folds"][0]
    assert fold["train"] + fold["val"] + fold["test"] == 240
    assert fold["curve"]["100"] == {"train": fold["train"], "val": fold["val"]}


def test_an_interrupted_comparison_continues_where_it_stopped(tmp_path):
    class Interrupted(Exception):
        pass

    def stop(record):
        raise Interrupted

    with pytest.raises(Interrupted):
        compare.run_comparison(SETTINGS, tmp_path, open("/dev/null", "w"), after_result=stop)
    first = compare.result_path(tmp_path, "raw-svm", 0, "050")
    assert first.exists()
    finished = first.read_text()
    deleted = compare.result_path(tmp_path, "raw-svm", 1, "100")
    SEEN.clear()
    computed = []
    compare.run_comparison(SETTINGS, tmp_path, open("/dev/null", "w"), after_result=computed.append)
    assert first.read_text() == finished  # not recomputed
    assert len(computed) == 11 and deleted.exists()  # 12 fits, 1 finished before the stop
    deleted.unlink()  # a lost result is computed again, and only it
    computed.clear()
    compare.run_comparison(SETTINGS, tmp_path, open("/dev/null", "w"), after_result=computed.append)
    assert [(r["pipeline"], r["fold"], r["share"]) for r in computed] == [("raw-svm", 1, "100")]


def test_other_splits_in_the_same_folder_are_refused(tmp_path):
    from cnnlab.errors import ConfigError

    small = compare.CompareSettings(
        data="digits", pipelines="raw-svm", folds=2, curve=(1.0,), max_images=60
    )
    compare.run_comparison(small, tmp_path, open("/dev/null", "w"))
    other = compare.CompareSettings(
        data="digits", pipelines="raw-svm", folds=3, curve=(1.0,), max_images=60
    )
    with pytest.raises(ConfigError, match="other splits"):
        compare.run_comparison(other, tmp_path, open("/dev/null", "w"))


def test_random_bank_and_handcrafted_on_repeats_through_the_cli(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--data", "digits", "--pipelines", "random-bank-svm,handcrafted-svm"]
    argv += ["--repeats", "2", "--max-images", "150", "--curve", "1", "--out", str(out), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [r["pipeline"] for r in summary["pipelines"]] == ["random-bank-svm", "handcrafted-svm"]
    assert all(r["accuracy"] > 0.5 and r["folds"] == 2 for r in summary["pipelines"])


def test_missing_backbone_or_bad_pipeline_is_one_clear_line(tmp_path, capsys):
    assert main(["compare", "--pipelines", "raw-svm,scratch", "--out", str(tmp_path)]) == 2
    assert "scratch:MODEL" in capsys.readouterr().err


def test_classifier_choices_are_the_registry(capsys):
    """The command's --classifier choices (kept torch-free in the command) are the registry's."""
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "{" + ",".join(CLASSIFIERS.names()) + "}" in capsys.readouterr().out


@pytest.fixture
def tiny_weights(tmp_path):
    """A random, seeded RGB 1000-class state dict of efficientnet-lite-tiny in cnnlab's keys."""
    from cnnlab.models import ModelSpec, build_model

    torch.manual_seed(1)
    path = tmp_path / "tiny.pt"
    torch.save(build_model(ModelSpec("efficientnet-lite-tiny", 3, 1000, (8, 8))).state_dict(), path)
    return path


def test_pretrained_features_and_finetuning_run_inside_compare(tmp_path, capsys, tiny_weights):
    out = tmp_path / "cmp"
    pipelines = "pretrained-svm:efficientnet-lite-tiny,finetune:efficientnet-lite-tiny"
    argv = ["compare", "--data", "digits", "--pipelines", pipelines, "--weights", str(tiny_weights)]
    argv += ["--repeats", "1", "--max-images", "120", "--curve", "1", "--scratch-epochs", "2"]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [r["pipeline"] for r in summary["pipelines"]] == pipelines.split(",")
    tuned = json.loads(compare.result_path(out, pipelines.split(",")[1], 0, "100").read_text())
    assert tuned["details"]["pretrained"]["source"] == str(tiny_weights.resolve())
    assert tuned["details"]["pretrained"]["classifier"] == "new (reset_classifier)"
    assert tuned["details"]["freeze_epochs"] == 1


def test_finetune_follows_trainings_freeze_schedule(tiny_weights):
    """One frozen epoch (cnnlab.training.finetune): only the new classifier moves."""
    from cnnlab.compare.pipelines import Part, PipelineOptions
    from cnnlab.compare.training import train_in_memory

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=generator)
    part = Part(images, torch.arange(40) % 4)
    options = PipelineOptions(num_classes=4, scratch_epochs=1, weights=str(tiny_weights))
    trained = train_in_memory("efficientnet-lite-tiny", part, part, options, pretrained=True)
    start = torch.load(tiny_weights, weights_only=True)
    for key, value in trained.model.state_dict().items():
        if not key.startswith("head.fc.") and "running" not in key and "num_batches" not in key:
            assert torch.equal(value, start[key]), key
    assert trained.model.state_dict()["head.fc.weight"].shape == (4, 64)


def test_scratch_training_beats_chance_clearly_on_digits(tmp_path):
    """small-cnn, 5 epochs of 32-image steps (cnnlab.training's loop and one-cycle SGD) on 300
    training images of digits: chance is 0.1, a working training loop gives well above 0.8."""
    settings = compare.CompareSettings(
        data="digits", pipelines="scratch:small-cnn", repeats=1, curve=(1.0,), max_images=400
    )
    summary = compare.run_comparison(settings, tmp_path, stream=open("/dev/null", "w"))
    assert summary["pipelines"][0]["accuracy"] > 0.8


def test_changed_settings_recompute_only_the_pipelines_that_use_them(tmp_path, monkeypatch):
    """Rerun in the same folder with another --bank-kernels: the random bank's results are
    computed again (and summarised), the raw pixels' (which do not read it) are kept."""
    from cnnlab.compare import pipelines

    settings = compare.CompareSettings(
        data="digits", pipelines="raw-svm,random-bank-svm", folds=2, curve=(0.5, 1.0),
        max_images=120, bank_kernels=4,
    )  # fmt: skip
    first = compare.run_comparison(settings, tmp_path, stream=open("/dev/null", "w"))
    kept = compare.result_path(tmp_path, "raw-svm", 0, "100").read_text()
    fits = []
    for cls in (pipelines.RawPixels, pipelines.RandomBank):
        original = cls.fit
        monkeypatch.setattr(
            cls, "fit", lambda self, *a, _f=original: fits.append(self.name) or _f(self, *a)
        )
    stream = tmp_path / "progress.txt"
    changed = compare.CompareSettings(**{**settings.__dict__, "bank_kernels": 8})
    second = compare.run_comparison(changed, tmp_path, stream=stream.open("w"))
    assert fits == ["random-bank-svm"] * 4
    assert compare.result_path(tmp_path, "raw-svm", 0, "100").read_text() == kept
    assert (
        "pipeline random-bank-svm: settings changed since the stored results (bank "
        in stream.read_text()
    ) and "recomputing 4 results" in stream.read_text()
    stored = json.loads(compare.result_path(tmp_path, "random-bank-svm", 1, "100").read_text())
    assert stored["settings"]["bank"]["num_kernels"] == 8
    rows = {r["pipeline"]: r for r in second["pipelines"]}
    bank = [
        json.loads(compare.result_path(tmp_path, "random-bank-svm", k, "100").read_text())
        for k in range(2)
    ]
    assert rows["random-bank-svm"]["per_fold_accuracy"] == [r["accuracy"] for r in bank]
    assert rows["raw-svm"] == {r["pipeline"]: r for r in first["pipelines"]}["raw-svm"]
    fits.clear()
    compare.run_comparison(changed, tmp_path, stream=open("/dev/null", "w"))
    assert fits == []  # everything matches now


def test_backbone_features_are_extracted_once_for_every_fold_and_curve_point(
    tmp_path, monkeypatch, tiny_weights
):
    """pretrained-svm computes its features per image: one extraction of all the pooled images,
    indexed per fold and curve point, scoring exactly as extracting per fold would."""
    from cnnlab.transfer import features

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls = []
    original = features.backbone_features

    def spy(name, images, **kwargs):
        calls.append(len(images))
        return original(name, images, **kwargs)

    monkeypatch.setattr(features, "backbone_features", spy)
    settings = compare.CompareSettings(
        data="digits", pipelines="pretrained-svm:efficientnet-lite-tiny", folds=3,
        curve=(0.5, 1.0), max_images=90, weights=str(tiny_weights),
    )  # fmt: skip
    compare.run_comparison(settings, tmp_path / "cmp", stream=open("/dev/null", "w"))
    assert calls == [90]  # 3 folds x 2 curve points, one extraction
    pool = compare.load_pool(settings)
    fold = compare.make_folds(pool.labels, settings)[1]
    options = compare.pipeline_options(settings, 10)
    per_fold = compare.run_one(
        pool, fold, "050", "pretrained-svm", "efficientnet-lite-tiny", options
    )
    assert len(calls) == 4  # without a table: train, val, test of that fold (3 extractions)
    stored = compare.result_path(
        tmp_path / "cmp", "pretrained-svm:efficientnet-lite-tiny", 1, "050"
    )
    assert json.loads(stored.read_text())["accuracy"] == pytest.approx(per_fold["accuracy"])
