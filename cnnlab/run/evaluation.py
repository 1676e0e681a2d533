"""RUN/eval/: what `cnnlab evaluate` writes for a split (metrics JSON, confusion-matrix PNG,
reliability diagram, ROC/PR curves for two classes, predictions CSV), and reading it back.

The default evaluation (best checkpoint, PyTorch) keeps the plain names eval/SPLIT.json, which the
report and older runs use; any other checkpoint or runtime adds its own suffix
(eval/test-last.json, eval/test-onnx.json, eval/test-last-onnx.json), and so does a test-time
augmentation other than the one the run trained with (eval/test-tta-none.json for `--tta none` on
a run trained with `--tta flip`), so none overwrites another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnlab.evaluation import (
    save_confusion_matrix_png,
    save_reliability_png,
    save_roc_pr_png,
    write_predictions_csv,
)
from cnnlab.fileio import atomic_write_json
from cnnlab.run.load import recorded_tta
from cnnlab.run.paths import RunDir


def evaluation_name(
    split: str, checkpoint: str = "best", runtime: str = "torch", other_tta: str | None = None
) -> str:
    """The stem of an evaluation's files in RUN/eval/: "test", "test-last", "test-onnx"...;
    `other_tta`: a test-time augmentation that is not the run's own ("test-tta-none")."""
    suffixes = [checkpoint] if checkpoint != "best" else []
    suffixes += [runtime] if runtime != "torch" else []
    suffixes += [f"tta-{other_tta}"] if other_tta else []
    return "-".join([split, *suffixes])


def other_tta(run: RunDir, tta: str | None) -> str | None:
    """`tta` when an evaluation used a test-time augmentation other than the run's own (its
    files then say so), else None."""
    return tta if tta is not None and tta != recorded_tta(run.path) else None


def write_evaluation(
    run: RunDir,
    metrics: dict[str, Any],
    sample_ids: list[str],
    labels: torch.Tensor,
    probabilities: torch.Tensor,
    class_names: list[str],
    checkpoint: str = "best",
    predictions: torch.Tensor | None = None,
) -> Path:
    """eval/NAME.json, NAME-confusion.png and NAME-predictions.csv for `metrics["split"]` and
    `metrics["runtime"]` (evaluation_name), NAME-reliability.png when the metrics hold
    "calibration_error" and NAME-roc-pr.png when they hold "binary"; returns the JSON's path.
    `predictions` [N] are the decisions (default: the argmax of `probabilities`)."""
    split = evaluation_name(
        metrics["split"],
        checkpoint,
        metrics.get("runtime", "torch"),
        other_tta(run, metrics.get("tta")),
    )
    atomic_write_json(run.eval / f"{split}.json", metrics)
    title = f"{run.path.name}: {split}"
    if "calibration_error" in metrics:
        save_reliability_png(
            metrics["calibration_error"], run.eval / f"{split}-reliability.png", title
        )
    if metrics.get("binary"):
        save_roc_pr_png(metrics["binary"], run.eval / f"{split}-roc-pr.png", title)
    positive = (metrics.get("calibration") or {}).get("positive_index")
    save_confusion_matrix_png(
        torch.tensor(metrics["confusion_matrix"]),
        class_names,
        run.eval / f"{split}-confusion.png",
        title=f"{run.path.name}: {split} ({metrics['accuracy']:.2%} accuracy)",
    )
    write_predictions_csv(
        run.eval / f"{split}-predictions.csv",
        sample_ids,
        labels,
        probabilities,
        class_names,
        top_k=min(3, len(class_names)),
        predictions=predictions,
        positive=positive,
    )
    return run.eval / f"{split}.json"


def read_evaluation(
    run: RunDir, split: str, checkpoint: str = "best", runtime: str = "torch"
) -> dict[str, Any] | None:
    """The metrics `cnnlab evaluate` wrote for `split`, or None if it has not been run."""
    name = evaluation_name(split, checkpoint, runtime)
    return run.read(f"eval/{name}.json") if (run.eval / f"{name}.json").exists() else None
