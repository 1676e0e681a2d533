"""The training configuration: one frozen dataclass whose fields map 1:1 to `cnnlab train` flags.

A TOML file (`--config`) only sets defaults; flags given on the command line override it; the
resolved configuration is written to the run's `config.json` (STYLE.md rule 6).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass, field, fields, make_dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.errors import ConfigError
from cnnlab.runtime import TTA_CHOICES
from cnnlab.specs.augmentation import AUGMENTATION_FIELDS, Augmentation, out_of_range
from cnnlab.specs.recipes import RECIPES, Recipe, recipe_names
from cnnlab.specs.typecheck import describe, fits, resolve

if TYPE_CHECKING:
    from cnnlab.data.folder import LoadOptions


def _option(default: Any, help: str, choices: tuple | None = None, **extra: Any) -> Any:
    metadata = {"help": help, "choices": choices, **extra}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class _Settings:
    """Every `cnnlab train` setting but the augmentation overrides, which are generated below."""

    data: str = _option(
        "digits",
        "data set: digits (offline default), mnist, fashion-mnist, cifar10, or folder:PATH (one "
        "sub-folder per class, optionally inside train/, val/, test/)",
    )
    data_dir: str | None = _option(None, "folder to look for data sets in before $CNNLAB_DATA")
    download: bool = _option(True, "download a named data set if it is not found locally")
    image_size: str | None = _option(
        None,
        "folder: resize images to N (square) or WIDTHxHEIGHT (default: their most common size, "
        "scaled to at most 128 a side)",
    )
    aspect: str = _option(
        "pad",
        "folder: keep the aspect ratio by padding with black or by centre-cropping, or stretch",
        choices=("pad", "crop", "stretch"),
    )
    channels: int | None = _option(
        None, "folder: 1 (grayscale) or 3 (colour) bands (default: 3 if any image has colour)"
    )
    test_fraction: float = _option(
        0.2, "folder without test/: fraction of each class held out for testing"
    )
    split_seed: int = _option(
        0, "folder without test/: seed of that test split (independent of --seed)"
    )
    group_by: str | None = _option(
        None,
        "folder: keep each group (patient, slide, culture) whole in one of the carved test and "
        "validation splits, so neither scores nor early stopping see a training group: a regular "
        "expression matched against each file's name (its path relative to the data folder if "
        "the pattern holds a '/'), the first capture group or else the whole match naming the "
        "group, e.g. '^[^_]+' for p01_cell3.png or 'patient(\\d+)'; or csv:PATH with columns file "
        "and group. A folder's own train/, val/, test/ are checked for shared groups",
    )
    check_duplicates: bool = _option(
        True,
        "before training, look for exact and near-duplicate images (perceptual hash) across the "
        "train, val and test splits; print a count and list them in RUN/duplicates.json",
    )
    strict: bool = _option(False, "stop at unreadable image files instead of skipping them")
    cache: bool = _option(
        True, "folder: keep decoded images in the user cache so the next run starts at once"
    )
    recipe: str = _option(
        "none",
        "training defaults that reach good accuracy fast (`cnnlab recipes`): auto (the command "
        "line's default) picks the data set's own, mnist, fashion-mnist or cifar10, and folder "
        "for folders (cifar10 for one whose class folders are CIFAR-10's ten); flags and "
        "--config override its settings",
        choices=recipe_names(),
    )
    model: str = _option(
        "small-cnn", 'model name from `cnnlab models`, or a network spec such as "conv8 -> fc"'
    )
    model_options: dict = _option(
        {},
        "extra builder options, KEY=VALUE (repeatable; VALUE parsed as JSON)",
        metavar="KEY=VALUE",
    )
    dropout: float | None = _option(None, "dropout before the classifier (default: the model's)")
    pretrained: bool = _option(
        False,
        "start from the backbone's ImageNet weights (`cnnlab models`: efficientnet-lite0 offline, "
        "tv-* downloaded by torchvision); a new classifier is sized to the classes",
    )
    weights: str | None = _option(
        None,
        "start from this weights file (.safetensors or a state dict) instead; implies --pretrained",
    )
    freeze_epochs: int = _option(
        0, "fine-tuning: train only the classifier for this many epochs, then everything"
    )
    lr_decay_per_stage: float = _option(
        1.0,
        "fine-tuning: stage i from the top (0: the classifier, then the model's feature stages, "
        "deepest first) learns at learning-rate * F**i",
    )
    freeze_bn: bool = _option(False, "keep batch-norm statistics fixed (eval mode) while training")
    epochs: int = _option(10, "number of passes over the training split")
    time_budget: str | None = _option(
        None,
        "finish training within this time, e.g. 10m, 90s or 1h30m: the decoding and training "
        "speed are measured first, then the image size (folders), the width (small-cnn) and the "
        "epochs (at most --epochs) chosen to fit, and training stops at an epoch's end if time "
        "runs out (resumable); decoding comes on top. The choice and why: config.json "
        "resolved.time_budget",
    )
    batch_size: int = _option(128, "images per optimiser step")
    optimizer: str = _option("sgd", "optimiser", choices=("sgd", "adamw"))
    learning_rate: float | None = _option(
        None, "peak learning rate (default: 0.05 for sgd, 0.002 for adamw)"
    )
    momentum: float = _option(0.9, "SGD momentum (AdamW: beta1)")
    nesterov: bool = _option(True, "use Nesterov momentum with SGD")
    weight_decay: float = _option(5e-4, "decoupled (AdamW) or L2 (SGD) weight decay")
    schedule: str = _option(
        "onecycle", "learning-rate schedule", choices=("onecycle", "cosine", "step", "constant")
    )
    warmup_fraction: float = _option(0.2, "one-cycle: fraction of steps spent warming up")
    step_epochs: int = _option(5, "step schedule: epochs between decays")
    step_gamma: float = _option(0.1, "step schedule: factor applied at each decay")
    label_smoothing: float = _option(0.0, "label smoothing of the cross-entropy target")
    whiten_stem: bool = _option(
        False,
        "set the model's first convolution (2 x bands x k x k filters of k x k, e.g. conv24x2p0) "
        "to the whitening transform of the training images' k x k patches and keep it fixed "
        "(after airbench)",
    )
    ema: float = _option(
        0.0,
        "keep an exponential moving average of the weights with this decay, e.g. 0.99 or 0.999 "
        "(0: off), updated after every optimiser step with a warm-up, min(EMA, (1 + n) / (10 + n)) "
        "after n steps; BatchNorm statistics are copied, not averaged. Validation, the best "
        "checkpoint, --test and the saved weights (evaluate, predict, export, explain) use the "
        "average. Costs ~0.04 ms a step on the MNIST recipe's network (2 CPU cores), under a "
        "hundredth of its training step",
    )
    progressive_resize: str = _option(
        "",
        "progressive resizing (as in fast.ai's DAWNBench entries): SIZE:FRACTION, e.g. 24:0.5, "
        "trains the first round(FRACTION x EPOCHS) epochs (halves rounded up; the last epoch "
        "always at full size) on images resized on the device to SIZE on the longer side "
        "(bilinear, antialiased, after normalisation), the rest at the data's size. EPOCHS is the "
        "--epochs the run started with: epochs added by --resume RUN --epochs N train at full "
        "size. Validation, --test, evaluate and predict see the full size. The model must take "
        "the smaller images (global pooling: small-cnn, resnet20, a spec with gap -> fc). "
        "Empty: off",
        metavar="SIZE:FRACTION",
    )
    class_weighted_loss: bool = _option(
        False, "weight the loss by inverse class frequency (for imbalanced data)"
    )
    sampler: str = _option(
        "shuffle",
        "order of training images: shuffle (each once per epoch) or balanced (drawn with "
        "replacement, every class equally often)",
        choices=("shuffle", "balanced"),
    )
    val_fraction: float = _option(0.1, "fraction of train carved out (stratified) for validation")
    monitor: str = _option(
        "val_accuracy",
        "validation metric that picks the best checkpoint and drives early stopping",
        choices=("val_accuracy", "val_balanced_accuracy", "val_cohen_kappa", "val_loss"),
    )
    early_stopping: int = _option(
        0, "stop after this many epochs without improvement of --monitor (0: never)"
    )
    keep: str = _option(
        "best",
        "the weights --test, evaluate, predict and export use: best (the epoch with the best "
        "--monitor, saved as best.*) or last (no best.*: for a schedule that anneals to zero, "
        "whose last weights are the trained ones; the best of noisy validation epochs is noise)",
        choices=("best", "last"),
    )
    max_nonfinite_steps: int = _option(
        5, "abort after this many consecutive steps with a non-finite loss (each is skipped)"
    )
    checkpoint_every_steps: int = _option(
        0, "also checkpoint every N steps inside an epoch (0: only at epoch ends and on interrupt)"
    )
    layer_stats: int = _option(
        100,
        "every N optimiser steps, record per layer the weight and gradient norms, the "
        "update-to-weight ratio and, on a fixed probe batch of 256 validation images, the "
        "output mean and sd and the fraction of dead (or saturated) units, in "
        "RUN/layer_stats.jsonl, plotted in RUN/layer_stats.png and the report (0: off); a "
        "record costs about one training step of batch 128: at 100, under a hundredth of the "
        "MNIST recipe's training time",
    )
    seed: int = _option(0, "seed for the split, initialisation, order and dropout")
    device: str = _option("auto", "auto, cpu, cuda or cuda:N")
    precision: str = _option(
        "auto",
        "arithmetic: auto picks bf16 autocast on GPUs and on CPUs with AVX512-BF16/AMX, fp16 "
        "autocast (with loss scaling) on GPUs without bf16, and fp32 elsewhere; weights and loss "
        "stay float32",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    channels_last: bool = _option(
        True, "keep images and activations in channels_last memory format (faster convolutions)"
    )
    fast_dropout: bool = _option(
        True,
        "train dropout layers with cnnlab's dropout, whose CPU mask is ~5x cheaper to draw than "
        "PyTorch's (another random stream from the same seed; p exact for multiples of 1/256, "
        "else rounded to 1/65,536); --no-fast-dropout keeps PyTorch's",
    )
    threads: int | None = _option(
        None,
        "CPU threads for torch (default: one per physical core, at most the cores available; "
        "under torchrun the cores divided by the processes on this machine)",
    )
    sync_bn: bool = _option(
        False,
        "several processes (torchrun, --nproc) on CUDA: SyncBatchNorm, batch statistics over the "
        "global batch; without it each process normalises over its own shard",
    )
    eval_batch_size: int | None = _option(
        None,
        "images per batch when evaluating (default: 256 on a CPU, where a small network's "
        "activations then stay in the caches, 1024 on a GPU)",
    )
    tta: str = _option(
        "none",
        "test-time augmentation of validation, --test and this run's `cnnlab evaluate` and "
        "`cnnlab predict` (their --tta overrides it): flip averages the logits of each image and "
        "its mirror image; flip-shift also those of two copies shifted one pixel diagonally "
        "(6 forward passes). Not for digits or mnist: digits are not mirror-symmetric",
        choices=TTA_CHOICES,
    )
    augment: bool = _option(
        True,
        "start from the data set's default augmentation (digits: none; mnist: shifts; "
        "fashion-mnist, cifar10, folders: flips and shifts); the flags below override it",
    )


def _augmentation_overrides() -> list[tuple[str, str, Any]]:
    """An optional field per Augmentation setting, with its name and help: None keeps the data
    set's default."""
    overrides = []
    for setting in fields(Augmentation):
        choices = setting.metadata.get("choices")
        help = setting.metadata["help"].replace("%", "%%")  # argparse formats help with %
        if not choices:
            low, high = setting.metadata["range"]
            help = f"{help}; {setting.name.upper()} from {low} to {high}"
        metadata = {"help": f"augment: {help}", "choices": choices}
        optional = f"{setting.type} | None"  # a string, as the annotations above are
        overrides.append((setting.name, optional, field(default=None, metadata=metadata)))
    return overrides


