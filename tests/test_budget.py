"""--time-budget and the time estimate before training (training/budget.py): durations, the
planner on injected rates against a brute-force reading of its rule, the estimate line, a
planned run that fits, and the clock that stops a run at an epoch's end, resumably."""

import io
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.decode import Preprocess, decode_files
from cnnlab.errors import ConfigError
from cnnlab.run import checkpoints
from cnnlab.run.paths import RunDir
from cnnlab.training import budget
from cnnlab.training.budget import Candidate, Workload
from cnnlab.training.config import TrainConfig
from cnnlab.training.resolve import resume_config
from cnnlab.training.run import train


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_folder(root: Path, per_class: int = 12, size: tuple[int, int] = (40, 40)) -> Path:
    """Two classes of small colour PNGs (HxW = size) that differ in brightness."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 100, (*size, 3)) + 120 * label
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{index:02d}.png")
    return root


def folder_config(root: Path, **overrides) -> TrainConfig:
    settings = dict(
        data=f"folder:{root}", model="small-cnn", epochs=3, batch_size=8, val_fraction=0.25,
        threads=1, check_duplicates=False, precision="fp32",
    )  # fmt: skip
    return TrainConfig(**{**settings, **overrides})


@pytest.mark.parametrize(
    "text, seconds",
    [("10m", 600), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400), ("2m30s", 150),
     ("10 min", 600), ("0.5s", 0.5)],
)  # fmt: skip
def test_durations_read_as_hand_computed_seconds(text, seconds):
    assert budget.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10", "ten minutes", "", "m", "0s", "10m5", "5d", "-3m"])
def test_a_duration_without_units_or_not_positive_is_refused_naming_the_flag(text):
    with pytest.raises(ConfigError, match="--time-budget .* is invalid"):
        budget.parse_duration(text)
    with pytest.raises(ConfigError, match="--time-budget"):
        TrainConfig(time_budget=text)


# Rates for the planner: a square 128 px folder, 900 training and 300 validation images, so an
# epoch costs 900 + 300/3 = 1000 image-equivalents; 10 epochs at most.
WORK = Workload(3, 2, 900, 300, (128, 128), False)
TABLE = {  # (side, half width) -> img/s; each within the bounds _rate_bound assumes
    (128, False): 100.0, (128, True): 250.0, (96, False): 180.0, (96, True): 450.0,
    (64, False): 400.0, (64, True): 900.0, (48, False): 700.0, (48, True): 1500.0,
    (32, False): 1400.0, (32, True): 3000.0,
}  # fmt: skip


def table_rate(candidate: Candidate) -> float:
    return TABLE[(candidate.image_size[0], candidate.widths is not None)]


def plan(seconds: float, max_epochs: int = 10, rate=table_rate):
    options = budget.candidates(TrainConfig(model="small-cnn"), WORK)
    measured = []

    def measure(candidate):
        measured.append(candidate)
        return rate(candidate)

    chosen, considered = budget.choose(options, measure, WORK, lambda: seconds, max_epochs)
    return chosen, considered, measured


@pytest.mark.parametrize(
    "available, side, half, epochs",
    [
        (51.0, 128, True, 10),  # 128 full fits 5 (< 6); half width 12.75 -> the cap, 10
        (25.5, 128, True, 6),  # 128 half width: 25.5 / 4 s = 6.4 -> 6
        (17.0, 96, True, 7),  # 128: 1 and 4; 96 full at most 3 (skipped); 96 half 17/2.22 = 7.6
        (3.0, 32, True, 9),  # only 48 and 32 at half width are measured after 128: 4.5 and 9
        (1.5, 32, True, 4),  # nothing fits 6: the largest that fits 3 (32 half width: 4.5)
        (0.5, 32, True, 1),  # not even two epochs anywhere: the fastest, one epoch
    ],
)
def test_the_planner_picks_the_hand_computed_candidate(available, side, half, epochs):
    chosen, considered, measured = plan(available)
    assert chosen.candidate.image_size == (side, side)
    assert (chosen.candidate.widths is not None) == half and chosen.epochs == epochs
    assert chosen.predicted_seconds == pytest.approx(epochs * 1000 / table_rate(chosen.candidate))
    assert [o.candidate for o in considered if o.measured] == measured
    if available == 17.0:  # 96 full width's bound (100 x 128^2/96^2 img/s) fits only 3 epochs
        assert Candidate((96, 96)) not in measured and len(measured) == 3


def brute_force(available: float, max_epochs: int, rate) -> tuple[Candidate, int]:
    """RULE read literally, with every candidate measured."""
    options = budget.candidates(TrainConfig(model="small-cnn"), WORK)
    fits = [(c, available * rate(c) / WORK.epoch_seconds(1.0)) for c in options]
    for candidate, fit in fits:
        if min(max_epochs, math.floor(fit)) >= min(budget.GOOD_EPOCHS, max_epochs):
            return candidate, min(max_epochs, math.floor(fit))
    for candidate, fit in fits:
        if min(max_epochs, math.floor(fit)) >= min(budget.MIN_EPOCHS, max_epochs):
            return candidate, min(max_epochs, math.floor(fit))
    candidate, fit = max(fits, key=lambda item: item[1])
    return candidate, max(1, min(max_epochs, math.floor(fit)))


def power_rate(candidate: Candidate) -> float:
    """Slower than linear in the pixels (so within the planner's bound), half width 2.5x."""
    return 3e6 / math.prod(candidate.image_size) ** 0.9 * (2.5 if candidate.widths else 1.0)


@pytest.mark.parametrize("rate", [table_rate, power_rate], ids=["table", "power"])
@pytest.mark.parametrize("max_epochs", [4, 10])
def test_the_plan_is_the_rules_and_fits_whenever_one_epoch_does(rate, max_epochs):
    for available in (0.3, 2.0, 5.0, 9.0, 20.0, 45.0, 120.0, 600.0, 3600.0):
        chosen, _, _ = plan(available, max_epochs, rate)
        assert (chosen.candidate, chosen.epochs) == brute_force(available, max_epochs, rate)
        options = budget.candidates(TrainConfig(model="small-cnn"), WORK)
        if min(WORK.epoch_seconds(rate(c)) for c in options) <= available:
            assert chosen.predicted_seconds <= available


def test_measuring_time_comes_off_the_chosen_epochs():
    left = iter([60.0, 30.0])  # 60 s at the start, 30 s once the candidates are measured
    options = budget.candidates(TrainConfig(model="small-cnn"), WORK)
    chosen, _ = budget.choose(options, table_rate, WORK, lambda: next(left), 10)
    assert chosen.candidate == options[0] and chosen.epochs == 3  # 6 at first; 30 s / 10 s


def test_candidates_never_upscale_and_keep_the_aspect():
    work = Workload(3, 2, 100, 10, (363, 360), False)
    sizes = [c.image_size for c in budget.candidates(TrainConfig(model="small-cnn"), work)]
    assert sizes[::2] == [(128, 127), (96, 95), (64, 63), (48, 48), (32, 32)]
    small = Workload(3, 2, 100, 10, (40, 30), False)
    config = TrainConfig(model="small-cnn", model_options={"widths": [8]})
    assert [c.image_size for c in budget.candidates(config, small)] == [(40, 30), (32, 24)]


def test_candidates_stay_at_or_above_the_models_smallest_size(monkeypatch):
    work = Workload(3, 2, 100, 10, (363, 360), False)
    monkeypatch.setattr(budget, "model_min_image_size", lambda name: 60)  # as tv-* models say 32
    sizes = [c.image_size for c in budget.candidates(TrainConfig(model="small-cnn"), work)]
    assert sizes[::2] == [(128, 127), (96, 95), (64, 63)]
    monkeypatch.setattr(budget, "model_min_image_size", lambda name: 500)  # none fits: the largest
    assert [c.image_size for c in budget.candidates(TrainConfig(model="lenet5"), work)] == [
        (128, 127)
    ]


def test_the_estimate_line_uses_the_measured_rates(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "images")
    monkeypatch.setattr(budget, "ESTIMATE_ABOVE", 0)
    monkeypatch.setattr(budget, "measure_training", lambda *args: 1234.0)
    config = folder_config(root, epochs=2)
    stream = io.StringIO()
    _, planned = budget.before_training(config, stream)
    estimate = planned["estimate"]
    # 24 files: round(4.8) = 5 held out for test, round(19 / 4) = 5 of the rest for val
    assert (estimate["train_images"], estimate["val_images"], estimate["epochs"]) == (14, 5, 2)
    seconds = 2 * (14 + 5 / 3) / 1234.0
    assert estimate["training_seconds"] == pytest.approx(seconds, abs=0.05)
    assert estimate["decode"]["files"] == 24 and not estimate["decode"]["cached"]
    line = stream.getvalue()
    assert line.startswith("estimated: decode ~") and "(24 files at ~" in line
    assert "training ~0 s (2 epochs of 14 images at ~1,234 img/s, 40x40, small-cnn)" in line
    assert "--time-budget" not in line
    monkeypatch.setattr(budget, "measure_training", lambda *args: 0.001)
    stream = io.StringIO()
    budget.before_training(config, stream)
    assert "over 30 minutes" in stream.getvalue() and "--time-budget 10m" in stream.getvalue()


def test_a_cached_folder_costs_no_decoding(tmp_path):
    root = make_folder(tmp_path / "images", per_class=3)
    config = folder_config(root, image_size="16")
    facts = budget.data_facts(config)
    assert not budget.estimate_decode(config, facts, (16, 16)).cached
    decode_files(root.resolve(), list(facts.files), Preprocess((16, 16)), workers=1)
    estimate = budget.estimate_decode(config, facts, (16, 16))
    assert (
        estimate.cached and estimate.seconds == 0 and "already in the cache" in estimate.describe()
    )


def test_a_run_with_a_time_budget_fits_it_and_records_its_choice(tmp_path):
    root = make_folder(tmp_path / "images")
    config = folder_config(root, time_budget="20s", epochs=3)
    stream, started = io.StringIO(), time.perf_counter()
    result = train(config, tmp_path / "run", stream=stream)
    assert time.perf_counter() - started < 20 + 5  # plus decoding, imports warm
    assert result.status == "complete" and result.best is not None
    record = RunDir(tmp_path / "run").config_record()
    chosen = record.resolved["time_budget"]["chosen"]
    assert record.train["epochs"] == chosen["epochs"] == result.epochs_done
    assert record.train["image_size"] == chosen["image_size"] == "40x40"  # never upscaled
    assert chosen["measured"] and chosen["images_per_second"] > 0
    assert chosen["predicted_seconds"] <= 20 * budget.SAFETY
    assert "time budget 20s: image size 40x40" in stream.getvalue()


def test_a_run_that_outlives_its_budget_stops_at_an_epoch_end_and_resumes(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "images")
    monkeypatch.setattr(budget, "measure_training", lambda *args: 1e6)  # plans the 4 epochs
    elapsed = iter([0.1, 0.999, 0.999])  # of the budget after epochs 1, 2: epoch 3 won't fit
    monkeypatch.setattr(
        budget.BudgetClock, "elapsed", lambda self: next(elapsed) * self.budget_seconds
    )
    config = folder_config(root, time_budget="30s", epochs=4)
    result = train(config, tmp_path / "run", stream=io.StringIO())
    assert (result.status, result.epochs_done) == ("time-budget", 2)
    run = RunDir(tmp_path / "run")
    rows = run.logged_rows()
    assert [r["event"] for r in rows if r.get("kind") == "event"] == ["time-budget"]
    assert rows[-1]["kind"] == "end" and rows[-1]["status"] == "time-budget"
    latest = checkpoints.latest_checkpoint(run.checkpoints)
    assert latest.meta["status"] == "running" and latest.meta["epoch"] == 2
    resumed = train(resume_config(tmp_path / "run", {}), tmp_path / "run", resume=True,
                    stream=io.StringIO())  # fmt: skip
    assert (resumed.status, resumed.epochs_done) == ("complete", 4)


def test_the_clock_leaves_decoding_out():
    now = time.perf_counter()
    cpu = torch.device("cpu")
    assert budget.BudgetClock(10.0, now - 9.0).out_of_time(2.0, cpu)
    assert not budget.BudgetClock(10.0, now - 5.0).out_of_time(2.0, cpu)
    assert not budget.BudgetClock(10.0, now - 12.0, excluded=5.0).out_of_time(2.0, cpu)


def test_spoken_durations():
    assert [budget.spoken_duration(s) for s in (4, 89, 240, 3600, 7800)] == [
        "4 s", "89 s", "4 min", "1 h", "2 h 10 min",
    ]  # fmt: skip
