"""RUN/eval/: what `cnnlab evaluate` writes for a split (metrics JSON, confusion-matrix PNG,
predictions CSV), and reading it back."""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.evaluation import save_confusion_matrix_png, write_predictions_csv
from cnnlab.fileio import atomic_write_json
from cnnlab.run.paths import RunDir


def write_evaluation(
    run: RunDir,
    metrics: dict[str, Any],
    sample_ids: list[str],
    labels: torch.Tensor,
    probabilities: torch.Tensor,
    class_names: list[str],
) -> None:
    """eval/SPLIT.json, SPLIT-confusion.png and SPLIT-predictions.csv for `metrics["split"]`."""
    split = metrics["split"]
    atomic_write_json(run.eval / f"{split}.json", metrics)
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
    )


def read_evaluation(run: RunDir, split: str) -> dict[str, Any] | None:
    """The metrics `cnnlab evaluate` wrote for `split`, or None if it has not been run."""
    path = run.eval / f"{split}.json"
    return run.read(f"eval/{split}.json") if path.exists() else None
