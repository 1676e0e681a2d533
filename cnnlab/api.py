"""The Python API: `cnnlab.train`, `cnnlab.evaluate`, `cnnlab.load` and `Model.predict`.

Keyword arguments are the long flags of the command line (`--learning-rate` is `learning_rate`),
resolved the same way (recipe "auto" by default, a TOML file under them), so
`cnnlab.train(data="mnist", epochs=3, out="runs/x")` trains what `cnnlab train --data mnist
--epochs 3 --out runs/x` trains. A loaded model needs the run directory only, no training code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.inputs import ImageInput, prepare_images
from cnnlab.inference.calibrate import Decision, decision_for
from cnnlab.run.load import LoadedRun, load_run, recorded_tta
from cnnlab.runtime.predict import predict_logits


@dataclass(frozen=True)
class Run:
    """A trained run directory and how its training ended; usable wherever a path is."""

    path: Path
    status: str  # "complete", "early-stopped" or "interrupted"
    epochs_done: int
    global_step: int
    best: dict[str, Any] | None
    last: dict[str, Any] | None

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


def train(
    *,
    out: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    progress: bool = True,
    **settings: Any,
) -> Run:
    """Train a model and write its run directory; `settings` are `cnnlab train`'s flags by name.

    `config` is a TOML file of defaults (as `--config`); `progress=False` is `--quiet`.
    Example: `cnnlab.train(data="digits", model="lenet5", epochs=3, out="runs/x")`.
    """
    from cnnlab.training.resolve import default_out, resolve_config
    from cnnlab.training.run import train as train_run

    resolved = resolve_config(settings, config)
    path = Path(out) if out is not None else default_out(resolved)
    result = train_run(resolved, path, show_progress=progress)
    return Run(
        result.run, result.status, result.epochs_done, result.global_step, result.best, result.last
    )


def resume(run: str | os.PathLike, *, progress: bool = True, **settings: Any) -> Run:
    """Continue an interrupted run from its newest good checkpoint (`cnnlab train --resume`);
    only data_dir, device, threads and epochs (a new total, extending a finished run by a new
    segment) may be given."""
    from cnnlab.training.resolve import resume_config
    from cnnlab.training.run import train as train_run

    resolved = resume_config(run, settings)
    result = train_run(resolved, Path(run), resume=True, show_progress=progress)
    return Run(
        result.run, result.status, result.epochs_done, result.global_step, result.best, result.last
    )


def evaluate(run: str | os.PathLike, split: str = "test", **options: Any) -> dict[str, Any]:
    """Score a split as `cnnlab evaluate` does (writes RUN/eval/) and return the metrics.

    Options: data, data_dir, checkpoint ("best" or "last"), device, batch_size, top_k, runtime.
    """
    from cnnlab.inference import evaluate_run

    if "checkpoint" in options:
        options["which"] = options.pop("checkpoint")
    return evaluate_run(os.fspath(run), split, **options)


@dataclass(frozen=True)
class Predictions:
    """Class probabilities [N, K] for N images, with the run's class names; `decided` [N] are the
    predicted classes when RUN/calibration.json sets a two-class threshold (else the argmax)."""

    probabilities: torch.Tensor
    class_names: tuple[str, ...]
    decided: torch.Tensor | None = None

    @property
    def indices(self) -> torch.Tensor:
        return self.decided if self.decided is not None else self.probabilities.argmax(dim=1)

    @property
    def labels(self) -> list[str]:
        return [self.class_names[i] for i in self.indices.tolist()]

    @property
    def confidences(self) -> torch.Tensor:
        return self.probabilities.max(dim=1).values

    def __len__(self) -> int:
        return len(self.probabilities)

    def top(self, k: int = 3) -> list[dict[str, Any]]:
        """Per image: predicted class, confidence and the k most likely classes."""
        from cnnlab.inference import top_classes

        return top_classes(self.probabilities, list(self.class_names), k, self.indices)


class Model:
    """A trained network with its preprocessing, as `cnnlab.load(RUN)` returns it."""

    def __init__(self, loaded: LoadedRun, decision: Decision | None = None) -> None:
        self.loaded = loaded
        self.module = loaded.model  # the torch.nn.Module, in eval mode
        self.class_names = tuple(loaded.class_names)
        self.decision = decision or Decision()  # temperature and threshold, as `predict` uses

    @property
    def run(self) -> Path:
        return self.loaded.run.path

    def predict(self, images: ImageInput | list[ImageInput], batch_size: int = 256) -> Predictions:
        """Probabilities for file paths, PIL images, numpy arrays or tensors (one or many),
        preprocessed as in training: bands, size, aspect handling and normalisation."""
        record = self.loaded.record
        pixels = prepare_images(images, record.channels, record.image_size, record.aspect)
        logits = predict_logits(
            self.module, pixels.to(self.loaded.device), self.loaded.settings, batch_size
        )
        if self.decision.record is None:  # no calibration.json: the model's own softmax
            return Predictions(torch.softmax(logits, dim=1), self.class_names)
        probabilities = self.decision.probabilities(logits)  # float64, as `cnnlab predict`'s
        decided = self.decision.predictions(probabilities)
        return Predictions(probabilities.to(logits.dtype), self.class_names, decided)

    def __repr__(self) -> str:
        record = self.loaded.record
        height, width = record.image_size
        return (
            f"Model({str(self.run)!r}: {self.loaded.model_record.name}, {len(self.class_names)} "
            f"classes, {record.channels}x{height}x{width})"
        )


def load(
    run: str | os.PathLike,
    checkpoint: str = "best",
    device: str = "auto",
    precision: str = "auto",
    calibration: bool = True,
    tta: str | None = None,
) -> Model:
    """A trained run's model, ready to `predict`; needs only the run directory. As `cnnlab
    predict` does, it applies RUN/calibration.json (temperature, two-class threshold) when the
    file was fitted on this checkpoint; `calibration=False` gives the raw softmax and argmax.
    `tta`: the test-time augmentation (none, flip, flip-shift); None: the run's own (--tta)."""
    tta = recorded_tta(os.fspath(run)) if tta is None else tta
    loaded = load_run(os.fspath(run), checkpoint, device, precision, tta=tta)
    decision = decision_for(loaded, checkpoint, calibration, notify=lambda line: None)
    return Model(loaded, decision)
