"""What a lab asks of a two-class classifier: sensitivity, specificity, predictive values at a
decision threshold, ROC and precision-recall curves with their areas, the threshold chosen on
validation (Youden's J or a target sensitivity/specificity), and stratified bootstrap intervals.

scikit-learn's roc_curve / precision_recall_curve / roc_auc_score / average_precision_score are
the engine; the bootstrap is vectorised in torch (a [B, N] index matrix, AUC by Mann-Whitney).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.metrics import check_labels, safe_divide

CURVE_POINTS = 500  # the most points of a curve kept in eval JSON (the areas use them all)
BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class ThresholdRule:
    """How the decision threshold is chosen on validation: "youden", "sensitivity" or
    "specificity" (with `target`), or "fixed" (with `value`)."""

    kind: str
    target: float | None = None

    def describe(self) -> str:
        if self.kind == "youden":
            return "Youden's J"
        if self.kind == "fixed":
            return "fixed"
        return f"{self.kind} >= {self.target:g}"

    def to_text(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target:g}"


def parse_threshold_rule(text: str) -> ThresholdRule:
    """--threshold: youden | sensitivity:0.95 | specificity:0.9 | a number in (0, 1)."""
    text = text.strip().lower()
    fix = "give youden, sensitivity:0.95, specificity:0.95 or a number between 0 and 1"
    if text == "youden":
        return ThresholdRule("youden")
    kind, colon, value = text.partition(":")
    try:
        number = float(value if colon else kind)
    except ValueError:
        raise ConfigError(f"--threshold {text!r} is not a rule; {fix}.") from None
    if colon and kind not in ("sensitivity", "specificity"):
        raise ConfigError(f"--threshold {text!r}: unknown rule {kind!r}; {fix}.")
    if not 0.0 < number < 1.0 and not (colon and number == 1.0):
        raise ConfigError(f"--threshold {text!r}: {number:g} is outside (0, 1); {fix}.")
    return ThresholdRule(kind, number) if colon else ThresholdRule("fixed", number)


def _checked(scores: torch.Tensor, targets: torch.Tensor) -> tuple:
    """(scores as float64 numpy [N], 0/1 targets as int64 numpy [N]) with both classes present."""
    targets = check_labels("targets", targets, 2)
    scores = torch.as_tensor(scores).detach().cpu().double().reshape(-1)
    if len(scores) != len(targets):
        raise CnnlabError(
            f"{len(scores)} scores but {len(targets)} targets; they must describe the same samples."
        )
    if targets.unique().numel() < 2:
        raise CnnlabError(
            "ROC and precision-recall need both classes among the targets, but only class "
            f"{targets[0].item()} occurs; score a split that holds both."
        )
    return scores.numpy(), targets.numpy()


def _thin(*columns) -> list[list[float]]:
    """Curve columns as lists, at most CURVE_POINTS evenly spaced points (ends kept)."""
    count = len(columns[0])
    if count > CURVE_POINTS:
        keep = torch.linspace(0, count - 1, CURVE_POINTS).round().long().unique().numpy()
        columns = tuple(column[keep] for column in columns)
    return [[float(v) for v in column] for column in columns]


def rates(called: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV of the calls `called` [N] (True: positive)."""
    targets = check_labels("targets", targets, 2).bool()
    called = torch.as_tensor(called).detach().cpu().bool()
    tp, fp = (called & targets).sum(), (called & ~targets).sum()
    fn, tn = (~called & targets).sum(), (~called & ~targets).sum()
    value = lambda a, b: safe_divide(a.double(), (a + b).double()).item()  # noqa: E731
    return {
        "sensitivity": value(tp, fn),
        "specificity": value(tn, fp),
        "ppv": value(tp, fp),
        "npv": value(tn, fn),
    }


