"""Figures of the explain layer: projections as small multiples, separability against depth and
neuron maps. matplotlib's Figure + FigureCanvasAgg only (never pyplot); files written atomically.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

import torch

from cnnlab.explain.separability import chance_levels
from cnnlab.fileio import atomic_write_bytes

PANEL_INCHES = 3.4


def new_figure(width: float, height: float, dpi: int = 110) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Any, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def class_colours(num_classes: int) -> list[tuple[float, float, float, float]]:
    """Distinct colours: tab10 up to 10 classes, tab20 up to 20, then a hue wheel."""
    from matplotlib import colormaps

    if num_classes <= 10:
        return [colormaps["tab10"](i) for i in range(num_classes)]
    if num_classes <= 20:
        return [colormaps["tab20"](i) for i in range(num_classes)]
    return [colormaps["hsv"](i / num_classes) for i in range(num_classes)]


def _scatter_classes(
    axes: Any,
    points: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor | None,
    class_names: list[str],
) -> None:
    """Points coloured by true class; misclassified ones get a black cross on top."""
    n = max(len(points), 1)
    size = float(min(30.0, max(1.5, 1500.0 / math.sqrt(n) / 5)))
    colours = class_colours(len(class_names))
    xy = points.numpy()
    for c, name in enumerate(class_names):
        members = (labels == c).numpy()
        if members.any():
            axes.scatter(
                xy[members, 0],
                xy[members, 1],
                s=size,
                color=colours[c],
                label=name,
                linewidths=0,
                alpha=0.8,
                rasterized=True,
            )
    if predictions is not None:
        wrong = (predictions != labels).numpy()
        if wrong.any():
            axes.scatter(
                xy[wrong, 0],
                xy[wrong, 1],
                s=size * 1.6,
                marker="x",
                color="black",
                linewidths=0.5,
                alpha=0.7,
                label="misclassified",
                rasterized=True,
            )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_aspect("equal", adjustable="datalim")


def plot_projection(
    points: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor | None,
    class_names: list[str],
    title: str,
    path: str | os.PathLike,
) -> None:
    """One layer's 2-D projection with a legend of the classes."""
    figure = new_figure(7.5, 6.0)
    axes = figure.add_axes((0.03, 0.03, 0.72, 0.86))
    _scatter_classes(axes, points, labels, predictions, class_names)
    axes.set_title(title, fontsize=10)
    axes.legend(
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=8,
        markerscale=3,
        frameon=False,
    )
    save_figure(figure, path)


def plot_projection_grid(
    rows: list[tuple[str, list[tuple[str, torch.Tensor]]]],
    labels: torch.Tensor,
    predictions: list[torch.Tensor | None],
    class_names: list[str],
    title: str,
    path: str | os.PathLike,
) -> None:
    """Small multiples: one row per model state (trained, untrained), one panel per layer."""
    columns = max(len(panels) for _, panels in rows)
    figure = new_figure(PANEL_INCHES * columns + 1.8, PANEL_INCHES * len(rows) + 0.6)
    grid = figure.add_gridspec(len(rows), columns)
    last = None
    for r, ((row_name, panels), row_predictions) in enumerate(zip(rows, predictions, strict=True)):
        for c, (panel_title, points) in enumerate(panels):
            axes = figure.add_subplot(grid[r, c])
            _scatter_classes(axes, points, labels, row_predictions, class_names)
            axes.set_title(panel_title, fontsize=8)
            if c == 0:
                axes.set_ylabel(row_name, fontsize=10)
            last = axes
    if last is not None:
        handles, names = last.get_legend_handles_labels()
        figure.legend(handles, names, loc="center right", fontsize=8, markerscale=3, frameon=False)
    figure.suptitle(title, fontsize=11)
    width = PANEL_INCHES * columns + 1.8
    height = PANEL_INCHES * len(rows) + 0.6
    figure.subplots_adjust(
        left=0.3 / width,
        right=1 - 1.8 / width,
        bottom=0.05 / height,
        top=1 - 0.75 / height,
        wspace=0.06,
        hspace=0.3,
    )
    save_figure(figure, path)


METRIC_STYLE = {
    "feature_silhouette": ("silhouette (feature space)", "tab:blue"),
    "feature_knn_accuracy": ("k-NN accuracy (feature space)", "tab:red"),
    "feature_neighbourhood_hit": ("neighbourhood hit (feature space)", "tab:green"),
    "projection_knn_accuracy": ("k-NN accuracy (2-D projection)", "tab:orange"),
}


