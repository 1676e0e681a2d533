"""The evaluation's outputs: a terminal table of the metrics, a confusion-matrix PNG and a CSV of
predictions. The metrics themselves are computed in `cnnlab.metrics`.
"""

from __future__ import annotations

import csv
import io
import os

import torch

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_bytes, atomic_write_text
from cnnlab.metrics import check_labels, safe_divide


def format_metrics_table(metrics: dict) -> str:
    """A plain-text summary for the terminal: overall numbers, then one aligned row per class."""
    lines = [
        f"samples            {metrics['num_samples']}",
        f"accuracy           {metrics['accuracy']:.4f}",
    ]
    for k, value in metrics["top_k_accuracy"].items():
        lines.append(f"{'top-' + k + ' accuracy':<19}{value:.4f}")
    for key in ["balanced_accuracy", "cohen_kappa", "macro_precision", "macro_recall"]:
        lines.append(f"{key.replace('_', ' '):<19}{metrics[key]:.4f}")
    lines.append(f"macro f1           {metrics['macro_f1']:.4f}")
    lines.append(f"weighted f1        {metrics['weighted_f1']:.4f}")

    rows = metrics["per_class"]
    width = max([len("class")] + [len(row["class"]) for row in rows])
    lines += ["", f"{'class':<{width}}  precision  recall      f1  support"]
    lines.append("-" * len(lines[-1]))
    for row in rows:
        lines.append(
            f"{row['class']:<{width}}  {row['precision']:>9.4f}  {row['recall']:>6.4f}  "
            f"{row['f1']:>6.4f}  {row['support']:>7d}"
        )
    return "\n".join(lines)


def save_confusion_matrix_png(
    matrix_counts: torch.Tensor | list[list[int]],
    class_names: list[str],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Draw row-normalised colours with the counts in the cells (K <= 30) and write a PNG."""
    # Imported here: matplotlib is slow to import and only this function needs it. Figure and
    # FigureCanvasAgg are used directly so the caller's pyplot state and backend stay untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = torch.as_tensor(matrix_counts).detach().cpu().long()  # [K, K]
    num_classes = len(class_names)
    if counts.shape != (num_classes, num_classes):
        raise CnnlabError(
            f"The confusion matrix has shape {tuple(counts.shape)} but {num_classes} class names "
            f"were given; expected a square [{num_classes}, {num_classes}] matrix of counts."
        )
    normalized = safe_divide(counts.double(), counts.sum(dim=1, keepdim=True).double())

    side = min(4.0 + 0.45 * num_classes, 40.0)  # inches; grows with K, capped for huge K
    font_size = max(5.0, min(10.0, 400.0 / max(num_classes, 1)))
    figure = Figure(figsize=(side + 1.5, side), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(normalized.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of true class")
    ticks = list(range(num_classes))
    axes.set_xticks(ticks, labels=class_names, rotation=60, ha="right", fontsize=font_size)
    axes.set_yticks(ticks, labels=class_names, fontsize=font_size)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if title:
        axes.set_title(title)
    if num_classes <= 30:
        for row in range(num_classes):
            for column in range(num_classes):
                color = "white" if normalized[row, column] > 0.5 else "black"
                axes.text(
                    column,
                    row,
                    str(counts[row, column].item()),
                    ha="center",
                    va="center",
                    color=color,
                    fontsize=font_size,
                )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def write_predictions_csv(
    path: str | os.PathLike,
    sample_ids: list[str],
    targets: torch.Tensor | None,
    probabilities: torch.Tensor,
    class_names: list[str],
    top_k: int = 3,
) -> None:
    """One row per sample: sample, true, predicted, confidence, correct (1/0), true_probability,
    top1..topk. The top columns read "name:probability"; true, correct and true_probability (the
    probability of the true class, so the loss is known for every row) need targets.
    """
    probabilities = _checked_probabilities(probabilities, len(sample_ids), len(class_names))
    if targets is not None:
        targets = check_labels("targets", targets, len(class_names))
        if len(targets) != len(sample_ids):
            raise CnnlabError(
                f"targets has {len(targets)} entries but there are {len(sample_ids)} sample ids; "
                "they must describe the same samples in the same order."
            )
    if top_k < 1:
        raise CnnlabError(f"top_k must be at least 1, got {top_k}.")
    top_k = min(top_k, len(class_names))

    # A stable sort, unlike topk, breaks ties towards the lower index as argmax does, so the
    # predicted class and top1 always agree with argmax.
    sorted_probabilities, sorted_indices = probabilities.sort(dim=1, descending=True, stable=True)
    top_probabilities, top_indices = sorted_probabilities[:, :top_k], sorted_indices[:, :top_k]
    has_targets = targets is not None
    header = ["sample"] + (["true"] if has_targets else []) + ["predicted", "confidence"]
    header += ["correct", "true_probability"] if has_targets else []
    header += [f"top{i + 1}" for i in range(top_k)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    target_list = targets.tolist() if has_targets else [None] * len(sample_ids)
    for row, (sample_id, target) in enumerate(zip(sample_ids, target_list, strict=True)):
        cells = _prediction_cells(
            sample_id, target, top_indices[row], top_probabilities[row], class_names
        )
        if target is not None:  # after "correct"
            cells.insert(5, f"{probabilities[row, target].item():.6f}")
        writer.writerow(cells)
    atomic_write_text(path, buffer.getvalue())


def _checked_probabilities(
    probabilities: torch.Tensor, num_samples: int, num_classes: int
) -> torch.Tensor:
    """Probabilities as float64 [N, K] on the CPU, or an error that says what is wrong."""
    if not isinstance(probabilities, torch.Tensor) or probabilities.dim() != 2:
        raise CnnlabError("probabilities must be a [N, K] tensor of class probabilities.")
    probabilities = probabilities.detach().cpu().double()  # [N, K]
    if probabilities.shape != (num_samples, num_classes):
        raise CnnlabError(
            f"probabilities have shape {tuple(probabilities.shape)}, expected "
            f"[{num_samples}, {num_classes}] (one row per sample id, one column per class)."
        )
    in_range = (probabilities >= 0) & (probabilities <= 1)  # False for NaN too
    if not in_range.all():
        raise CnnlabError(
            "probabilities must lie between 0 and 1, but they range from "
            f"{probabilities.min().item():.4g} to {probabilities.max().item():.4g} (or hold NaN). "
            "If these are logits, pass torch.softmax(logits, dim=1) instead."
        )
    return probabilities


def _prediction_cells(
    sample_id: str,
    target: int | None,
    top_indices: torch.Tensor,
    top_probabilities: torch.Tensor,
    class_names: list[str],
) -> list[str]:
    """One CSV row; `top_indices` and `top_probabilities` [k] are sorted, most probable first."""
    predicted = int(top_indices[0])
    cells = [sample_id]
    if target is not None:
        cells.append(class_names[target])
    cells += [class_names[predicted], f"{top_probabilities[0].item():.6f}"]
    if target is not None:
        cells.append("1" if predicted == target else "0")
    cells += [
        f"{class_names[index]}:{probability:.6f}"
        for index, probability in zip(top_indices.tolist(), top_probabilities.tolist(), strict=True)
    ]
    return cells
