"""The report of several runs side by side: their test metrics, the training curves overlaid (one
colour per run in every chart), and per-class recall and F1 with the last run's difference to the
first highlighted. Built from the run directories alone, like the one-run report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from cnnlab.report.collect import missing
from cnnlab.report.html import Section, chart_slot, paragraph, table
from cnnlab.run import DatasetRecord, RunDir
from cnnlab.run.evaluation import read_evaluation

# Category10: distinct on screen and in print; runs past ten reuse them in order
RUN_COLOURS = (
    "#1f77b4 #ff7f0e #2ca02c #d62728 #9467bd #8c564b #e377c2 #7f7f7f #bcbd22 #17becf".split()
)
NOTABLE_DIFFERENCE = 0.05  # a per-class change at least this large gets a background


@dataclass
class RunSummary:
    """What the side-by-side report reads from one run directory."""

    label: str
    run: RunDir
    dataset: DatasetRecord
    model: str
    rows: list[dict[str, Any]]
    evaluation: dict[str, Any] | None
    colour: str

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row.get("kind") == "epoch"]


def _labels(paths: list[Path]) -> list[str]:
    """The folder names, or the paths as given where two runs share a name."""
    names = [p.name for p in paths]
    return [str(p) if names.count(p.name) > 1 else p.name for p in paths]


def collect_runs(paths: list[str | Path], split: str = "test") -> list[RunSummary]:
    folders = [Path(p) for p in paths]
    runs = []
    for index, (label, folder) in enumerate(zip(_labels(folders), folders, strict=True)):
        run = RunDir(folder)
        model = run.model_record().name if run.model.exists() else "?"
        runs.append(
            RunSummary(
                label=label,
                run=run,
                dataset=run.dataset_record(),
                model=model,
                rows=run.logged_rows(),
                evaluation=read_evaluation(run, split),
                colour=RUN_COLOURS[index % len(RUN_COLOURS)],
            )
        )
    return runs


def _swatch(run: RunSummary) -> Markup:
    return Markup(
        f"<span class='swatch' style='background:{run.colour}'></span>{escape(run.label)}"
    )


def runs_section(runs: list[RunSummary]) -> Section:
    section = Section("runs", "The runs")
    rows = []
    for run in runs:
        end = next((r for r in reversed(run.rows) if r.get("kind") == "end"), {})
        rows.append(
            (
                _swatch(run),
                run.dataset.source,
                run.model,
                len(run.epochs),
                end.get("best_epoch", "?"),
                str(run.run.path),
            )
        )
    section.body = table(("run", "data", "model", "epochs", "best epoch", "folder"), rows)
    sources = {run.dataset.source for run in runs}
    if len(sources) > 1:
        section.body += paragraph(
            f"The runs use different data ({', '.join(sorted(sources))}): their metrics are "
            "not measured on the same images.",
            "statement",
        )
    return section


METRICS = (
    ("accuracy", "accuracy"),
    ("balanced accuracy", "balanced_accuracy"),
    ("Cohen's kappa", "cohen_kappa"),
    ("macro F1", "macro_f1"),
)


def metrics_section(runs: list[RunSummary], split: str) -> Section:
    section = Section("metrics", f"Test metrics ({split} split)")
    rows = []
    for run in runs:
        result = run.evaluation
        if result is None:
            section.missing.append(
                missing(
                    f"the evaluation of {run.label} ({split} split)",
                    f"cnnlab evaluate {run.run.path} --split {split}",
                )
            )
            continue
        checkpoint = result.get("checkpoint", {})
        rows.append(
            (
                _swatch(run),
                result.get("num_samples"),
                *(float(result.get(key, float("nan"))) for _, key in METRICS),
                f"{checkpoint.get('file', '?')} (epoch {checkpoint.get('epoch', '?')})",
            )
        )
    if rows:
        header = ("run", "images", *(name for name, _ in METRICS), "checkpoint")
        section.body = table(header, rows)
    return section


CURVES = (
    ("loss (solid: validation, dashed: training)", "val_loss", "train_loss"),
    ("validation accuracy", "val_accuracy", None),
    ("validation balanced accuracy", "val_balanced_accuracy", None),
    ("learning rate (end of epoch)", "lr", None),
)


def _curve_chart(runs: list[RunSummary], title: str, key: str, dashed: str | None) -> Any:
    from bokeh.plotting import figure

    plot = figure(
        title=title,
        width=460,
        height=300,
        tools="hover,save,pan,wheel_zoom,reset",
        x_axis_label="epoch",
    )
    for run in runs:
        for column, dash in ((key, "solid"), (dashed, "dashed")):
            points = [(r["epoch"], r[column]) for r in run.epochs if r.get(column) is not None]
            if column is None or not points:
                continue
            xs, ys = zip(*points, strict=True)
            legend = {"legend_label": run.label} if dash == "solid" else {}
            plot.line(xs, ys, line_color=run.colour, line_width=2, line_dash=dash, **legend)
            plot.scatter(xs, ys, color=run.colour, size=4)
    if plot.legend:
        plot.legend.label_text_font_size = "8pt"
        plot.legend.click_policy = "hide"
    return plot


def curves_section(runs: list[RunSummary]) -> Section:
    section = Section("curves", "Training curves")
    without = [run.label for run in runs if not run.epochs]
    if without:
        section.missing.append(
            f"No epoch logged yet in {', '.join(without)}: train it (`cnnlab train --resume "
            "RUN` continues an interrupted run)."
        )
    section.body = paragraph("One colour per run in every chart; click a legend entry to hide it.")
    for index, (title, key, dashed) in enumerate(CURVES):
        section.charts[f"runs-curve-{index}"] = _curve_chart(runs, title, key, dashed)
        section.body += chart_slot(f"runs-curve-{index}")
    return section


def _difference(value: float) -> Markup:
    css = "up" if value > 0 else "down" if value < 0 else ""
    if abs(value) >= NOTABLE_DIFFERENCE:
        css += " notable"
    return Markup(f"<span class='diff {css}'>{value:+.4f}</span>")


def per_class_section(runs: list[RunSummary]) -> Section:
    section = Section("per-class", "Per-class recall and F1")
    scored = [run for run in runs if run.evaluation and run.evaluation.get("per_class")]
    if len(scored) < 2:
        section.missing.append("Per-class differences need the evaluation of two runs or more.")
        return section
    tables = {run.label: {r["class"]: r for r in run.evaluation["per_class"]} for run in scored}
    classes = [c for c in tables[scored[0].label] if all(c in t for t in tables.values())]
    first, last = scored[0].label, scored[-1].label
    header = ["class"]
    for run in scored:
        header += [f"{run.label} recall", f"{run.label} F1"]
    header += [f"recall: {last} - {first}", f"F1: {last} - {first}"]
    rows = []
    for name in classes:
        row: list[Any] = [name]
        for run in scored:
            row += [float(tables[run.label][name]["recall"]), float(tables[run.label][name]["f1"])]
        for key in ("recall", "f1"):
            row.append(_difference(tables[last][name][key] - tables[first][name][key]))
        rows.append(row)
    section.body = paragraph(
        f"The last two columns: {last} minus {first}; green better, red worse, shaded when the "
        f"change is {NOTABLE_DIFFERENCE} or more."
    ) + table(header, rows, "per-class")
    dropped = len(tables[first]) - len(classes)
    if dropped:
        section.missing.append(f"{dropped} class(es) of {first} are not in every run: left out.")
    return section


def build_run_sections(runs: list[RunSummary], split: str) -> list[Section]:
    return [
        runs_section(runs),
        metrics_section(runs, split),
        curves_section(runs),
        per_class_section(runs),
    ]


def default_out(paths: list[str | Path]) -> Path:
    """report-A-vs-B.html (report-A-and-N-more.html past two) in the current folder."""
    names = [Path(p).resolve().name for p in paths]
    tail = f"vs-{names[1]}" if len(names) == 2 else f"and-{len(names) - 1}-more"
    return Path(f"report-{names[0]}-{tail}.html")