def binary_scores(
    scores: torch.Tensor, targets: torch.Tensor, called: torch.Tensor
) -> dict[str, object]:
    """Rates of the calls, ROC AUC, average precision (PR AUC) and both curves as JSON types.

    `scores` [N] are probabilities of the positive class, `targets` [N] are 1 for positive,
    `called` [N] the decisions (True: called positive) whose rates are reported.
    """
    from sklearn.metrics import (  # imported here: sklearn is slow to import
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    x, y = _checked(scores, targets)
    fpr, tpr, _ = roc_curve(y, x)
    precision, recall, _ = precision_recall_curve(y, x)
    roc_points, pr_points = _thin(fpr, tpr), _thin(recall, precision)
    return {
        **rates(called, torch.from_numpy(y)),
        "roc_auc": float(roc_auc_score(y, x)),
        "pr_auc": float(average_precision_score(y, x)),
        "prevalence": float(y.mean()),
        "roc_curve": {"fpr": roc_points[0], "tpr": roc_points[1]},
        "pr_curve": {"recall": pr_points[0], "precision": pr_points[1]},
    }


def choose_threshold(
    scores: torch.Tensor, targets: torch.Tensor, rule: ThresholdRule
) -> tuple[float, dict[str, float]]:
    """The threshold `rule` picks on these (validation) scores, and the rates it gives there.

    youden: the largest sensitivity + specificity - 1 over every distinct score; sensitivity:T:
    the highest threshold whose sensitivity is at least T (so the best specificity that keeps
    it); specificity:T likewise the lowest threshold whose specificity is at least T. The value
    returned lies halfway between the deciding score and the next lower one.
    """
    from sklearn.metrics import roc_curve

    x, y = _checked(scores, targets)
    if rule.kind == "fixed":
        threshold = float(rule.target)
    else:
        fpr, tpr, thresholds = roc_curve(y, x, drop_intermediate=False)
        finite = torch.from_numpy(thresholds[1:])  # the first is +inf: nothing called positive
        fpr, tpr = torch.from_numpy(fpr[1:]), torch.from_numpy(tpr[1:])
        if rule.kind == "youden":
            index = int((tpr - fpr).argmax())  # first maximum: the highest such threshold
        elif rule.kind == "sensitivity":
            index = int((tpr >= rule.target - 1e-12).nonzero()[0])
        else:
            index = int((1 - fpr >= rule.target - 1e-12).nonzero()[-1])
        # Halfway to the next lower score: the same calls here, and a margin for scores that
        # differ in the last digits elsewhere (another runtime, batch size or precision).
        below = float(finite[index + 1]) if index + 1 < len(finite) else 0.0
        threshold = (float(finite[index]) + below) / 2
    return threshold, rates(torch.from_numpy(x) >= threshold, torch.from_numpy(y))


def _stratified_indices(targets: torch.Tensor, resamples: int, seed: int) -> torch.Tensor:
    """[B, N] indices: each row resamples every class with replacement, keeping its count, and
    lists the classes in order (class 0's indices first)."""
    generator = torch.Generator().manual_seed(seed)
    blocks = []
    for label in targets.unique().tolist():
        members = (targets == label).nonzero().squeeze(1)  # [n_c]
        picks = torch.randint(len(members), (resamples, len(members)), generator=generator)
        blocks.append(members[picks])
    return torch.cat(blocks, dim=1)


def _bootstrap_auc(
    scores: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor
) -> torch.Tensor:
    """ROC AUC of each resample [B] by Mann-Whitney: for each positive, the (weighted) share of
    negatives scored below it, ties counting half. `indices` [B, N] come from
    _stratified_indices for 0/1 targets: each row holds the n0 negatives' picks, then the n1
    positives'. Where a score falls among the sorted negatives is found once per sample."""
    negatives = (targets == 0).nonzero().squeeze(1)
    n0, resamples = len(negatives), len(indices)
    order = scores[negatives].argsort()
    negative_sorted = scores[negatives][order]  # [n0]
    rank = torch.zeros(len(targets), dtype=torch.long)
    rank[negatives[order]] = torch.arange(n0)  # a negative's place among the sorted negatives
    lower = torch.searchsorted(negative_sorted, scores, right=False)  # [N] negatives below
    upper = torch.searchsorted(negative_sorted, scores, right=True)  # [N] ... or tied
    offsets = torch.arange(resamples)[:, None] * n0
    counts = torch.bincount((rank[indices[:, :n0]] + offsets).reshape(-1), minlength=resamples * n0)
    below = torch.cat(  # [B, n0 + 1]: picks among the j lowest negatives
        [torch.zeros(resamples, 1, dtype=torch.long), counts.reshape(resamples, n0).cumsum(1)], 1
    )
    positives = indices[:, n0:]  # [B, n1]
    strictly = below.gather(1, lower[positives])
    tied = below.gather(1, upper[positives]) - strictly
    return (strictly + 0.5 * tied).double().sum(1) / (positives.shape[1] * n0)


def bootstrap_intervals(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    num_classes: int,
    scores: torch.Tensor | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Percentile intervals (95%) of accuracy and balanced accuracy, and for two classes with
    positive-class `scores` also of sensitivity, specificity and ROC AUC, from `resamples`
    stratified bootstrap resamples of the evaluated samples (class counts kept)."""
    targets = check_labels("targets", targets, num_classes)
    predictions = check_labels("predictions", predictions, num_classes)
    if resamples < 1:
        raise ConfigError(f"resamples must be at least 1, got {resamples}.")
    indices = _stratified_indices(targets, resamples, seed)  # [B, N], class blocks in order
    correct = (predictions == targets)[indices].double()  # [B, N]
    labels, counts = targets.unique(return_counts=True)
    recalls = torch.stack([block.mean(1) for block in correct.split(counts.tolist(), dim=1)], 1)
    samples = {"accuracy": correct.mean(1), "balanced_accuracy": recalls.mean(1)}
    if scores is not None and num_classes == 2 and len(labels) == 2:
        scores = torch.as_tensor(scores).detach().cpu().double().reshape(-1)
        samples["specificity"], samples["sensitivity"] = recalls[:, 0], recalls[:, 1]
        samples["roc_auc"] = _bootstrap_auc(scores, targets, indices)
    tail = (1 - CONFIDENCE) / 2
    levels = torch.tensor([tail, 1 - tail], dtype=torch.float64)
    return {name: torch.quantile(values, levels).tolist() for name, values in samples.items()}
