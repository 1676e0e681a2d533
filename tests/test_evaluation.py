"""Tests for cnnlab.metrics and cnnlab.evaluation: every metric against scikit-learn (also the
training loop's `evaluate`, which picks the best checkpoint), plus a hand-computed example."""

import csv
import json

import pytest
import torch
from PIL import Image
from sklearn import metrics as skm
from torch import nn

from cnnlab.data.loader import Normalizer
from cnnlab.errors import CnnlabError
from cnnlab.evaluation import format_metrics_table, save_confusion_matrix_png, write_predictions_csv
from cnnlab.metrics import classification_metrics, confusion_matrix, summary_scores
from cnnlab.runtime.predict import StepSettings
from cnnlab.training.loop import evaluate

CLASS_NAMES = ["cat", "dog", "bird", "fish", "frog", "horse"]


@pytest.fixture
def random_case():
    """60 samples, 6 classes; class 4 never occurs in targets and class 5 is never predicted."""
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (60,), generator=generator)
    targets[:5] = 5
    logits = torch.randn(60, 6, generator=generator)
    logits[:, 5] -= 10.0
    logits[:5, 4] += 10.0  # class 4 is predicted for a few samples
    return logits, targets


def test_confusion_matrix_matches_sklearn(random_case):
    logits, targets = random_case
    predictions = logits.argmax(dim=1)
    result = confusion_matrix(targets, predictions, num_classes=6)
    expected = skm.confusion_matrix(targets.numpy(), predictions.numpy(), labels=range(6))
    assert result.dtype == torch.int64
    assert result.tolist() == expected.tolist()


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_classification_metrics_match_sklearn(random_case):
    logits, targets = random_case
    y_true, y_pred = targets.numpy(), logits.argmax(dim=1).numpy()
    assert 4 not in y_true and 5 not in y_pred and 4 in y_pred and 5 in y_true
    result = classification_metrics(logits, targets, CLASS_NAMES, top_k=(1, 3, 3, 5, 10))

    assert result["num_samples"] == 60
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert result["cohen_kappa"] == pytest.approx(skm.cohen_kappa_score(y_true, y_pred))
    assert list(result["top_k_accuracy"]) == ["1", "3", "5"]  # deduplicated, k <= K only
    for k in (1, 3, 5):
        expected = skm.top_k_accuracy_score(y_true, logits.numpy(), k=k, labels=range(6))
        assert result["top_k_accuracy"][str(k)] == pytest.approx(expected)

    labels = list(range(6))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    for row, p, r, f, s, name in zip(
        result["per_class"], precision, recall, f1, support, CLASS_NAMES, strict=True
    ):
        assert row == pytest.approx(
            {"class": name, "precision": p, "recall": r, "f1": f, "support": s}
        )
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        assert result[f"{average}_f1"] == pytest.approx(f)
        if average == "macro":
            assert result["macro_precision"] == pytest.approx(p)
            assert result["macro_recall"] == pytest.approx(r)

    normalized = skm.confusion_matrix(y_true, y_pred, labels=labels, normalize="true")
    normalized[4] = 0.0  # sklearn gives NaN for the class without samples; we keep zeros
    torch.testing.assert_close(
        torch.tensor(result["confusion_matrix_normalized"]).double(), torch.from_numpy(normalized)
    )
    assert result["confusion_matrix_normalized"][4] == [0.0] * 6
    assert json.loads(json.dumps(result)) == result  # plain JSON-ready types


