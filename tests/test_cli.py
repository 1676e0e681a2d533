"""The command line end to end: train, evaluate, predict, listings, interruption and bad input."""

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.cli import build_parser, main
from cnnlab.data import load_dataset, save_image_file
from cnnlab.run import checkpoints as ckpt

# A ~1,400-parameter network, ~95% on digits after three epochs of ~0.3 s. One thread: faster
# for tiny tensors on a loaded machine, and the same summation order in every process.
TINY = ["--data", "digits", "--learning-rate", "0.3", "--model-options", "widths=[8,16]",
        "--model-options", "depth=1", "--batch-size", "16", "--threads", "1", "--quiet",
        "--no-download"]  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Training sets torch's thread count (choose_fast_path); later tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _train_in_this_process(*args) -> None:
    threads = torch.get_num_threads()  # for the module-scoped runs, which outlive one test
    try:
        assert main(["train", *map(str, args)]) == 0
    finally:
        torch.set_num_threads(threads)


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    _train_in_this_process(*TINY, "--epochs", "3", "--out", run)
    return run


def test_every_command_has_complete_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) >= {"train", "evaluate", "predict", "datasets", "models"}
    for name, sub in commands.items():
        text = sub.format_help()
        for action in sub._actions:
            if action.help is not argparse_suppress():
                assert action.help, f"{name} {action.option_strings} has no help"
        assert "usage: cnnlab " + name in text
    train_help = commands["train"].format_help()
    for flag in (
        "--learning-rate",
        "--schedule",
        "--label-smoothing",
        "--early-stopping",
        "--class-weighted-loss",
        "--resume",
        "--config",
        "--seed",
        "--nesterov",
    ):
        assert flag in train_help


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def test_train_evaluate_writes_the_contract_files(trained_run, capsys):
    code, out, _ = run_cli(capsys, "evaluate", trained_run, "--json")
    assert code == 0
    metrics = json.loads(out)
    for key in (
        "accuracy",
        "top_k_accuracy",
        "balanced_accuracy",
        "cohen_kappa",
        "per_class",
        "confusion_matrix",
        "confusion_matrix_normalized",
    ):
        assert key in metrics
    assert metrics["num_samples"] == 359 and metrics["accuracy"] > 0.5
    for name in ("test.json", "test-confusion.png", "test-predictions.csv"):
        assert (trained_run / "eval" / name).is_file()
    code, out, _ = run_cli(capsys, "evaluate", trained_run, "--split", "val")
    assert code == 0 and "balanced accuracy" in out and "cohen kappa" in out


def test_evaluations_of_other_checkpoints_and_runtimes_keep_their_own_files(trained_run, capsys):
    from cnnlab.run import RunDir
    from cnnlab.run.evaluation import evaluation_name, read_evaluation

    assert main(["evaluate", str(trained_run), "--split", "val"]) == 0
    default = (trained_run / "eval" / "val.json").read_text()
    code, out, _ = run_cli(
        capsys, "evaluate", trained_run, "--split", "val", "--checkpoint", "last"
    )
    assert code == 0 and f"{trained_run / 'eval' / 'val-last'}.json" in out
    assert (trained_run / "eval" / "val.json").read_text() == default  # not overwritten
    for name in ("val-last.json", "val-last-confusion.png", "val-last-predictions.csv"):
        assert (trained_run / "eval" / name).is_file()
    last = read_evaluation(RunDir(trained_run), "val", checkpoint="last")
    assert last["checkpoint"]["file"].startswith("step-")
    assert evaluation_name("test", "best", "onnx") == "test-onnx"
    assert evaluation_name("test", "last", "onnx") == "test-last-onnx"


def test_predict_matches_evaluate_on_the_same_images(trained_run, capsys, tmp_path):
    assert main(["evaluate", str(trained_run)]) == 0
    capsys.readouterr()
    with open(trained_run / "eval" / "test-predictions.csv") as f:
        rows = list(csv.DictReader(f))[:25]
    dataset = load_dataset("digits")
    paths = []
    for row in rows:
        index = int(row["sample"].split(":")[1])
        paths.append(tmp_path / f"{index}.png")
        save_image_file(dataset.test_images[index], paths[-1])
    out_csv = tmp_path / "pred.csv"
    code, out, _ = run_cli(capsys, "predict", trained_run, *paths, "--json", "--csv", out_csv)
    assert code == 0
    predicted = [r["predicted"] for r in json.loads(out)]
    assert predicted == [r["predicted"] for r in rows]
    with open(out_csv) as f:
        assert [r["predicted"] for r in csv.DictReader(f)] == predicted