# The overrides come after the other settings, as flags and in config.json.
_SettingsAndAugmentation = make_dataclass(
    "_SettingsAndAugmentation", _augmentation_overrides(), bases=(_Settings,), frozen=True
)
_SettingsAndAugmentation.__module__ = __name__  # make_dataclass would say "types"


@dataclass(frozen=True)
class TrainConfig(_SettingsAndAugmentation):
    """The settings of a training run: those of _Settings, then an optional override of each
    Augmentation setting (cnnlab/specs/augmentation.py), all frozen."""

    def __post_init__(self) -> None:
        for f in fields(self):  # inf passes "positive" and nan fails it: refuse both as such
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(
                    f"--{f.name.replace('_', '-')} {value} is invalid: it must be a finite number."
                )
        checks = [
            (self.epochs >= 1, "epochs", "at least 1"),
            (self.batch_size >= 1, "batch_size", "at least 1"),
            (
                self.eval_batch_size is None or self.eval_batch_size >= 1,
                "eval_batch_size",
                "at least 1",
            ),  # fmt: skip
            (0.0 <= self.val_fraction < 1.0, "val_fraction", "in [0, 1)"),
            (0.0 <= self.label_smoothing < 1.0, "label_smoothing", "in [0, 1)"),
            (self.ema == 0.0 or 0.0 < self.ema < 1.0, "ema", "0 (off) or in (0, 1)"),
            (0.0 < self.warmup_fraction < 1.0, "warmup_fraction", "in (0, 1)"),
            (self.learning_rate is None or self.learning_rate > 0, "learning_rate", "positive"),
            (self.dropout is None or 0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)"),
            (self.early_stopping >= 0, "early_stopping", "0 or more"),
            (self.max_nonfinite_steps >= 1, "max_nonfinite_steps", "at least 1"),
            (self.layer_stats >= 0, "layer_stats", "0 (off) or more"),
            (self.step_epochs >= 1, "step_epochs", "at least 1"),
            (self.threads is None or self.threads >= 1, "threads", "at least 1"),
            (0.0 <= self.test_fraction < 1.0, "test_fraction", "in [0, 1)"),
            (self.channels in (None, 1, 3), "channels", "1 or 3"),
            (self.freeze_epochs >= 0, "freeze_epochs", "0 or more"),
            (0.0 < self.lr_decay_per_stage <= 1.0, "lr_decay_per_stage", "in (0, 1]"),
            (0.0 <= self.momentum < 1.0, "momentum", "in [0, 1)"),  # SGD, AdamW's beta1
            (self.weight_decay >= 0, "weight_decay", "0 or more"),
            (self.step_gamma > 0, "step_gamma", "positive"),
            (self.checkpoint_every_steps >= 0, "checkpoint_every_steps", "0 (off) or more"),
        ]
        for name in AUGMENTATION_FIELDS:  # None keeps the data set's default
            value = getattr(self, name)
            expected = "" if value is None else out_of_range(name, value)
            checks.append((not expected, name, expected))
        if self.time_budget is not None:
            parse_duration(self.time_budget)
        parse_progressive_resize(self.progressive_resize)
        if self.image_size is not None:
            from cnnlab.data.folder import parse_image_size  # imports torch: only when needed

            parse_image_size(self.image_size)
        for ok, name, expected in checks:
            if not ok:
                value = getattr(self, name)
                raise ConfigError(
                    f"--{name.replace('_', '-')} {value} is invalid: it must be {expected}."
                )
        checked = set(AUGMENTATION_FIELDS)
        for f in fields(self):
            choices = f.metadata.get("choices")
            # an augmentation override may be None; out_of_range has checked it
            if choices and getattr(self, f.name) not in choices and f.name not in checked:
                raise ConfigError(
                    f"--{f.name.replace('_', '-')} {getattr(self, f.name)!r} is invalid: "
                    f"choose one of {', '.join(choices)}."
                )

    def load_options(self) -> LoadOptions:
        """How a folder: source is decoded (named data sets only check the size and bands)."""
        from cnnlab.data.folder import LoadOptions, parse_image_size

        return LoadOptions(
            image_size=parse_image_size(self.image_size),
            aspect=self.aspect,
            channels=self.channels,
            strict=self.strict,
            cache=self.cache,
        )

    @property
    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 0.05 if self.optimizer == "sgd" else 0.002

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "configuration") -> TrainConfig:
        """Settings by name, over the recipe they select (cnnlab.specs.recipes), over the defaults.

        This is the door the command line and TOML files use: without a "recipe" key it picks
        the data set's own ("auto"), and the result names the recipe applied. The constructor
        applies none (recipe "none"), so `TrainConfig(...)` means exactly what it says.
        """
        data = {key.replace("-", "_"): value for key, value in data.items()}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown setting(s) {', '.join(unknown)}. "
                f"Known settings are the long flags of `cnnlab train --help`."
            )
        check_types(data, source)
        try:
            return cls(**apply_recipe(data, cls.data))
        except TypeError as error:
            raise ConfigError(f"{source}: {error}") from None


