"""`write_report(run)`: gather the run's parts, build each section, place the Bokeh charts and
write RUN/report.html in one file that opens offline."""

from __future__ import annotations

import re
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_text
from cnnlab.report import evaluation_sections as ev
from cnnlab.report import explain_sections as ex
from cnnlab.report import training_sections as tr
from cnnlab.report.collect import ReportInputs, collect
from cnnlab.report.html import Section, chart_slot
from cnnlab.report.images import class_colours_hex
from cnnlab.report.page import render_page

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
        tr.model_section(inputs),
        ev.metrics_section(inputs),
        ev.confusion_section(inputs, colours),
        ev.top_losses_section(inputs),
        ex.projections_section(inputs, colours),
        ex.explain_section(inputs),
    ]


def render_report(inputs: ReportInputs) -> tuple[str, list[str]]:
    """The page's HTML (Bokeh's library inlined once, every chart in its slot) and the sentences
    saying what is missing."""
    from bokeh.embed import components
    from bokeh.resources import INLINE

    sections = build_sections(inputs)
    models = {name: chart for s in sections for name, chart in s.charts.items()}
    script, divs = components(models) if models else ("", {})
    for section in sections:
        for name in section.charts:
            section.body = section.body.replace(chart_slot(name), divs[name])
    subtitle = f"{inputs.dataset.source}, {inputs.split} split; {inputs.run.path}"
    html = render_page(inputs.run.path.name, subtitle, sections, INLINE.render(), script)
    found = EXTERNAL.search(html)
    if found or "cdn.bokeh.org" in html:
        raise CnnlabError(
            f"The report would load {found[0] if found else 'cdn.bokeh.org'}; it must be "
            "self-contained. "
            "This is a bug in cnnlab's report: please report it with your Bokeh version."
        )
    return html, [note for section in sections for note in section.missing]


def write_report(
    run: str | Path,
    out: str | Path | None = None,
    split: str = "test",
    data_dir: str | None = None,
) -> Path:
    """Write the report of `run` (default RUN/report.html) and return its path."""
    inputs = collect(run, split=split, data_dir=data_dir)
    target = Path(out) if out is not None else inputs.run.report
    atomic_write_text(target, render_report(inputs)[0])
    return target
