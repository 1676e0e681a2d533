"""The fast path: chosen per machine, shown, each choice switchable, and as accurate as fp32.

Accuracy is measured here on one training step against plain float32 (tolerances in units of the
dtype's epsilon) and one short run; benchmarks/fast_path_accuracy.py trains to convergence."""

import dataclasses
import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.data import load_dataset
from cnnlab.data.loader import Normalizer
from cnnlab.errors import ConfigError
from cnnlab.inference import evaluate_run
from cnnlab.models import ModelSpec, build_model
from cnnlab.run import checkpoints as ckpt
from cnnlab.runtime import fastpath
from cnnlab.runtime.predict import StepSettings, predict_logits
from cnnlab.specs.recipes import RECIPES
from cnnlab.training.config import TrainConfig, apply_recipe, resolve_recipe
from cnnlab.training.loop import EpochTotals, train_one_epoch
from cnnlab.training.run import train


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """choose_fast_path() (and so train()) sets torch's thread count; later tests get it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _pretend_cpu(monkeypatch, bf16: bool, amx: bool = False) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("bf16, amx, expected", [(False, False, "fp32"), (True, False, "bf16"),
                                                 (False, True, "bf16")])  # fmt: skip
def test_auto_precision_follows_the_cpu(monkeypatch, bf16, amx, expected):
    _pretend_cpu(monkeypatch, bf16, amx)
    fast = fastpath.choose_fast_path(torch.device("cpu"))
    assert fast.precision == expected
    assert fast.channels_last and fast.threads <= fastpath.available_cores()
    assert torch.get_num_threads() == fast.threads
    assert (fast.autocast_dtype is torch.bfloat16) == (expected == "bf16")
    text = fast.describe()
    assert f"precision {expected}" in text and "channels_last" in text and "threads" in text


def test_each_choice_can_be_turned_off(monkeypatch):
    _pretend_cpu(monkeypatch, True)
    fast = fastpath.choose_fast_path(torch.device("cpu"), "fp32", False, 1)
    assert (fast.precision, fast.channels_last, fast.threads) == ("fp32", False, 1)
    assert torch.get_num_threads() == 1 and "NCHW" in fast.describe()
    with pytest.raises(ConfigError, match="--precision 'fp8'"):
        fastpath.choose_fast_path(torch.device("cpu"), "fp8")


def test_forced_bf16_on_a_cpu_without_it_says_it_is_emulated(monkeypatch):
    _pretend_cpu(monkeypatch, False)
    fast = fastpath.choose_fast_path(torch.device("cpu"), "bf16")
    assert fast.precision == "bf16" and "emulated" in fast.reason
    assert fastpath.choose_fast_path(torch.device("cpu"), "fp16").needs_grad_scaler


@pytest.mark.parametrize(
    ("variable", "cap", "expected"),
    [
        ("ONEDNN_MAX_CPU_ISA", "AVX2", "fp32"),
        ("DNNL_MAX_CPU_ISA", "avx512_core", "fp32"),  # the older name, any case
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16", "bf16"),
        ("ONEDNN_MAX_CPU_ISA", "ALL", "bf16"),
    ],
)
def test_a_onednn_cap_below_bf16_makes_auto_choose_fp32(monkeypatch, variable, cap, expected):
    """oneDNN emulates bfloat16 when ONEDNN_MAX_CPU_ISA caps it below AVX512_CORE_BF16, even on a
    CPU that has it: "auto" then chooses float32 and says why, and the CPU's description names
    the cap (how benchmarks/speed.py stands in for an AVX2-only machine)."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    _pretend_cpu(monkeypatch, True)
    monkeypatch.setenv(variable, cap)
    fast = fastpath.choose_fast_path(torch.device("cpu"))
    assert fast.precision == expected
    assert fastpath.cpu_supports_bf16() == (expected == "bf16")
    if expected == "fp32":
        assert f"oneDNN capped at {cap.upper()}" in fast.reason
        assert f"(oneDNN capped at {cap.upper()})" in fastpath.cpu_description()
    else:
        assert "AVX512-BF16" in fast.reason


def _digits(**overrides) -> TrainConfig:
    # tiny_config's network; one epoch at this rate reaches ~85% test accuracy on every path.
    settings = dict(data="digits", model="small-cnn", download=False, val_fraction=0.2, epochs=1,
                    batch_size=16, learning_rate=0.3, threads=1,
                    model_options={"widths": [8, 16], "depth": 1})  # fmt: skip
    return TrainConfig(**{**settings, **overrides})


