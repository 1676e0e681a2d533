"""The evaluation's outputs: a terminal table of the metrics, a confusion-matrix PNG, a reliability
diagram, ROC and precision-recall curves (two classes) and a CSV of predictions. The metrics
themselves are computed in `cnnlab.metrics`, `cnnlab.calibration` and `cnnlab.binary_metrics`.
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
    lines += _lab_lines(metrics)

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


def _lab_lines(metrics: dict) -> list[str]:
    """The calibration and two-class lines, with 95% intervals where the bootstrap gave them."""
    intervals = metrics.get("confidence_intervals", {})

    def line(label: str, key: str, value: float) -> str:
        interval = intervals.get(key)
        shown = f"  95% CI [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else ""
        return f"{label:<19}{value:.4f}{shown}"

    lines = [
        line(key.replace("_", " "), key, metrics[key])
        for key in ("accuracy", "balanced_accuracy")
        if key in intervals
    ]
    binary = metrics.get("binary")
    if binary:
        threshold = binary["threshold"]
        rule = "argmax" if threshold is None else f"called when p >= {threshold:.4g}"
        lines.append(f"positive class     {binary['positive_class']} ({rule})")
        if threshold is not None:
            lines.append("(accuracy and the table use this threshold; top-k ranks the logits)")
        for key in ("sensitivity", "specificity", "ppv", "npv", "roc_auc", "pr_auc"):
            lines.append(
                line(key.replace("_", " ").replace("pr auc", "pr auc (ap)"), key, binary[key])
            )
    if "calibration_error" in metrics:
        error = metrics["calibration_error"]
        lines.append(f"{'ece':<19}{error['ece']:.4f} ({error['bins']} bins, top-label)")
    if intervals:
        lines.append(f"(CI: stratified percentile bootstrap, {intervals['resamples']} resamples)")
    return lines


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


def _new_figure(width: float, height: float):
    """A matplotlib Figure on its own Agg canvas (the caller's pyplot state stays untouched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _write_png(figure, path: str | os.PathLike) -> None:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def save_reliability_png(reliability: dict, path: str | os.PathLike, title: str = "") -> None:
    """The reliability diagram of cnnlab.calibration.reliability's bins: accuracy against mean
    confidence per bin (bars), the diagonal of perfect calibration, and the bins' sample counts."""
    bins = reliability["bins"]
    width = 1.0 / bins
    left = [i * width for i in range(bins)]
    figure = _new_figure(5.5, 6.0)
    axes, counts = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    axes.bar(
        left,
        reliability["bin_accuracy"],
        width=width,
        align="edge",
        edgecolor="black",
        color="tab:blue",
        label="accuracy",
    )
    gap = [
        c - a
        for c, a in zip(reliability["bin_confidence"], reliability["bin_accuracy"], strict=True)
    ]
    axes.bar(
        left,
        gap,
        bottom=reliability["bin_accuracy"],
        width=width,
        align="edge",
        color="tab:red",
        alpha=0.3,
        label="gap to mean confidence",
    )
    axes.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left", fontsize=8)
    axes.set_title(f"{title}\nECE {reliability['ece']:.4f}" if title else "")
    counts.bar(left, reliability["bin_count"], width=width, align="edge", color="gray")
    counts.set_xlabel("confidence (top-label probability)")
    counts.set_ylabel("samples")
    counts.set_xlim(0, 1)
    _write_png(figure, path)


def save_roc_pr_png(binary: dict, path: str | os.PathLike, title: str = "") -> None:
    """ROC and precision-recall curves of cnnlab.binary_metrics.binary_scores, side by side,
    with the operating point of the threshold in use."""
    figure = _new_figure(10.0, 4.8)
    roc, pr = figure.subplots(1, 2)
    roc.plot(binary["roc_curve"]["fpr"], binary["roc_curve"]["tpr"], color="tab:blue")
    roc.plot([0, 1], [0, 1], "k--", linewidth=1)
    roc.plot(
        [1 - binary["specificity"]],
        [binary["sensitivity"]],
        "o",
        color="tab:red",
        label="operating point",
    )
    roc.set(
        xlabel="1 - specificity",
        ylabel="sensitivity",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"ROC (AUC {binary['roc_auc']:.4f})",
    )
    pr.plot(
        binary["pr_curve"]["recall"],
        binary["pr_curve"]["precision"],
        color="tab:green",
        drawstyle="steps-post",
    )
    pr.axhline(binary["prevalence"], color="k", linestyle="--", linewidth=1, label="chance")
    pr.plot([binary["sensitivity"]], [binary["ppv"]], "o", color="tab:red", label="operating point")
    pr.set(
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=f"Precision-recall (AP {binary['pr_auc']:.4f})",
    )
    roc.legend(loc="lower right", fontsize=8)
    pr.legend(loc="lower left", fontsize=8)
    if title:
        figure.suptitle(f"{title}: positive class {binary['positive_class']}")
    _write_png(figure, path)


def write_predictions_csv(
    path: str | os.PathLike,
    sample_ids: list[str],
    targets: torch.Tensor | None,
    probabilities: torch.Tensor,
    class_names: list[str],
    top_k: int = 3,
    predictions: torch.Tensor | None = None,
    positive: int | None = None,
) -> None:
    """One row per sample: sample, true, predicted, confidence, correct (1/0), true_probability,
    top1..topk. The top columns read "name:probability"; true, correct and true_probability (the
    probability of the true class, so the loss is known for every row) need targets.

    `predictions` [N] are the decisions (default: the argmax; confidence is the probability of
    the predicted class); with `positive`, a last column positive_probability holds that
    class's probability (a two-class run's score).
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
    if predictions is None:
        predictions = sorted_indices[:, 0]
    chosen = probabilities.gather(1, predictions[:, None].long())  # [N, 1]
    has_targets = targets is not None
    header = ["sample"] + (["true"] if has_targets else []) + ["predicted", "confidence"]
    header += ["correct", "true_probability"] if has_targets else []
    header += [f"top{i + 1}" for i in range(top_k)]
    header += ["positive_probability"] if positive is not None else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    target_list = targets.tolist() if has_targets else [None] * len(sample_ids)
    for row, (sample_id, target) in enumerate(zip(sample_ids, target_list, strict=True)):
        cells = _prediction_cells(
            sample_id,
            target,
            torch.cat([predictions[row : row + 1], top_indices[row]]),
            torch.cat([chosen[row], top_probabilities[row]]),
            class_names,
        )
        if target is not None:  # after "correct"
            cells.insert(5, f"{probabilities[row, target].item():.6f}")
        if positive is not None:
            cells.append(f"{probabilities[row, positive].item():.6f}")
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
    """One CSV row; `top_indices` and `top_probabilities` [1 + k] are the predicted class and its
    probability, then the top k sorted, most probable first."""
    predicted = int(top_indices[0])
    cells = [sample_id]
    if target is not None:
        cells.append(class_names[target])
    cells += [class_names[predicted], f"{top_probabilities[0].item():.6f}"]
    if target is not None:
        cells.append("1" if predicted == target else "0")
    cells += [
        f"{class_names[index]}:{probability:.6f}"
        for index, probability in zip(
            top_indices[1:].tolist(), top_probabilities[1:].tolist(), strict=True
        )
    ]
    return cells
