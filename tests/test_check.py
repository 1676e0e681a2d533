"""`cnnlab check`: a correct set-up passes every check; each set-up broken on purpose (a frozen
layer, a learning rate of 10, labels of one class, no normalisation) fails the check that names
the problem, with the number behind it."""

import json
import math

import numpy as np
import pytest

from cnnlab.cli import main

SPEC = "INPUT -> [CONV -> RELU -> POOL] -> FC"  # conv1 and fc: fast, and no batch norm


def check(capsys, *flags):
    code = main(["check", "--data", "digits", "--model", SPEC, "--threads", "1", "--json", *flags])
    return code, {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}


def test_a_correct_setup_passes_every_check(capsys, one_torch_thread):
    code, checks = check(capsys)
    assert code == 0
    assert all(c["passed"] for c in checks.values()), checks
    assert set(checks) == {
        "labels", "normalization", "initial_loss", "layers_learn", "loss_falls",
        "overfit_batch", "shuffled_labels",
    }  # fmt: skip
    assert checks["initial_loss"]["value"] == pytest.approx(math.log(10), rel=0.25)
    assert checks["overfit_batch"]["value"] == 1.0
    assert checks["shuffled_labels"]["value"] <= 0.25  # chance is ~0.1 on ten balanced classes


def test_a_frozen_layer_is_named(capsys, one_torch_thread):
    code, checks = check(capsys, "--freeze", "features.conv1")
    assert code == 1
    assert not checks["layers_learn"]["passed"]
    assert "features.conv1 did not change" in checks["layers_learn"]["message"]
    assert "head.fc" not in checks["layers_learn"]["message"]
    assert checks["labels"]["passed"] and checks["normalization"]["passed"]


def test_a_learning_rate_of_10_is_named(capsys, one_torch_thread):
    code, checks = check(capsys, "--learning-rate", "10")
    assert code == 1
    assert not checks["loss_falls"]["passed"]
    assert "learning rate 10: lower --learning-rate" in checks["loss_falls"]["message"]
    assert not checks["layers_learn"]["passed"] and "exploded" in checks["layers_learn"]["message"]
    assert not checks["overfit_batch"]["passed"]


def test_labels_of_one_class_are_named(capsys, one_torch_thread):
    code, checks = check(capsys, "--constant-labels")
    assert code == 1
    assert not checks["labels"]["passed"]
    assert checks["labels"]["value"] == 1.0  # every training label is class "0"
    assert "100.0% of the training labels are class '0'" in checks["labels"]["message"]


def test_missing_normalisation_is_named_with_the_datas_own_numbers(capsys, one_torch_thread):
    from sklearn.datasets import load_digits

    code, checks = check(capsys, "--no-normalize")
    assert code == 1
    assert not checks["normalization"]["passed"]
    # Oracle: the digits' pixels as cnnlab decodes them (0..16 -> 0..255), scaled to [0, 1].
    pixels = np.floor(load_digits().images * 255 / 16 + 0.5) / 255
    mean, std = pixels.mean(), pixels.std()
    message = checks["normalization"]["message"]
    assert f"{mean:.2f}/{std:.2f}" in message  # what the model sees, ~0.31/0.38
    assert "not standardised" in message
    assert checks["labels"]["passed"]


def test_an_unknown_layer_to_freeze_is_one_line_naming_the_layers(capsys):
    code = main(["check", "--data", "digits", "--model", SPEC, "--freeze", "features.conv9"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--freeze 'features.conv9' names no layer" in err and "features.conv1" in err


def test_the_text_output_has_one_verdict_line_per_check(capsys, one_torch_thread):
    code = main(
        ["check", "--data", "digits", "--model", SPEC, "--threads", "1", "--freeze", "head"]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert sum(line.startswith(("PASS", "FAIL")) for line in lines) == 7
    assert [line.split()[1] for line in lines if line.startswith("FAIL")] == ["layers_learn"]
    assert lines[-1] == "6 of 7 checks passed"
