"""Classification metrics in torch, with a terminal table, a confusion-matrix PNG and a CSV.

Definitions follow scikit-learn (zero_division=0) so its functions serve as test oracles.
"""

from __future__ import annotations

import csv
import io
import os

import torch

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_bytes, atomic_write_text


def _check_labels(name: str, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        raise CnnlabError(f"{name} must be a torch.Tensor of class indices, got {type(labels)}.")
    if labels.dim() != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise CnnlabError(
            f"{name} must be a 1-D integer tensor of class indices, got shape "
            f"{tuple(labels.shape)} and dtype {labels.dtype}. Pass class indices, not one-hot "
            "vectors or scores (use .argmax(dim=1) for scores)."
        )
    labels = labels.detach().cpu().long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0].item()
        raise CnnlabError(
            f"{name} contains label {bad}, but there are {num_classes} classes (expected labels "
            f"0..{num_classes - 1}). Check that class_names matches the data set's classes."
        )
    return labels


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Element-wise division that gives 0.0 where the denominator is 0 (zero_division=0)."""
    has_value = denominator > 0
    return torch.where(has_value, numerator / torch.where(has_value, denominator, 1.0), 0.0)


def confusion_matrix(
    targets: torch.Tensor, predictions: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Counts as int64 [K, K]: rows are true classes, columns are predicted classes."""
    if num_classes < 1:
        raise CnnlabError(f"num_classes must be at least 1, got {num_classes}.")
    targets = _check_labels("targets", targets, num_classes)
    predictions = _check_labels("predictions", predictions, num_classes)
    if len(targets) != len(predictions):
        raise CnnlabError(
            f"targets has {len(targets)} entries but predictions has {len(predictions)}; "
            "they must describe the same samples in the same order."
        )
    flat = torch.bincount(targets * num_classes + predictions, minlength=num_classes**2)
    return flat.reshape(num_classes, num_classes)


