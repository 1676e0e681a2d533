"""Classical classifiers: settings chosen on val only, standardisation fitted on train only."""

import numpy as np
import pytest

from cnnlab.errors import ConfigError
from cnnlab.transfer.classical import CLASSIFIERS, fit_classifier, standardiser


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    features = generator.normal(size=(n, 4)) + labels[:, None] * 4.0
    features[:, 3] = 7.0  # a constant feature: scale 1, not 0/0
    return features, labels


@pytest.mark.parametrize("kind", CLASSIFIERS.names())
def test_every_classifier_separates_blobs(kind):
    train_x, train_y = _blobs(60, 0)
    val_x, val_y = _blobs(30, 1)
    test_x, test_y = _blobs(30, 2)
    fitted = fit_classifier(kind, train_x, train_y, val_x, val_y)
    assert (fitted.predict(test_x) == test_y).mean() > 0.9
    assert fitted.class_scores(test_x, 3).shape == (30, 3)
    assert len(fitted.validation) == len(CLASSIFIERS.get(kind).grid(4))


def test_setting_is_chosen_on_val_only(monkeypatch):
    """The chosen C is the one with the best val accuracy; the test split is never passed."""
    train_x, train_y = _blobs(60, 0)
    val_x, val_y = _blobs(30, 1)
    fitted = fit_classifier("logistic", train_x, train_y, val_x, val_y, refit_on="train")
    best = max(fitted.validation, key=lambda row: row["val_accuracy"])
    assert fitted.setting["C"] == best["C"]
    mean, scale = standardiser(train_x)  # refit on train only: train's statistics
    np.testing.assert_allclose(fitted.mean, mean)
    np.testing.assert_allclose(fitted.scale, scale)
    assert scale[3] == 1.0


def test_refit_on_train_and_val_uses_both():
    train_x, train_y = _blobs(60, 0)
    val_x, val_y = _blobs(30, 1)
    fitted = fit_classifier("linear-svm", train_x, train_y, val_x, val_y)
    np.testing.assert_allclose(fitted.mean, np.concatenate([train_x, val_x]).mean(0))


def test_class_absent_from_training_scores_lowest():
    train_x, train_y = _blobs(60, 0)
    keep = train_y < 2
    fitted = fit_classifier("logistic", train_x[keep], train_y[keep], train_x[:0], train_y[:0])
    scores = fitted.class_scores(train_x, 3)
    assert (scores.argmax(1) != 2).all()


def test_single_class_is_a_clear_error():
    x, y = _blobs(9, 0)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        fit_classifier("linear-svm", x, np.zeros(9, int), x, np.zeros(9, int))
