"""Classification metrics in torch: the one implementation that training's checkpoint selection,
`cnnlab evaluate` and `cnnlab explain` all call.

Definitions follow scikit-learn (zero_division=0) so its functions serve as test oracles.
"""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError


def check_labels(name: str, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """`labels` as int64 class indices [N] on the CPU, or an error that says what is wrong."""
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


def safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Element-wise division that gives 0.0 where the denominator is 0 (zero_division=0)."""
    has_value = denominator > 0
    return torch.where(has_value, numerator / torch.where(has_value, denominator, 1.0), 0.0)


def confusion_matrix(
    targets: torch.Tensor, predictions: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Counts as int64 [K, K]: rows are true classes, columns are predicted classes."""
    if num_classes < 1:
        raise CnnlabError(f"num_classes must be at least 1, got {num_classes}.")
    targets = check_labels("targets", targets, num_classes)
    predictions = check_labels("predictions", predictions, num_classes)
    if len(targets) != len(predictions):
        raise CnnlabError(
            f"targets has {len(targets)} entries but predictions has {len(predictions)}; "
            "they must describe the same samples in the same order."
        )
    flat = torch.bincount(targets * num_classes + predictions, minlength=num_classes**2)
    return flat.reshape(num_classes, num_classes)


def summary_scores(counts: torch.Tensor) -> dict[str, float]:
    """Accuracy, balanced accuracy and Cohen's kappa of a confusion matrix [K, K].

    Balanced accuracy is the mean recall over the classes that occur in the targets (a class that
    is only predicted does not count), as scikit-learn's. Cohen's kappa is reported as 0.0 where
    it is undefined (every target and prediction is the same single class).
    """
    cm = counts.double()
    num_samples = cm.sum()
    support, predicted = cm.sum(dim=1), cm.sum(dim=0)  # true samples, predictions per class
    present = support > 0
    observed = cm.diagonal().sum() / num_samples
    expected = (support * predicted).sum() / num_samples**2
    kappa = ((observed - expected) / (1 - expected)).item() if expected < 1 else 0.0
    return {
        "accuracy": observed.item(),
        "balanced_accuracy": (cm.diagonal()[present] / support[present]).mean().item(),
        "cohen_kappa": kappa,
    }


def per_class_scores(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Precision, recall, F1 and support per class [K] (float64) of a confusion matrix [K, K]."""
    cm = counts.double()
    correct = cm.diagonal()
    support, predicted = cm.sum(dim=1), cm.sum(dim=0)
    return {
        "precision": safe_divide(correct, predicted),
        "recall": safe_divide(correct, support),
        "f1": safe_divide(2 * correct, support + predicted),
        "support": support,
    }


def top_k_accuracy(
    logits: torch.Tensor, targets: torch.Tensor, top_k: tuple[int, ...]
) -> dict[str, float]:
    """{"k": share of samples whose target is among the k highest logits}, for each k <= K."""
    if any(k < 1 for k in top_k):
        raise CnnlabError(f"top_k values must be at least 1, got {top_k}.")
    result = {}
    for k in sorted(set(top_k)):
        if k <= logits.shape[1]:
            hits = (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1)
            result[str(k)] = hits.double().mean().item()
    return result


def classification_metrics(
    logits: torch.Tensor,
    targets: torch.Tensor,
    class_names: list[str],
    top_k: tuple[int, ...] = (1, 5),
    predictions: torch.Tensor | None = None,
) -> dict:
    """Accuracy, top-k, balanced accuracy, kappa, per-class and macro/weighted scores as JSON types.

    Macro averages are plain means over all K classes, so a class absent from both targets and
    predictions counts as 0.0. `predictions` [N] are the decisions scored (default: the argmax
    of the logits; a two-class run's calibrated threshold gives others); top-k reads the logits.
    """
    logits, targets = _checked_logits(logits, targets, len(class_names))
    if predictions is None:
        predictions = logits.argmax(dim=1)
    counts = confusion_matrix(targets, predictions, len(class_names))  # [K, K]
    scores = per_class_scores(counts)
    support, summary = scores["support"], summary_scores(counts)
    return {
        "num_samples": len(targets),
        "accuracy": summary["accuracy"],
        "top_k_accuracy": top_k_accuracy(logits, targets, top_k),
        "balanced_accuracy": summary["balanced_accuracy"],
        "cohen_kappa": summary["cohen_kappa"],
        "macro_precision": scores["precision"].mean().item(),
        "macro_recall": scores["recall"].mean().item(),
        "macro_f1": scores["f1"].mean().item(),
        "weighted_f1": ((scores["f1"] * support).sum() / len(targets)).item(),
        "per_class": [
            {
                "class": name,
                "precision": scores["precision"][i].item(),
                "recall": scores["recall"][i].item(),
                "f1": scores["f1"][i].item(),
                "support": int(support[i].item()),
            }
            for i, name in enumerate(class_names)
        ],
        "confusion_matrix": counts.tolist(),
        "confusion_matrix_normalized": safe_divide(counts.double(), support[:, None]).tolist(),
    }


def _checked_logits(
    logits: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits as float64 [N, K] on the CPU, targets as int64 [N]), or a clear error."""
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
    targets = check_labels("targets", targets, num_classes)
    if len(targets) != len(logits):
        raise CnnlabError(
            f"logits have {len(logits)} rows but targets has {len(targets)} entries; "
            "they must describe the same samples in the same order."
        )
    return logits, targets
