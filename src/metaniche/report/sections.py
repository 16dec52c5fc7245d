"""What a report section is: a title, an optional chart, a caption and an optional table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup

from metaniche._atomic import write_text

__all__ = ["Section", "Table", "inline_svg", "int_label", "preferred", "save_svg"]


@dataclass
class Table:
    """A small HTML table: header labels and rows of already formatted cells.

    ``sortable`` tables sort on a header click (the inline script of ``_sort.js.html``;
    numbers compare as numbers, '–' last).
    """

    columns: list[str]
    rows: list[list[str]]
    sortable: bool = False


@dataclass
class Section:
    """One section of a page; rendered by the ``section`` macro of the templates.

    Attributes
    ----------
    key
        Anchor id (ASCII, fixed by the code, never user text).
    title
        Heading.
    caption
        What the chart shows, its units and conventions.
    svg
        Inline SVG built by :mod:`metaniche.report.svg` (its text is escaped there).
    image
        Relative path of a PNG shown instead of / besides the SVG.
    files
        Relative paths of the figure files for download (PNG / SVG).
    download
        File name offered for the inline SVG (saved from the page by ``_download.js.html``,
        so the chart is stored once, in the page); '' for none.
    table
        Optional table shown under the chart.
    subsections
        Sections rendered inside this one (as ``h3``), in order.
    """

    key: str
    title: str
    caption: str = ""
    svg: Markup | None = None
    image: str | None = None
    files: list[str] = field(default_factory=list)
    table: Table | None = None
    subsections: list[Section] = field(default_factory=list)
    download: str = ""


def save_svg(svg: str, report_dir: Path, stem: str) -> tuple[Markup, str]:
    """Write ``figures/<stem>.svg`` and return the SVG as markup plus its relative path."""
    relative = f"figures/{stem}.svg"
    write_text(report_dir / relative, '<?xml version="1.0" encoding="UTF-8"?>\n' + svg)
    return Markup(svg), relative


def inline_svg(svg: str, stem: str) -> tuple[Markup, str]:
    """The SVG as markup for the page and the file name ``<stem>.svg`` its download link
    offers (nothing is written: a per-sample chart lives once, inline in its page)."""
    return Markup(svg), f"{stem}.svg"


def int_label(value: Any) -> str:
    """``str(int(value))`` for numeric ids (``3.0`` → ``3``), else ``str(value)``."""
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return str(value)


def preferred(values: object, first_choice: str) -> str | None:
    """``first_choice`` when among the non-null ``values``, else the first of them (None if
    there are none)."""
    present = list(pd.unique(pd.Series(values).dropna()))
    return first_choice if first_choice in present else (present[0] if present else None)