def test_predict_takes_folders_and_globs_and_keeps_going_past_unreadable_files(
    trained_run, capsys, tmp_path
):
    dataset = load_dataset("digits")
    folder = tmp_path / "photos"
    for index, relative in enumerate(["a.png", "sub/b.png", "sub/deeper/c.PNG"]):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        save_image_file(dataset.test_images[index], folder / relative)
    save_image_file(dataset.test_images[3], folder / ".hidden.png")
    (folder / ".cache").mkdir()
    save_image_file(dataset.test_images[4], folder / ".cache" / "d.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    loose = tmp_path / "loose"
    loose.mkdir()
    for index in (5, 6):
        save_image_file(dataset.test_images[index], loose / f"{index}.png")
    out_csv = tmp_path / "pred.csv"
    code, out, err = run_cli(
        capsys, "predict", trained_run, folder, str(loose / "*.png"),
        tmp_path / "missing.png", str(tmp_path / "none-*.jpg"), "--json", "--csv", out_csv,
    )  # fmt: skip
    assert code == 1
    files = [Path(r["file"]).relative_to(tmp_path).as_posix() for r in json.loads(out)]
    assert files == ["photos/a.png", "photos/sub/b.png", "photos/sub/deeper/c.PNG",
                     "loose/5.png", "loose/6.png"]  # fmt: skip
    with open(out_csv) as f:
        assert [Path(r["file"]).name for r in csv.DictReader(f)] == [Path(f).name for f in files]
    assert "3 file(s) could not be read" in err and "broken.png: damaged" in err
    assert "missing.png: does not exist" in err and "no file matches this pattern" in err
    code, out, err = run_cli(capsys, "predict", trained_run, folder / "broken.png")
    assert code == 2 and "None of the 1 given image files could be read" in err
    help_text = _subcommand_help("predict")
    assert "status is then 1" in help_text and "folders" in help_text


def _subcommand_help(name: str) -> str:
    return build_parser()._subparsers._group_actions[0].choices[name].format_help()


def test_listings(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0 and {m["name"] for m in json.loads(out)} >= {"lenet5", "small-cnn"}
    code, out, _ = run_cli(capsys, "datasets", "--json")
    infos = {d["name"]: d for d in json.loads(out)}
    assert code == 0 and infos["digits"]["found_at"] == "scikit-learn (bundled)"
    assert {"mnist", "fashion-mnist"} <= set(infos)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "--data", "digitz"], "Did you mean 'digits'"),
        (["train", "--model", "lenet"], "Did you mean 'lenet5'"),
        (["train", "--epochs", "0"], "--epochs 0 is invalid"),
        (["evaluate", "/nonexistent/run"], "does not exist"),
        (["train", "--resume", "/nonexistent/run"], "does not exist"),
    ],
)
def test_bad_input_gets_one_clear_line(capsys, args, expected):
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    assert expected in err and "Traceback" not in err


