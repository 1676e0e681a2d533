"""`cnnlab tune`: the space file checked against `cnnlab train`'s settings; trials as ordinary run
directories scored on validation only; a stopped search continues its study; median pruning
stops a bad trial; best.toml trains the best trial's configuration; workers on PostgreSQL share
one study and survive one of them being killed."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.tuning.space import load_space

SPEC = "INPUT -> [CONV -> RELU -> POOL] -> FC"
FLAGS = ["--data", "digits", "--model", SPEC, "--threads", "1", "--epochs", "2"]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def optuna_study(out, name="cnnlab"):
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


@pytest.mark.parametrize(
    "line, expected",
    [
        ("learning_rat = [0.1]", "learning_rat is not a `cnnlab train` setting (did you mean"),
        ("batch_size = {low = 16.5, high = 64}", "batch_size: low, high and step must be"),
        ("optimizer = {low = 1, high = 2}", "optimizer is not a number setting; give a list"),
        ("batch_size = ['a', 'b']", "batch_size = ['a', 'b'] is invalid: expected a non-empty"),
        ("learning_rate = {low = 0.0, high = 1.0, log = true}", "need low < high (and low > 0"),
        ("learning_rate = {low = 0.1, hi = 1.0}", "a range takes low and high"),
        ("learning_rate = 0.1", "expected a range"),
        ("optimizer = ['sgd', 'adam']", "'adam' is not a valid value"),
        ("epochs = {low = 0, high = 3}", "epochs: 0 is not a valid value"),
    ],
)  # fmt: skip
def test_the_space_is_checked_against_the_training_settings_naming_the_key(
    tmp_path, line, expected
):
    space = write(tmp_path / "space.toml", f"[space]\n{line}\n")
    with pytest.raises(ConfigError) as error:
        load_space(space)
    assert expected in str(error.value)
    assert str(space) in str(error.value)


def test_a_setting_given_as_a_flag_cannot_also_be_searched(tmp_path, capsys):
    space = write(tmp_path / "space.toml", "[space]\nlearning_rate = [0.1, 0.2]\n")
    code = main(["tune", *FLAGS, "--learning-rate", "0.1", "--space", str(space),
                 "--trials", "1", "--out", str(tmp_path / "t")])  # fmt: skip
    assert code == 2
    assert "learning_rate is searched and also given as --learning-rate" in capsys.readouterr().err


def test_a_storage_that_cannot_be_opened_is_one_line_without_its_password(tmp_path, capsys):
    space = write(tmp_path / "space.toml", "[space]\nlearning_rate = [0.1, 0.2]\n")
    storage = "postgresql://me:secret@127.0.0.1:1/x"  # port 1: refused at once
    code = main(["tune", *FLAGS, "--space", str(space), "--trials", "1", "--out",
                 str(tmp_path / "t"), "--storage", storage])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "--storage 'postgresql://me:***@127.0.0.1:1/x' cannot be opened" in err
    assert "secret" not in err and len(err.strip().splitlines()) == 1


def test_a_study_continued_with_another_space_is_refused(tmp_path, capsys, one_torch_thread):
    out = tmp_path / "t"
    for rates, expected in (("[0.05]", 0), ("[0.05, 0.1]", 2)):
        space = write(tmp_path / "space.toml", f"[space]\nlearning_rate = {rates}\n")
        code = main(["tune", *FLAGS, "--space", str(space), "--trials", "1", "--out", str(out),
                     "--epochs", "1"])  # fmt: skip
        assert code == expected
    assert "was started with another search space" in capsys.readouterr().err


def test_the_grid_of_a_space(tmp_path):
    space = load_space(write(tmp_path / "s.toml", """[space]
