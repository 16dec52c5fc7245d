"""The compact SVG charts keep what a reader needs: every tick label (0 on the distance axes),
the points where the data puts them, every row and column label and the colour bar."""

from __future__ import annotations

import base64
import io
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
from _paths import line_points, path_points
from PIL import Image

from metaniche.report import svg

SVG = "{http://www.w3.org/2000/svg}"


def _translate(element: ET.Element) -> tuple[float, float]:
    match = re.fullmatch(r"translate\(([-\d.]+),([-\d.]+)\)", element.get("transform", ""))
    assert match, element.get("transform")
    return float(match.group(1)), float(match.group(2))


def test_small_multiples_keep_every_tick_label_and_put_points_at_their_values():
    x = np.arange(-200.0, 201.0, 25.0)
    panels = [("CD8_T", x, np.linspace(0, 40, x.size)),
              ("Tumor", x, np.where(x < 0, 900.0, np.nan)),   # NaN: the line stops at 0
              ("B", x, np.full(x.size, 3.0))]
    pw, ph = 190, 110
    markup = svg.small_multiples(panels, title="Gradients", xlabel="signed distance (µm)",
                                 ylabel="cells/mm²", band=(-100, 100), vline=0.0, ncols=2,
                                 panel_px=(pw, ph))
    root = ET.fromstring(markup)
    groups = [g for g in root.findall(f"{SVG}g") if g.get("transform")]
    assert len(groups) == len(panels)
    # what every panel shares is drawn once and placed in each panel by <use>
    shared = {g.get("id"): g for g in root.find(f"{SVG}defs")}
    x_ticks = [svg.fmt(t) for t in svg.nice_ticks(-200.0, 200.0, 5)]
    assert "0" in x_ticks
    for group, (label, px, py) in zip(groups, panels, strict=True):
        (use,) = group.findall(f"{SVG}use")
        placed = shared[use.get("href").removeprefix("#")]
        texts = ["".join(t.itertext()) for t in group.iter(f"{SVG}text")]
        texts += ["".join(t.itertext()) for t in placed.iter(f"{SVG}text")]
        assert texts[0] == label
        top = float(np.nanmax(py))
        y_ticks = [svg.fmt(t) for t in svg.nice_ticks(0.0, top, 3)]
        assert texts[1:] == y_ticks + x_ticks     # every tick labelled, 0 on both axes
        # the points, back in the chart's coordinates, are where the data puts them (to the
        # nearest pixel)
        ox, oy = _translate(group)
        drawn = line_points(group)
        ok = np.isfinite(py)
        expected = np.column_stack([ox + (px[ok] + 200) / 400 * pw, oy + ph - py[ok] / top * ph])
        np.testing.assert_allclose(np.vstack(drawn) + np.array([ox, oy]), expected, atol=0.501)
        # the border band and the boundary line, in panel coordinates
        band = placed.find(f"{SVG}rect")
        assert float(band.get("x")) == round(100 / 400 * pw, 1)
        assert float(band.get("width")) == round(200 / 400 * pw, 1)


def test_small_multiples_draw_each_interval_under_its_line_cut_at_the_panel_top():
    x = np.arange(-100.0, 101.0, 25.0)                   # 9 bins
    y = np.array([0, 2, 4, 8, 4, np.nan, 2, 1, 0], dtype=float)
    low = np.where(np.isfinite(y), y / 2, np.nan)
    high = np.where(np.isfinite(y), y * 2 + 1, np.nan)   # above the line's top at bin 3
    pw, ph = 200, 100
    markup = svg.small_multiples([("CD8_T", x, y), ("B", x, y)], title="g", xlabel="d",
                                 ylabel="cells/mm²", panel_px=(pw, ph),
                                 intervals={"CD8_T": (low, high)})
    root = ET.fromstring(markup)
    groups = [g for g in root.findall(f"{SVG}g") if g.get("transform")]
    bands = [p for p in groups[0].iter(f"{SVG}path") if p.get("fill-opacity")]
    assert len(bands) == 2                               # the NaN bin splits the band
    assert not [p for p in groups[1].iter(f"{SVG}path") if p.get("fill-opacity")]
    for band, run in zip(bands, (np.arange(0, 5), np.arange(6, 9)), strict=True):
        points = path_points(band.get("d"))
        k = len(run)
        px = (x[run] + 100) / 200 * pw
        top = 8.0                                        # the line's maximum
        want_high = np.clip(ph - high[run] / top * ph, 0, ph)
        want_low = np.clip(ph - low[run] / top * ph, 0, ph)
        np.testing.assert_allclose(points[:k], np.column_stack([px, want_high]), atol=0.501)
        np.testing.assert_allclose(points[k:], np.column_stack([px, want_low])[::-1],
                                   atol=0.501)
    # the line is drawn over its band
    children = list(groups[0])
    lines = [c for c in children if c.get("class") == "line"]
    assert children.index(bands[-1]) < children.index(lines[0])
    # the lines: the runs either side of the NaN bin
    drawn = line_points(groups[0])
    ok = np.isfinite(y)
    np.testing.assert_allclose(np.vstack(drawn)[:, 1], ph - y[ok] / 8.0 * ph, atol=0.501)


