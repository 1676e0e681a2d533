"""Small HTML builders the sections share: escaped tables, key-value lists, images, notes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape


@dataclass
class Section:
    """One part of the report: its anchor, title, HTML, the Bokeh models it places by name, and
    the sentences saying what is missing and which command makes it."""

    anchor: str
    title: str
    body: str = ""
    charts: dict[str, Any] = field(default_factory=dict)  # placeholder name -> Bokeh model
    missing: list[str] = field(default_factory=list)


def chart_slot(name: str) -> str:
    """Where a Bokeh chart goes; the page builder replaces it with the chart's div."""
    return f"<!--chart:{name}-->"


def table(header: Iterable[Any], rows: Iterable[Iterable[Any]], css: str = "") -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _cell(value: Any) -> str:
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(escape(value))


def pairs(items: Iterable[tuple[str, Any]]) -> str:
    """A definition list of (label, value) pairs."""
    body = "".join(f"<dt>{escape(key)}</dt><dd>{_cell(value)}</dd>" for key, value in items)
    return f"<dl class='pairs'>{body}</dl>"


def figure(uri: str, caption: str, css: str = "") -> str:
    return (
        f"<figure class='{css}'><img src='{escape(uri)}' alt='{escape(caption)}' loading='lazy'>"
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def thumb(uri: str, caption: str) -> str:
    return (
        f"<figure class='thumb'><img src='{escape(uri)}' alt='{escape(caption)}'>"
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def paragraph(text: str, css: str = "") -> str:
    return f"<p class='{css}'>{escape(text)}</p>"
