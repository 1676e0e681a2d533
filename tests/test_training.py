"""The training core: configuration, schedules, exact resume, interruption, non-finite loss."""

import io
import json
import re
import signal

import pytest
import torch
from torch import nn

from cnnlab.data.loader import Normalizer
from cnnlab.errors import CnnlabError, ConfigError, TrainingAborted
from cnnlab.fileio import read_jsonl
from cnnlab.models import ModelSpec, build_model
from cnnlab.run import checkpoints as ckpt
from cnnlab.runtime.predict import StepSettings
from cnnlab.training.config import TrainConfig, load_toml, parse_model_option
from cnnlab.training.interrupt import StopFlag
from cnnlab.training.loop import EpochTotals, train_one_epoch
from cnnlab.training.optim import build_optimizer, build_scheduler
from cnnlab.training.run import train


class StopAfter(StopFlag):
    """Trips after `steps` checks, as a Ctrl-C arriving during that step would."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.remaining = steps

    def __call__(self) -> bool:
        if self.signal_number is None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.request()
        return super().__call__()


def final_weights(run) -> dict:
    return ckpt.latest_checkpoint(run / "checkpoints").weights


def epoch_rows(run) -> list:
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "epoch"]
    return [
        {k: v for k, v in r.items() if k not in ("time", "epoch_seconds", "images_per_second")}
        for r in rows
    ]


# ---------------------------------------------------------------- configuration


def test_config_round_trips_and_validates():
    config = TrainConfig(epochs=3, optimizer="adamw", model_options={"depth": 1})
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="--epochs 0 is invalid"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="choose one of sgd, adamw"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ConfigError, match="unknown setting"):
        TrainConfig.from_dict({"epoch": 3})


def test_toml_sets_defaults_with_dashes_or_underscores(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text('[train]\nlearning-rate = 0.2\nbatch_size = 32\nmodel = "lenet5"\n')
    config = TrainConfig.from_dict(load_toml(path))
    assert (config.learning_rate, config.batch_size, config.model) == (0.2, 32, "lenet5")
    (tmp_path / "bad.toml").write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(tmp_path / "bad.toml")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('learning_rate = "fast"', "setting learning_rate = 'fast' is invalid: expected a number "),
        ('epochs = "3"', "setting epochs = '3' is invalid: expected a whole number "),
        ("nesterov = 1", "setting nesterov = 1 is invalid: expected true or false"),
        ("model = 3", "setting model = 3 is invalid: expected a string"),
    ],
)
def test_toml_setting_of_the_wrong_type_names_the_setting_and_the_type(tmp_path, line, message):
    path = tmp_path / "wrong.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match="wrong.toml: " + re.escape(message)):
        TrainConfig.from_dict(load_toml(path), source=str(path))
    integer_rate = tmp_path / "integer.toml"
    integer_rate.write_text("learning_rate = 1\n")  # a TOML integer is a number too
    assert TrainConfig.from_dict(load_toml(integer_rate)).learning_rate == 1


def test_model_option_values_are_json_or_strings():
    assert parse_model_option("widths=[16, 32]") == ("widths", [16, 32])
    assert parse_model_option("name=abc") == ("name", "abc")
    with pytest.raises(ConfigError):
        parse_model_option("novalue")


# ---------------------------------------------------------------- schedules


def _optimizer_and_schedule(schedule, **overrides):
    model = nn.Linear(4, 2)
    config = TrainConfig(schedule=schedule, epochs=4, learning_rate=0.1, **overrides)
    optimizer = build_optimizer(config, model)
    return optimizer, build_scheduler(config, optimizer, steps_per_epoch=10)


def _lrs(optimizer, scheduler, steps):
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_onecycle_peaks_after_warmup_and_ends_near_zero():
    optimizer, scheduler = _optimizer_and_schedule("onecycle", warmup_fraction=0.25)
    lrs = _lrs(optimizer, scheduler, 40)
    assert max(lrs) == pytest.approx(0.1, rel=1e-6)
    assert lrs.index(max(lrs)) in (9, 10)  # 25% of 40 steps
    assert lrs[-1] < 1e-3


def test_step_schedule_decays_every_step_epochs():
    optimizer, scheduler = _optimizer_and_schedule("step", step_epochs=2, step_gamma=0.5)
    lrs = _lrs(optimizer, scheduler, 40)
    assert lrs[0] == lrs[19] == pytest.approx(0.1) and lrs[20] == pytest.approx(0.05)


def test_cosine_and_constant():
    optimizer, scheduler = _optimizer_and_schedule("cosine")
    lrs = _lrs(optimizer, scheduler, 40)
    assert lrs[20] == pytest.approx(0.05) and lrs[0] == pytest.approx(0.1)
    optimizer, scheduler = _optimizer_and_schedule("constant")
    assert all(lr == pytest.approx(0.1) for lr in _lrs(optimizer, scheduler, 40))


def test_weight_decay_spares_biases_and_norm_scales():
    model = build_model(ModelSpec("small-cnn", 1, 10, (8, 8)))
    optimizer = build_optimizer(TrainConfig(weight_decay=0.01), model)
    decayed, spared = optimizer.param_groups
    assert len(decayed["params"]) + len(spared["params"]) == len(list(model.parameters()))
    assert decayed["params"] and all(p.ndim >= 2 for p in decayed["params"])
    assert spared["params"] and all(p.ndim == 1 for p in spared["params"])
    assert (decayed["weight_decay"], spared["weight_decay"]) == (0.01, 0.0)


def _same(a, b) -> bool:
    """Deep equality of state dicts: same keys, same plain values, tensors equal in dtype too."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _sgd_step(model, optimizer, scheduler, x) -> None:
    optimizer.zero_grad()
    model(x).square().mean().backward()
    optimizer.step()
    scheduler.step()


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step", "constant"])
@pytest.mark.parametrize("optimizer_name", ["sgd", "adamw"])
def test_optimizer_and_schedule_state_load_without_pickled_code(tmp_path, schedule, optimizer_name):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    config = TrainConfig(schedule=schedule, optimizer=optimizer_name, epochs=2, step_epochs=1,
                         learning_rate=0.1)  # fmt: skip
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer, 5)
    for _ in range(6):  # into the second epoch: momentum, moments and the schedule have moved
        _sgd_step(model, optimizer, scheduler, torch.randn(3, 4))
    torch.save({"o": optimizer.state_dict(), "s": scheduler.state_dict()}, tmp_path / "s.pt")
    loaded = ckpt.load_state_file(tmp_path / "s.pt")  # weights_only: tensors and plain types

    copy = nn.Linear(4, 2)
    copy.load_state_dict(model.state_dict())
    restored_optimizer = build_optimizer(config, copy)
    restored_scheduler = build_scheduler(config, restored_optimizer, 5)
    restored_optimizer.load_state_dict(loaded["o"])
    restored_scheduler.load_state_dict(loaded["s"])
    saved = optimizer.state_dict()
    assert len(saved["state"]) == 2 and _same(restored_optimizer.state_dict(), saved)
    assert _same(restored_scheduler.state_dict(), scheduler.state_dict())
    assert restored_scheduler.last_epoch == scheduler.last_epoch == 6
    assert restored_scheduler.get_last_lr() == scheduler.get_last_lr()

    x = torch.randn(3, 4)
    _sgd_step(model, optimizer, scheduler, x)
    _sgd_step(copy, restored_optimizer, restored_scheduler, x)
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert [g["lr"] for g in restored_optimizer.param_groups] == lrs
    assert restored_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), copy.parameters(), strict=True)
    )
    if schedule != "constant":  # the schedule really is restored, not restarted
        fresh = build_scheduler(config, build_optimizer(config, nn.Linear(4, 2)), 5)
        assert fresh.get_last_lr() != lrs


