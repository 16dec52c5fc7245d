"""mn.pl headless: every plot returns its Axes, draws the data it was given (checked against the
tables) and labels its axes with units; errors name the missing tool."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import metaniche as mn
from metaniche.errors import InputError
from metaniche.simulate import simulate_sample


@pytest.fixture(scope="module")
def adata():
    cells = simulate_sample("plot", n_cells=2500, seed=4, phenotype="excluded",
                            n_lesions=1).cells
    obs = pd.DataFrame({"cell_type": pd.Categorical(cells["cell_type"])},
                       index=cells["cell_id"].to_numpy())
    data = ad.AnnData(obs=obs)
    data.obsm["spatial"] = cells[["x", "y"]].to_numpy()
    for tool in ("compartments", "composition", "gradients", "nhood_enrichment",
                 "co_occurrence", "ripley"):
        getattr(mn.tl, tool)(data, "cell_type")
    return data


def _ax():
    return Figure().add_subplot()


def test_tissue_draws_every_cell_and_the_edge(adata):
    ax = _ax()
    assert mn.pl.tissue(adata, "cell_type", ax=ax) is ax
    # cells painted into a raster (the report's drawer): the legend counts every cell once
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    counted = {text.rsplit(" (", 1)[0]: int(text.rsplit(" (", 1)[1].rstrip(")").replace(",", ""))
               for text in legend if text.endswith(")") and not text.startswith("border")}
    assert sum(counted.values()) == adata.n_obs
    assert set(counted) == set(adata.obs["cell_type"].cat.categories)
    assert len(ax.images) == 2               # tissue and band shading, then the cells
    assert len(ax.collections) >= 2          # band limits and the lesion-edge contour
    assert "µm" in ax.get_xlabel() and "µm" in ax.get_ylabel()
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png")
    assert buffer.getvalue()[:4] == b"\x89PNG"


def test_composition_bars_are_the_table_densities(adata):
    ax = mn.pl.composition(adata, ax=_ax())
    table = adata.uns["metaniche"]["composition"]
    whole = table[table["lesion_id"].isna() & (table["compartment"] == "core")]
    heights = [p.get_height() for p in ax.patches[:len(ax.get_xticks())]]
    types = [t.get_text() for t in ax.get_xticklabels()]
    expected = whole.set_index("cell_type").loc[types, "density_per_mm2"].to_numpy()
    np.testing.assert_allclose(heights, expected)
    assert "cells/mm²" in ax.get_ylabel()


def test_enrichment_heatmap_is_the_zscore_matrix(adata):
    ax = mn.pl.nhood_enrichment(adata, "cell_type", ax=_ax())
    shown = np.ma.filled(ax.images[0].get_array(), np.nan)
    np.testing.assert_array_equal(shown, adata.uns["cell_type_nhood_enrichment"]["zscore"])
    assert [t.get_text() for t in ax.get_yticklabels()] == list(
        adata.obs["cell_type"].cat.categories)


def test_co_occurrence_ripley_gradients_lines_carry_the_values(adata):
    ax = mn.pl.co_occurrence(adata, "cell_type", clusters="CD8_T", ax=_ax())
    assert ax.lines and "µm" in ax.get_xlabel()
    occ = adata.uns["cell_type_co_occurrence"]
    first = ax.lines[0]
    np.testing.assert_array_equal(first.get_xdata(), occ["interval"][1:])
    ax = mn.pl.ripley(adata, pairs=[("Tumor", "Tumor")], ax=_ax())
    rows = adata.uns["metaniche"]["ripley"].query("type_a == 'Tumor' and type_b == 'Tumor'")
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), rows["l_minus_r_um"].to_numpy())
    assert "µm" in ax.get_xlabel() and "µm" in ax.get_ylabel()
    ax = mn.pl.gradients(adata, cell_types=["CD8_T"], ax=_ax())
    assert "µm" in ax.get_xlabel() and "cells/mm²" in ax.get_ylabel()
    assert len(ax.lines[-1].get_xdata()) > 10


def test_new_figure_when_no_axes_and_clear_errors(adata):
    import matplotlib.pyplot as plt

    ax = mn.pl.gradients(adata)
    assert ax.figure is not None
    plt.close(ax.figure)
    bare = ad.AnnData(obs=adata.obs[["cell_type"]].copy())
    with pytest.raises(InputError, match=r"run mn\.tl\.composition"):
        mn.pl.composition(bare)
    with pytest.raises(InputError, match=r"mn\.tl\.nhood_enrichment"):
        mn.pl.nhood_enrichment(bare)


def test_aggregates_colours_the_member_cells():
    cells = simulate_sample("tls", n_cells=2500, seed=3, phenotype="excluded", n_lesions=1,
                            with_tls=True).cells
    mn.tl.aggregates(cells)
    ax = mn.pl.aggregates(cells, ax=_ax())
    table = cells.attrs["metaniche"]["aggregates"]
    assert len(table) >= 1
    drawn = sum(len(c.get_offsets()) for c in ax.collections[1:])
    assert drawn == int(((cells["aggregate_id"] > 0) | (cells["unit_id"] > 0)).sum())
    assert len(ax.texts) == len(table)
    assert "µm" in ax.get_xlabel()
