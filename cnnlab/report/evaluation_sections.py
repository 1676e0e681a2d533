"""The report's test-metric sections: the scores (with calibration and, for two classes,
sensitivity/specificity/AUCs and their curves), the clickable confusion matrix (a cell opens its
images with their probabilities) and the top losses, from eval/SPLIT.json, its PNGs and the CSV."""

from __future__ import annotations

import json
import math

from markupsafe import Markup

from cnnlab.report.collect import ReportInputs, missing
from cnnlab.report.html import Section, figure, pairs, paragraph, table, thumb
from cnnlab.report.images import file_data_uri, thumbnail_uris
from cnnlab.run.artifacts import Prediction, evaluation_figures

IMAGES_PER_CELL = 48  # the most confident first; the count in the cell is the full number
TOP_LOSSES = 24


def metrics_section(inputs: ReportInputs) -> Section:
    section = Section("metrics", f"Test metrics ({inputs.split} split)")
    result = inputs.evaluation
    if result is None:
        section.missing.append(
            missing(
                f"the evaluation of the {inputs.split} split",
                f"cnnlab evaluate {inputs.run.path} --split {inputs.split}",
            )
        )
        return section
    top_k = ", ".join(f"top-{k} {v:.2%}" for k, v in result.get("top_k_accuracy", {}).items())
    checkpoint = result.get("checkpoint", {})
    section.body = pairs(
        [
            ("images", result.get("num_samples")),
            ("accuracy", f"{result['accuracy']:.2%}"),
            ("top-k accuracy", top_k),
            ("balanced accuracy", f"{result.get('balanced_accuracy', float('nan')):.2%}"),
            ("Cohen's kappa", f"{result.get('cohen_kappa', float('nan')):.4f}"),
            ("macro F1", f"{result.get('macro_f1', float('nan')):.4f}"),
            ("checkpoint", f"{checkpoint.get('file', '?')} (epoch {checkpoint.get('epoch', '?')})"),
            *_lab_pairs(result),
        ]
    ) + table(
        ("class", "precision", "recall", "F1", "images"),
        [
            (row["class"], row["precision"], row["recall"], row["f1"], row["support"])
            for row in result.get("per_class", [])
        ],
    )
    captions = {
        "reliability": "Reliability diagram: accuracy against confidence per bin",
        "roc-pr": "ROC and precision-recall curves, with the operating point",
    }
    figures = evaluation_figures(inputs.run, inputs.split)
    section.body += "".join(
        figure(file_data_uri(figures[kind]), caption)
        for kind, caption in captions.items()
        if kind in figures
    )
    return section


def _lab_pairs(result: dict) -> list[tuple[str, str]]:
    """Calibration and two-class scores, with 95% intervals, of evaluations that have them."""
    intervals = result.get("confidence_intervals", {})

    def shown(key: str, value: float) -> str:
        low_high = intervals.get(key)
        return f"{value:.4f}" + (
            f" (95% CI {low_high[0]:.4f}-{low_high[1]:.4f})" if low_high else ""
        )

    items = []
    binary = result.get("binary")
    if binary:
        threshold = binary.get("threshold")
        rule = "argmax" if threshold is None else f"p >= {threshold:.4g}"
        items.append(("positive class", f"{binary['positive_class']} ({rule})"))
        names = {
            "sensitivity": "sensitivity",
            "specificity": "specificity",
            "ppv": "PPV",
            "npv": "NPV",
            "roc_auc": "ROC AUC",
            "pr_auc": "PR AUC (average precision)",
        }
        items += [(label, shown(key, binary[key])) for key, label in names.items()]
    if "calibration_error" in result:
        error = result["calibration_error"]
        items.append(("expected calibration error", f"{error['ece']:.4f} ({error['bins']} bins)"))
    calibration = result.get("calibration") or {}
    if calibration.get("file"):
        temperature = calibration.get("temperature")
        items.append(("calibration", f"{calibration['file']} (temperature {temperature})"))
    return items


def _image_index(inputs: ReportInputs) -> dict[str, int]:
    images = inputs.images
    return {} if images is None else {sample: i for i, sample in enumerate(images.sample_ids)}


def _probability_text(prediction: Prediction) -> str:
    p_true = prediction.probability_of(prediction.true)
    if p_true is not None:
        return f"p({prediction.true}) = {p_true:.3f}, loss {-math.log(max(p_true, 1e-12)):.2f}"
    floor = prediction.top[-1][1] if prediction.top else 0.0
    return f"p({prediction.true}) < {floor:.3f}, loss > {-math.log(max(floor, 1e-12)):.2f}"


