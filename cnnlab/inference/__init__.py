"""Using a trained run: evaluate a split, predict image files, on PyTorch or ONNX Runtime.

The model, its preprocessing and class names come from the run directory (cnnlab.run.load), so
these work in a new process on another day, preprocessing images exactly as in training.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from cnnlab.binary_metrics import BOOTSTRAP_RESAMPLES
from cnnlab.data.folder import IMAGE_EXTENSIONS
from cnnlab.data.images import UnreadableImage, load_image_file
from cnnlab.errors import ConfigError, DataError
from cnnlab.inference.calibrate import (
    CALIBRATION_SPLIT,
    Decision,
    calibrate_logits,
    decision_for,
    lab_metrics,
    log,
)
from cnnlab.metrics import classification_metrics
from cnnlab.run.calibration import CalibrationRecord, write_calibration
from cnnlab.run.evaluation import write_evaluation
from cnnlab.run.load import LoadedRun, load_run, recorded_tta
from cnnlab.run.splits import load_run_split
from cnnlab.runtime import RUNTIMES
from cnnlab.runtime.predict import Predictor, predict_logits, tta_warning, with_tta


def load_run_for_runtime(
    run_path: str | Path,
    which: str,
    device: str,
    runtime: str = "torch",
    precision: str = "auto",
    channels_last: bool = True,
    tta: str | None = None,
) -> tuple[LoadedRun, Predictor]:
    """The run and a function (uint8 images, batch size) -> float32 logits [N, K] on the CPU.

    "torch" runs the model in PyTorch on `device`; "onnx" runs its ONNX export (made on first
    use, cnnlab.inference.onnx) with ONNX Runtime on the CPU, in float32. Either averages the
    logits over `tta`'s copies of each image (None: the run's own --tta, runtime/predict.py).
    """
    tta = tta or recorded_tta(run_path)
    if runtime == "torch":
        loaded = load_run(run_path, which, device, precision, channels_last, tta)

        def logits(images: torch.Tensor, batch_size: int) -> torch.Tensor:
            return predict_logits(
                loaded.model, images.to(loaded.device), loaded.settings, batch_size
            )

        return loaded, logits
    if runtime == "onnx":
        from cnnlab.inference.onnx import load_onnx_run  # onnxruntime is optional

        loaded, classifier = load_onnx_run(run_path, which, device)
        return loaded, with_tta(classifier.predict_logits, tta)
    raise ConfigError(f"Unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}.")


def evaluate_run(
    run_path: str | Path,
    split: str = "test",
    *,
    data: str | None = None,
    data_dir: str | None = None,
    which: str = "best",
    device: str = "auto",
    batch_size: int | None = None,
    top_k: int = 5,
    precision: str = "auto",
    channels_last: bool = True,
    runtime: str = "torch",
    calibration: bool = True,
    positive_class: str | None = None,
    bootstrap: int = BOOTSTRAP_RESAMPLES,
    notify: Callable[[str], None] = log.info,
    tta: str | None = None,
) -> dict[str, Any]:
    """Score a split and write eval/<split>.json, -confusion.png, -reliability.png, (two classes)
    -roc-pr.png and -predictions.csv.

    RUN/calibration.json (`cnnlab calibrate`), when present and `calibration`, sets the
    temperature and a two-class run's threshold; `positive_class` defaults to its choice, else
    the second class; `notify` hears the one line saying so. `bootstrap` resamples give the 95%
    intervals (0: none).

    Another checkpoint or runtime than best on PyTorch writes its own files (eval/test-last.json,
    eval/test-onnx.json: cnnlab.run.evaluation.evaluation_name).

    `runtime="onnx"` scores with ONNX Runtime instead of PyTorch (see load_run_for_runtime);
    `tta` averages over copies of each image (None: the run's own), recorded in the metrics.
    """
    loaded, predict, tta = _load_with_tta(
        run_path, which, device, runtime, tta, notify, precision, channels_last
    )
    split_data = load_run_split(loaded.record, split, data_dir=data_dir, data=data)
    if not len(split_data.labels):
        raise DataError(
            f"The {split} split of run '{run_path}' is empty (class counts "
            f"{loaded.record.class_counts.get(split)}): there is nothing to evaluate. Evaluate "
            "another split with --split, or train again with more images per class or a larger "
            f"--{split}-fraction."
        )
    logits = predict(split_data.images, batch_size)  # [N, K]
    decision = decision_for(loaded, which, calibration, positive_class, notify)
    decision.note_if_fitted_on(split, notify)
    probabilities = decision.probabilities(logits)  # [N, K]
    predictions = decision.predictions(probabilities)  # [N]
    metrics = classification_metrics(
        logits, split_data.labels, loaded.class_names, top_k=tuple(sorted({1, top_k})),
        predictions=predictions,
    )  # fmt: skip
    metrics = {
        "split": split,
        "runtime": runtime,
        "tta": tta,
        "checkpoint": {
            "file": str(loaded.checkpoint.path.name),
            "epoch": loaded.checkpoint.meta.get("epoch"),
            "global_step": loaded.checkpoint.meta.get("global_step"),
        },
        **metrics,
        **lab_metrics(
            probabilities, predictions, split_data.labels, loaded.class_names, decision, bootstrap
        ),
    }
    write_evaluation(
        loaded.run,
        metrics,
        split_data.sample_ids,
        split_data.labels,
        probabilities,
        loaded.class_names,
        checkpoint=which,
        predictions=predictions,
    )
    return metrics


PREDICT_BATCH_SIZE = 256  # images decoded, predicted and written at a time (memory stays bounded)
GLOB_CHARACTERS = frozenset("*?[")


class FilePredictions(list):
    """The rows of predict_files (a list, as before), with `failures`: [{file, reason}] for the
    files that could not be read or matched nothing, in the order given."""

    def __init__(self, rows: Iterable[dict[str, Any]] = (), failures: Iterable[dict] = ()):
        super().__init__(rows)
        self.failures: list[dict[str, str]] = list(failures)


def predict_files(
    run_path: str | Path,
    image_paths: Iterable[str | Path],
    *,
    which: str = "best",
    device: str = "auto",
    top_k: int = 3,
    runtime: str = "torch",
    batch_size: int = PREDICT_BATCH_SIZE,
    calibration: bool = True,
    positive_class: str | None = None,
    tta: str | None = None,
) -> FilePredictions:
    """Class probabilities for image files: [{file, predicted, confidence, top: [(name, p)]}].

    Paths may be files, folders (searched recursively for image files, hidden entries skipped)
    or glob patterns (`photos/**/*.jpg`). A file that cannot be read does not stop the others:
    it is listed in the result's `failures` with its reason. Only when no file at all could be
    read is a DataError raised (naming the first failures). For a stream of batches with
    bounded memory, use iter_file_predictions. RUN/calibration.json, when present and
    `calibration`, sets the temperature and a two-class run's threshold (as evaluate_run); rows
    of a two-class run also give `positive_probability`. `tta` as in evaluate_run.
    """
    result = FilePredictions()
    for rows, failures in iter_file_predictions(
        run_path, image_paths, which=which, device=device, top_k=top_k, runtime=runtime,
        batch_size=batch_size, calibration=calibration, positive_class=positive_class, tta=tta,
    ):  # fmt: skip
        result.extend(rows)
        result.failures.extend(failures)
    if not result:
        raise DataError(nothing_readable_message(result.failures))
    return result


def iter_file_predictions(
    run_path: str | Path,
    image_paths: Iterable[str | Path],
    *,
    which: str = "best",
    device: str = "auto",
    top_k: int = 3,
    runtime: str = "torch",
    batch_size: int = PREDICT_BATCH_SIZE,
    calibration: bool = True,
    positive_class: str | None = None,
    notify: Callable[[str], None] = log.info,
    tta: str | None = None,
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, str]]]]:
    """(rows, failures) per batch of `batch_size` files: decode the batch, predict, yield.

    Only one batch of images is held at a time, so 100k files need no more memory than 256.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
    loaded, predict, _ = _load_with_tta(run_path, which, device, runtime, tta, notify)
    decision = decision_for(loaded, which, calibration, positive_class, notify)
    record = loaded.record
    files, pending_failures = [], []
    for path, failure in expand_image_paths(image_paths):
        if failure is None:
            files.append(path)
        else:
            pending_failures.append(failure)
        if len(files) == batch_size or len(pending_failures) == batch_size:
            rows, failures = _predict_batch(
                files, record, predict, loaded.class_names, top_k, runtime, decision
            )
            yield rows, pending_failures + failures
            files, pending_failures = [], []
    if files or pending_failures:
        rows, failures = _predict_batch(
            files, record, predict, loaded.class_names, top_k, runtime, decision
        )
        yield rows, pending_failures + failures


def _predict_batch(
    files: list[Path],
    record: Any,
    predict: Predictor,
    class_names: list[str],
    top_k: int,
    runtime: str,
    decision: Decision,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    images, readable, failures = [], [], []
    for path in files:
        try:
            images.append(
                load_image_file(path, record.channels, record.image_size, aspect=record.aspect)
            )
        except UnreadableImage as error:
            failures.append({"file": str(path), "reason": error.reason})
            continue
        readable.append(path)
    if not images:
        return [], failures
    probabilities = decision.probabilities(predict(torch.stack(images), len(images)))  # [N, K]
    predictions = decision.predictions(probabilities)  # [N]
    ranked = top_classes(probabilities, class_names, top_k, predictions)
    rows = [
        {"file": str(path), **row, "runtime": runtime}
        for path, row in zip(readable, ranked, strict=True)
    ]
    if decision.positive is not None:
        for row, p in zip(rows, probabilities[:, decision.positive].tolist(), strict=True):
            row.update(positive_class=class_names[decision.positive], positive_probability=p)
    return rows, failures


def _load_with_tta(
    run_path: str | Path,
    which: str,
    device: str,
    runtime: str,
    tta: str | None,
    notify: Callable[[str], None],
    precision: str = "auto",
    channels_last: bool = True,
) -> tuple[LoadedRun, Predictor, str]:
    """load_run_for_runtime with `tta` resolved (None: the run's own), and a line to `notify`
    when it mirrors images that are not mirror-symmetric."""
    tta = tta or recorded_tta(run_path)
    loaded, predict = load_run_for_runtime(
        run_path, which, device, runtime, precision, channels_last, tta
    )
    warning = tta_warning(loaded.record.source, tta)
    if warning is not None:
        notify(warning)
    return loaded, predict, tta


def expand_image_paths(
    image_paths: Iterable[str | Path],
) -> Iterator[tuple[Path, None] | tuple[None, dict[str, str]]]:
    """Each given path as files to read: (path, None), or (None, {file, reason}) for a pattern
    or folder that yields nothing.

    A folder gives its image files (by suffix, recursively, sorted; hidden files and folders
    skipped); a path that does not exist but holds *, ? or [ is expanded as a glob (the shell
    did not, e.g. it was quoted; ** matches sub-folders). Any other path is passed on as given,
    so a missing or non-image file is reported by the decoder with its reason.
    """
    for given in image_paths:
        path = Path(given)
        if path.is_dir():
            found = list(_images_under(path))
            reason = "folder holds no image files"
        elif not path.exists() and GLOB_CHARACTERS & set(str(given)):
            found = [Path(p) for p in sorted(glob.glob(str(given), recursive=True))]
            found = [f for hit in found for f in (_images_under(hit) if hit.is_dir() else [hit])]
            reason = "no file matches this pattern"
        else:
            found, reason = [path], ""
        if not found:
            yield None, {"file": str(given), "reason": reason}
        for file in found:
            yield file, None


def _images_under(folder: Path) -> Iterator[Path]:
    for directory, subdirectories, names in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                yield Path(directory, name)


def nothing_readable_message(failures: list[dict[str, str]]) -> str:
    if not failures:
        return "No image files were given. Give image files, folders or glob patterns."
    shown = "; ".join(f"{f['file']}: {f['reason']}" for f in failures[:5])
    more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
    return (
        f"None of the {len(failures)} given image files could be read: {shown}{more}. "
        "Check the paths; images must be PNG, JPEG, BMP, TIFF, WebP or another common format."
    )


def top_classes(
    probabilities: torch.Tensor,
    class_names: list[str],
    top_k: int,
    predictions: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """Per row of [N, K] probabilities: the predicted class (the argmax, or `predictions` [N]),
    its probability as confidence, the top k."""
    k = min(top_k, probabilities.shape[1])
    values, indices = probabilities.topk(k, dim=1)
    if predictions is None:
        predictions = indices[:, 0]
    chosen = probabilities.gather(1, predictions[:, None].long())[:, 0]  # [N]
    return [
        {
            "predicted": class_names[int(predicted)],
            "predicted_index": int(predicted),
            "confidence": float(confidence),
            "top": [
                {"class": class_names[int(i)], "probability": float(v)}
                for v, i in zip(val, idx, strict=True)
            ],
        }
        for val, idx, predicted, confidence in zip(
            values, indices, predictions, chosen, strict=True
        )
    ]


def calibrate_run(
    run_path: str | Path,
    threshold: str | None = "youden",
    *,
    temperature: bool = True,
    positive_class: str | None = None,
    which: str = "best",
    device: str = "auto",
    data: str | None = None,
    data_dir: str | None = None,
    batch_size: int | None = None,
) -> CalibrationRecord:
    """Fit the temperature and (two classes) the threshold on the run's validation split and
    write RUN/calibration.json. `threshold` None fits the temperature only."""
    if threshold is None and not temperature:
        raise ConfigError("Nothing to calibrate: give --threshold, or leave --temperature on.")
    loaded, predict = load_run_for_runtime(run_path, which, device)
    split = load_run_split(loaded.record, CALIBRATION_SPLIT, data_dir=data_dir, data=data)
    if not len(split.labels):
        raise DataError(
            f"The validation split of run '{run_path}' is empty: calibration needs it. Train "
            "again with --val-fraction above 0."
        )
    names = list(loaded.class_names)
    logits = predict(split.images, batch_size)  # [N, K]
    fields = calibrate_logits(logits, split.labels, names, threshold, temperature, positive_class)
    record = CalibrationRecord(
        split=CALIBRATION_SPLIT,
        checkpoint=which,
        checkpoint_file=loaded.checkpoint.path.name,
        class_names=tuple(names),
        **fields,
    )
    write_calibration(loaded.run, record)
    return record
