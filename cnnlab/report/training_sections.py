"""The report's first sections: the run (command, settings, versions, machine, duration), its
data, its training curves and its model, from config.json, dataset.json, metrics.jsonl and
model.json."""

from __future__ import annotations

import json
import shlex
from typing import Any

from cnnlab.report import charts
from cnnlab.report.collect import ReportInputs, missing
from cnnlab.report.html import Section, chart_slot, figure, pairs, paragraph, table, thumb
from cnnlab.report.images import tensor_data_uri, thumbnail_uris

SAMPLES_PER_CLASS = 8


def _duration(rows: list[dict[str, Any]]) -> str:
    seconds = sum(row.get("epoch_seconds", 0.0) for row in rows if row.get("kind") == "epoch")
    end = next((row for row in reversed(rows) if row.get("kind") == "end"), None)
    status = end.get("status", "?") if end else "not finished (no end line in metrics.jsonl)"
    return f"{seconds:.1f} s over {sum(r.get('kind') == 'epoch' for r in rows)} epochs; {status}"


def run_section(inputs: ReportInputs) -> Section:
    section = Section("run", "The run")
    config = inputs.config
    if config is None:
        section.missing.append(
            "config.json is missing: the command, settings and versions cannot be shown."
        )
        return section
    fast = config.resolved.get("fast_path", {})
    fast_text = ", ".join(f"{key} {value}" for key, value in fast.items() if key != "reason")
    versions = {
        key: config.machine[key] for key in ("cnnlab", "torch", "python") if key in config.machine
    }
    settings = {key: value for key, value in config.train.items() if value is not None}
    section.body = pairs(
        [
            ("run", str(inputs.run.path)),
            ("command", shlex.join(config.command) or "(not recorded)"),
            ("created", config.created),
            ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
            (
                "machine",
                f"{config.machine.get('platform', '?')}, {config.machine.get('cpu_count', '?')}"
                f" CPUs, device {config.machine.get('device', '?')}",
            ),
            ("fast path", f"{fast_text} ({fast.get('reason', 'no reason recorded')})"),
            ("training", _duration(inputs.rows)),
            ("seed", config.seed),
        ]
    ) + (
        "<details><summary>All settings (config.json)</summary><pre>"
        + json.dumps({"train": settings, "resolved": config.resolved}, indent=1).replace(
            "<", "&lt;"
        )
        + "</pre></details>"
    )
    return section


def _samples(inputs: ReportInputs) -> str:
    split = inputs.train_images
    if split is None:
        return ""
    figures = []
    for index, name in enumerate(inputs.class_names):
        rows = (split.labels == index).nonzero().flatten()[:SAMPLES_PER_CLASS]
        uris = thumbnail_uris(split.images.index_select(0, rows), side=64)
        cells = "".join(thumb(uri, "") for uri in uris)
        figures.append(f"<div class='sample-row'><span class='cls'>{name}</span>{cells}</div>")
    return "<h3>Sample training images per class</h3>" + "".join(figures)


def _augmentation_grid(inputs: ReportInputs) -> str:
    """What the network saw in training: the recorded augmentation applied to a few training
    images (rows), seven draws each (columns), as `cnnlab augment` draws them."""
    from cnnlab.data.augment_grid import augmentation_grid, pick_rows
    from cnnlab.specs.augmentation import Augmentation

    recorded = (inputs.config.resolved.get("augmentation") if inputs.config else None) or {}
    split = inputs.train_images
    if split is None or not recorded:
        return ""
    augmentation = Augmentation(**recorded)
    if not augmentation.enabled:
        return paragraph("Training used no augmentation.")
    images = split.images.index_select(0, pick_rows(split.labels, min(8, len(split.labels))))
    grid = augmentation_grid(images, augmentation, inputs.dataset.normalization.mean, seed=0)
    shown = ", ".join(f"{k}={v}" for k, v in augmentation.to_dict().items() if v)
    caption = f"Each row: a training image, then seven augmented versions ({shown})."
    return "<h3>The augmentation grid</h3>" + figure(tensor_data_uri(grid), caption)


def data_section(inputs: ReportInputs, colours: list[str]) -> Section:
    record = inputs.dataset
    section = Section("data", "The data")
    counts = record.class_counts
    totals = {split: sum(values) for split, values in counts.items()}
    section.body = pairs(
        [
            ("source", f"{record.source} ({record.location})"),
            ("classes", f"{record.num_classes}: {', '.join(record.class_names)}"),
            (
                "images",
                f"{record.image_size[0]}x{record.image_size[1]} px, {record.channels} band(s)",
            ),
            ("per split", ", ".join(f"{split} {total}" for split, total in totals.items())),
        ]
    ) + chart_slot("class-counts")
    section.charts["class-counts"] = charts.counts_chart(inputs.class_names, counts, colours)
    if inputs.data_note:
        section.missing.append(inputs.data_note)
    section.body += _samples(inputs) + _augmentation_grid(inputs)
    skipped = record.skipped or ()
    if skipped:
        section.body += "<h3>Skipped files</h3>" + table(
            ("file", "reason"), [(s.get("file", "?"), s.get("reason", "?")) for s in skipped]
        )
    elif record.source.startswith("folder:"):
        section.body += paragraph("No file of the folder was skipped.")
    return section


def curves_section(inputs: ReportInputs) -> Section:
    section = Section("curves", "Training curves")
    if not any(row.get("kind") == "epoch" for row in inputs.rows):
        section.missing.append(
            "metrics.jsonl has no epoch yet: train the run (`cnnlab train --resume "
            f"{inputs.run.path}` continues an interrupted one)."
        )
        return section
    section.body = paragraph(
        "Green line: the best epoch (its checkpoint is the one evaluated). Dashed red lines: "
        "interruptions and resumes."
    )
    for index, chart in enumerate(charts.curves_charts(inputs.rows)):
        section.charts[f"curve-{index}"] = chart
        section.body += chart_slot(f"curve-{index}")
    return section


def model_section(inputs: ReportInputs) -> Section:
    section = Section("model", "The model")
    summary = inputs.model_summary
    if summary is None:
        section.missing.append(inputs.model_note or missing("model.json", "cnnlab train"))
        return section
    rows = [
        (
            row.name,
            row.layer,
            "x".join(map(str, row.output_shape)),
            f"{row.parameters:,}",
            f"{row.macs:,}",
            "whole image"
            if row.receptive_field is None
            else "x".join(map(str, row.receptive_field)),
        )
        for row in summary.rows
    ]
    section.body = pairs(
        [
            ("model", summary.model),
            ("input", "x".join(map(str, summary.input_shape))),
            (
                "parameters",
                f"{summary.total_parameters:,} ({summary.trainable_parameters:,} trainable)",
            ),
            ("multiply-accumulates", f"{summary.total_macs:,} per image"),
        ]
    ) + table(("layer", "type", "output", "parameters", "MACs", "receptive field"), rows)
    if summary.note:
        section.body += paragraph(f"Note: {summary.note}")
    return section