def classification_metrics(
    logits: torch.Tensor,
    targets: torch.Tensor,
    class_names: list[str],
    top_k: tuple[int, ...] = (1, 5),
) -> dict:
    """Accuracy, top-k, balanced accuracy, kappa, per-class and macro/weighted scores as JSON types.

    Macro averages are plain means over all K classes, so a class absent from both targets and
    predictions counts as 0.0. Cohen's kappa is reported as 0.0 when it is undefined (every
    target and prediction is the same single class).
    """
    num_classes = len(class_names)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
        raise CnnlabError(f"logits must be a [N, K] tensor, got {shape}.")
    logits = logits.detach().cpu().double()  # [N, K]
    if logits.shape[1] != num_classes:
        raise CnnlabError(
            f"logits have {logits.shape[1]} columns but {num_classes} class names were given; "
            "pass the class names of the model's output layer, in order."
        )
    if logits.shape[0] == 0:
        raise CnnlabError("logits are empty (0 samples); evaluate on at least one sample.")
    if not torch.isfinite(logits).all():
        raise CnnlabError("logits contain NaN or infinite values; the model output is broken.")
    targets = _check_labels("targets", targets, num_classes)
    if len(targets) != len(logits):
        raise CnnlabError(
            f"logits have {len(logits)} rows but targets has {len(targets)} entries; "
            "they must describe the same samples in the same order."
        )
    if any(k < 1 for k in top_k):
        raise CnnlabError(f"top_k values must be at least 1, got {top_k}.")

    num_samples = len(targets)
    counts = confusion_matrix(targets, logits.argmax(dim=1), num_classes)  # [K, K]
    cm = counts.double()
    correct = cm.diagonal()
    support = cm.sum(dim=1)  # true samples per class
    predicted = cm.sum(dim=0)  # predictions per class
    precision = _safe_divide(correct, predicted)
    recall = _safe_divide(correct, support)
    f1 = _safe_divide(2 * correct, support + predicted)

    top_k_accuracy = {}
    for k in sorted(set(top_k)):
        if k <= num_classes:
            hits = (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1)
            top_k_accuracy[str(k)] = hits.double().mean().item()

    observed = correct.sum() / num_samples
    expected = (support * predicted).sum() / num_samples**2
    kappa = ((observed - expected) / (1 - expected)).item() if expected < 1 else 0.0

    return {
        "num_samples": num_samples,
        "accuracy": observed.item(),
        "top_k_accuracy": top_k_accuracy,
        "balanced_accuracy": recall[support > 0].mean().item(),
        "cohen_kappa": kappa,
        "macro_precision": precision.mean().item(),
        "macro_recall": recall.mean().item(),
        "macro_f1": f1.mean().item(),
        "weighted_f1": ((f1 * support).sum() / num_samples).item(),
        "per_class": [
            {
                "class": name,
                "precision": precision[i].item(),
                "recall": recall[i].item(),
                "f1": f1[i].item(),
                "support": int(support[i].item()),
            }
            for i, name in enumerate(class_names)
        ],
        "confusion_matrix": counts.tolist(),
        "confusion_matrix_normalized": _safe_divide(cm, support[:, None]).tolist(),
    }


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
    normalized = _safe_divide(counts.double(), counts.sum(dim=1, keepdim=True).double())

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
    """One row per sample: sample, true, predicted, confidence, correct (1/0), top1..topk.

    The top columns read "name:probability"; true and correct are left out when targets is None.
    """
    num_classes = len(class_names)
    if not isinstance(probabilities, torch.Tensor) or probabilities.dim() != 2:
        raise CnnlabError("probabilities must be a [N, K] tensor of class probabilities.")
    probabilities = probabilities.detach().cpu().double()  # [N, K]
    if probabilities.shape != (len(sample_ids), num_classes):
        raise CnnlabError(
            f"probabilities have shape {tuple(probabilities.shape)}, expected "
            f"[{len(sample_ids)}, {num_classes}] (one row per sample id, one column per class)."
        )
    in_range = (probabilities >= 0) & (probabilities <= 1)  # False for NaN too
    if not in_range.all():
        raise CnnlabError(
            "probabilities must lie between 0 and 1, but they range from "
            f"{probabilities.min().item():.4g} to {probabilities.max().item():.4g} (or hold NaN). "
            "If these are logits, pass torch.softmax(logits, dim=1) instead."
        )
    if targets is not None:
        targets = _check_labels("targets", targets, num_classes)
        if len(targets) != len(sample_ids):
            raise CnnlabError(
                f"targets has {len(targets)} entries but there are {len(sample_ids)} sample ids; "
                "they must describe the same samples in the same order."
            )
    if top_k < 1:
        raise CnnlabError(f"top_k must be at least 1, got {top_k}.")
    top_k = min(top_k, num_classes)

    # A stable sort, unlike topk, breaks ties towards the lower index as argmax does, so the
    # predicted class and top1 always agree with argmax.
    sorted_probabilities, sorted_indices = probabilities.sort(dim=1, descending=True, stable=True)
    top_probabilities, top_indices = sorted_probabilities[:, :top_k], sorted_indices[:, :top_k]
    header = ["sample"] + (["true"] if targets is not None else []) + ["predicted", "confidence"]
    header += (["correct"] if targets is not None else []) + [f"top{i + 1}" for i in range(top_k)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row, sample_id in enumerate(sample_ids):
        predicted = int(top_indices[row, 0])
        cells = [sample_id]
        if targets is not None:
            cells.append(class_names[int(targets[row])])
        cells += [class_names[predicted], f"{top_probabilities[row, 0].item():.6f}"]
        if targets is not None:
            cells.append("1" if predicted == int(targets[row]) else "0")
        cells += [
            f"{class_names[index]}:{probability:.6f}"
            for index, probability in zip(
                top_indices[row].tolist(), top_probabilities[row].tolist(), strict=True
            )
        ]
        writer.writerow(cells)
    atomic_write_text(path, buffer.getvalue())