# ---------------------------------------------------------------- the loop


def test_nonfinite_loss_skips_the_step_then_aborts():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    settings = StepSettings(Normalizer((0.5,), (0.5,)))
    images = torch.randint(0, 255, (4, 1, 2, 2), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0])
    calls = []

    def loss_fn(logits, targets):  # NaN on calls 1, 3, 4, 5; finite on call 2
        calls.append(1)
        loss = nn.functional.cross_entropy(logits, targets)
        return loss if len(calls) == 2 else loss * float("nan")

    before = [p.detach().clone() for p in model.parameters()]
    totals = EpochTotals()
    train_one_epoch(model, [(images, labels)], optimizer, scheduler, loss_fn, settings, totals)
    assert totals.skipped_steps == 1 and totals.seen == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    train_one_epoch(model, [(images, labels)], optimizer, scheduler, loss_fn, settings, totals)
    assert totals.consecutive_nonfinite == 0 and totals.seen == 4
    with pytest.raises(TrainingAborted, match="3 consecutive steps"):
        train_one_epoch(
            model, [(images, labels)] * 5, optimizer, scheduler, loss_fn, settings, totals,
            max_nonfinite_steps=3,
        )  # fmt: skip


def test_diverging_run_aborts_and_never_saves_nonfinite_weights(tmp_path, tiny_config):
    config = tiny_config(
        learning_rate=1e6,
        schedule="constant",
        epochs=3,
        weight_decay=0.0,
        checkpoint_every_steps=1,
        model_options={"widths": [8], "depth": 1},
    )
    with pytest.raises(TrainingAborted, match="not finite|NaN or infinite"):
        train(config, tmp_path / "run", show_progress=False)
    sidecars = list((tmp_path / "run" / "checkpoints").glob("*.json"))
    assert sidecars  # steps before the divergence were saved, and are checked below
    for sidecar in sidecars:
        weights = ckpt.read_checkpoint(sidecar, with_state=False).weights
        assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


