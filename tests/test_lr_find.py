"""`cnnlab lr-find`: the range test's rates are geometric, its smoothing and suggestions match
hand-computed values, it stops when the loss diverges, leaves no run behind, and its suggestion
trains a model well on a data set it was not tuned on."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.tuning.lr_find import smooth, suggest, sweep_rates

SPEC = "INPUT -> [CONV -> RELU -> POOL] -> FC"


def test_the_sweeps_rates_are_geometric():
    np.testing.assert_allclose(sweep_rates(1e-7, 10.0, 100), np.geomspace(1e-7, 10.0, 100))
    np.testing.assert_allclose(sweep_rates(1e-3, 1.0, 13), np.geomspace(1e-3, 1.0, 13))


def test_the_smoothing_is_a_bias_corrected_moving_average():
    # beta 0.5 by hand: 0.5/0.5 = 1; (0.25 + 1)/0.75 = 1.6667; (0.625 + 1.5)/0.875 = 2.4286
    assert smooth([1.0, 2.0, 3.0], beta=0.5) == pytest.approx([1.0, 5 / 3, 2.125 / 0.875])
    assert smooth([2.0] * 50) == pytest.approx([2.0] * 50)  # no bias towards 0 at the start


def test_the_suggestions_are_the_steepest_fall_and_a_tenth_of_the_minimum():
    rates = np.geomspace(1e-6, 1.0, 121)
    # falls fastest at 1e-3 (tanh's steepest point), lowest at 1e-2, rises after it
    losses = 2 - np.tanh(np.log10(rates) + 3) + np.where(rates > 1e-2, np.log10(rates / 1e-2), 0)
    suggestions = suggest(list(rates), list(losses))
    assert suggestions["steepest"] == pytest.approx(1e-3, rel=0.05)
    assert suggestions["minimum"] == pytest.approx(1e-3, rel=0.2)  # 1e-2 / 10
    losses_with_divergence = [*losses[:60], math.inf]
    assert suggest(list(rates[:61]), losses_with_divergence)["minimum"] == pytest.approx(
        rates[59] / 10
    )


def test_the_sweep_stops_when_the_loss_passes_four_times_its_best(tmp_path, capsys):
    flags = ["lr-find", "--data", "digits", "--model", SPEC, "--threads", "1", "--json"]
    flags += ["--start-lr", "1e-3", "--end-lr", "1e4", "--steps", "100"]
    assert main([*flags, "--out", str(tmp_path / "a")]) == 0
    strict = {"parse_constant": lambda name: pytest.fail(f"{name} is not JSON")}
    stopped = json.loads(capsys.readouterr().out, **strict)
    assert stopped["diverged"] and len(stopped["losses"]) < 100
    last, best = stopped["smoothed"][-1], min(stopped["smoothed"][:-1])
    assert last is None or last > 4 * best  # the step that stopped it (None: inf or NaN)
    assert all(
        s <= 4 * min(stopped["smoothed"][: i + 1]) for i, s in enumerate(stopped["smoothed"][:-1])
    )
    assert main([*flags, "--out", str(tmp_path / "b"), "--no-stop-on-divergence"]) == 0
    assert len(json.loads(capsys.readouterr().out)["losses"]) == 100


def _bars_folder(root, per_class=40, seed=0):
    """Three classes of 8x8 images: a horizontal bar, a vertical bar, a diagonal, with noise."""
    rng = np.random.default_rng(seed)
    for name in ("horizontal", "vertical", "diagonal"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (8, 8))
            k = rng.integers(1, 7)
            if name == "horizontal":
                image[k, :] = 255
            elif name == "vertical":
                image[:, k] = 255
            else:
                np.fill_diagonal(image, 255)
                image = np.roll(image, k - 3, axis=1)
            Image.fromarray(image.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_the_suggestion_trains_well_on_a_data_set_it_was_not_tuned_on(
    tmp_path, capsys, monkeypatch, one_torch_thread
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bars = _bars_folder(tmp_path / "bars")
    out = tmp_path / "lr"
    code = main(["lr-find", "--data", f"folder:{bars}", "--model", SPEC, "--threads", "1",
                 "--batch-size", "32", "--out", str(out)])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "lr_find.json",
        "lr_find.png",
        "suggested.toml",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars", "cache", "lr"]  # no run written
    found = json.loads((out / "lr_find.json").read_text())
    rate = found["suggested_learning_rate"]
    assert 1e-4 < rate < 3.0, rate
    assert rate == found["suggestions"]["steepest"]
    capsys.readouterr()
    code = main(["train", "--config", str(out / "suggested.toml"), "--data", "digits",
                 "--model", SPEC, "--epochs", "3", "--threads", "1", "--quiet", "--json",
                 "--out", str(tmp_path / "run")])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["learning_rate"] == pytest.approx(rate)
    assert summary["last"]["val_accuracy"] > 0.6  # chance: 0.1
