"""Classical classifiers on feature vectors (scikit-learn): linear SVM, logistic, RBF-SVM.

The slides' pipelines end in an SVM (seed slide 000, "LN -> CO -> BN -> RL -> PO" then SVM).
Features are standardised on train only; C (and gamma) are chosen on the validation split only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnlab.errors import ConfigError
from cnnlab.registry import Registry

C_GRID = (0.0001, 0.001, 0.01, 0.1)  # on standardised features small C fits best, and fast
GAMMA_FACTORS = (0.1, 1.0, 10.0)  # times 1 / num_features, the "scale" rule on standardised data


@dataclass(frozen=True)
class ClassifierKind:
    """A classifier family: how to build it for one setting, and the grid of settings to try."""

    name: str
    description: str
    build: Callable[..., Any]
    grid: Callable[[int], list[dict[str, float]]]  # num_features -> settings


def _linear_svm(C: float) -> Any:
    from sklearn.svm import LinearSVC

    return LinearSVC(C=C, dual="auto", max_iter=2000)


def _logistic(C: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000)


def _rbf_svm(C: float, gamma: float) -> Any:
    from sklearn.svm import SVC

    return SVC(C=C, gamma=gamma, kernel="rbf")


def _c_grid(num_features: int) -> list[dict[str, float]]:
    return [{"C": c} for c in C_GRID]


def _c_gamma_grid(num_features: int) -> list[dict[str, float]]:
    return [
        {"C": c, "gamma": f / num_features} for c in (0.1, 1.0, 10.0, 100.0) for f in GAMMA_FACTORS
    ]


CLASSIFIERS: Registry[ClassifierKind] = Registry("classifier")
for _kind in (
    ClassifierKind(
        "linear-svm", "linear SVM (LinearSVC, one-vs-rest), C chosen", _linear_svm, _c_grid
    ),
    ClassifierKind("logistic", "multinomial logistic regression, C chosen", _logistic, _c_grid),
    ClassifierKind("rbf-svm", "RBF-kernel SVM (SVC), C and gamma chosen", _rbf_svm, _c_gamma_grid),
):
    CLASSIFIERS.add(_kind.name, _kind)


@dataclass
class FittedClassifier:
    """A standardiser and a classifier fitted on train (+ val), and how its setting was chosen."""

    kind: str
    setting: dict[str, float]
    mean: np.ndarray  # [D]
    scale: np.ndarray  # [D]
    model: Any
    validation: list[dict[str, float]] = field(default_factory=list)  # setting + val accuracy

    def scores(self, features: np.ndarray) -> np.ndarray:
        """[N, D] -> [N, K] class scores: probabilities or decision values; argmax is the class."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        if hasattr(self.model, "predict_proba") and self.kind == "logistic":
            return self.model.predict_proba(x)
        values = self.model.decision_function(x)
        if values.ndim == 1:  # two classes: one decision value, positive means class 1
            values = np.stack([-values, values], axis=1)
        return values

    def class_scores(self, features: np.ndarray, num_classes: int) -> np.ndarray:
        """[N, D] -> [N, num_classes]: a class absent from training scores below every other."""
        scores = self.scores(features)
        classes = np.asarray(self.model.classes_, dtype=np.int64)
        if len(classes) == num_classes:
            return scores
        full = np.full((len(scores), num_classes), scores.min() - 1.0)
        full[:, classes] = scores
        return full

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.classes_)[self.scores(features).argmax(axis=1)]


def standardiser(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per feature; a constant feature gets scale 1 (not 0/0)."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    return mean, np.where(scale > 1e-12, scale, 1.0)


def fit_classifier(
    kind: str,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    refit_on: str = "train+val",
) -> FittedClassifier:
    """Choose the setting on val (standardised with train's statistics), then refit.

    Each setting of the kind's grid is fitted on train and scored by accuracy on val; the best
    (ties: the first, i.e. the strongest regularisation) is refitted on train+val by default,
    with the standardiser refitted on the same images: the setting was chosen without the test
    split, and with 10 images per class on a learning curve every image counts. refit_on="train"
    keeps the val images out of the final model.
    """
    if refit_on not in ("train", "train+val"):
        raise ConfigError(f"refit_on must be 'train' or 'train+val', got {refit_on!r}.")
    spec = CLASSIFIERS.get(kind)
    train_x, val_x = np.asarray(train_features, np.float64), np.asarray(val_features, np.float64)
    mean, scale = standardiser(train_x)
    train_z, val_z = (train_x - mean) / scale, (val_x - mean) / scale
    tried = []
    for setting in spec.grid(train_x.shape[1]):
        model = _fit(spec.build(**setting), train_z, train_labels)
        accuracy = float((model.predict(val_z) == val_labels).mean()) if len(val_z) else 0.0
        tried.append({**setting, "val_accuracy": accuracy})
    best = max(tried, key=lambda row: row["val_accuracy"])  # max keeps the first of ties
    setting = {k: v for k, v in best.items() if k != "val_accuracy"}
    if refit_on == "train+val" and len(val_x):
        train_x = np.concatenate([train_x, val_x])
        train_labels = np.concatenate([train_labels, val_labels])
        mean, scale = standardiser(train_x)
    model = _fit(spec.build(**setting), (train_x - mean) / scale, train_labels)
    return FittedClassifier(kind, setting, mean, scale, model, tried)


def _fit(model: Any, features: np.ndarray, labels: np.ndarray) -> Any:
    from sklearn.exceptions import ConvergenceWarning

    if len(np.unique(labels)) < 2:
        raise ConfigError(
            f"The classifier needs images of at least 2 classes to train on; got only class "
            f"{int(labels[0]) if len(labels) else '(none)'}. Use more images per class."
        )
    with warnings.catch_warnings():  # a capped solver is still a usable model; C is chosen on val
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(features, labels)
