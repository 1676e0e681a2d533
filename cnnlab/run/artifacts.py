"""Reading back what `cnnlab evaluate` and `cnnlab explain` wrote (predictions CSV, explain's
summary.json, its projection coordinates and other JSON files), for the report."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.run.paths import RunDir


@dataclass(frozen=True)
class Prediction:
    """One row of eval/SPLIT-predictions.csv."""

    sample_id: str
    true: str
    predicted: str
    confidence: float
    top: tuple[tuple[str, float], ...]  # (class, probability), most probable first
    true_probability: float | None = None  # None in CSVs written before the column existed

    @property
    def correct(self) -> bool:
        return self.true == self.predicted

    @property
    def loss(self) -> float | None:
        """Cross-entropy of this sample, -ln p(true), when the probability is known."""
        p_true = self.probability_of(self.true)
        return None if p_true is None else -math.log(max(p_true, 1e-12))

    def probability_of(self, name: str) -> float | None:
        """The probability of class `name`, or None when it is outside the recorded top-k."""
        if name == self.true and self.true_probability is not None:
            return self.true_probability
        return next((p for label, p in self.top if label == name), None)


@dataclass(frozen=True)
class Projection:
    """explain/SPLIT/projections/METHOD/NN-LAYER-STATE.json: one layer's 2-D points."""

    layer: str
    state: str  # "trained" or "untrained"
    method: str
    position: int  # NN: the layer's place, shallow to deep
    class_names: tuple[str, ...]
    sample_ids: tuple[str, ...]
    labels: tuple[int, ...]
    predictions: tuple[int, ...]
    x: tuple[float, ...]
    y: tuple[float, ...]


def _parse_top(cell: str, path: Path) -> tuple[str, float]:
    label, _, probability = cell.rpartition(":")
    try:
        return label, float(probability)
    except ValueError:
        raise CnnlabError(
            f"'{path}' has a top-k cell {cell!r}; expected CLASS:PROBABILITY. "
            "Write it again with `cnnlab evaluate`."
        ) from None


def read_predictions(run: RunDir, split: str) -> list[Prediction] | None:
    """eval/SPLIT-predictions.csv as rows, or None if `cnnlab evaluate` has not written it."""
    path = run.eval / f"{split}-predictions.csv"
    if not path.exists():
        return None
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        try:
            return [
                Prediction(
                    sample_id=row["sample"],
                    true=row["true"],
                    predicted=row["predicted"],
                    confidence=float(row["confidence"]),
                    top=tuple(
                        _parse_top(row[key], path)
                        for key in row
                        if key.startswith("top") and row[key]
                    ),
                    true_probability=float(row["true_probability"])
                    if row.get("true_probability")
                    else None,
                )
                for row in reader
            ]
        except (KeyError, ValueError) as error:
            raise CnnlabError(
                f"'{path}' is missing column or value {error}; expected the columns "
                "sample,true,predicted,confidence,top1... Write it again with `cnnlab evaluate`."
            ) from None


EVALUATION_FIGURES = ("confusion", "reliability", "roc-pr")  # eval/SPLIT-KIND.png


def evaluation_figures(run: RunDir, split: str) -> dict[str, Path]:
    """The PNGs `cnnlab evaluate` wrote for `split` (best checkpoint, PyTorch): {kind: path} for
    each of EVALUATION_FIGURES that exists (runs evaluated before a kind existed lack it)."""
    paths = {kind: run.eval / f"{split}-{kind}.png" for kind in EVALUATION_FIGURES}
    return {kind: path for kind, path in paths.items() if path.is_file()}


def read_explain_summary(run: RunDir, split: str) -> dict[str, Any] | None:
    """explain/SPLIT/summary.json, or None if `cnnlab explain` has not been run on `split`."""
    if not (run.explain(split) / "summary.json").exists():
        return None
    return run.read(f"explain/{split}/summary.json")


def explain_file(run: RunDir, relative: str) -> Path | None:
    """A file explain listed in its summary (relative to RUN/explain/), if it is still there."""
    root = (run.path / "explain").resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise CnnlabError(
            f"explain's summary lists {relative!r}, which is outside '{root}'; the summary is "
            "damaged. Write it again with `cnnlab explain`."
        )
    return path if path.is_file() else None


def read_explain_json(run: RunDir, relative: str) -> dict[str, Any] | None:
    """One JSON file under RUN/explain/ (e.g. "test/separability.json"), or None if absent."""
    path = explain_file(run, relative)
    return None if path is None else run.read(str(Path("explain") / relative))


def read_projections(run: RunDir, split: str, method: str) -> list[Projection]:
    """Every layer's projection for `method`, trained first then untrained, shallow to deep."""
    folder = run.explain(split) / "projections" / method
    projections = []
    for path in sorted(folder.glob("*.json")):
        data = run.read(str(path.relative_to(run.path)))
        try:
            projections.append(
                Projection(
                    layer=data["layer"],
                    state=data["state"],
                    method=data["method"],
                    position=int(path.name.split("-", 1)[0]),
                    class_names=tuple(data["class_names"]),
                    sample_ids=tuple(data["sample_ids"]),
                    labels=tuple(int(v) for v in data["labels"]),
                    predictions=tuple(int(v) for v in data["predictions"]),
                    x=tuple(float(v) for v in data["x"]),
                    y=tuple(float(v) for v in data["y"]),
                )
            )
        except (KeyError, ValueError, TypeError) as error:
            raise CnnlabError(
                f"'{path}' is not a projection file (bad or missing key {error}); expected layer, "
                "state, method, class_names, sample_ids, labels, predictions, x, y. Write it "
                "again with `cnnlab explain`."
            ) from None
    projections.sort(key=lambda p: (p.state != "trained", p.position))
    return projections