def test_malformed_idx_file_is_a_clear_error(capsys, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (folder / name).write_bytes(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x05" * 2)
    code, _, err = run_cli(
        capsys,
        "train",
        "--data",
        "mnist",
        "--data-dir",
        tmp_path,
        "--out",
        tmp_path / "run",
        "--no-download",
    )
    assert code == 2 and "idx" in err.lower() and "Traceback" not in err


def test_truncated_checkpoints_fall_back_then_fail_clearly(trained_run, capsys, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    best = run / "checkpoints" / "best.safetensors"
    best.write_bytes(best.read_bytes()[:500])
    code, _, err = run_cli(capsys, "evaluate", run)
    assert code == 0 and "corrupt or truncated" in err
    for weights in (run / "checkpoints").glob("step-*.safetensors"):
        weights.write_bytes(weights.read_bytes()[:500])
    code, _, err = run_cli(capsys, "evaluate", run)
    assert code == 2 and "No usable checkpoint" in err and "Traceback" not in err


class CreatesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_malicious_training_state_never_runs(trained_run, capsys, tmp_path, writer):
    import hashlib
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained_run, run)
    marker = tmp_path / "pwned"
    sidecar = ckpt.numbered_sidecars(run / "checkpoints")[0]
    state = sidecar.with_suffix(".state.pt")
    payload = {"optimizer": CreatesAFile(marker)}
    if writer == "pickle":
        state.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, state)
    meta = json.loads(sidecar.read_text())  # an attacker controls the sidecar too
    meta["state_sha256"] = hashlib.sha256(state.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match="refused"):
        ckpt.read_checkpoint(sidecar)
    code, _, err = run_cli(capsys, "train", "--resume", run)
    assert not marker.exists()
    assert "refused" in err and "Traceback" not in err
    # A pickle posing as the weights file is not safetensors and is refused as well.
    weights = sidecar.with_suffix(".safetensors")
    weights.write_bytes(pickle.dumps(CreatesAFile(marker)))
    with pytest.raises(ckpt.CheckpointError):
        ckpt.read_checkpoint(sidecar, with_state=False)
    assert not marker.exists()


CNNLAB = [sys.executable, "-m", "cnnlab"]
# With augmentation and the balanced sampler, whose randomness must survive the restart too.
SIGNAL_RUN = [*TINY, "--epochs", "4", "--hflip", "0.5", "--crop-padding", "1", "--sampler",
              "balanced"]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    _train_in_this_process(*SIGNAL_RUN, "--out", run)
    return run


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_training_then_resume_matches_an_uninterrupted_run(
    tmp_path, signal_number, uninterrupted_run
):
    """A real signal to a real `cnnlab train` process, sent once its first epoch's checkpoint
    appears (three of four epochs still to run), then --resume (in this process): the final
    weights equal those of the uninterrupted run."""
    run = tmp_path / "run"
    pipes = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with subprocess.Popen(
        [*CNNLAB, "train", *SIGNAL_RUN, "--out", run], env=ENV, **pipes
    ) as process:
        try:
            # An observable event, polled, not a guessed sleep. Quiet, so the child is not writing
            # to stderr when the signal lands (test_training checks that case in-process).
            while not ckpt.numbered_sidecars(run / "checkpoints") and process.poll() is None:
                time.sleep(0.005)
            process.send_signal(signal_number)
            errors = process.communicate(timeout=120)[1].decode()
        finally:
            process.kill()  # a no-op once it has exited
    assert process.returncode == 128 + signal_number, errors  # 0: it finished before the signal
    meta = json.loads(ckpt.numbered_sidecars(run / "checkpoints")[0].read_text())
    assert meta["epoch"] == 1  # saved inside the second epoch (or right at its start)
    events = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert events[-1]["event"] == "interrupted"
    assert events[-1]["signal"] == signal.Signals(signal_number).name

    _train_in_this_process("--resume", run, "--quiet")
    a = ckpt.latest_checkpoint(uninterrupted_run / "checkpoints").weights
    b = ckpt.latest_checkpoint(run / "checkpoints").weights
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_out_that_is_a_file_or_unwritable_is_one_line(capsys, tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    code, _, err = run_cli(capsys, "train", *TINY, "--epochs", "1", "--out", existing)
    assert code == 2 and "is an existing file, not a folder" in err and str(existing) in err
    assert "Traceback" not in err and existing.read_text() == "mine"
    below_a_file = existing / "run"
    code, _, err = run_cli(capsys, "train", *TINY, "--epochs", "1", "--out", below_a_file)
    assert code == 2 and f"--out '{below_a_file}' cannot be written" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["models"], ["evaluate", "RUN"]])
def test_a_closed_pipe_ends_quietly_with_status_141(trained_run, command):
    """`cnnlab evaluate RUN | head -3`: the reader is gone before the first write."""
    args = [str(trained_run) if word == "RUN" else word for word in command]
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()  # as head does once it has its lines
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err