# ---------------------------------------------------------------- runs, resume


def test_run_directory_has_the_contract_files(tmp_path, tiny_config):
    result = train(tiny_config(), tmp_path / "run", show_progress=False)
    run = tmp_path / "run"
    assert result.status == "complete" and result.epochs_done == 2
    for name in ("config.json", "dataset.json", "model.json", "metrics.jsonl"):
        assert (run / name).is_file(), name
    dataset = json.loads((run / "dataset.json").read_text())
    train_idx, val_idx = dataset["splits"]["train"]["indices"], dataset["splits"]["val"]["indices"]
    assert not set(train_idx) & set(val_idx) and len(train_idx) + len(val_idx) == 1438
    assert sum(dataset["class_counts"]["val"]) == len(val_idx)
    model = json.loads((run / "model.json").read_text())
    assert build_model(ModelSpec.from_dict(model)).num_classes == 10
    assert len(epoch_rows(run)) == 2
    assert (run / "checkpoints" / "best.safetensors").is_file()
    with pytest.raises(CnnlabError, match="already holds a run"):
        train(tiny_config(), run, show_progress=False)


AUGMENTED = dict(hflip=0.5, crop_padding=1, rotate=10, noise=0.02, erase=0.3, sampler="balanced")


@pytest.mark.parametrize(
    "stop_after, extra",
    [(5, {}), (23, {}), (7, AUGMENTED)],  # mid-epoch 1; exactly at its end; augmented, mid-epoch
)
def test_resume_after_interrupt_gives_identical_weights(tmp_path, tiny_config, stop_after, extra):
    # dropout: the RNG state must be restored too; augmentation and the balanced sampler must
    # draw from (seed, epoch, batch) alone.
    config = tiny_config(epochs=3, dropout=0.3, **extra)
    train(config, tmp_path / "straight", show_progress=False)
    interrupted = train(
        config, tmp_path / "resumed", stop=StopAfter(stop_after), show_progress=False
    )
    assert interrupted.status == "interrupted"
    resumed = train(config, tmp_path / "resumed", resume=True, show_progress=False)
    assert resumed.status == "complete"
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert epoch_rows(tmp_path / "straight") == epoch_rows(tmp_path / "resumed")


def test_resume_falls_back_when_the_latest_checkpoint_is_truncated(tmp_path, tiny_config):
    config = tiny_config(epochs=3)
    train(config, tmp_path / "straight", show_progress=False)
    run = tmp_path / "run"
    train(config, run, stop=StopAfter(30), show_progress=False)  # epoch 2 of 3, mid-way
    newest = ckpt.numbered_sidecars(run / "checkpoints")[0].with_suffix(".safetensors")
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="corrupt or truncated"):
        train(config, run, resume=True, show_progress=False)
    a, b = final_weights(tmp_path / "straight"), final_weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_stops_when_the_monitor_stalls(tmp_path, tiny_config):
    config = tiny_config(epochs=6, learning_rate=1e-9, schedule="constant", early_stopping=2)
    result = train(config, tmp_path / "run", show_progress=False)
    assert result.status == "early-stopped"
    assert result.epochs_done == 3 and result.best["best_epoch"] == 1


def test_keep_last_writes_no_best_and_test_scores_the_last_weights(tmp_path, capsys):
    """--keep last: the best epoch is still tracked, no best.* is written, and --test (as
    evaluate, predict, export) uses the newest checkpoint, and says so."""
    from tests.test_cli import TINY, _train_in_this_process

    run = tmp_path / "run"
    _train_in_this_process(
        *TINY, "--epochs", "2", "--keep", "last", "--test", "--json", "--out", run
    )
    summary = json.loads(capsys.readouterr().out)
    assert not (run / "checkpoints" / "best.json").exists()
    newest = ckpt.numbered_sidecars(run / "checkpoints")[0]
    assert summary["test"]["checkpoint"] == newest.name
    assert summary["best"]["best_epoch"] in (1, 2)  # tracked for the summary and early stopping
    assert json.loads((run / "config.json").read_text())["train"]["keep"] == "last"