def check_types(data: dict[str, Any], source: str) -> None:
    """A ConfigError naming the first known setting in `data` whose value has the wrong type."""
    types = {f.name: resolve(f.type) for f in fields(TrainConfig)}
    for key, value in data.items():
        key = key.replace("-", "_")
        if types.get(key) is not None and not fits(value, types[key]):
            raise ConfigError(
                f"{source}: setting {key} = {value!r} is invalid: expected "
                f"{describe(types[key], none='')} (`cnnlab train --help` describes "
                f"--{key.replace('_', '-')})."
            )


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file of training defaults; a `[train]` table is used if present."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Config file '{path}' does not exist.") from None
    except OSError as error:  # a folder, no permission
        raise ConfigError(f"Config file '{path}' cannot be read ({error.strerror}).") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"Config file '{path}' is not valid TOML: {error}.") from None
    table = data.get("train", data)
    if not isinstance(table, dict):
        raise ConfigError(
            f"Config file '{path}': 'train' must be a table ([train] with the settings under it), "
            f"not {type(table).__name__} {table!r:.40}."
        )
    check_types(table, str(path))  # also a setting the command line will override
    return dict(table)


_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m(?:in)?)?(?:(\d+(?:\.\d*)?)s)?")


def parse_duration(text: str) -> float:
    """Seconds in '10m', '90s', '1h30m', '1.5h', '2m30s'."""
    match = _DURATION.fullmatch(str(text).strip().lower().replace(" ", ""))
    if match is None or not any(match.groups()):
        raise ConfigError(
            f"--time-budget {text!r} is invalid: give a duration with units, such as 10m, 90s "
            "or 1h30m."
        )
    hours, minutes, seconds = (float(group or 0) for group in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"--time-budget {text!r} is invalid: it must be longer than 0 s.")
    return total


