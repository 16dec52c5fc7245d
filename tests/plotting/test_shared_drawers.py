"""The report's figures and mn.pl's are drawn by the same drawers (metaniche.plotting): for the
same sample they produce the same artists, limits and labels; headless (Agg), Axes returned,
labels carrying units."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import metaniche as mn
from metaniche.config import Config
from metaniche.sample import analyse_sample
from metaniche.simulate import simulate_sample


@pytest.fixture(scope="module")
def sample():
    cells = simulate_sample("shared", n_cells=2500, seed=4, phenotype="excluded",
                            n_lesions=1).cells
    analysis = analyse_sample(cells, Config(), name="shared")
    obs = pd.DataFrame({"cell_type": pd.Categorical(cells["cell_type"])},
                       index=cells["cell_id"].astype(str).to_numpy())
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = cells[["x", "y"]].to_numpy()
    mn.tl.compartments(adata, "cell_type")
    return analysis, adata


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_tissue_map_of_the_report_and_of_mn_pl_share_colours_extent_legend_and_marks(
        sample, tmp_path):
    """The report paints its map (NumPy raster + description) and mn.pl draws it with
    matplotlib; both take the colours, extent, legend, lesion ids and aggregate outlines
    from metaniche.plotting.tissue."""
    from matplotlib.colors import to_hex

    from metaniche.report.figures import save_tissue_map
    from metaniche.report.zoom import read_map_info

    analysis, adata = sample
    save_tissue_map(analysis, "shared", tmp_path / "shared.map.png", Config())
    report = read_map_info(tmp_path / "shared.map.png")
    mine = mn.pl.tissue(adata, "cell_type", ax=Figure().add_subplot())
    x0, x1, y0, y1 = report["extent_um"]
    assert mine.get_xlim() == pytest.approx((x0, x1)) and mine.get_ylim() == pytest.approx(
        (y1, y0))                                         # y grows downward on both
    assert "µm" in mine.get_xlabel() and "µm" in mine.get_ylabel()
    assert [i["label"] for i in report["legend"]] == _legend(mine)   # types (n), band, boundary
    handles = mine.get_legend().legend_handles
    assert [i["colour"] for i in report["legend"]] == [
        to_hex(h.get_facecolor() if i["kind"] in ("type", "band") else h.get_edgecolor())
        for h, i in zip(handles, report["legend"], strict=True)]
    assert [d["id"] for d in report["lesions"]] == [t.get_text() for t in mine.texts]
    # the field under the cells: the report's compartment rasters, mn.pl's from the cells;
    # both shade the same band, mn.pl draws its limits and the boundary as contours
    assert len(mine.images) == 2 and len(mine.collections) == 2


# --- the cohort figures and the sample-page data, on one finished run --------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from metaniche.config import load_config
    from metaniche.pipeline import run
    from metaniche.simulate import simulate_cohort, write_cohort

    tmp = tmp_path_factory.mktemp("cohort")
    samples, clinical = simulate_cohort(n_samples=6, n_cells=2000, seed=3)
    clinical["response"] = ["responder", "non-responder"] * 3
    folder = write_cohort(tmp / "sim", samples, clinical)
    out = tmp / "out"
    run([folder / "cells"], out, load_config(folder / "config.toml"),
        clinical=folder / "clinical.csv")
    return out, mn.read_run(out)


@pytest.fixture
def report_figures(monkeypatch, tmp_path):
    """The report's cohort figures by stem, captured instead of saved."""
    from metaniche.report import cohort_figures

    drawn = {}

    def keep(fig, report_dir, stem, svg=True):
        drawn[stem] = fig
        return [f"figures/{stem}.png"]

    monkeypatch.setattr(cohort_figures, "save_figure", keep)
    return drawn


def _like(report):
    """An empty Axes of the report Axes' figure size and grid cell (tick locators depend on
    the Axes' size, and the numbers at risk are written at the ticks)."""
    rows, cols, start, _ = report.get_subplotspec().get_geometry()
    return Figure(figsize=report.figure.get_size_inches()).add_subplot(rows, cols, start + 1)


def _same_axes(report, mine):
    assert (report.get_xlabel(), report.get_ylabel()) == (mine.get_xlabel(), mine.get_ylabel())
    assert report.get_title() == mine.get_title()
    assert report.get_xlim() == pytest.approx(mine.get_xlim())
    assert report.get_ylim() == pytest.approx(mine.get_ylim())
    assert [t.get_text() for t in report.get_yticklabels()] == [
        t.get_text() for t in mine.get_yticklabels()]
    assert [t.get_text() for t in report.texts] == [t.get_text() for t in mine.texts]
    for a, b in zip(report.lines, mine.lines, strict=True):
        np.testing.assert_array_equal(np.asarray(a.get_xydata()), np.asarray(b.get_xydata()))
    for a, b in zip(report.collections, mine.collections, strict=True):
        assert type(a) is type(b)
        if hasattr(a, "get_offsets"):
            np.testing.assert_array_equal(np.asarray(a.get_offsets()),
                                          np.asarray(b.get_offsets()))