FAST_PATHS = [("fp32", True), ("bf16", True), ("bf16", False), ("fp16", False), ("fp16", True)]


def _tolerance(precision: str, multiple: float) -> float:
    """`multiple` units of the autocast dtype's epsilon, and never below 1e-4: float32's own noise
    (a channels_last convolution sums in another order) comes out of BatchNorm's backward ~100x
    larger, about 5e-6 here."""
    dtype = fastpath.AUTOCAST_DTYPES.get(precision, torch.float32)
    return max(multiple * torch.finfo(dtype).eps, 1e-4)


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.double() - reference.double()).norm() / reference.double().norm()).item()


@pytest.mark.parametrize("precision, channels_last", FAST_PATHS)
def test_one_training_step_matches_plain_fp32_within_the_dtype_precision(precision, channels_last):
    """The logits, loss and SGD update of the loop's fast path against plain float32 torch: a
    broken cast, memory format, loss or loss scaling moves them by ~100%, rounding by a few eps."""
    torch.set_num_threads(1)  # restored by the fixture
    dataset = load_dataset("digits")
    images, labels = dataset.train_images[:64], dataset.train_labels[:64]  # [64, 1, 8, 8] uint8
    settings = StepSettings(Normalizer((0.3,), (0.4,)), precision, channels_last)
    spec = ModelSpec("small-cnn", 1, 10, (8, 8), {"widths": [8, 16], "depth": 1, "dropout": 0.0})
    torch.manual_seed(0)
    reference = build_model(spec)
    model = build_model(spec)
    model.load_state_dict(reference.state_dict())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    x = settings.normalizer(images)  # [64, 1, 8, 8] float32, NCHW
    with torch.no_grad():
        expected_logits = reference.eval()(x)  # [64, 10]
    logits = predict_logits(model, images, settings)
    assert logits.dtype == torch.float32 and logits.shape == expected_logits.shape
    assert _relative_error(logits, expected_logits) < _tolerance(precision, 4)
    if precision != "fp32":  # and autocast really ran: its rounding shows
        same_layout_fp32 = dataclasses.replace(settings, precision="fp32")
        assert not torch.equal(logits, predict_logits(model, images, same_layout_fp32))
    expected_loss = F.cross_entropy(reference.train()(x), labels)
    expected_loss.backward()

    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # the update is the gradient
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    scaler = torch.amp.GradScaler("cpu") if precision == "fp16" else None
    totals = EpochTotals()
    batches = [(images, labels)]
    train_one_epoch(model, batches, optimizer, scheduler, nn.CrossEntropyLoss(), settings, totals,
                    scaler=scaler)  # fmt: skip
    loss = totals.loss_sum / totals.seen
    assert totals.steps == 1 and totals.skipped_steps == 0
    assert abs(loss - expected_loss.item()) / expected_loss.item() < _tolerance(precision, 4)
    update = torch.cat(
        [(b - p.detach()).flatten() for b, p in zip(before, model.parameters(), strict=True)]
    )
    gradient = torch.cat([p.grad.flatten() for p in reference.parameters()])
    # The whole step (its first stage comes out of BatchNorm's backward): 13-20 eps off here.
    assert _relative_error(update, gradient) < _tolerance(precision, 64)


@pytest.mark.parametrize("precision, channels_last", [("fp32", True), ("bf16", True),
                                                      ("fp16", False)])  # fmt: skip
def test_a_short_run_on_the_fast_path_learns_and_records_its_choices(
    tmp_path, precision, channels_last
):
    """One epoch through `train()` and `evaluate_run()` on each path, well past chance (10%);
    float16 runs keep their loss scale in the checkpoint so a resumed run continues it."""
    run = tmp_path / "run"
    train(_digits(precision=precision, channels_last=channels_last), run, show_progress=False)
    accuracy = evaluate_run(run, precision=precision, channels_last=channels_last)["accuracy"]
    assert accuracy > 0.5, accuracy
    recorded = json.loads((run / "config.json").read_text())["resolved"]["fast_path"]
    assert (recorded["precision"], recorded["channels_last"]) == (precision, channels_last)
    state = ckpt.latest_checkpoint(run / "checkpoints").state
    if precision == "fp16":
        assert state["scaler"]["scale"] > 0
    else:
        assert state["scaler"] is None


# ---------------------------------------------------------------- recipes