def plot_separability(
    layer_names: list[str],
    tables: dict[str, list[dict[str, float]]],
    labels: torch.Tensor,
    k: int,
    title: str,
    statement: str,
    path: str | os.PathLike,
) -> None:
    """Metrics against depth: one colour per metric, trained solid, untrained dashed, chance
    levels dotted; the statement on the seeds' claim is printed under the plot."""
    import textwrap

    from matplotlib.lines import Line2D

    width = max(8.0, 1.3 * len(layer_names) + 4.0)
    figure = new_figure(width, 5.6)
    axes = figure.add_axes((0.08, 0.27, 0.62, 0.64))
    x = list(range(len(layer_names)))
    styles = {"trained": "-", "untrained": "--"}
    for state, rows in tables.items():
        for key, (_, colour) in METRIC_STYLE.items():
            values = [row[key] for row in rows]
            axes.plot(x, values, styles.get(state, ":"), marker="o", color=colour, markersize=4)
    chance = chance_levels(labels, k)
    axes.axhline(chance["knn_accuracy"], color="grey", linestyle=":", linewidth=1)
    axes.axhline(0.0, color="black", linewidth=0.5)
    axes.set_xticks(x, labels=layer_names, rotation=25, ha="right", fontsize=8)
    axes.set_ylabel("score (higher = classes better separated)")
    low = min(-0.1, *(row["feature_silhouette"] for rows in tables.values() for row in rows))
    axes.set_ylim(low - 0.05, 1.02)
    axes.grid(alpha=0.3)
    axes.set_title(title, fontsize=10)
    handles = [
        Line2D([], [], color=colour, marker="o", label=name)
        for name, colour in METRIC_STYLE.values()
    ]
    handles += [Line2D([], [], color="black", linestyle=styles[s], label=s) for s in tables]
    handles.append(
        Line2D(
            [],
            [],
            color="grey",
            linestyle=":",
            label=f"k-NN chance level ({chance['knn_accuracy']:.2f})",
        )
    )
    axes.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False
    )
    wrapped = textwrap.fill(statement, width=int(width * 15))
    figure.text(0.02, 0.02, wrapped, ha="left", va="bottom", fontsize=8)
    save_figure(figure, path)


def plot_neuron_maps(
    positions: torch.Tensor,
    auc: torch.Tensor,
    dead: torch.Tensor,
    class_names: list[str],
    classes: list[int],
    title: str,
    path: str | os.PathLike,
) -> None:
    """One panel per class: the same neuron layout, coloured by each neuron's ROC AUC for that
    class against the rest (red: fires for it, blue: silent for it, white: indifferent)."""
    columns = min(5, len(classes))
    rows = math.ceil(len(classes) / columns)
    figure = new_figure(2.9 * columns + 1.0, 2.9 * rows + 0.7)
    grid = figure.add_gridspec(rows, columns)
    xy = positions.numpy()
    live = (~dead).numpy()
    image = None
    for index, c in enumerate(classes):
        axes = figure.add_subplot(grid[index // columns, index % columns])
        values = auc[c].numpy()
        image = axes.scatter(
            xy[live, 0],
            xy[live, 1],
            c=values[live],
            cmap="coolwarm",
            vmin=0.0,
            vmax=1.0,
            s=22,
            edgecolors="black",
            linewidths=0.3,
        )
        if (~live).any():
            axes.scatter(xy[~live, 0], xy[~live, 1], marker="x", color="grey", s=14, linewidths=0.6)
        best = int(torch.where(dead, -1.0, auc[c]).argmax())
        axes.scatter(
            [xy[best, 0]],
            [xy[best, 1]],
            s=90,
            facecolors="none",
            edgecolors="black",
            linewidths=1.2,
        )
        axes.annotate(str(best), xy[best], xytext=(4, 4), textcoords="offset points", fontsize=7)
        specialists = int(((auc[c] >= 0.9) & ~dead).sum())
        axes.set_title(f"{class_names[c]}: {specialists} with AUC >= 0.9", fontsize=8)
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_aspect("equal", adjustable="datalim")
    if image is not None:
        colorbar = figure.colorbar(image, ax=figure.axes, fraction=0.02, pad=0.02)
        colorbar.set_label("ROC AUC, class vs rest", fontsize=8)
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)
