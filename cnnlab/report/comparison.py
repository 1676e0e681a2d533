"""The report of a `cnnlab compare` folder: the pipelines' table (mean +- sd over folds), the
paired test, the learning curves (interactive), the per-fold accuracies and the splits, read
through `cnnlab.compare.outputs.read_comparison` (plain JSON, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from cnnlab.report.html import Section, chart_slot, pairs, paragraph, table
from cnnlab.report.runs import RUN_COLOURS

COLUMNS = (
    ("accuracy", "accuracy"),
    ("balanced accuracy", "balanced_accuracy"),
    ("Cohen's kappa", "cohen_kappa"),
    ("macro F1", "macro_f1"),
)


def is_comparison(folder: Path) -> bool:
    """A folder `cnnlab compare` wrote into (its splits, or its summary beside its results)."""
    return (folder / "splits.json").is_file() or (
        (folder / "summary.json").is_file() and (folder / "results").is_dir()
    )


def read(folder: str | Path) -> dict[str, Any]:
    from cnnlab.compare.outputs import read_comparison

    return read_comparison(folder)


def _mean_sd(record: dict[str, Any], key: str) -> str:
    return f"{record[key]:.4f} +- {record[key + '_sd']:.4f}"


def pipelines_section(comparison: dict[str, Any]) -> Section:
    summary = comparison["summary"]
    section = Section("pipelines", "Pipelines (mean +- sd over folds)")
    records = sorted(summary["pipelines"], key=lambda r: r["accuracy"], reverse=True)
    rows = []
    for index, record in enumerate(records):
        colour = RUN_COLOURS[summary["pipelines"].index(record) % len(RUN_COLOURS)]
        name = Markup(
            f"<span class='swatch' style='background:{colour}'></span>"
            + ("<b>{}</b>" if index == 0 else "{}").format(escape(record["pipeline"]))
        )
        rows.append(
            (
                name,
                record["folds"],
                *(_mean_sd(record, key) for _, key in COLUMNS),
                f"{record['fit_seconds']:.1f}",
                f"{record['images_per_second']:.0f}",
            )
        )
    header = ("pipeline", "folds", *(n for n, _ in COLUMNS), "fit s", "images/s")
    section.body = paragraph(f"sd: {summary.get('sd', 'standard deviation over folds')}.")
    section.body += table(header, rows)
    section.body += _paired_test(summary.get("paired_test"))
    section.body += "<h3>Accuracy per fold</h3>" + _per_fold(records)
    return section


def _paired_test(test: dict[str, Any] | None) -> str:
    if not test:
        return paragraph("No paired test: it needs two pipelines and two folds or more.")
    return paragraph(
        f"{test['better']} vs {test['worse']}: accuracy difference "
        f"{test['mean_difference']:+.4f} +- {test['sd_difference']:.4f} (sd over folds), "
        f"p = {test['p_value']:.3g} ({test['test']}). Folds share training images, so the "
        "p-value is optimistic: read it as a guide, with the sd beside it.",
        "statement",
    )


def _per_fold(records: list[dict[str, Any]]) -> str:
    folds = max((len(r["per_fold_accuracy"]) for r in records), default=0)
    rows = [
        (r["pipeline"], *r["per_fold_accuracy"], *([""] * (folds - len(r["per_fold_accuracy"]))))
        for r in records
    ]
    return table(("pipeline", *(f"fold {i}" for i in range(folds))), rows)


def _curve_chart(points: list[dict[str, Any]], data: str) -> Any:
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    plot = figure(
        title=f"Learning curves on {data}",
        width=640,
        height=380,
        x_axis_type="log",
        x_axis_label="training images per class (train + val)",
        y_axis_label="test accuracy (mean +- sd over folds)",
        tools="hover,save,pan,wheel_zoom,reset",
    )
    for index, name in enumerate(dict.fromkeys(p["pipeline"] for p in points)):
        mine = [p for p in points if p["pipeline"] == name]
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]
        source = ColumnDataSource(
            {
                "x": [p["train_images_per_class"] for p in mine],
                "y": [p["accuracy"] for p in mine],
                "low": [p["accuracy"] - p["accuracy_sd"] for p in mine],
                "high": [p["accuracy"] + p["accuracy_sd"] for p in mine],
                "sd": [p["accuracy_sd"] for p in mine],
                "folds": [p["folds"] for p in mine],
                "pipeline": [name] * len(mine),
            }
        )
        plot.varea(x="x", y1="low", y2="high", source=source, fill_color=colour, fill_alpha=0.15)
        plot.line(x="x", y="y", source=source, line_color=colour, line_width=2, legend_label=name)
        plot.scatter(x="x", y="y", source=source, color=colour, size=6)
    plot.hover.tooltips = [
        ("pipeline", "@pipeline"),
        ("images per class", "@x{0.0}"),
        ("accuracy", "@y{0.0000} +- @sd{0.0000}"),
        ("folds", "@folds"),
    ]
    plot.legend.location = "bottom_right"
    plot.legend.click_policy = "hide"
    return plot


def curves_section(comparison: dict[str, Any]) -> Section:
    section = Section("learning-curves", "Learning curves")
    points = comparison["learning_curve"]
    shares = {p["share"] for p in points}
    if len(shares) < 2:
        section.missing.append(
            "No learning curve: the comparison has one curve point. Give several with "
            "`cnnlab compare ... --curve 0.1,0.5,1`."
        )
        return section
    section.body = paragraph(
        "Accuracy on the test folds against the training images per class; the band is +- one "
        "sd over folds. Hover a point for its numbers; click a legend entry to hide it."
    ) + chart_slot("learning-curve")
    section.charts["learning-curve"] = _curve_chart(points, comparison["splits"]["data"])
    return section


def splits_section(comparison: dict[str, Any]) -> Section:
    splits = comparison["splits"]
    settings = comparison["summary"].get("settings", {})
    section = Section("splits", "Data and splits")
    folds = splits["folds"]
    scheme = (
        f"{settings['repeats']} repeats of a stratified hold-out of "
        f"{settings.get('test_fraction')} of each class"
        if settings.get("repeats")
        else f"stratified {len(folds)}-fold cross-validation"
    )
    section.body = pairs(
        [
            ("data", splits["data"]),
            ("images", splits["num_images"]),
            ("classes", ", ".join(map(str, splits["class_names"]))),
            ("splits", scheme),
            ("validation", f"{settings.get('val_fraction')} of the non-test images per class"),
            ("seed", settings.get("seed")),
            ("splits fingerprint", splits["fingerprint"]),
        ]
    )
    section.body += paragraph(
        "Every pipeline saw exactly these splits (the indices are in splits.json). Images per fold:"
    ) + table(
        ("fold", "train", "val", "test", "curve points (train/val)"),
        [
            (
                fold["fold"],
                fold["train"],
                fold["val"],
                fold["test"],
                ", ".join(f"{int(s)}%: {c['train']}/{c['val']}" for s, c in fold["curve"].items()),
            )
            for fold in folds
        ],
    )
    section.body += "<h3>Settings</h3>" + pairs(sorted(settings.items()))
    return section


def build_comparison_sections(comparison: dict[str, Any]) -> list[Section]:
    return [
        pipelines_section(comparison),
        curves_section(comparison),
        splits_section(comparison),
    ]
