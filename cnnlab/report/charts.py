"""The report's interactive charts with Bokeh: class counts, training curves, and the projections
of every explained layer on one shared data source, so a selection in one shows in all."""

from __future__ import annotations

from typing import Any

from cnnlab.run.artifacts import Projection

CHART_WIDTH, CHART_HEIGHT = 420, 280
TOOLTIP = """
<div class="point-tip">
  <img src="@thumb" width="56" height="56" style="image-rendering: pixelated" alt="@sample">
  <div>@sample<br>true: <b>@true</b><br>predicted: <b>@predicted</b></div>
</div>
"""


def _figure(title: str, **options: Any) -> Any:
    from bokeh.plotting import figure

    size = {"width": CHART_WIDTH, "height": CHART_HEIGHT}
    return figure(title=title, **{**size, **options})


def counts_chart(class_names: list[str], counts: dict[str, list[int]], colours: list[str]) -> Any:
    """Images per class in each split, stacked, in the classes' colours."""
    from bokeh.models import ColumnDataSource

    splits = [split for split in ("train", "val", "test") if split in counts]
    keys = [str(name) for name in class_names]
    data = {"split": splits}
    for index, key in enumerate(keys):
        data[key] = [counts[split][index] for split in splits]
    plot = _figure("images per class and split", x_range=splits, tools="hover,save")
    renderers = plot.vbar_stack(
        keys,
        x="split",
        width=0.7,
        source=ColumnDataSource(data),
        color=colours,
        legend_label=[str(name) for name in class_names],
    )
    for renderer, key in zip(renderers, keys, strict=True):
        renderer.name = key
    plot.hover.tooltips = [("class", "$name"), ("split", "@split"), ("images", "@$name")]
    plot.legend.label_text_font_size = "8pt"
    plot.add_layout(plot.legend[0], "right")
    plot.y_range.start = 0
    return plot


def _marks(plot: Any, best_epoch: int | None, events: list[dict[str, Any]]) -> None:
    from bokeh.models import Span

    if best_epoch is not None:
        plot.add_layout(
            Span(
                location=best_epoch,
                dimension="height",
                line_color="#2a9d2a",
                line_width=2,
                line_alpha=0.7,
            )
        )
    for event in events:
        plot.add_layout(
            Span(
                location=event.get("epoch", 0) - 0.5,
                dimension="height",
                line_color="#c0392b",
                line_dash="dashed",
            )
        )


def curves_charts(rows: list[dict[str, Any]]) -> list[Any]:
    """Loss, accuracy, balanced accuracy and learning rate per epoch; the best epoch (green) and
    interruptions/resumes (dashed red) marked on each."""
    epochs = [row for row in rows if row.get("kind") == "epoch"]
    end = next((row for row in reversed(rows) if row.get("kind") == "end"), {})
    events = [row for row in rows if row.get("kind") == "event"]
    panels = [
        ("loss", ["train_loss", "val_loss"]),
        ("accuracy", ["train_accuracy", "val_accuracy", "val_balanced_accuracy"]),
        ("learning rate (end of epoch)", ["lr"]),
    ]
    palette = ["#1f77b4", "#ff7f0e", "#9467bd"]
    charts = []
    for title, keys in panels:
        plot = _figure(title, tools="hover,save,pan,wheel_zoom,reset", x_axis_label="epoch")
        for key, colour in zip(keys, palette, strict=False):
            points = [(row["epoch"], row[key]) for row in epochs if row.get(key) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                plot.line(xs, ys, legend_label=key, line_color=colour, line_width=2)
                plot.scatter(xs, ys, color=colour, size=5)
        if plot.legend:
            plot.legend.location = "bottom_left" if title != "accuracy" else "bottom_right"
            plot.legend.label_text_font_size = "8pt"
        _marks(plot, end.get("best_epoch"), events)
        charts.append(plot)
    return charts


def projection_source(
    projections: list[Projection], thumbnails: dict[str, str], colours: list[str]
) -> Any:
    """One ColumnDataSource for every layer and state: columns x0, y0, x1, y1... per projection,
    aligned by sample id, so selecting rows in one plot selects them in all."""
    from bokeh.models import ColumnDataSource

    first = projections[0]
    names = first.class_names
    data: dict[str, list[Any]] = {
        "sample": list(first.sample_ids),
        "true": [names[label] for label in first.labels],
        "predicted": [names[label] for label in first.predictions],
        "colour": [colours[label] for label in first.labels],
        "marker": [
            "circle" if t == p else "x"
            for t, p in zip(first.labels, first.predictions, strict=True)
        ],
        "thumb": [thumbnails.get(sample, "") for sample in first.sample_ids],
    }
    for index, projection in enumerate(projections):
        where = {
            sample: (x, y)
            for sample, x, y in zip(projection.sample_ids, projection.x, projection.y, strict=True)
        }
        data[f"x{index}"] = [where.get(sample, (float("nan"),) * 2)[0] for sample in data["sample"]]
        data[f"y{index}"] = [where.get(sample, (float("nan"),) * 2)[1] for sample in data["sample"]]
    return ColumnDataSource(data, name="projection-points")


def projection_grid(
    projections: list[Projection], thumbnails: dict[str, str], colours: list[str]
) -> Any:
    """Each layer's projection after training, beside its projection before training if explain
    ran with --untrained; hover shows the image, a box or lasso selection shows in every plot."""
    from bokeh.layouts import column, gridplot
    from bokeh.models import BoxSelectTool, CustomJS, Div, HoverTool, LassoSelectTool

    source = projection_source(projections, thumbnails, colours)
    readout = Div(
        text="Drag a box (or lasso) over points: the same images light up in every layer.",
        name="selection-readout",
    )
    source.selected.js_on_change(
        "indices",
        CustomJS(
            args={"readout": readout},
            code="""
        const n = cb_obj.indices.length;
        readout.text = n ? `${n} images selected: highlighted in every layer.` : 'No selection.';
    """,
        ),
    )
    by_key = {(p.state, p.layer): index for index, p in enumerate(projections)}
    layers = list(dict.fromkeys(p.layer for p in projections))
    rows = []
    for layer in layers:
        row = []
        for state in ("trained", "untrained"):
            index = by_key.get((state, layer))
            if index is None:
                continue
            plot = _figure(
                f"{layer} ({'after' if state == 'trained' else 'before'} training)",
                tools="pan,wheel_zoom,reset,save",
                width=340,
                height=300,
                name=f"projection-{index}",
            )
            box = BoxSelectTool()
            plot.add_tools(box, LassoSelectTool(), HoverTool(tooltips=TOOLTIP))
            plot.toolbar.active_drag = box
            plot.scatter(
                f"x{index}",
                f"y{index}",
                source=source,
                marker="marker",
                fill_color="colour",
                line_color="colour",
                size=7,
                fill_alpha=0.7,
                nonselection_alpha=0.12,
                selection_line_color="black",
            )
            row.append(plot)
        rows.append(row)
    return column(readout, gridplot(rows, toolbar_location="right"))
