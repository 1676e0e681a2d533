"""`write_report(run)`: gather the parts of a run (or several runs, or a `cnnlab compare` folder),
build each section, place the Bokeh charts and write one file that opens offline."""

from __future__ import annotations

import re
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text
from cnnlab.report import comparison
from cnnlab.report import evaluation_sections as ev
from cnnlab.report import explain_sections as ex
from cnnlab.report import training_sections as tr
from cnnlab.report.collect import ReportInputs, collect
from cnnlab.report.html import Section, chart_slot
from cnnlab.report.images import class_colours_hex
from cnnlab.report.page import render_page
from cnnlab.report.runs import build_run_sections, collect_runs, default_out

# A page element that loads from another host; Bokeh's inlined library mentions hosts for
# features the report does not use (MathJax, icon fonts), which the browser tests watch for.
EXTERNAL = re.compile(
    r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//", re.I
)


def build_sections(inputs: ReportInputs) -> list[Section]:
    colours = class_colours_hex(len(inputs.class_names))
    return [
        tr.run_section(inputs),
        tr.data_section(inputs, colours),
        tr.curves_section(inputs),
        tr.layers_section(inputs),
        tr.model_section(inputs),
        ev.metrics_section(inputs),
        ev.confusion_section(inputs, colours),
        ev.top_losses_section(inputs),
        ex.projections_section(inputs, colours),
        ex.explain_section(inputs),
    ]


def assemble(title: str, subtitle: str, sections: list[Section]) -> tuple[str, list[str]]:
    """The page's HTML (Bokeh's library inlined once, every chart in its slot) and the sentences
    saying what is missing."""
    from bokeh.embed import components
    from bokeh.resources import INLINE

    models = {name: chart for s in sections for name, chart in s.charts.items()}
    script, divs = components(models) if models else ("", {})
    for section in sections:
        for name in section.charts:
            section.body = section.body.replace(chart_slot(name), divs[name])
    html = render_page(title, subtitle, sections, INLINE.render(), script)
    found = EXTERNAL.search(html)
    if found or "cdn.bokeh.org" in html:
        raise CnnlabError(
            f"The report would load {found[0] if found else 'cdn.bokeh.org'}; it must be "
            "self-contained. "
            "This is a bug in cnnlab's report: please report it with your Bokeh version."
        )
    return html, [note for section in sections for note in section.missing]


def render_report(inputs: ReportInputs) -> tuple[str, list[str]]:
    """One run's page and the sentences saying what is missing."""
    subtitle = f"{inputs.dataset.source}, {inputs.split} split; {inputs.run.path}"
    return assemble(inputs.run.path.name, subtitle, build_sections(inputs))


def render_runs_report(paths: list[str | Path], split: str = "test") -> tuple[str, list[str]]:
    """Several runs side by side: metrics, overlaid curves, per-class differences."""
    runs = collect_runs(paths, split)
    title = " vs ".join(run.label for run in runs)
    subtitle = f"{len(runs)} runs, {split} split; " + ", ".join(str(r.run.path) for r in runs)
    return assemble(title, subtitle, build_run_sections(runs, split))


def render_comparison_report(folder: str | Path) -> tuple[str, list[str]]:
    """A `cnnlab compare` folder: the pipelines' table, paired test, curves and splits."""
    found = comparison.read(folder)
    names = ", ".join(r["pipeline"] for r in found["summary"]["pipelines"])
    subtitle = f"cnnlab compare on {found['splits']['data']}: {names}; {found['folder']}"
    title = f"comparison {Path(found['folder']).name}"
    return assemble(title, subtitle, comparison.build_comparison_sections(found))


def kind_of(path: str | Path) -> str:
    """ "run" or "comparison"; a one-line error for anything else."""
    folder = Path(path)
    if not folder.is_dir():
        raise CnnlabError(f"'{folder}' is not a folder: give a run directory or a comparison.")
    if (folder / "dataset.json").is_file():
        return "run"
    if comparison.is_comparison(folder):
        return "comparison"
    raise CnnlabError(
        f"'{folder}' is neither a run directory (no dataset.json, written by `cnnlab train`) "
        "nor a comparison (no splits.json, written by `cnnlab compare`)."
    )


def render_any(paths: list[str | Path], split: str = "test", data_dir: str | None = None):
    """(html, missing notes, default target) for one run, one comparison, or several runs."""
    kinds = [kind_of(path) for path in paths]
    if len(paths) == 1 and kinds[0] == "comparison":
        return (*render_comparison_report(paths[0]), Path(paths[0]) / "report.html")
    if "comparison" in kinds:
        shown = paths[kinds.index("comparison")]
        raise CnnlabError(
            f"'{shown}' is a comparison: report it alone (`cnnlab report {shown}`); several "
            "folders must all be runs."
        )
    if len(paths) == 1:
        inputs = collect(paths[0], split=split, data_dir=data_dir)
        return (*render_report(inputs), inputs.run.report)
    return (*render_runs_report(paths, split), default_out(paths))


def write_report(
    run: str | Path | list[str | Path],
    out: str | Path | None = None,
    split: str = "test",
    data_dir: str | None = None,
) -> Path:
    """Write the report of a run, a comparison folder or a list of runs and return its path
    (default: RUN/report.html, FOLDER/report.html, report-A-vs-B.html here)."""
    paths = list(run) if isinstance(run, list | tuple) else [run]
    html, _, default = render_any(paths, split=split, data_dir=data_dir)
    target = Path(out) if out is not None else default
    atomic_write_text(target, html)
    return target
