"""The report's first sections: the run (command, settings, versions, machine, duration), its
data, its training curves, its layer statistics and its model, from config.json, dataset.json,
metrics.jsonl, layer_stats.jsonl and model.json."""

from __future__ import annotations

import base64
import json
import shlex
from typing import Any

from cnnlab.report import charts
from cnnlab.report.collect import ReportInputs, missing
from cnnlab.report.html import Section, chart_slot, figure, pairs, paragraph, table, thumb
from cnnlab.report.images import tensor_data_uri, thumbnail_uris
from cnnlab.run import layer_stats

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
    keep = inputs.config.train.get("keep", "best") if inputs.config is not None else "best"
    evaluated = (
        "its checkpoint is the one evaluated"
        if keep == "best"
        else "--keep last: the weights of the last epoch are the ones evaluated"
    )
    section.body = paragraph(
        f"Green line: the best epoch ({evaluated}). Dashed red lines: interruptions and resumes."
    )
    for index, chart in enumerate(charts.curves_charts(inputs.rows)):
        section.charts[f"curve-{index}"] = chart
        section.body += chart_slot(f"curve-{index}")
    return section


LAYER_COLUMNS = (  # (key in a row of layer_stats.jsonl, column)
    ("weight_norm", "weight norm"),
    ("grad_norm", "gradient norm"),
    ("update_ratio", "update / weight"),
    ("mean", "output mean"),
    ("sd", "output sd"),
    ("dead", "dead units"),
    ("saturated", "saturated"),
)


def _still_layers(rows: list[dict[str, Any]]) -> list[str]:
    """Layers whose weights never changed in any recorded step (frozen, or cut off)."""
    ratios: dict[str, list[float]] = {}
    for row in rows:
        for layer, values in row["layers"].items():
            if values.get("update_ratio") is not None:
                ratios.setdefault(layer, []).append(values["update_ratio"])
    return [layer for layer, found in ratios.items() if not any(found)]


def layers_section(inputs: ReportInputs) -> Section:
    """RUN/layer_stats.jsonl (`train --layer-stats N`): its picture, the last record as a table
    and the layers that never moved."""
    section = Section("layers", "Layer statistics")
    rows = layer_stats.read_rows(inputs.run)
    if not rows:
        section.body = paragraph(
            "No layer statistics were recorded. `cnnlab train --layer-stats N` records, every N "
            "steps, each layer's weight and gradient norms, its update-to-weight ratio and its "
            "outputs on a fixed probe batch."
        )
        return section
    png = base64.b64encode(layer_stats.render_png(rows)).decode("ascii")
    last = rows[-1]
    section.body = paragraph(
        f"{len(rows)} records, every {rows[1]['step'] - rows[0]['step'] if len(rows) > 1 else '?'}"
        " steps. The update-to-weight ratio ||w after - w before|| / ||w before|| of one step is "
        "around 1e-3 in healthy training (dotted line); far below, the layer barely learns; far "
        "above, the learning rate is likely too high. Outputs are measured in eval mode on the "
        "same validation images every time; a dead unit is zero on all of them."
    ) + figure("data:image/png;base64," + png, "Layer statistics over the training steps")
    still = _still_layers(rows)
    if still:
        section.body += paragraph(
            f"These layers' weights never changed in a recorded step: {', '.join(still)}."
        )
    table_rows = [
        (
            layer,
            *("–" if values.get(key) is None else f"{values[key]:.3g}" for key, _ in LAYER_COLUMNS),
        )
        for layer, values in last["layers"].items()
    ]
    section.body += f"<h3>At step {last['step']} (epoch {last['epoch']})</h3>" + table(
        ("layer", *(column for _, column in LAYER_COLUMNS)), table_rows
    )
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