class FixedLogits(nn.Module):
    """A "model" that returns preset logits: image i (every pixel holds i) gets row i."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0, 0, 0].round().long()]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_training_evaluate_matches_sklearn(random_case):
    logits, targets = random_case
    y_true, y_pred = targets.numpy(), logits.argmax(dim=1).numpy()
    assert 4 not in y_true and 4 in y_pred  # a class only predicted
    assert 5 in y_true and 5 not in y_pred  # a class never predicted
    index_images = torch.arange(len(targets)).view(-1, 1, 1, 1).to(torch.uint8)
    settings = StepSettings(Normalizer((0.0,), (1 / 255,)))  # the model sees the index itself
    result = evaluate(FixedLogits(logits), index_images, targets, settings, batch_size=16)

    assert list(result) == ["loss", "accuracy", "balanced_accuracy", "cohen_kappa"]
    probabilities = logits.double().softmax(dim=1).numpy()
    assert result["loss"] == pytest.approx(skm.log_loss(y_true, probabilities, labels=range(6)))
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert result["cohen_kappa"] == pytest.approx(skm.cohen_kappa_score(y_true, y_pred))
    full = classification_metrics(logits, targets, CLASS_NAMES)  # one implementation, one answer
    assert all(full[key] == result[key] for key in ("accuracy", "balanced_accuracy", "cohen_kappa"))


def test_summary_scores_of_a_confusion_matrix():
    # Rows true, columns predicted; class 2 is never a target, so balanced accuracy skips it.
    counts = torch.tensor([[3, 1, 0], [2, 4, 1], [0, 0, 0]])
    scores = summary_scores(counts)
    assert list(scores) == ["accuracy", "balanced_accuracy", "cohen_kappa"]
    assert scores["accuracy"] == pytest.approx(7 / 11)
    assert scores["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 7) / 2)
    expected = (4 * 5 + 7 * 5 + 0 * 1) / 11**2
    assert scores["cohen_kappa"] == pytest.approx((7 / 11 - expected) / (1 - expected))


def test_hand_computed_two_class_example():
    # Confusion matrix [[3, 1], [2, 4]]: p_o = 0.7, p_e = (4*5 + 6*5) / 100 = 0.5, kappa = 0.4.
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    predictions = torch.tensor([0, 0, 0, 1, 0, 0, 1, 1, 1, 1])
    logits = torch.nn.functional.one_hot(predictions, 2).float()
    result = classification_metrics(logits, targets, ["no", "yes"])
    assert result["confusion_matrix"] == [[3, 1], [2, 4]]
    assert result["accuracy"] == pytest.approx(0.7)
    assert result["cohen_kappa"] == pytest.approx(0.4)
    assert result["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert result["per_class"][0]["precision"] == pytest.approx(3 / 5)
    assert result["per_class"][1]["f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 2))
    assert result["top_k_accuracy"] == {"1": pytest.approx(0.7)}  # k=5 > K is skipped
    assert result["confusion_matrix_normalized"][1] == pytest.approx([2 / 6, 4 / 6])


def test_kappa_is_zero_when_undefined():
    result = classification_metrics(
        torch.tensor([[1.0, 0.0]] * 3), torch.zeros(3).long(), ["a", "b"]
    )
    assert result["accuracy"] == 1.0 and result["cohen_kappa"] == 0.0


def test_format_metrics_table_lists_every_class(random_case):
    logits, targets = random_case
    text = format_metrics_table(classification_metrics(logits, targets, CLASS_NAMES))
    assert "accuracy" in text and "top-5 accuracy" in text
    table = text.split("\n\n")[1].splitlines()
    assert len(table) == 2 + len(CLASS_NAMES)
    assert len({len(line) for line in table}) == 1  # aligned columns


@pytest.mark.parametrize("num_classes", [3, 40])
def test_confusion_matrix_png_is_valid(tmp_path, num_classes):
    names = [f"class_{i}" for i in range(num_classes)]
    counts = torch.randint(
        0, 20, (num_classes, num_classes), generator=torch.Generator().manual_seed(1)
    )
    counts[0] = 0  # an empty row must not break the normalisation
    path = tmp_path / "plots" / "confusion.png"
    save_confusion_matrix_png(counts, names, path, title="test set")
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 200 < width < 5000 and 200 < height < 5000
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_predictions_csv_round_trip(tmp_path, random_case):
    logits, targets = random_case
    probabilities = logits.softmax(dim=1)
    ids = [f"img_{i:03d}.png" for i in range(len(targets))]
    path = tmp_path / "predictions.csv"
    write_predictions_csv(path, ids, targets, probabilities, CLASS_NAMES, top_k=3)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "sample",
        "true",
        "predicted",
        "confidence",
        "correct",
        "true_probability",
        "top1",
        "top2",
        "top3",
    ]
    assert [row["sample"] for row in rows] == ids
    argmax = probabilities.argmax(dim=1)
    for row, predicted, target, probs in zip(rows, argmax, targets, probabilities, strict=True):
        assert row["predicted"] == CLASS_NAMES[predicted]
        assert row["true"] == CLASS_NAMES[target]
        assert float(row["true_probability"]) == pytest.approx(probs[target].item(), abs=1e-6)
        assert row["correct"] == str(int(predicted == target))
        assert float(row["confidence"]) == pytest.approx(probs.max().item(), abs=1e-6)
        assert row["top1"].rsplit(":", 1)[0] == row["predicted"]


def test_predictions_csv_without_targets(tmp_path):
    path = tmp_path / "predictions.csv"
    probabilities = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    write_predictions_csv(path, ["a", "b"], None, probabilities, ["x", "y"], top_k=5)
    assert path.read_text().splitlines() == [
        "sample,predicted,confidence,top1,top2",
        "a,y,0.800000,y:0.800000,x:0.200000",
        "b,x,0.600000,x:0.600000,y:0.400000",
    ]


def test_bad_input_raises_clear_errors(tmp_path):
    logits, names = torch.zeros(4, 3), ["a", "b", "c"]
    with pytest.raises(CnnlabError, match="4 rows but targets has 3"):
        classification_metrics(logits, torch.tensor([0, 1, 2]), names)
    with pytest.raises(CnnlabError, match="label 3"):
        classification_metrics(logits, torch.tensor([0, 1, 2, 3]), names)
    with pytest.raises(CnnlabError, match="2 class names"):
        classification_metrics(logits, torch.tensor([0, 1, 1, 0]), names[:2])
    with pytest.raises(CnnlabError, match="integer"):
        classification_metrics(logits, torch.tensor([0.0, 1.0, 2.0, 0.0]), names)
    with pytest.raises(CnnlabError, match="same samples"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 3)
    with pytest.raises(CnnlabError, match="label -1"):
        confusion_matrix(torch.tensor([0, -1]), torch.tensor([0, 1]), 3)
    with pytest.raises(CnnlabError, match="softmax"):
        write_predictions_csv(tmp_path / "p.csv", ["a"] * 4, None, logits - 1, names)
    with pytest.raises(CnnlabError, match="square"):
        save_confusion_matrix_png(torch.zeros(2, 3), names, tmp_path / "cm.png")
