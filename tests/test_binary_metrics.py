"""What a lab asks of a classifier, the numbers: two-class rates, ROC/PR curves and areas against
scikit-learn, thresholds chosen on validation against brute-force scans, ECE by hand, temperature
scaling against a grid search, and the vectorised stratified bootstrap against per-resample
scikit-learn."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    precision_recall_curve,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from cnnlab.binary_metrics import (
    ThresholdRule,
    _bootstrap_auc,
    _stratified_indices,
    binary_scores,
    bootstrap_intervals,
    choose_threshold,
    parse_threshold_rule,
    rates,
)
from cnnlab.calibration import (
    calibrated_probabilities,
    fit_temperature,
    negative_log_likelihood,
    reliability,
)
from cnnlab.errors import CnnlabError


def scored_case(n: int, seed: int = 0, ties: bool = False):
    """Positive-class scores [N] (float64) and 0/1 targets [N], positives scoring higher."""
    generator = torch.Generator().manual_seed(seed)
    targets = (torch.rand(n, generator=generator) < 0.35).long()
    scores = (torch.randn(n, generator=generator, dtype=torch.float64) + 1.3 * targets).sigmoid()
    if ties:
        scores = (scores * 20).round() / 20
    return scores, targets


def test_rates_match_sklearn_recalls_and_precisions():
    scores, targets = scored_case(300)
    called = scores >= 0.6
    result = rates(called, targets)
    y, p = targets.numpy(), called.long().numpy()
    assert result["sensitivity"] == pytest.approx(recall_score(y, p, pos_label=1))
    assert result["specificity"] == pytest.approx(recall_score(y, p, pos_label=0))
    assert result["ppv"] == pytest.approx(((p == 1) & (y == 1)).sum() / (p == 1).sum())
    assert result["npv"] == pytest.approx(((p == 0) & (y == 0)).sum() / (p == 0).sum())


@pytest.mark.parametrize("ties", [False, True])
def test_binary_scores_match_sklearn_areas_and_curves(ties):
    scores, targets = scored_case(400, ties=ties)
    result = binary_scores(scores, targets, scores >= 0.5)
    y, x = targets.numpy(), scores.numpy()
    assert result["roc_auc"] == pytest.approx(roc_auc_score(y, x), abs=1e-12)
    assert result["pr_auc"] == pytest.approx(average_precision_score(y, x), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, x)
    precision, recall, _ = precision_recall_curve(y, x)
    assert result["roc_curve"] == {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    assert result["pr_curve"] == {"recall": recall.tolist(), "precision": precision.tolist()}
    assert result["prevalence"] == pytest.approx(y.mean())


def test_long_curves_are_thinned_but_keep_their_ends():
    scores, targets = scored_case(3000, seed=3)
    result = binary_scores(scores, targets, scores >= 0.5)
    curve = result["pr_curve"]
    assert len(curve["recall"]) <= 500
    precision, recall, _ = precision_recall_curve(targets.numpy(), scores.numpy())
    assert curve["recall"][0] == recall[0] and curve["recall"][-1] == recall[-1]
    assert curve["precision"][-1] == precision[-1]


def test_one_class_only_is_a_clear_error():
    with pytest.raises(CnnlabError, match="both classes"):
        binary_scores(torch.rand(5), torch.ones(5, dtype=torch.long), torch.ones(5, dtype=bool))


def brute_force_youden(scores: torch.Tensor, targets: torch.Tensor) -> float:
    best = -math.inf
    for threshold in scores.unique().tolist():
        called = scores >= threshold
        tpr = (called & (targets == 1)).sum().double() / (targets == 1).sum()
        fpr = (called & (targets == 0)).sum().double() / (targets == 0).sum()
        best = max(best, (tpr - fpr).item())
    return best


@pytest.mark.parametrize("ties", [False, True])
def test_youden_threshold_reaches_the_brute_force_maximum(ties):
    scores, targets = scored_case(250, seed=1, ties=ties)
    threshold, result = choose_threshold(scores, targets, ThresholdRule("youden"))
    j = result["sensitivity"] + result["specificity"] - 1
    assert j == pytest.approx(brute_force_youden(scores, targets), abs=1e-12)
    deciding = scores[scores >= threshold].min()  # halfway below the deciding score
    assert threshold == pytest.approx((deciding + scores[scores < deciding].max()).item() / 2)


@pytest.mark.parametrize("target", [0.8, 0.95, 1.0])
def test_sensitivity_target_is_met_with_the_best_specificity(target):
    scores, targets = scored_case(250, seed=2)
    threshold, result = choose_threshold(
        scores, targets, parse_threshold_rule(f"sensitivity:{target}")
    )
    assert result["sensitivity"] >= target
    # brute force: no threshold keeping the target gives a higher specificity
    best = max(
        rates(scores >= t, targets)["specificity"]
        for t in scores.unique().tolist()
        if rates(scores >= t, targets)["sensitivity"] >= target
    )
    assert result["specificity"] == pytest.approx(best)


def test_specificity_target_and_fixed_threshold():
    scores, targets = scored_case(250, seed=4)
    _, result = choose_threshold(scores, targets, parse_threshold_rule("specificity:0.9"))
    assert result["specificity"] >= 0.9
    best = max(
        rates(scores >= t, targets)["sensitivity"]
        for t in scores.unique().tolist()
        if rates(scores >= t, targets)["specificity"] >= 0.9
    )
    assert result["sensitivity"] == pytest.approx(best)
    threshold, fixed = choose_threshold(scores, targets, parse_threshold_rule("0.3"))
    assert threshold == 0.3 and fixed == rates(scores >= 0.3, targets)


@pytest.mark.parametrize("text", ["younden", "sensitivity:1.5", "recall:0.9", "0", "1.2", "x:y"])
def test_bad_threshold_rules_say_what_is_accepted(text):
    with pytest.raises(CnnlabError, match="youden, sensitivity:0.95"):
        parse_threshold_rule(text)


def test_ece_and_reliability_bins_by_hand():
    # 2 bins, [0, 0.5] and (0.5, 1]: top-label confidences 0.9 (right), 0.8 (wrong), 0.6 (right)
    # and 0.55 (right) all fall in the second
    probabilities = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
    targets = torch.tensor([0, 0, 0, 1])
    result = reliability(probabilities, targets, bins=2)
    # mean confidence (0.9 + 0.8 + 0.6 + 0.55) / 4 = 0.7125, accuracy 3/4
    assert result["bin_count"] == [0, 4]
    assert result["bin_confidence"][1] == pytest.approx(0.7125)
    assert result["bin_accuracy"] == [0.0, 0.75]
    assert result["ece"] == pytest.approx(abs(0.75 - 0.7125))
    # three classes, 10 bins: |acc - conf| per bin, weighted by the bin's share
    probabilities = torch.tensor([[0.35, 0.33, 0.32], [0.05, 0.9, 0.05], [0.1, 0.15, 0.75]])
    result = reliability(probabilities, torch.tensor([1, 1, 2]), bins=10)
    expected = (abs(0 - 0.35) + abs(1 - 0.9) + abs(1 - 0.75)) / 3
    assert result["ece"] == pytest.approx(expected)
    assert (
        result["bin_count"][3] == 1 and result["bin_count"][8] == 1 and result["bin_count"][7] == 1
    )


def test_temperature_fit_finds_the_grid_minimum():
    generator = torch.Generator().manual_seed(5)
    targets = torch.randint(0, 4, (600,), generator=generator)
    logits = torch.randn(600, 4, generator=generator, dtype=torch.float64)
    logits[torch.arange(600), targets] += 1.0
    logits *= 3.0  # over-confident: the best temperature is above 1
    fitted = fit_temperature(logits, targets)
    grid = np.exp(np.linspace(math.log(0.05), math.log(20), 4001))
    losses = [negative_log_likelihood(logits, targets, t) for t in grid]
    best = grid[int(np.argmin(losses))]
    assert fitted > 1 and fitted == pytest.approx(best, rel=5e-3)
    assert negative_log_likelihood(logits, targets, fitted) <= min(losses) + 1e-9
    # the probabilities it gives are softmax(logits / T)
    expected = torch.softmax(logits / fitted, dim=1)
    assert torch.allclose(calibrated_probabilities(logits, fitted), expected)


def test_stratified_resamples_keep_every_class_count():
    targets = torch.tensor([0, 1, 1, 0, 2, 2, 2, 1, 0, 0])
    indices = _stratified_indices(targets, 50, seed=0)
    picked = targets[indices]  # [B, N]
    assert (picked == targets.sort().values).all()  # class blocks in order, counts kept


@pytest.mark.parametrize("ties", [False, True])
def test_vectorised_bootstrap_auc_matches_sklearn_per_resample(ties):
    scores, targets = scored_case(300, seed=6, ties=ties)
    indices = _stratified_indices(targets, 20, seed=1)
    fast = _bootstrap_auc(scores, targets, indices)
    for row, value in zip(indices, fast, strict=True):
        assert value.item() == pytest.approx(roc_auc_score(targets[row], scores[row]), abs=1e-12)


def test_bootstrap_intervals_match_a_per_resample_sklearn_loop():
    scores, targets = scored_case(200, seed=7)
    predictions = (scores >= 0.5).long()
    result = bootstrap_intervals(predictions, targets, 2, scores, resamples=200, seed=3)
    indices = _stratified_indices(targets, 200, seed=3)
    oracle = {
        "accuracy": [accuracy_score(targets[i], predictions[i]) for i in indices],
        "balanced_accuracy": [balanced_accuracy_score(targets[i], predictions[i]) for i in indices],
        "sensitivity": [recall_score(targets[i], predictions[i]) for i in indices],
        "specificity": [recall_score(targets[i], predictions[i], pos_label=0) for i in indices],
        "roc_auc": [roc_auc_score(targets[i], scores[i]) for i in indices],
    }
    for name, values in oracle.items():
        expected = np.quantile(values, [0.025, 0.975])  # numpy's linear = torch.quantile's
        assert result[name] == pytest.approx(expected.tolist(), abs=1e-12), name


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_n():
    widths = []
    for n in (100, 1600):
        scores, targets = scored_case(n, seed=8)
        predictions = (scores >= 0.5).long()
        result = bootstrap_intervals(predictions, targets, 2, scores, resamples=500)
        accuracy = (predictions == targets).double().mean().item()
        auc = roc_auc_score(targets, scores)
        assert result["accuracy"][0] <= accuracy <= result["accuracy"][1]
        assert result["roc_auc"][0] <= auc <= result["roc_auc"][1]
        widths.append(result["roc_auc"][1] - result["roc_auc"][0])
    assert widths[1] < widths[0] / 2  # ~1/sqrt(n): 16x the samples, about a quarter the width


def test_multiclass_bootstrap_has_no_two_class_entries():
    generator = torch.Generator().manual_seed(9)
    targets = torch.randint(0, 3, (90,), generator=generator)
    result = bootstrap_intervals(targets.flip(0), targets, 3, resamples=50)
    assert set(result) == {"accuracy", "balanced_accuracy"}