def _cell_images(inputs: ReportInputs) -> dict[str, list]:
    """For each confusion cell "true,predicted": [[thumbnail, sample, confidence, text]...]."""
    where = _image_index(inputs)
    position = {name: i for i, name in enumerate(inputs.class_names)}
    cells: dict[str, list] = {}
    for prediction in sorted(inputs.predictions or [], key=lambda p: -p.confidence):
        key = f"{position.get(prediction.true)},{position.get(prediction.predicted)}"
        if len(cells.setdefault(key, [])) < IMAGES_PER_CELL:
            cells[key].append(prediction)
    chosen = [p.sample_id for group in cells.values() for p in group if p.sample_id in where]
    uris = thumbnail_uris(inputs.images.images[[where[s] for s in chosen]]) if chosen else []
    thumbs = dict(zip(chosen, uris, strict=True))
    return {
        key: [
            [thumbs.get(p.sample_id, ""), p.sample_id, p.confidence, _probability_text(p)]
            for p in group
        ]
        for key, group in cells.items()
    }


def confusion_section(inputs: ReportInputs, colours: list[str]) -> Section:
    section = Section("confusion", "Confusion matrix")
    result = inputs.evaluation
    if result is None or "confusion_matrix" not in result:
        section.missing.append(
            missing("the confusion matrix", f"cnnlab evaluate {inputs.run.path}")
        )
        return section
    matrix = result["confusion_matrix"]
    names = inputs.class_names
    peak = max(max(row) for row in matrix) or 1
    header = (
        "<tr><th>true \\ predicted</th>"
        + "".join(
            f"<th style='color:{colours[j]}'>{Markup.escape(n)}</th>" for j, n in enumerate(names)
        )
        + "</tr>"
    )
    body = ""
    for i, row in enumerate(matrix):
        cells = "".join(
            f"<td class='cell{' diag' if i == j else ''}' data-true='{i}' data-pred='{j}' "
            f"style='--shade:{count / peak:.3f}' tabindex='0'>{count}</td>"
            for j, count in enumerate(row)
        )
        body += f"<tr><th style='color:{colours[i]}'>{Markup.escape(names[i])}</th>{cells}</tr>"
    section.body = (
        paragraph("Click a cell to see its images, most confident first, with their probabilities.")
        + f"<table class='confusion'>{header}{body}</table>"
        + "<div id='confusion-images' class='cell-images'></div>"
    )
    if inputs.predictions is None:
        section.missing.append(
            missing(f"eval/{inputs.split}-predictions.csv", f"cnnlab evaluate {inputs.run.path}")
        )
    elif inputs.images is None:
        section.missing.append(
            "The cells cannot show images: " + (inputs.data_note or "no images.")
        )
    cells = _cell_images(inputs) if inputs.predictions else {}
    payload = json.dumps({"classes": names, "cells": cells}).replace("</", "<\\/")
    section.body += f"<script type='application/json' id='confusion-data'>{payload}</script>"
    return section


def top_losses_section(inputs: ReportInputs) -> Section:
    section = Section("top-losses", "Top losses")
    if inputs.predictions is None:
        section.missing.append(missing("the predictions", f"cnnlab evaluate {inputs.run.path}"))
        return section
    # By loss where the CSV records p(true); older CSVs: by the confidence of the mistake.
    wrong = sorted(
        (p for p in inputs.predictions if not p.correct),
        key=lambda p: -p.loss if p.loss is not None else -p.confidence,
    )
    wrong = wrong[:TOP_LOSSES]
    if not wrong:
        section.body = paragraph("Every image of the split is classified correctly.")
        return section
    where = _image_index(inputs)
    shown = [p for p in wrong if p.sample_id in where]
    uris = (
        thumbnail_uris(inputs.images.images[[where[p.sample_id] for p in shown]], side=64)
        if shown
        else []
    )
    section.body = (
        paragraph(
            "The largest losses: true class, predicted class with its probability, and the "
            "probability of the true class (a bound, for predictions written before cnnlab "
            "recorded it)."
        )
        + "<div class='gallery'>"
        + "".join(
            thumb(
                uri,
                f"{p.sample_id}: {p.true} taken for {p.predicted} ({p.confidence:.2f}); "
                f"{_probability_text(p)}",
            )
            for uri, p in zip(uris, shown, strict=True)
        )
        + "</div>"
    )
    if not shown:
        section.body += table(
            ("sample", "true", "predicted", "confidence"),
            [(p.sample_id, p.true, p.predicted, p.confidence) for p in wrong],
        )
    return section
