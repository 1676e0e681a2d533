"""Calibrating a trained run on its validation split (`cnnlab calibrate`), and the decision that
evaluate and predict then take: probabilities softmax(logits / T), and for two classes "positive
when p(positive) >= threshold" instead of the argmax.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.binary_metrics import (
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    binary_scores,
    bootstrap_intervals,
    choose_threshold,
    parse_threshold_rule,
)
from cnnlab.calibration import (
    calibrated_probabilities,
    fit_temperature,
    negative_log_likelihood,
    reliability,
)
from cnnlab.errors import ConfigError, DataError
from cnnlab.run.calibration import CalibrationRecord, calibration_path, read_calibration
from cnnlab.run.load import LoadedRun

log = logging.getLogger("cnnlab.inference")
CALIBRATION_SPLIT = "val"  # never test: the threshold would be tuned on the numbers it reports


def positive_index(class_names: list[str], positive_class: str | None) -> int:
    """The index of the positive class: the named one, by default the second."""
    if positive_class is None:
        return 1
    if positive_class not in class_names:
        raise ConfigError(
            f"--positive-class {positive_class!r} is not one of the run's classes "
            f"({', '.join(class_names)}); give one of them."
        )
    return class_names.index(positive_class)


@dataclass(frozen=True)
class Decision:
    """How logits become probabilities and predicted classes for one run."""

    temperature: float = 1.0
    positive: int | None = None  # two classes: the positive class's index
    threshold: float | None = None  # None: argmax
    record: CalibrationRecord | None = None
    source: str | None = None  # the calibration.json used

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return calibrated_probabilities(logits, self.temperature)  # [N, K]

    def predictions(self, probabilities: torch.Tensor) -> torch.Tensor:
        if self.threshold is None or self.positive is None:
            return probabilities.argmax(dim=1)
        called = probabilities[:, self.positive] >= self.threshold
        return torch.where(called, self.positive, 1 - self.positive)

    def note_if_fitted_on(self, split: str, notify: Callable[[str], None]) -> None:
        """Scores on the split the calibration was fitted on are optimistic: say so."""
        if self.record is not None and self.record.split == split:
            notify(
                f"note: calibration.json was fitted on the {split} split, so its scores here are "
                "optimistic; the test split gives unbiased ones."
            )

    def summary(self) -> dict[str, Any]:
        """What the evaluation JSON records about the decision."""
        return {
            "file": self.source,
            "temperature": self.temperature if self.record else None,
            "threshold": self.threshold,
            "rule": self.record.rule if self.record else None,
            "positive_index": self.positive,
        }


def decision_for(
    loaded: LoadedRun,
    which: str,
    use_calibration: bool = True,
    positive_class: str | None = None,
    notify: Callable[[str], None] = log.info,
) -> Decision:
    """The run's Decision: from RUN/calibration.json when present and `use_calibration`, and
    fitted on the same checkpoint; else argmax of the raw softmax. Tells `notify` in one line
    when calibration.json is used (or found but not used)."""
    names = list(loaded.class_names)
    if positive_class is not None:
        positive_index(names, positive_class)  # a name that is no class is refused on any run
    record = read_calibration(loaded.run, names) if use_calibration else None
    path = str(calibration_path(loaded.run))
    if record is not None and record.checkpoint != which:
        notify(
            f"{path} was fitted on the {record.checkpoint} checkpoint, not {which}: it is not "
            f"used. Run `cnnlab calibrate {loaded.run.path} --checkpoint {which}` to fit it."
        )
        record = None
    binary = len(names) == 2
    if record is None:
        return Decision(positive=positive_index(names, positive_class) if binary else None)
    if positive_class is not None and record.positive_class not in (None, positive_class):
        raise ConfigError(
            f"--positive-class {positive_class!r} differs from {record.positive_class!r}, for "
            f"which {path} chose its threshold. Calibrate again with --positive-class "
            f"{positive_class}, or pass --no-calibration."
        )
    chosen = record.positive_class or positive_class
    notify(record.describe(path))
    return Decision(
        temperature=record.temperature or 1.0,
        positive=positive_index(names, chosen) if binary else None,
        threshold=record.threshold,
        record=record,
        source=path,
    )


def calibrate_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    threshold: str | None = "youden",
    temperature: bool = True,
    positive_class: str | None = None,
) -> dict[str, Any]:
    """The fields of a CalibrationRecord fitted on these (validation) logits and labels."""
    if positive_class is not None:
        positive_index(class_names, positive_class)  # refused on any run, as in decision_for
    fitted = fit_temperature(logits, labels) if temperature else None
    raw, probabilities = (
        calibrated_probabilities(logits, t) for t in (1.0, fitted or 1.0)
    )  # [N, K] each
    validation = {
        "num_samples": len(labels),
        "ece_before": reliability(raw, labels)["ece"],
        "ece_after": reliability(probabilities, labels)["ece"],
        "nll_before": negative_log_likelihood(logits, labels, 1.0),
        "nll_after": negative_log_likelihood(logits, labels, fitted or 1.0),
    }
    fields = {"temperature": fitted, "validation": validation}
    if len(class_names) == 2 and threshold is not None:
        rule = parse_threshold_rule(threshold)
        positive = positive_index(class_names, positive_class)
        if (labels == positive).all() or (labels != positive).all():
            raise DataError(
                "The validation split holds only one class, so no threshold can be chosen on it; "
                "train with a larger --val-fraction, or pass --threshold NUMBER."
            )
        value, rates = choose_threshold(
            probabilities[:, positive], (labels == positive).long(), rule
        )
        validation.update({f"{name}_at_threshold": v for name, v in rates.items()})
        fields.update(positive_class=class_names[positive], threshold=value, rule=rule.to_text())
    return fields


def lab_metrics(
    probabilities: torch.Tensor,
    predictions: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    decision: Decision,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, Any]:
    """The evaluation's calibration, two-class and bootstrap entries for probabilities [N, K]
    and the decisions `predictions` [N] taken from them."""
    result: dict[str, Any] = {
        "calibration": decision.summary(),
        "calibration_error": reliability(probabilities, labels),
    }
    scores, targets, decided = None, labels, predictions
    if decision.positive is not None:  # two classes, coded 1 = positive
        positive = decision.positive
        targets, decided = (labels == positive).long(), (predictions == positive).long()
        if targets.min() != targets.max():
            scores = probabilities[:, positive]
            result["binary"] = {
                "positive_class": class_names[positive],
                "threshold": decision.threshold,  # None: argmax
                **binary_scores(scores, targets, decided.bool()),
            }
    if resamples:
        intervals = bootstrap_intervals(
            decided, targets, 2 if scores is not None else len(class_names), scores, resamples
        )
        result["confidence_intervals"] = {
            "level": CONFIDENCE,
            "resamples": resamples,
            "method": "percentile bootstrap, resampling each class with replacement",
            **intervals,
        }
    return result