def test_a_point_alone_between_gaps_is_drawn_as_a_dot():
    x = np.arange(5.0)
    y = np.array([1.0, np.nan, 2.0, np.nan, np.nan])
    root = ET.fromstring(svg.small_multiples([("A", x, y)], title="t", xlabel="x",
                                             ylabel="y"))
    group = next(g for g in root.findall(f"{SVG}g") if g.get("transform"))
    dots = [c for c in group.iter(f"{SVG}circle") if c.get("class") == "line"]
    assert len(dots) == 2 and len(line_points(group)) == 2


def test_heatmap_labels_every_row_and_column_and_draws_its_colour_bar():
    rows, cols = ["a", "b<c'd&"], ["x", "y", "z"]
    values = np.arange(6.0).reshape(2, 3) - 2.5
    markup = svg.heatmap(values, rows, cols, title="z", cmap="RdBu_r",
                         tip_values={"z": values})
    root = ET.fromstring(markup)
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    for label in rows + cols:
        assert label in texts
    # the hover numbers and labels survive the single-quoted attribute, quotes included
    tips = json.loads(root.get("data-tips"))
    assert tips["rows"] == rows and tips["cols"] == cols
    assert svg.heatmap_tip(tips, 1, 2) == "b<c'd& × z: z 2.5"
    images = list(root.iter(f"{SVG}image"))
    assert len(images) == 2      # the cells and the colour bar
    bar = images[1]
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(
        bar.get("href").split(",", 1)[1]))).convert("RGB"))
    assert pixels.shape == (20, 1, 3)
    # top of the bar: the high end of the map, bottom: the low end, labelled with both
    limit = 2.5
    assert svg.fmt(limit) in texts and svg.fmt(-limit) in texts
    from matplotlib import colormaps
    expected = np.rint(np.asarray(colormaps["RdBu_r"]([1.0, 0.0]))[:, :3] * 255)
    np.testing.assert_array_equal(pixels[[0, -1], 0], expected)


def test_symmetric_heatmap_stores_each_pair_once_and_reads_every_cell_back():
    rng = np.random.default_rng(2)
    labels = ["A", "B", "C", "D"]
    z = rng.normal(size=(4, 4))
    z = z + z.T
    z[1, 2] = z[2, 1] = np.nan
    observed = rng.integers(0, 50, (4, 4)).astype(float)
    observed = observed + observed.T

    def tips(markup):
        return json.loads(ET.fromstring(markup).get("data-tips"))

    packed = tips(svg.heatmap(z, labels, labels, title="z",
                              tip_values={"observed": observed, "z": z}))
    assert packed["symmetric"] == 1
    assert [len(row.split("|")) for row in packed["values"].split(";")] == [4, 3, 2, 1]
    # not symmetric (one matrix, or the labels differ): every cell stored
    skew = observed.copy()
    skew[0, 3] += 1
    full = tips(svg.heatmap(z, labels, labels, title="z",
                            tip_values={"observed": skew, "z": z}))
    assert "symmetric" not in full
    assert [len(row.split("|")) for row in full["values"].split(";")] == [4, 4, 4, 4]
    for i in range(4):
        for j in range(4):
            want = (f"{labels[i]} × {labels[j]}: observed {svg.fmt(observed[i, j])}, "
                    f"z {svg.fmt(z[i, j])}")
            assert svg.heatmap_tip(packed, i, j) == want
            assert svg.heatmap_tip(full, i, j).startswith(f"{labels[i]} × {labels[j]}: ")


def test_small_multiples_ids_differ_between_charts_of_one_page():
    x = np.arange(-100.0, 101.0, 20.0)
    panels = [("CD8_T", x, np.linspace(0, 40, x.size))]
    ids = set()
    for title in ("Key gradients", "Gradients of every cell type"):
        root = ET.fromstring(svg.small_multiples(panels, title=title, xlabel="x", ylabel="y"))
        ids |= {g.get("id") for g in root.find(f"{SVG}defs")}
    assert len(ids) == 2
