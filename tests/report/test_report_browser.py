"""The demo report in a real browser: no page errors, a screenshot that is not blank, and a
zoomable tissue map that zooms about the pointer and pans."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from metaniche.config import Config
from metaniche.pipeline import run
from metaniche.report.browser import check_page, find_chromium, screenshot
from metaniche.simulate import simulate_cohort

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium is not installed; run 'make browser' (apt-get install chromium) to run "
           "the headless-browser report checks")


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "run"
    # 10,000 cells (about 1.8 mm across) so the zoomable map exists: a smaller sample's
    # static map already shows it at full detail and gets no zoomable copy
    samples, _ = simulate_cohort(n_samples=1, n_cells=10_000, seed=3)
    inputs = out.parent / "cells"
    inputs.mkdir()
    for sample in samples:
        sample.cells.to_parquet(inputs / f"{sample.name}.parquet", index=False)
    run([inputs], out, Config())
    return out / "report"


def test_pages_load_without_errors(demo_report):
    pages = [demo_report / "index.html", *sorted(demo_report.glob("S*.html"))]
    assert len(pages) == 2
    for page in pages:
        result = check_page(page)
        assert result.errors == [], f"{page.name}: {result.errors}"
        assert "<h1>" in result.dom


def test_error_recorder_catches_a_broken_page(demo_report):
    broken = demo_report / "broken.html"
    broken.write_text('<!DOCTYPE html><html><head></head><body><img src="missing.png">'
                      "<script>undefinedFunction();</script></body></html>")
    try:
        errors = check_page(broken).errors
    finally:
        broken.unlink()
    assert any("missing.png" in e for e in errors)
    assert any("undefinedFunction" in e for e in errors)


def test_screenshot_is_not_blank(demo_report, tmp_path):
    # Written for review: to $METANICHE_SCREENSHOTS when set (e.g. a CI artefact directory).
    folder = Path(os.environ.get("METANICHE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for page in (demo_report / "index.html", next(demo_report.glob("S*.html"))):
        target = folder / f"{page.stem}.png"
        screenshot(page, target, height=1600)
        pixels = imread(target)[..., :3]
        # A blank page is one colour; figures and text give many distinct grey levels.
        assert pixels.std() > 0.05
        assert len(np.unique(np.round(pixels.mean(axis=2), 2))) > 20


#: Opens the zoom view, waits for its image, then zooms (wheel) and pans (drag) at a point.
ZOOM_PROBE = """
window.addEventListener('load', function () {
  function done(value) { document.body.dataset.probe = JSON.stringify(value); }
  var box = document.querySelector('details.zoom');
  if (!box) { done({error: 'no zoom view'}); return; }
  var view = box.querySelector('.zoom-view'), img = view.querySelector('img');
  function state() {
    return {transform: img.style.transform, scale: view.getAttribute('data-scale')};
  }
  img.addEventListener('error', function () { done({error: 'zoom image failed'}); });
  img.addEventListener('load', function () { setTimeout(function () {
    var r = view.getBoundingClientRect();
    var x = r.left + view.clientLeft + 200, y = r.top + view.clientTop + 100;
    var fitted = state();
    var wheel = new WheelEvent('wheel', {deltaY: -240, deltaMode: 0, clientX: x, clientY: y,
                                         bubbles: true, cancelable: true});
    // Mouse-event coordinates are whole pixels: the point actually used, in view pixels.
    var point = [wheel.clientX - r.left - view.clientLeft, wheel.clientY - r.top - view.clientTop];
    view.dispatchEvent(wheel);
    var zoomed = state();
    var at = {pointerId: 1, bubbles: true, clientX: x, clientY: y};
    view.dispatchEvent(new PointerEvent('pointerdown', at));
    view.dispatchEvent(new PointerEvent('pointermove', Object.assign({}, at,
                                                       {clientX: x + 50, clientY: y + 30})));
    view.dispatchEvent(new PointerEvent('pointerup', at));
    done({natural: [img.naturalWidth, img.naturalHeight],
          view: [view.clientWidth, view.clientHeight],
          point: point, fitted: fitted, zoomed: zoomed, panned: state(),
          readout: box.querySelector('.zoom-readout').textContent});
  }, 0); });
  box.open = true;
});
"""
TRANSFORM = re.compile(r"translate\(([-\d.]+)px, ?([-\d.]+)px\) scale\(([-\d.]+)\)")


def _transform(state: dict) -> tuple[float, float, float]:
    match = TRANSFORM.fullmatch(state["transform"])
    assert match, state
    return float(match[1]), float(match[2]), float(match[3])


def test_zoom_view_zooms_about_the_pointer_and_pans(demo_report):
    page = next(demo_report.glob("S*.html"))
    result = check_page(page, probe=ZOOM_PROBE)
    assert result.errors == [], result.errors
    assert result.probe is not None, "the zoom probe never finished"
    probe = json.loads(result.probe)
    assert "error" not in probe, probe
    info = json.loads(next((demo_report / "figures").glob("*.map.zoom.json")).read_text())
    assert probe["natural"] == [info["width_px"], info["height_px"]]
    tx, ty, fit = _transform(probe["fitted"])
    width, height = probe["view"]
    # Fitted: the whole image inside the view, centred.
    assert fit == pytest.approx(min(width / info["width_px"], height / info["height_px"]),
                                rel=1e-3)
    assert tx == pytest.approx((width - info["width_px"] * fit) / 2, abs=0.01)
    # One wheel step of deltaY -240 zooms by exp(0.48), keeping the point under the pointer.
    zx, zy, scale = _transform(probe["zoomed"])
    assert scale / fit == pytest.approx(math.exp(0.48), rel=1e-3)
    assert float(probe["zoomed"]["scale"]) == pytest.approx(math.exp(0.48), rel=1e-3)
    px, py = probe["point"]
    assert (px - zx) / scale == pytest.approx((px - tx) / fit, abs=0.05)
    assert (py - zy) / scale == pytest.approx((py - ty) / fit, abs=0.05)
    # A drag of (50, 30) px moves the image by exactly that.
    dx, dy, panned = _transform(probe["panned"])
    assert (dx - zx, dy - zy, panned) == pytest.approx((50, 30, scale), abs=0.01)
    assert "µm" in probe["readout"]


def test_cohort_page_opens_with_the_overview(demo_report):
    result = check_page(demo_report / "index.html")
    assert result.errors == [], result.errors
    sections = re.findall(r'<section id="([^"]+)"', result.dom)
    assert sections[0] == "overview", sections
    assert sections.index("status") > sections.index("overview")


#: Clicks a header of the first sortable table twice and reports the column after each click.
SORT_PROBE = """
window.addEventListener('load', function () {
  var table = document.querySelector('table.sortable');
  if (!table) { document.body.dataset.probe = JSON.stringify({error: 'no sortable table'});
                return; }
  var headers = Array.prototype.map.call(table.tHead.rows[0].cells,
                                         function (th) { return th.textContent; });
  var column = headers.findIndex(function (h) { return h.indexOf('core') === 0; });
  function values() {
    return Array.prototype.map.call(table.tBodies[0].rows,
                                    function (row) { return row.cells[column].textContent; });
  }
  var before = values();
  table.tHead.rows[0].cells[column].click();
  var ascending = values();
  table.tHead.rows[0].cells[column].click();
  document.body.dataset.probe = JSON.stringify({headers: headers, before: before,
                                                ascending: ascending, descending: values()});
});
"""


def _number(text: str) -> float:
    return float(text.replace(",", "")) if text not in ("", "–") else math.inf


def test_a_table_sorts_on_header_click(demo_report):
    page = next(demo_report.glob("S*.html"))
    result = check_page(page, probe=SORT_PROBE)
    assert result.errors == [], result.errors
    assert result.probe is not None, "the sort probe never finished"
    probe = json.loads(result.probe)
    assert "error" not in probe, probe
    before, ascending, descending = probe["before"], probe["ascending"], probe["descending"]
    assert len(before) >= 3 and sorted(before) == sorted(ascending) == sorted(descending)
    numbers = [_number(v) for v in ascending]
    assert numbers == sorted(numbers)                  # numeric, not text, order
    finite = [_number(v) for v in descending if v not in ("", "–")]
    assert finite == sorted(finite, reverse=True)
    assert ascending != before or numbers == sorted(_number(v) for v in before)


#: Types the first cell of the last row of the first sortable table into its filter box and
#: reports every row's text and visibility, and the count shown.
FILTER_PROBE = """
window.addEventListener('load', function () {
  function done(value) { document.body.dataset.probe = JSON.stringify(value); }
  var table = document.querySelector('table.sortable');
  var bar = table && table.previousElementSibling;
  if (!bar || bar.className !== 'table-filter') { done({error: 'no filter box'}); return; }
  var box = bar.querySelector('input');
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var word = rows[rows.length - 1].cells[0].textContent.trim();
  box.value = word.toUpperCase();
  box.dispatchEvent(new Event('input'));
  var state = rows.map(function (r) { return [r.textContent, r.style.display !== 'none']; });
  var count = bar.querySelector('.table-filter-count').textContent;
  box.value = '';
  box.dispatchEvent(new Event('input'));
  done({word: word, rows: state, count: count,
        cleared: rows.every(function (r) { return r.style.display !== 'none'; })});
});
"""


def test_a_table_filters_on_typed_text(demo_report):
    page = next(demo_report.glob("S*.html"))
    result = check_page(page, probe=FILTER_PROBE)
    assert result.errors == [], result.errors
    assert result.probe is not None, "the filter probe never finished"
    probe = json.loads(result.probe)
    assert "error" not in probe, probe
    word = probe["word"].lower()
    rows = probe["rows"]
    assert len(rows) >= 3
    expected = [word in text.lower() for text, _ in rows]     # case-insensitive substring
    assert [shown for _, shown in rows] == expected
    assert 1 <= sum(expected) < len(rows)                       # the filter removed rows
    assert probe["count"] == f"{sum(expected)} of {len(rows)} rows"
    assert probe["cleared"]                                    # an empty box shows all again


#: Where the headline call, the tissue map and the key charts sit in the viewport.
FOLD_PROBE = """
window.addEventListener('load', function () {
  function box(selector) {
    var element = document.querySelector(selector);
    if (!element) { return null; }
    var r = element.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width,
            height: r.height};
  }
  document.body.dataset.probe = JSON.stringify({
    viewport: [window.innerWidth, window.innerHeight],
    call: box('#call'), map: box('#map svg.tissue-map'), density: box('#density svg'),
    gradient: box('#key-gradients svg'),
    collapsed: Array.prototype.map.call(
      document.querySelectorAll('main > section > details'),
      function (d) { return [d.parentNode.id, d.open]; })});
});
"""


def test_sample_page_fits_one_laptop_screen(demo_report, tmp_path):
    page = next(demo_report.glob("S*.html"))
    width, height = 1366, 768
    result = check_page(page, probe=FOLD_PROBE, window_size=(width, height))
    assert result.errors == [], result.errors
    probe = json.loads(result.probe)
    assert probe["viewport"][1] <= height
    fold = probe["viewport"][1]
    for name in ("call", "map", "density", "gradient"):
        box = probe[name]
        assert box is not None, f"{name} missing from the sample page"
        assert 0 <= box["top"] and box["bottom"] <= fold, (name, box, fold)
        assert box["right"] <= probe["viewport"][0], (name, box)
    # the charts are drawn large enough to read, side by side with the map
    assert probe["density"]["width"] >= 350 and probe["gradient"]["width"] >= 350
    assert probe["map"]["width"] >= 450
    assert probe["density"]["left"] >= probe["map"]["right"]
    # the details below start collapsed
    collapsed = dict(probe["collapsed"])
    assert "gradients" in collapsed and not any(collapsed.values()), collapsed
    folder = Path(os.environ.get("METANICHE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    screenshot(page, folder / f"{page.stem}.1366x768.png", width=width, height=height)


#: Moves the pointer onto the first and the last cell of the enrichment heatmap, and a cell
#: on each side of the diagonal, and reports the tip shown beside it each time.
TIP_PROBE = """
window.addEventListener('load', function () {
  var svg = document.querySelector('#enrichment svg.heatmap');
  if (!svg) { document.body.dataset.probe = JSON.stringify({error: 'no heatmap'}); return; }
  var image = svg.querySelector('g.cells image');
  var data = JSON.parse(svg.getAttribute('data-tips'));
  var nrow = data.rows.length, ncol = data.cols.length;
  var box = image.getBoundingClientRect();
  var picks = [0, nrow * ncol - 1, 1, ncol];     // (0, 0), last, (0, 1) and (1, 0)
  var titles = picks.map(function (k) {
    var i = Math.floor(k / ncol), j = k % ncol;
    image.dispatchEvent(new MouseEvent('mousemove', {bubbles: true,
      clientX: box.left + (j + 0.5) * box.width / ncol,
      clientY: box.top + (i + 0.5) * box.height / nrow}));
    var shown = document.querySelector('.heatmap-tip');
    return shown && shown.style.display === 'block' ? shown.textContent : null;
  });
  document.body.dataset.probe = JSON.stringify({picks: picks, titles: titles,
                                                tips: svg.getAttribute('data-tips')});
});
"""


def test_heatmap_titles_are_written_on_hover_as_heatmap_tip_says(demo_report):
    from metaniche.report.svg import heatmap_tip

    page = next(demo_report.glob("S*.html"))
    result = check_page(page, probe=TIP_PROBE)
    assert result.errors == [], result.errors
    probe = json.loads(result.probe)
    assert "error" not in probe, probe
    data = json.loads(probe["tips"])
    n_cols = len(data["cols"])
    for k, title in zip(probe["picks"], probe["titles"], strict=True):
        assert title == heatmap_tip(data, k // n_cols, k % n_cols)
    assert probe["titles"][0].startswith(f"{data['rows'][0]} – {data['cols'][0]}: ")
    # enrichment is symmetric: stored once per pair, read the same both ways
    assert data.get("symmetric") == 1
    assert probe["titles"][2].split(": ", 1)[1] == probe["titles"][3].split(": ", 1)[1]


#: Reports where the filter box of the long table sits, filters its rows and sorts them.
LONG_TABLE_PROBE = """
window.addEventListener('load', function () {
  var box = document.querySelector('.table-scroll');
  var table = box.querySelector('table.sortable');
  var bar = box.previousElementSibling;
  var input = bar && bar.querySelector('input');
  var out = {barBeforeBox: !!(bar && bar.className === 'table-filter' && input),
             boxHeight: box.getBoundingClientRect().height,
             tableHeight: table.getBoundingClientRect().height};
  table.tHead.rows[0].cells[0].click();
  table.tHead.rows[0].cells[0].click();
  out.first = table.tBodies[0].rows[0].cells[0].textContent;
  input.value = '17';
  input.dispatchEvent(new Event('input'));
  out.shown = Array.prototype.filter.call(table.tBodies[0].rows,
    function (row) { return row.style.display !== 'none'; }).length;
  out.count = bar.querySelector('.table-filter-count').textContent;
  document.body.dataset.probe = JSON.stringify(out);
});
"""


def test_a_long_table_scrolls_in_its_box_with_its_filter_above(demo_report, tmp_path):
    import shutil

    from metaniche.report.html import _ENV
    from metaniche.report.sections import Table

    for name in ("report.js", "report.css"):
        shutil.copy(demo_report / name, tmp_path / name)
    macros = _ENV.get_template("_macros.html").module
    table = macros.data_table(Table(["n"], [[str(i)] for i in range(60)], sortable=True))
    page = tmp_path / "long.html"
    page.write_text('<!doctype html><html><head><meta charset="utf-8"><title>t</title>'
                    '<link rel="stylesheet" href="report.css"></head><body><main>'
                    f'{table}</main><script src="report.js"></script></body></html>',
                    encoding="utf-8")
    result = check_page(page, probe=LONG_TABLE_PROBE)
    assert result.errors == [], result.errors
    probe = json.loads(result.probe)
    assert probe["barBeforeBox"]                           # the filter stays above the box
    assert probe["boxHeight"] < probe["tableHeight"]       # the box scrolls
    assert probe["first"] == "59"                          # sorted descending, numerically
    assert probe["shown"] == 1 and probe["count"] == "1 of 60 rows"
