"""Do the probabilities mean what they say? Expected calibration error and the reliability
diagram's bins (top-label confidence, equal-width bins), and temperature scaling: one scalar T
that divides the logits, fitted on validation by minimising the negative log-likelihood
(Guo et al. 2017, "On Calibration of Modern Neural Networks").
"""

from __future__ import annotations

import math

import torch

from cnnlab.errors import CnnlabError
from cnnlab.metrics import check_labels

CALIBRATION_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)  # the search interval of T; the edges mean the fit is unusual


def reliability(
    probabilities: torch.Tensor, targets: torch.Tensor, bins: int = CALIBRATION_BINS
) -> dict[str, object]:
    """ECE and the reliability diagram's bins for probabilities [N, K] and targets [N].

    Each sample falls in the bin of its top-label confidence (max probability; bin b holds
    (b/bins, (b+1)/bins], the first also 0); ECE is the mean over bins of |accuracy - mean
    confidence|, weighted by the share of samples in the bin.
    """
    if bins < 1:
        raise CnnlabError(f"bins must be at least 1, got {bins}.")
    probabilities = torch.as_tensor(probabilities).detach().cpu().double()  # [N, K]
    targets = check_labels("targets", targets, probabilities.shape[1])
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == targets).double()
    which = (confidence * bins).ceil().long().clamp(1, bins) - 1  # [N] bin index
    count = torch.bincount(which, minlength=bins).double()
    confidence_sum = torch.bincount(which, confidence, minlength=bins)
    correct_sum = torch.bincount(which, correct, minlength=bins)
    filled = count > 0
    mean_confidence = torch.where(filled, confidence_sum / count.clamp(min=1), 0.0)
    accuracy = torch.where(filled, correct_sum / count.clamp(min=1), 0.0)
    ece = ((accuracy - mean_confidence).abs() * count).sum() / count.sum()
    return {
        "ece": ece.item(),
        "bins": bins,
        "bin_count": count.long().tolist(),
        "bin_confidence": mean_confidence.tolist(),
        "bin_accuracy": accuracy.tolist(),
    }


def negative_log_likelihood(logits: torch.Tensor, targets: torch.Tensor, temperature: float):
    """Mean cross-entropy of softmax(logits / temperature) against targets, as a float."""
    logits = torch.as_tensor(logits).detach().cpu().double()
    return torch.nn.functional.cross_entropy(logits / temperature, targets.long()).item()


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) on these (validation) samples.

    The NLL is convex in 1/T, so a bounded scalar search over log T finds its one minimum.
    """
    from scipy.optimize import minimize_scalar  # imported here: scipy is slow to import

    logits = torch.as_tensor(logits).detach().cpu().double()  # [N, K]
    targets = check_labels("targets", targets, logits.shape[1])
    if not len(targets):
        raise CnnlabError("Temperature scaling needs at least one validation sample.")
    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, targets, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return math.exp(found.x)


def calibrated_probabilities(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """softmax(logits / T) [N, K] in float64; T = 1 is the model's own probabilities."""
    if not temperature > 0:
        raise CnnlabError(f"The temperature must be positive, got {temperature}.")
    return torch.softmax(torch.as_tensor(logits).detach().cpu().double() / temperature, dim=1)
