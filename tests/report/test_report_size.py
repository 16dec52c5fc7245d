"""Report size: palette PNGs that keep every colour, the map as its own thumbnail, charts stored
once."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metaniche.report.paint import paint_cells, paint_codes, save_indexed_png, save_quantized_png
from metaniche.report.zoom import (
    read_map_info,
    save_zoom_map,
    zoom_paths,
    zoom_raster,
)


def _cells(rng: np.random.Generator, n: int = 3000, n_types: int = 6):
    x = rng.uniform(0, 1500, n)
    y = rng.uniform(0, 900, n)
    codes = rng.integers(0, n_types, n).astype(np.intp)
    return x, y, codes


def test_paint_cells_puts_the_rarest_type_on_top_like_a_brute_force_loop(rng):
    x, y, codes = _cells(rng, n=400, n_types=4)
    colours = rng.uniform(0, 1, (4, 3))
    extent = (0.0, 1500.0, 0.0, 900.0)
    image = paint_cells(x, y, codes, colours, extent, 150, 1)
    # brute force: for each dot offset, the cells one by one from the most abundant type to
    # the rarest (ties by type code), so a rarer type's dot is painted over a commoner one's
    counts = np.bincount(codes, minlength=4)
    order = sorted(range(len(x)), key=lambda i: (-counts[codes[i]], codes[i], i))
    expected = np.zeros_like(image)
    pixel = 1500.0 / 150
    height = image.shape[0]
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            for i in order:
                c = min(max(min(int(x[i] / pixel), 149) + dc, 0), 149)
                r = min(max(min(int(y[i] / pixel), height - 1) + dr, 0), height - 1)
                expected[r, c] = np.r_[(colours[codes[i]] * 255).astype(np.uint8), 255]
    np.testing.assert_array_equal(image, expected)
    index = paint_codes(x, y, codes, 4, extent, 150, 1)
    np.testing.assert_array_equal(index > 0, image[..., 3] > 0)


def test_zoom_png_is_a_lossless_palette_image(rng, tmp_path):
    x, y, codes = _cells(rng)
    labels = [f"T{k}" for k in range(6)]
    colours = dict(zip(labels, ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                "#8c564b"], strict=True))
    extent = (0.0, 1500.0, 0.0, 900.0)
    map_png = tmp_path / "S.map.png"
    save_zoom_map(map_png, x, y, codes, labels, colours, extent, None, 50.0)
    png, _ = zoom_paths(map_png)
    with Image.open(png) as image:
        assert image.mode == "P"
        decoded = np.asarray(image.convert("RGB"))
    rgb = np.array([[int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)] for c in colours.values()])
    np.testing.assert_array_equal(decoded, zoom_raster(x, y, codes, rgb, extent, None, 50.0))
    # the RGB file it replaces is several times larger
    from matplotlib.image import imsave
    imsave(tmp_path / "rgb.png", decoded, format="png", pil_kwargs={"compress_level": 1})
    assert png.stat().st_size < (tmp_path / "rgb.png").stat().st_size / 2


def test_indexed_and_quantized_pngs_round_trip(rng, tmp_path):
    palette = rng.integers(0, 256, (10, 3)).astype(np.uint8)
    index = rng.integers(0, 10, (40, 60))
    save_indexed_png(tmp_path / "i.png", index, palette)
    with Image.open(tmp_path / "i.png") as image:
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), palette[index])
    # a figure with few colours survives quantization exactly
    figure = palette[index]
    save_quantized_png(tmp_path / "q.png", figure)
    with Image.open(tmp_path / "q.png") as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), figure)


def test_mode_share_matches_pandas_value_counts(rng):
    import pandas as pd

    from metaniche.report.cohort_figures import _mode_share

    values = rng.integers(0, 4, (30, 50)).astype(float)
    values[rng.random(values.shape) < 0.2] = np.nan
    values[:, 0] = np.nan
    expected = pd.DataFrame(values).apply(
        lambda c: c.value_counts(normalize=True).iloc[0] if c.notna().any() else 1.0)
    np.testing.assert_allclose(_mode_share(values), expected.to_numpy())


def test_tissue_map_is_the_painted_raster_with_its_description(tmp_path):
    from matplotlib.colors import to_rgb
    from scipy.spatial import ConvexHull

    from metaniche.config import Config
    from metaniche.plotting.tissue import map_extent
    from metaniche.report.figures import MAP_PX, map_size_px, save_tissue_map
    from metaniche.sample import analyse_sample
    from metaniche.simulate import simulate_sample

    cells = simulate_sample("S", n_cells=2000, seed=4, phenotype="excluded", n_lesions=1).cells
    analysis = analyse_sample(cells, Config(), name="S")
    out = analysis.cells
    save_tissue_map(analysis, "S", tmp_path / "S.map.png", Config())
    x, y = out["x"].to_numpy(float), out["y"].to_numpy(float)
    extent = map_extent(x, y)
    with Image.open(tmp_path / "S.map.png") as image:
        assert image.mode == "P"
        decoded = np.asarray(image.convert("RGB")).astype(int)
    # 1.25 µm per pixel for a sample under 1.1 mm (no zoomable copy needed), square pixels
    assert 800 < extent[1] - extent[0] < 1000
    assert decoded.shape[1] == map_size_px(extent) == round((extent[1] - extent[0]) / 1.25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S.map.png"]   # description inside
    info = read_map_info(tmp_path / "S.map.png")
    assert (info["width_px"], info["height_px"]) == (decoded.shape[1], decoded.shape[0])
    assert info["extent_um"] == pytest.approx(list(extent))
    # ground truth on the pixels: every cell of the rarest type is painted in its colour at
    # its own pixel unless the boundary line is drawn there; outside the tissue it is white
    legend = {i["label"].rsplit(" (", 1)[0]: i for i in info["legend"] if i["kind"] == "type"}
    rare = out["cell_type"].value_counts().index[-1]
    pick = (out["cell_type"] == rare).to_numpy()
    pixel = (extent[1] - extent[0]) / decoded.shape[1]
    col = ((x[pick] - extent[0]) / pixel).astype(int)
    row = ((y[pick] - extent[2]) / pixel).astype(int)
    colour = np.round(np.array(to_rgb(legend[rare]["colour"])) * 255).astype(int)
    hit = (decoded[row, col] == colour).all(axis=1)
    black = (decoded[row, col] == 0).all(axis=1)
    assert (hit | black).all() and hit.mean() > 0.9
    assert (decoded[0, 0] == 255).all()
    # the legend counts every type's cells (brute force) and names the band and boundary
    counts = out["cell_type"].value_counts()
    assert {k: int(i["label"].rsplit(" (", 1)[1].rstrip(")").replace(",", ""))
            for k, i in legend.items()} == counts.to_dict()
    assert [i["kind"] for i in info["legend"] if i["kind"] != "type"][:2] == ["band",
                                                                           "boundary"]
    # lesion ids at the lesion centroids
    lesions = analysis.compartments.lesions
    assert [(d["id"], d["x"], d["y"]) for d in info["lesions"]] == [
        (str(r.lesion_id), pytest.approx(r.centroid_x), pytest.approx(r.centroid_y))
        for r in lesions.itertuples()]
    # aggregate outlines: the convex hulls of the member cells
    members = out[out["aggregate_id"].fillna(0).astype(int) != 0]
    hulls = [part[["x", "y"]].to_numpy()[ConvexHull(part[["x", "y"]].to_numpy()).vertices]
             for _, part in members.groupby("aggregate_id") if len(part) >= 3]
    assert len(info["outlines"]) == len(hulls)
    for mine, hull in zip(info["outlines"], hulls, strict=True):
        np.testing.assert_allclose(np.array(mine["points"]), hull, atol=0.05)
    assert map_size_px((0.0, 300.0, 0.0, 100.0)) == MAP_PX[0]
    assert map_size_px((0.0, 5000.0, 0.0, 100.0)) == MAP_PX[1]
    assert map_size_px((0.0, 700.0, 0.0, 900.0)) == 720


def test_cohort_page_shows_each_map_as_its_thumbnail_and_the_sample_page_frames_it(make_run):
    import re

    from metaniche.plotting.tissue import LegendItem
    from metaniche.report import render_report
    from metaniche.report.svg import MAP_PLOT_PX
    from metaniche.report.zoom import save_static_map

    samples = {name: {"sample": name, "file_name": name, "status": "ok", "error": None,
                      "seconds": 1.0, "phenotype": "inflamed"} for name in ("S1", "S2")}
    run = make_run(samples=samples)
    figures = run / "report" / "figures"
    figures.mkdir(parents=True)
    index = np.zeros((300, 500), dtype=np.uint8)
    # S1 carries its description (extent -20..480 µm × 0..300 µm, one lesion); S2 is a map
    # of an older run (no description)
    save_static_map(figures / "S1.map.png", index, np.array([[255, 255, 255]]),
                    (-20.0, 480.0, 0.0, 300.0), 50.0, title="S1", n_cells=1234,
                    legend=[LegendItem("T <b> (12)", "#ff0000", "type")],
                    lesions=[("1", 230.0, 150.0)], outlines=[])
    save_indexed_png(figures / "S2.map.png", index, np.array([[255, 255, 255]]))
    page = render_report(run).read_text()
    cards = dict(re.findall(r'<div class="card"><a href="(S\d)\.html">(.*?)</a>', page))
    for name in ("S1", "S2"):
        assert cards[name] == (f'<img src="figures/{name}.map.png" alt="tissue map of {name}" '
                               'loading="lazy">')
    sample = (run / "report" / "S1.html").read_text()
    svg = re.search(r'<svg class="tissue-map".*?</svg>', sample).group(0)
    # the 500 × 300 px image scaled into the plot area (at most MAP_PLOT_PX, aspect kept)
    scale = min(MAP_PLOT_PX[0] / 500, MAP_PLOT_PX[1] / 300)
    assert f'href="figures/S1.map.png" width="{500 * scale:.0f}" height="{300 * scale:.0f}"' in svg
    assert "S1 — 1,234 cells" in svg
    # x ticks at round µm values incl. 0, placed at (value - x0) × pixels per µm
    ticks = {v: float(k) for k, v in re.findall(r'<text x="([\d.]+)">(-?[\d,]+)</text>', svg)}
    for value in (0, 100, 400):
        assert ticks[f"{value:,}"] == pytest.approx((value + 20) * scale, abs=0.05)
    assert "-0" not in ticks
    lesion = re.search(r'<g transform="translate\(([\d.]+),([\d.]+)\)"><circle', svg)
    assert (float(lesion[1]), float(lesion[2])) == pytest.approx((250 * scale, 150 * scale),
                                                                  abs=0.05)
    assert "T &lt;b&gt; (12)" in sample and "<b>" not in sample
    assert '<svg class="tissue-map"' not in (run / "report" / "S2.html").read_text()


def test_map_description_is_not_trusted(tmp_path):
    import json

    from metaniche.report.zoom import MAP_INFO_KEY

    index = np.zeros((10, 20), dtype=np.uint8)
    palette = np.array([[255, 255, 255]])
    good = {"width_px": 20, "height_px": 10, "extent_um": [0, 20, 0, 10], "title": "S",
            "n_cells": 3, "legend": [{"label": "A", "colour": "#00ff00", "kind": "type"},
                                     {"label": "B", "colour": "red;x:url(y)", "kind": "type"},
                                     {"label": "C", "colour": "#000000", "kind": "script"}],
            "lesions": [], "outlines": [{"colour": "url(#x)", "points": [[0, 0], [1, 1]]}]}
    save_indexed_png(tmp_path / "a.png", index, palette, text={MAP_INFO_KEY: json.dumps(good)})
    info = read_map_info(tmp_path / "a.png")
    assert [i["label"] for i in info["legend"]] == ["A"] and info["outlines"] == []
    for bad in ("{not json", json.dumps({**good, "extent_um": [0, 0, 0, 10]}),
                json.dumps({**good, "width_px": "x"}), json.dumps([1, 2])):
        save_indexed_png(tmp_path / "b.png", index, palette, text={MAP_INFO_KEY: bad})
        assert read_map_info(tmp_path / "b.png") is None
    save_indexed_png(tmp_path / "c.png", index, palette)
    assert read_map_info(tmp_path / "c.png") is None
    (tmp_path / "d.png").write_bytes(b"not a png")
    assert read_map_info(tmp_path / "d.png") is None
