"""Report size: palette PNGs that keep every colour, the map as its own thumbnail, charts stored
once."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from metaniche.report.paint import paint_cells, paint_codes, save_indexed_png, save_quantized_png
from metaniche.report.zoom import (
    read_map_axes,
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


def test_tissue_map_png_is_a_palette_image_of_the_rendering_sized_by_the_sample(tmp_path):
    from metaniche.config import Config
    from metaniche.report.figures import (
        MAP_WIDTH_IN,
        map_width_in,
        save_tissue_map,
        tissue_figure,
    )
    from metaniche.sample import analyse_sample
    from metaniche.simulate import simulate_sample

    cells = simulate_sample("S", n_cells=2000, seed=4, phenotype="excluded", n_lesions=1).cells
    analysis = analyse_sample(cells, Config(), name="S")
    fig, *_ = tissue_figure(analysis, "S", Config())
    fig.canvas.draw()
    rendered = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    save_tissue_map(analysis, "S", tmp_path / "S.map.png", Config())
    with Image.open(tmp_path / "S.map.png") as image:
        assert image.mode == "P"
        decoded = np.asarray(image.convert("RGB")).astype(int)
    assert decoded.shape == rendered.shape
    # 48 colours (fast octree): anti-aliased edges snap to a near colour (1 % of the pixels
    # 13 levels off), the rest is within a level or two; with 32 colours 1 % of the pixels
    # are 25-32 levels off, with 16 46 levels
    error = np.abs(decoded - rendered).max(axis=2)
    assert error.mean() < 2 and np.percentile(error, 99) <= 16
    # the map carries its Axes box (the cohort page's thumbnail is the map cropped to it): the
    # box is the Axes' frame, so every pixel of its outline is drawn dark, and no thumbnail
    # file is written
    box = read_map_axes(tmp_path / "S.map.png")
    assert (box["width"], box["height"]) == (decoded.shape[1], decoded.shape[0])
    x0, y0, x1, y1 = box["x"], box["y"], box["x"] + box["w"], box["y"] + box["h"]
    dark = decoded.sum(axis=2) < 200
    assert dark[y0:y1, x0:x0 + 2].any(axis=1).mean() > 0.95      # left edge of the frame
    assert dark[y0:y1, x1 - 2:x1].any(axis=1).mean() > 0.95      # right edge
    assert dark[y0:y0 + 2, x0:x1].any(axis=0).mean() > 0.95      # top edge
    assert dark[y1 - 2:y1, x0:x1].any(axis=0).mean() > 0.95      # bottom edge
    assert dark[y1 + 1:y1 + 3, x0:x1].any(axis=0).mean() < 0.2   # below it: tick marks only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S.map.png"]
    # the map's width follows the sample: its width at 2 µm per pixel (100 dpi), clipped
    from metaniche.plotting.tissue import map_extent

    x0, x1, _, _ = map_extent(cells["x"].to_numpy(float), cells["y"].to_numpy(float))
    assert 800 < x1 - x0 < 1000
    assert fig.get_figwidth() == pytest.approx((x1 - x0) / 200 + 2.6)   # + the legend
    assert map_width_in(1200.0) == pytest.approx(6.0)
    assert map_width_in(300.0) == MAP_WIDTH_IN[0]
    assert map_width_in(10_000.0) == MAP_WIDTH_IN[1]


def test_cohort_page_shows_each_map_cropped_to_its_axes(make_run):
    import re

    from metaniche.report import render_report
    from metaniche.report.paint import save_quantized_png
    from metaniche.report.zoom import MAP_AXES_KEY, map_axes_text

    samples = {name: {"sample": name, "file_name": name, "status": "ok", "error": None,
                      "seconds": 1.0, "phenotype": "inflamed"} for name in ("S1", "S2")}
    run = make_run(samples=samples)
    figures = run / "report" / "figures"
    figures.mkdir(parents=True)
    image = np.full((300, 500, 3), 255, dtype=np.uint8)
    # S1: a map carrying its Axes box, (50, 20)–(250, 120) in a 500 × 300 image
    save_quantized_png(figures / "S1.map.png", image,
                       text={MAP_AXES_KEY: map_axes_text((50.0, 20.0, 249.0, 119.0),
                                                         (500, 300))})
    save_quantized_png(figures / "S2.map.png", image)    # an older map: no box
    index = render_report(run).read_text()
    cards = dict(re.findall(r'<div class="card"><a href="(S\d)\.html">(.*?)</a>', index))
    assert cards["S1"] == ('<span class="crop" style="aspect-ratio:200/100">'
                           '<img src="figures/S1.map.png" style="width:250.000%;'
                           'margin-left:-25.000%;margin-top:-10.000%" '
                           'alt="tissue map of S1" loading="lazy"></span>')
    assert cards["S2"] == '<img src="figures/S2.map.png" alt="tissue map of S2" loading="lazy">'
    assert not list(figures.glob("*.thumb.png"))


def test_tissue_map_legend_stays_inside_a_small_map_of_a_wide_sample():
    from metaniche.config import Config
    from metaniche.report.figures import tissue_figure
    from metaniche.sample import analyse_sample
    from metaniche.simulate import simulate_sample

    cells = simulate_sample("W", n_cells=3000, seed=4, phenotype="inflamed", n_lesions=1).cells
    cells["y"] = cells["y"] * 0.35          # about three times wider than tall
    extra = np.random.default_rng(0).random(len(cells)) < 0.2
    cells.loc[extra, "cell_type"] = [f"Extra_type_{k}" for k in np.arange(extra.sum()) % 10]
    fig, *_ = tissue_figure(analyse_sample(cells, Config(), name="W"), "W", Config())
    fig.canvas.draw()
    legend = fig.axes[0].get_legend().get_window_extent()
    assert len(fig.axes[0].get_legend().get_texts()) >= 25
    assert legend.y0 >= 0 and legend.y1 <= fig.bbox.height          # no row cut off
    assert legend.x1 <= fig.bbox.width
