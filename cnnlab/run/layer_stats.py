"""RUN/layer_stats.jsonl (one row per record of `train --layer-stats N`: step, epoch, learning
rate and a dict of statistics per layer) and its picture, RUN/layer_stats.png: one panel per
statistic over the steps, one line per layer, shallow layers light and deep ones dark.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from cnnlab.fileio import append_jsonl, atomic_write_bytes, atomic_write_text, read_jsonl
from cnnlab.run.paths import RunDir

HEALTHY_UPDATE_RATIO = 1e-3  # the rule of thumb drawn as a dotted line
PANELS = (  # (key, title, log scale)
    ("weight_norm", "weight L2 norm", True),
    ("grad_norm", "gradient L2 norm", True),
    ("update_ratio", "update / weight (dotted: 1e-3)", True),
    ("mean", "output mean (probe batch)", False),
    ("sd", "output sd (probe batch)", True),
    ("dead", "dead units (fraction)", False),
    ("saturated", "saturated outputs (fraction)", False),
)
LEGEND_LIMIT = 12  # more layers than this: a colour scale from shallow to deep, no legend


def append_row(run: RunDir, row: dict[str, Any]) -> None:
    append_jsonl(run.layer_stats, row)


def read_rows(run: RunDir) -> list[dict[str, Any]]:
    """The rows in step order, one per step (a later row of a step replaces an earlier one)."""
    if not run.layer_stats.exists():
        return []
    by_step = {row["step"]: row for row in read_jsonl(run.layer_stats) if "step" in row}
    return [by_step[step] for step in sorted(by_step)]


def drop_rows_after(run: RunDir, step: int) -> None:
    """Keep the rows up to `step` (a resumed run redoes the steps after its checkpoint)."""
    if not run.layer_stats.exists():
        return
    rows = read_jsonl(run.layer_stats)
    kept = [row for row in rows if row.get("step", math.inf) <= step]
    if len(kept) != len(rows):
        atomic_write_text(run.layer_stats, "".join(json.dumps(row) + "\n" for row in kept))


def _series(rows: list[dict[str, Any]], key: str) -> dict[str, tuple[list[int], list[float]]]:
    """Layer -> (steps, values) of one statistic, in the order the layers first appear."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in rows:
        for layer, values in row["layers"].items():
            value = values.get(key)
            if value is not None:
                steps, found = series.setdefault(layer, ([], []))
                steps.append(row["step"])
                found.append(value)
    return series


def render_png(rows: list[dict[str, Any]], title: str = "layer statistics") -> bytes:
    """The statistics of `rows` as one PNG: a panel per statistic that has values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(key, text, log, _series(rows, key)) for key, text, log in PANELS]
    panels = [panel for panel in panels if panel[3]]
    columns = 3
    lines = max((len(panel[3]) for panel in panels), default=0)
    figure, axes = plt.subplots(
        max(1, math.ceil(len(panels) / columns)), columns, squeeze=False,
        figsize=(4.2 * columns, 3.2 * max(1, math.ceil(len(panels) / columns))),
    )  # fmt: skip
    layers = list(dict.fromkeys(layer for row in rows for layer in row["layers"]))
    colours = plt.get_cmap("viridis_r")
    for ax, (key, text, log, series) in zip(axes.flat, panels, strict=False):
        for layer, (steps, values) in series.items():
            depth = layers.index(layer) / max(len(layers) - 1, 1)
            ax.plot(steps, values, color=colours(0.1 + 0.85 * depth), lw=1, label=layer)
        if log and all(v > 0 for _, values in series.values() for v in values):
            ax.set_yscale("log")
        if key in ("dead", "saturated"):
            ax.set_ylim(-0.03, 1.03)
        if key == "update_ratio":
            ax.axhline(HEALTHY_UPDATE_RATIO, color="grey", ls=":", lw=1)
        ax.set_title(text, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if 0 < lines <= LEGEND_LIMIT:  # on the panel with the most layers
        most = max(range(len(panels)), key=lambda index: len(panels[index][3]))
        axes.flat[most].legend(fontsize=6, loc="best")
    elif lines:
        figure.text(0.01, 0.005, "colour: shallow (light) to deep (dark) layers", fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def write_png(run: RunDir) -> bool:
    """RUN/layer_stats.png from RUN/layer_stats.jsonl; False (nothing written) without rows."""
    rows = read_rows(run)
    if not rows:
        return False
    atomic_write_bytes(run.layer_stats_png, render_png(rows, f"layer statistics: {run.path.name}"))
    return True