def test_keep_best_keeps_the_best_epoch_for_test(tmp_path, capsys):
    from tests.test_cli import TINY, _train_in_this_process

    run = tmp_path / "run"
    _train_in_this_process(*TINY, "--epochs", "2", "--test", "--out", run)
    assert "test (best checkpoint): accuracy" in capsys.readouterr().out
    best = ckpt.read_checkpoint(run / "checkpoints" / "best.json", with_state=False)
    assert (
        best.meta["epoch"]
        == json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["best_epoch"]
    )


def test_class_weighted_loss_uses_inverse_frequency(tmp_path, tiny_config):
    from types import SimpleNamespace

    from cnnlab.training.session import loss_function

    record = SimpleNamespace(class_counts={"train": [10, 30, 60]})
    loss = loss_function(tiny_config(class_weighted_loss=True), record, torch.device("cpu"))
    assert torch.allclose(loss.weight, torch.tensor([100 / 30, 100 / 90, 100 / 180]))


# ---------------------------------------------------------------- progress


class FakeStream:
    def __init__(self, tty: bool) -> None:
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("tty", [True, False])
def test_progress_redraws_on_a_terminal_and_prints_plain_lines_otherwise(tty, monkeypatch):
    from cnnlab.runtime import progress as progress_module
    from cnnlab.runtime.progress import Progress

    clock = iter(range(100))  # one second per call
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: float(next(clock)))
    stream = FakeStream(tty)
    progress = Progress(total_steps=100, stream=stream, plain_interval=0.0)
    progress.interval = 0.0
    for step in range(0, 4):
        progress.update(1, 2, step, loss=0.5, accuracy=0.75, images=64)
    progress.message("epoch 1/2 done")
    assert "epoch 1/2  step 3/100  loss 0.5000  acc 0.7500" in stream.text
    # 64 images a second; 3 steps in 3 s so far, 97 steps left: 1:37.
    assert "64 img/s  left 1:37" in stream.text
    assert ("\r" in stream.text) == tty
    assert stream.text.endswith("epoch 1/2 done\n")


class SignalWhileWriting(FakeStream):
    """Refuses a write from inside a write, as Python's buffered stderr does ("reentrant call"),
    and gets SIGTERM while writing the first epoch's summary: a supervisor reacting to that line
    (tests/test_cli.py) or a Ctrl-C at that moment."""

    def __init__(self) -> None:
        super().__init__(tty=False)
        self.writing = self.sent = False

    def write(self, text: str) -> None:
        if self.writing:
            raise RuntimeError("reentrant call inside the stream")
        self.writing = True
        try:
            # Only with cnnlab's handler installed: the default one would end the test session.
            if (
                text.startswith("epoch 1/")
                and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
            ):
                self.sent = True
                signal.raise_signal(signal.SIGTERM)  # its Python handler runs before this returns
            self.text += text
        finally:
            self.writing = False


def test_a_signal_while_a_progress_line_is_written_still_stops_cleanly(tmp_path, tiny_config):
    stream = SignalWhileWriting()
    result = train(tiny_config(epochs=2), tmp_path / "run", stream=stream)
    assert stream.sent and result.status == "interrupted" and result.epochs_done == 1
    assert result.signal_number == signal.SIGTERM


def test_a_spec_string_trains_from_the_library_too(tmp_path, tiny_config):
    config = tiny_config(model="[conv8 -> relu]*1 -> pool -> fc", model_options={}, epochs=1)
    train(config, tmp_path / "run", show_progress=False)
    model = json.loads((tmp_path / "run" / "model.json").read_text())
    assert model["name"] == "spec" and "conv8" in model["options"]["spec"]