epochs = {low = 2, high = 9, step = 3}
momentum = {low = 0.5, high = 0.9, step = 0.1}
optimizer = ["sgd", "adamw"]
learning_rate = {low = 0.01, high = 0.1, log = true}
"""))  # fmt: skip
    assert space["epochs"].grid() == list(range(2, 10, 3))  # [2, 5, 8]
    np.testing.assert_allclose(space["momentum"].grid(), np.arange(0.5, 0.95, 0.1))
    assert space["optimizer"].grid() == ["sgd", "adamw"]
    with pytest.raises(ConfigError, match="grid needs a list or a step for learning_rate"):
        space["learning_rate"].grid()


def test_a_stopped_search_continues_its_study_without_repeating_trials(
    tmp_path, capsys, one_torch_thread
):
    space = write(
        tmp_path / "space.toml", "[space]\nlearning_rate = {low = 0.01, high = 0.3, log = true}\n"
    )
    out = tmp_path / "tune"
    command = ["tune", *FLAGS, "--space", str(space), "--out", str(out), "--sampler", "random",
               "--pruner", "none"]  # fmt: skip
    assert main([*command, "--trials", "2"]) == 0
    first = {t.number: (t.params, t.datetime_complete) for t in optuna_study(out).trials}
    configs = {n: (out / "trials" / f"{n:04d}" / "config.json").read_text() for n in first}
    assert main([*command, "--trials", "4"]) == 0
    trials = optuna_study(out).trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in trials)
    for t in trials[:2]:  # the first two are kept, not run again
        assert (t.params, t.datetime_complete) == first[t.number]
        assert (out / "trials" / f"{t.number:04d}" / "config.json").read_text() == configs[t.number]
    rates = [t.params["learning_rate"] for t in trials]
    assert len(set(rates)) == 4 and all(0.01 <= r <= 0.3 for r in rates)
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0000", "0001", "0002", "0003"]
    assert main([*command, "--trials", "4"]) == 0  # nothing left to do
    assert len(optuna_study(out).trials) == 4
    rows = json.loads((out / "trials.json").read_text())["trials"]
    assert [r["params_learning_rate"] for r in rows] == rates
    assert (out / "trials.csv").read_text().count("\n") == 5  # header and four trials
    assert {"history.png", "importance.png", "parallel.png"} <= {p.name for p in out.iterdir()}


def test_a_search_stopped_by_ctrl_c_runs_the_interrupted_trial_again(tmp_path, one_torch_thread):
    space = write(tmp_path / "space.toml", "[space]\nlearning_rate = {low = 0.01, high = 0.3}\n")
    out = tmp_path / "tune"
    command = ["tune", "--data", "digits", "--model", SPEC, "--threads", "1", "--epochs", "10",
               "--space", str(space), "--out", str(out), "--trials", "1"]  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *command], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (out / "trials" / "0000" / "metrics.jsonl").exists():  # an epoch into trial 0
        assert time.monotonic() < deadline and worker.poll() is None, worker.stderr.read()
        time.sleep(0.05)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 2
    assert "interrupted in trial 0; run the same `cnnlab tune` again" in err
    assert main(command) == 0
    trials = optuna_study(out).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].params == trials[0].params and trials[1].user_attrs["retry_of"] == 0


def test_trials_are_scored_on_validation_and_the_test_split_is_never_read(
    tmp_path, capsys, monkeypatch, one_torch_thread
):
    from cnnlab.training import session

    selected = []
    select_split = session.select_split

    def spy(dataset, record, split):
        selected.append(split)
        return select_split(dataset, record, split)

    monkeypatch.setattr(session, "select_split", spy)
    space = write(tmp_path / "space.toml", "[space]\nbatch_size = [32, 64]\n")
    out = tmp_path / "tune"
    code = main(["tune", *FLAGS, "--space", str(space), "--out", str(out), "--trials", "2",
                 "--sampler", "grid", "--json"])  # fmt: skip
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert sorted(selected) == ["train", "train", "val", "val"]  # per trial: train and val only
    for row in results["trials"]:
        run = out / "trials" / f"{row['number']:04d}"
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        best_val = max(r["val_accuracy"] for r in epochs if r.get("kind") == "epoch")
        assert row["value"] == pytest.approx(best_val)  # the trial's value: its best epoch on val
        assert not (run / "eval").exists()
    assert sorted(r["params_batch_size"] for r in results["trials"]) == [32, 64]  # the grid


def test_best_toml_trains_the_best_trials_configuration(tmp_path, capsys, one_torch_thread):
    space = write(tmp_path / "space.toml", "[space]\nlearning_rate = [0.02, 0.1]\n")
    out = tmp_path / "tune"
    assert main(["tune", *FLAGS, "--space", str(space), "--out", str(out), "--trials", "2",
                 "--sampler", "grid", "--model-options", "dropout=0.1", "--json"]) == 0  # fmt: skip
    results = json.loads(capsys.readouterr().out)
    best = max(results["trials"], key=lambda r: r["value"])
    assert results["best"]["number"] == best["number"]
    run = tmp_path / "again"
    assert main(["train", "--config", str(out / "best.toml"), "--out", str(run), "--quiet"]) == 0
    trained = json.loads((run / "config.json").read_text())["train"]
    trial = json.loads((out / "trials" / f"{best['number']:04d}" / "config.json").read_text())
    assert trained == trial["train"]
    assert trained["learning_rate"] == best["params_learning_rate"]
    assert trained["model_options"]["dropout"] == 0.1  # a fixed flag, kept


def test_median_pruning_stops_a_trial_below_the_median_after_its_first_epoch(
    tmp_path, capsys, one_torch_thread
):
    import optuna

    out = tmp_path / "tune"
    out.mkdir()
    study = optuna.create_study(
        storage=f"sqlite:///{out / 'study.db'}", study_name="cnnlab", direction="maximize"
    )
    for rate in (0.05, 0.05, 1e-6):  # two good trials, then one that cannot learn
        study.enqueue_trial({"learning_rate": rate})
    space = write(tmp_path / "space.toml", "[space]\nlearning_rate = {low = 1e-6, high = 0.1}\n")
    code = main(["tune", "--data", "digits", "--model", SPEC, "--threads", "1", "--epochs", "3",
                 "--space", str(space), "--out", str(out), "--trials", "3"])  # fmt: skip
    assert code == 0
    trials = optuna_study(out).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED"]

    def epoch_rows(number):
        lines = (out / "trials" / f"{number:04d}" / "metrics.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if r.get("kind") == "epoch"]

    assert [len(epoch_rows(n)) for n in (0, 1, 2)] == [3, 3, 1]
    median = np.median([epoch_rows(n)[0]["val_accuracy"] for n in (0, 1)])
    assert epoch_rows(2)[0]["val_accuracy"] < median  # why it was pruned, by the oracle
    assert trials[2].intermediate_values == {1: epoch_rows(2)[0]["val_accuracy"]}


POSTGRES = os.environ.get("CNNLAB_TEST_POSTGRES", "postgresql://cnnlab:cnnlab@localhost/cnnlab")


def _postgres_reachable() -> bool:
    import sqlalchemy

    engine = sqlalchemy.create_engine(POSTGRES)
    try:
        with engine.connect():
            return True
    except Exception:
        return False
    finally:
        engine.dispose()


@pytest.mark.skipif(
    not os.environ.get("CNNLAB_REQUIRE_POSTGRES") and not _postgres_reachable(),
    reason=f"no PostgreSQL server at {POSTGRES} (CNNLAB_TEST_POSTGRES; .ci/run starts one)",
)
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_two_workers_share_a_postgresql_study_and_survive_one_being_killed(tmp_path):
    import optuna

    assert _postgres_reachable(), f"CNNLAB_REQUIRE_POSTGRES is set but {POSTGRES} is unreachable"
    name = f"test-{uuid.uuid4().hex[:8]}"
    space = write(
        tmp_path / "space.toml", "[space]\nlearning_rate = {low = 0.01, high = 0.2, log = true}\n"
    )
    trials = 6

    def worker(label):
        command = [sys.executable, "-m", "cnnlab", "tune", "--data", "digits", "--model", SPEC,
                   "--threads", "1", "--epochs", "10", "--space", str(space), "--trials",
                   str(trials), "--out", str(tmp_path / label), "--storage", POSTGRES,
                   "--study-name", name, "--heartbeat", "1", "--pruner", "none"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    first, second = worker("a"), worker("b")  # ten epochs a trial: b is killed inside one
    deadline = time.monotonic() + 120
    while not any((tmp_path / "b" / "trials").glob("*/metrics.jsonl")):  # mid-trial: an epoch in
        assert time.monotonic() < deadline and second.poll() is None, "worker b never trained"
        time.sleep(0.05)
    second.send_signal(signal.SIGKILL)
    second.wait()
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output.decode()
    study = optuna.load_study(study_name=name, storage=POSTGRES)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") >= trials
    (killed,) = [t for t in study.trials if t.state.name == "FAIL"]  # b's trial, failed as stale
    killed_run = tmp_path / "b" / "trials" / f"{killed.number:04d}"
    assert killed_run.exists()
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    retries = [
        t for t in study.trials
        if retried(t) == killed.number
    ]  # fmt: skip
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"  # run again, not lost
    assert retries[0].params == killed.params
    runs = [t.user_attrs["run"] for t in study.trials]
    assert len(set(runs)) == len(runs)  # no trial ran twice under one number
    optuna.delete_study(study_name=name, storage=POSTGRES)


@pytest.mark.parametrize(
    "name, expected",
    [("median", "MedianPruner"), ("halving", "SuccessiveHalvingPruner"), ("none", "NopPruner")],
)
def test_each_pruner_flag_is_optunas_pruner(name, expected):
    import optuna

    from cnnlab.tuning.search import make_pruner

    assert isinstance(make_pruner(name), getattr(optuna.pruners, expected))


def test_the_median_pruner_judges_no_trial_in_its_warm_up_epochs():
    import optuna

    from cnnlab.tuning.search import make_pruner

    def verdict(warmup: int) -> bool:
        study = optuna.create_study(direction="maximize", pruner=make_pruner("median", warmup))
        for _ in range(2):  # two finished trials that were good at every epoch
            good = study.ask()
            for epoch in range(1, 4):
                good.report(0.9, epoch)
            study.tell(good, 0.9)
        poor = study.ask()
        poor.report(0.1, 1)  # far below the median after its first epoch
        return poor.should_prune()

    assert verdict(0) and not verdict(3)
