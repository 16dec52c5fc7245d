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
from metaniche.report.figures import tissue_figure
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


def test_tissue_map_of_the_report_and_of_mn_pl_is_one_drawer(sample):
    analysis, adata = sample
    fig, *_ = tissue_figure(analysis, "shared", Config())
    report = fig.axes[0]
    mine = mn.pl.tissue(adata, "cell_type", ax=Figure().add_subplot())
    # the painted cell raster (same cells, colours, extent, dot size) is identical
    np.testing.assert_array_equal(np.asarray(report.images[-1].get_array()),
                                  np.asarray(mine.images[-1].get_array()))
    assert report.images[-1].get_extent() == mine.images[-1].get_extent()
    assert report.get_xlim() == mine.get_xlim() and report.get_ylim() == mine.get_ylim()
    assert (report.get_xlabel(), report.get_ylabel()) == (mine.get_xlabel(), mine.get_ylabel())
    assert "µm" in mine.get_xlabel() and "µm" in mine.get_ylabel()
    assert _legend(report) == _legend(mine)          # types (n), band (±w µm), boundary
    assert [t.get_text() for t in report.texts] == [t.get_text() for t in mine.texts]  # lesions
    # the field under the cells: the report's compartment rasters, mn.pl's from the cells;
    # both shade the same band and draw its limits and the boundary as contours
    assert len(report.images) == len(mine.images) == 2
    assert len(report.collections) == len(mine.collections) == 2
    def band_area_um2(image):
        alpha = np.asarray(image.get_array())[..., 3]
        x0, x1, y0, y1 = image.get_extent()
        return np.isclose(alpha, 0.35).sum() * abs((x1 - x0) * (y1 - y0)) / alpha.size

    assert band_area_um2(mine.images[0]) == pytest.approx(band_area_um2(report.images[0]),
                                                          rel=0.05)