def test_early_stopping_without_a_validation_split_is_refused(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match="needs a validation split"):
        train(
            tiny_config(early_stopping=1, val_fraction=0.0), tmp_path / "run", show_progress=False
        )
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_split_that_comes_out_empty_is_refused_or_warned_before_training(tmp_path):
    import cnnlab
    from cnnlab.data import save_image_file
    from cnnlab.errors import DataError
    from cnnlab.inference import evaluate_run

    for per_class in (1, 2):
        for name in ("a", "b", "c"):
            for index in range(per_class):
                image = torch.full((3, 8, 8), 40 * index + ord(name), dtype=torch.uint8)
                save_image_file(image, tmp_path / f"data{per_class}" / name / f"{index}.png")

    def train(per_class, run):
        return cnnlab.train(
            data=f"folder:{tmp_path / f'data{per_class}'}", model="small-cnn", epochs=1,
            model_options={"widths": [4, 8], "depth": 1}, out=tmp_path / run, threads=1,
            progress=False,
        ).path  # fmt: skip

    with pytest.raises(DataError, match=r"test split .* empty: --test-fraction 0.2 .*a: 1, b: 1"):
        train(1, "one")
    assert not (tmp_path / "one" / "checkpoints").exists()
    with pytest.warns(UserWarning, match=r"validation split .* empty: --val-fraction 0.1 .*a: 1"):
        run = train(2, "two")
    with pytest.raises(DataError, match="The val split of run .* is empty"):
        evaluate_run(run, "val", device="cpu")
    assert evaluate_run(run, "test", device="cpu")["num_samples"] == 3


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_a_learning_rate_that_is_not_finite_is_refused_up_front(capsys, value):
    from cnnlab.cli import main

    assert main(["train", "--data", "digits", f"--learning-rate={value}", "--quiet"]) == 2
    assert (
        f"--learning-rate {value} is invalid: it must be a finite number" in capsys.readouterr().err
    )
    with pytest.raises(ConfigError, match="--momentum inf is invalid"):
        TrainConfig(momentum=float("inf"))


# ---------------------------------------------------------------- extending a finished run


def extend(run, epochs, **kwargs):
    from cnnlab.training.resolve import resume_config

    return train(resume_config(run, {"epochs": epochs}), run, resume=True, show_progress=False,
                 **kwargs)  # fmt: skip


def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path, tiny_config):
    run = tmp_path / "run"
    train(tiny_config(), run, show_progress=False)
    before = (run / "metrics.jsonl").read_text()
    stream = io.StringIO()
    result = train(tiny_config(), run, resume=True, stream=stream)
    assert result.status == "complete" and result.epochs_done == 2
    assert "--epochs N (N > 2)" in stream.getvalue() and "new segment" in stream.getvalue()
    assert (run / "metrics.jsonl").read_text() == before  # no `resumed` or `end` rows added
    with pytest.raises(CnnlabError, match="would not add any"):
        extend(run, 1)


def test_extending_adds_a_segment_with_a_fresh_schedule(tmp_path, tiny_config):
    config = tiny_config(epochs=2, schedule="cosine")
    run = tmp_path / "run"
    train(config, run, show_progress=False)
    weights = final_weights(run)
    result = extend(run, 4)
    assert result.status == "complete" and result.epochs_done == 4
    rows = epoch_rows(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    # A warm restart over a segment as long as the first: each epoch ends at the same rate.
    assert rows[2]["lr"] == pytest.approx(rows[0]["lr"]) and rows[3]["lr"] < 1e-6
    assert rows[2]["lr"] > 1e3 * rows[1]["lr"]
    events = [r for r in read_jsonl(run / "metrics.jsonl") if r.get("event") == "extended"]
    assert [(e["segment"], e["from_epochs"], e["to_epochs"]) for e in events] == [(2, 2, 4)]
    stored = json.loads((run / "config.json").read_text())
    assert stored["train"]["epochs"] == 4
    assert [(s["first_epoch"], s["epochs"]) for s in stored["resolved"]["segments"]] == [
        (1, 2), (3, 2)
    ]  # fmt: skip
    assert any(not torch.equal(weights[k], final_weights(run)[k]) for k in weights)


def test_an_interrupted_extension_resumes_exactly(tmp_path, tiny_config):
    config = tiny_config(epochs=2, schedule="onecycle", dropout=0.3)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    for run in (straight, stopped):
        train(config, run, show_progress=False)
    extend(straight, 3)
    assert extend(stopped, 3, stop=StopAfter(9)).status == "interrupted"  # mid-epoch 3
    with pytest.raises(CnnlabError, match="resume it without --epochs"):
        extend(stopped, 5)
    from cnnlab.training.resolve import resume_config

    resumed = train(resume_config(stopped, {}), stopped, resume=True, show_progress=False)
    assert resumed.status == "complete" and resumed.epochs_done == 3
    a, b = final_weights(straight), final_weights(stopped)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert epoch_rows(straight) == epoch_rows(stopped)


def test_an_early_stopped_run_can_be_extended(tmp_path, tiny_config):
    run = tmp_path / "run"
    config = tiny_config(epochs=6, learning_rate=1e-9, schedule="constant", early_stopping=1)
    assert train(config, run, show_progress=False).status == "early-stopped"
    done = len(epoch_rows(run))
    result = extend(run, done + 1)
    assert result.epochs_done == done + 1 and len(epoch_rows(run)) == done + 1