def test_overview_figures_of_the_report_and_of_mn_pl_are_one_drawer(finished, report_figures,
                                                                     tmp_path):
    from metaniche.report.overview import overview_section
    from metaniche.report.rundata import RunData

    out, adata = finished
    overview_section(RunData(out), tmp_path)
    strip = mn.pl.effector_density(adata, ax=Figure().add_subplot())
    _same_axes(report_figures["cohort.effector_density"].axes[0], strip)
    assert strip.get_yscale() == "log" and "cells/mm²" in strip.get_ylabel()
    assert [t.get_text() for t in strip.get_legend().get_texts()] == [
        t.get_text() for t in report_figures["cohort.effector_density"].axes[0]
        .get_legend().get_texts()]
    overlay = mn.pl.effector_gradient(adata, ax=Figure().add_subplot())
    _same_axes(report_figures["cohort.effector_gradient"].axes[0], overlay)
    assert "µm" in overlay.get_xlabel() and "0" in [t.get_text()
                                                    for t in overlay.get_xticklabels()]


def test_volcano_and_km_of_the_report_and_of_mn_pl_are_one_drawer(finished, report_figures,
                                                                   tmp_path):
    from metaniche.report.cohort_page import association_section, survival_section
    from metaniche.report.rundata import RunData

    out, adata = finished
    run = RunData(out)
    association_section(run, tmp_path)
    survival_section(run, tmp_path)
    panel = mn.pl.volcano(adata, ax=_like(report_figures["cohort.volcano"].axes[0]))
    _same_axes(report_figures["cohort.volcano"].axes[0], panel)
    assert panel.get_ylabel() == "−log10 p"
    km = mn.pl.kaplan_meier(adata, ax=_like(report_figures["cohort.km"].axes[0]))
    _same_axes(report_figures["cohort.km"].axes[0], km)
    assert "at risk (samples)" in [t.get_text() for t in km.texts]
    assert km.get_xlabel().startswith("time (")


def test_sample_charts_of_the_report_and_mn_pl_show_the_same_prepared_data(finished):
    from metaniche.plotting.prepare import composition_grid, enrichment_grid
    from metaniche.report.rundata import RunData
    from metaniche.report.sample_page import _gradient_panels

    out, adata = finished
    run = RunData(out)
    sample = str(adata.obs["sample"].cat.categories[0])
    # gradients: the report's merged, masked panels are mn.pl's lines (log density scale)
    panels = _gradient_panels(run, sample)
    ax = mn.pl.gradients(adata, sample=sample, ax=Figure().add_subplot())
    drawn = ax.lines[-len(panels):]             # after the edge line and the 0 line
    assert [line.get_label() for line in drawn] == [name for name, *_ in panels]
    low = ax.get_ylim()[0]
    for line, (_, centre, density) in zip(drawn, panels, strict=True):
        np.testing.assert_array_equal(line.get_xdata(), centre)
        shown = np.asarray(line.get_ydata(), dtype=np.float64)
        np.testing.assert_array_equal(np.isnan(shown), np.isnan(density))  # masked bins
        ok = np.isfinite(density) & (density > 0)
        np.testing.assert_allclose(shown[ok], density[ok])
        assert (shown[np.isfinite(density) & (density == 0)] > low).all()  # the 0 line
    assert ax.get_yscale() == "log" and "cells/mm²" in ax.get_ylabel()
    # each line's band is the report's interval of that panel (zeros on the 0 line)
    from metaniche.plotting.style import log_range
    from metaniche.report.sample_page import _gradient_intervals
    intervals = _gradient_intervals(run, sample)
    assert set(intervals) == {name for name, *_ in panels}
    bands = ax.collections[-len(panels):]
    zero_at = log_range(np.concatenate([density for _, _, density in panels]))[2]
    for band, (name, centre, _) in zip(bands, panels, strict=True):
        band_low, band_high = intervals[name]
        vertices = np.vstack([path.vertices for path in band.get_paths()])
        ok = np.isfinite(band_high)
        assert np.isin(np.round(centre[ok], 6), np.round(vertices[:, 0], 6)).all()
        edges = {round(float(v), 6) for v in vertices[:, 1]}
        assert {round(float(v), 6) for v in band_high[ok]} <= edges
        shown_low = np.where(band_low[ok] > 0, band_low[ok], zero_at)     # 0 on the 0 line
        assert {round(float(v), 6) for v in shown_low} <= edges
    # composition: the report's density grid, same order, log scale
    ax = mn.pl.composition(adata, sample=sample, ax=Figure().add_subplot())
    grid = composition_grid(run.sample_rows("composition", sample))["density_per_mm2"]
    types = [t.get_text() for t in ax.get_xticklabels()]
    assert types == [t for t in grid.index if np.nansum(grid.loc[t].to_numpy()) > 0]
    heights = [p.get_height() for p in ax.patches[:len(types)]]
    np.testing.assert_allclose(heights, grid.loc[types, "core"].to_numpy())
    assert ax.get_yscale() == "log"
    # enrichment of a run read back: the report's grid and colour limit
    ax = mn.pl.nhood_enrichment(adata, sample=sample, ax=Figure().add_subplot())
    labels, grids, _ = enrichment_grid(run.sample_rows("enrichment", sample))
    np.testing.assert_array_equal(np.ma.filled(ax.images[0].get_array(), np.nan),
                                  grids["z"].to_numpy())
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
