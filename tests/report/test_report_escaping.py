"""Hostile sample names and cell-type labels: escaped everywhere, files stay in the run dir."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from metaniche.config import Config
from metaniche.pipeline import run
from metaniche.report import render_report
from metaniche.report.html import _ENV
from metaniche.simulate import simulate_sample

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> tuple[Path, Path, set[Path]]:
    """(root, run dir, files outside the run dir before the run) of a hostile-label sample."""
    root = tmp_path_factory.mktemp("hostile")
    # 10,000 cells: large enough for a zoomable map (its alt text carries the sample name)
    cells = simulate_sample("x", n_cells=10_000, seed=5, n_lesions=1).cells
    cells["cell_type"] = cells["cell_type"].replace({"Macrophage": SCRIPT, "B": "$x^2$ & co"})
    cells["sample"] = "../../etc/x"
    inputs = root / "in"
    inputs.mkdir()
    cells.to_csv(inputs / "cells.csv", index=False)
    out = root / "a" / "b" / "run"
    out.parent.mkdir(parents=True)
    before = set(root.rglob("*"))
    result = run([inputs], out, Config())
    assert result.failed == []
    return root, out, before


def test_no_file_outside_the_run_directory(hostile_run):
    root, out, before = hostile_run
    after = {p for p in root.rglob("*") if out not in p.parents and p != out}
    assert after == before, f"files written outside the run directory: {after - before}"
    assert not (root / "etc").exists() and not (root / "a" / "etc").exists()


def test_labels_and_names_are_escaped(hostile_run):
    _, out, _ = hostile_run
    report = out / "report"
    pages = list(report.glob("*.html"))
    assert len(pages) == 2
    sample_page = next(p for p in pages if p.name != "index.html")
    assert ".." not in sample_page.name and os.sep not in sample_page.stem
    texts = {p: p.read_text(encoding="utf-8") for p in [*pages, *report.rglob("*.svg")]}
    # The only scripts are the zoom view's and the page's own (table sorter, table filter,
    # SVG download), files written verbatim beside the pages and linked with an empty body:
    # no user text ever reaches JavaScript.
    assert (report / "report.js").read_text(encoding="utf-8") == _ENV.get_template(
        "_page.js.html").render()
    assert (report / "zoom.js").read_text(encoding="utf-8") == _ENV.get_template(
        "_zoom.js.html").render()
    for path, text in texts.items():
        assert SCRIPT not in text, path
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", text, re.S | re.I)
        assert text.lower().count("<script") == len(scripts), path
        assert all(attributes in (' src="report.js"', ' src="zoom.js"') and not body
                   for attributes, body in scripts), path
    page = texts[sample_page]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "../../etc/x" in page  # shown literally as text, never used as a path
    assert "$x^2$ &amp; co" in page
    assert (report / "figures" / f"{sample_page.stem}.map.png").is_file()
    assert (report / "figures" / f"{sample_page.stem}.map.zoom.png").is_file()
    # the zoom view and the page script, both verbatim (checked above)
    assert len(re.findall(r"<script\b", page)) == 2
    assert 'alt="zoomable tissue map of ../../etc/x"' in page
    assert f'href="{sample_page.name}"' in texts[report / "index.html"]


def test_report_rerenders_without_the_cells(hostile_run):
    _, out, _ = hostile_run
    page = next(p for p in (out / "report").glob("*.html") if p.name != "index.html")
    page.unlink()
    for cells in (out / "cells").glob("*.parquet"):
        cells.unlink()  # re-rendering never needs the per-cell data
    render_report(out)
    text = page.read_text(encoding="utf-8")
    assert "Density by compartment" in text and SCRIPT not in text