def parse_progressive_resize(text: str) -> tuple[int, Fraction] | None:
    """'24:0.5' -> (24, Fraction(1, 2)); '' -> None (off). The fraction is kept exact, so
    round(FRACTION x EPOCHS) rounds a half as written ('0.15' x 10 is 3/2, not 1.4999...)."""
    if not text:
        return None
    size, separator, fraction = str(text).partition(":")
    try:
        size, fraction = int(size), Fraction(fraction.strip())
    except ValueError:
        size, fraction = 0, Fraction(0)  # refused below with the others
    if not separator or size < 8 or not 0 < fraction < 1:
        raise ConfigError(
            f"--progressive-resize {text!r} is invalid: give SIZE:FRACTION with SIZE a whole "
            "number of pixels, at least 8, and FRACTION of the epochs in (0, 1), e.g. 24:0.5 "
            "(or leave it empty for off)."
        )
    return size, fraction


def parse_model_option(text: str) -> tuple[str, Any]:
    """'widths=[16,32]' -> ('widths', [16, 32]); values that are not JSON stay strings."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise ConfigError(f"--model-options {text!r} is invalid: expected KEY=VALUE.")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip().replace("-", "_"), parsed


def resolve_recipe(name: str, data: str) -> Recipe:
    """The recipe `name` stands for; "auto" picks the one the data set declares (in its
    cnnlab.data.DATASETS entry; "folder" for folders)."""
    if name == "auto":
        # Imported here: the data sources import torch, and `cnnlab train --help` reads this
        # module without it.
        from cnnlab.data.sources import default_recipe

        name = default_recipe(data)
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(
            f"--recipe {name!r} is unknown: choose one of {', '.join(recipe_names())} "
            "(`cnnlab recipes` lists them)."
        ) from None


def apply_recipe(values: dict[str, Any], default_data: str) -> dict[str, Any]:
    """Settings with the recipe's values beneath the given ones, and the recipe's name resolved
    ("auto" when none is given)."""
    recipe = resolve_recipe(values.get("recipe", "auto"), values.get("data", default_data))
    return {**recipe.settings, **values, "recipe": recipe.name}