def test_recipes_sit_beneath_toml_and_flags():
    config = TrainConfig.from_dict({"data": "mnist", "epochs": 7})
    assert config.recipe == "mnist" and config.epochs == 7  # the flag wins
    assert config.model == RECIPES["mnist"].settings["model"]  # the recipe fills the rest
    plain = TrainConfig.from_dict({"data": "mnist", "recipe": "none"})
    assert plain.model == TrainConfig().model and plain.epochs == TrainConfig().epochs
    assert TrainConfig.from_dict({"data": "digits"}).recipe == "none"
    assert resolve_recipe("auto", "folder:/x").name == "folder"
    with pytest.raises(ConfigError, match="--recipe 'fastest'"):
        apply_recipe({"recipe": "fastest"}, "digits")


def test_every_recipe_is_a_valid_configuration():
    for name, recipe in RECIPES.items():
        data = "mnist" if name == "none" else name
        config = TrainConfig.from_dict({"data": data, "recipe": name})
        for key, value in recipe.settings.items():
            assert getattr(config, key) == value, (name, key)


# ---------------------------------------------------------------- command line


def test_train_shows_the_fast_path_and_tests_in_the_same_process(tmp_path, capsys):
    from cnnlab.cli import main

    run = tmp_path / "run"
    args = ["train", "--data", "digits", "--no-download", "--epochs", "1", "--learning-rate",
            "0.1", "--model-options", "widths=[8,16]", "--model-options", "depth=1",
            "--out", str(run), "--test", "--json", "--no-channels-last",
            "--threads", "1"]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "precision fp32" in captured.err or "precision bf16" in captured.err
    assert "NCHW (channels_last off)" in captured.err and "1 threads" in captured.err
    summary = json.loads(captured.out)
    stored = json.loads((run / "eval" / "test.json").read_text())
    assert summary["test"]["accuracy"] == stored["accuracy"] and stored["num_samples"] == 359
    assert json.loads((run / "config.json").read_text())["resolved"]["fast_path"]["threads"] == 1


def test_recipes_command_lists_every_recipe(capsys):
    from cnnlab.cli import main

    assert main(["recipes", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(RECIPES)
    assert rows["mnist"]["settings"]["model"] == RECIPES["mnist"].settings["model"]
    assert main(["recipes"]) == 0 and "--epochs" in capsys.readouterr().out


def _layout(t: torch.Tensor) -> str:
    return "channels_last" if t.is_contiguous(memory_format=torch.channels_last) else "other"


@pytest.mark.parametrize("model_name", ["spec", "small-cnn"])
def test_the_features_gradient_comes_back_channels_last_with_the_same_values(model_name):
    """A flattening (spec) or globally pooling (small-cnn) head hands its features an NCHW
    gradient; the fast path turns it channels_last, and every parameter's gradient is unchanged."""
    options = (
        {"spec": "conv8 -> bn -> relu -> conv8 -> bn -> relu -> fc"} if model_name == "spec" else {}
    )
    torch.manual_seed(0)
    plain = build_model(ModelSpec(model_name, 1, 3, (12, 12), options))
    guarded = build_model(ModelSpec(model_name, 1, 3, (12, 12), options))
    guarded.load_state_dict(plain.state_dict())
    plain = plain.to(memory_format=torch.channels_last)
    fast = fastpath.FastPath(torch.device("cpu"), "fp32", True, 1, "test")
    guarded = fastpath.fast_model(guarded, fast, dropout=False)
    seen = {}  # the layout of the gradient the features' last layer is handed, after any hooks

    def record(name):
        def forward_hook(module, inputs, output):
            output.register_hook(lambda grad: seen.update({name: _layout(grad)}))

        return forward_hook

    plain.features.register_forward_hook(record("plain"))
    guarded.features.register_forward_hook(record("guarded"))  # after fast_model's
    x = torch.randn(4, 1, 12, 12).contiguous(memory_format=torch.channels_last)
    labels = torch.tensor([0, 1, 2, 1])
    for model in (plain, guarded):
        torch.manual_seed(1)  # the same dropout mask in small-cnn's head
        F.cross_entropy(model(x), labels).backward()
    assert seen == {"plain": "other", "guarded": "channels_last"}
    for (name, a), b in zip(plain.named_parameters(), guarded.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_the_gradient_layout_hook_is_registered_once_and_only_where_there_are_features():
    fast = fastpath.FastPath(torch.device("cpu"), "fp32", True, 1, "test")
    model = build_model(ModelSpec("small-cnn", 1, 3, (12, 12), {}))
    fastpath.fast_model(fastpath.fast_model(model, fast), fast)
    assert len(model.features._forward_hooks) == 1
    assert not fastpath.keep_feature_gradients_channels_last(nn.Sequential(nn.Conv2d(1, 2, 3)))
