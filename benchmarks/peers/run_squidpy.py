"""Time one squidpy step on the shared tissue file (``.venv-squidpy`` only); one JSON line.

Steps: ``spatial_neighbors`` (generic coordinates, radius 30 µm), ``nhood_enrichment``
(1,000 permutations, squidpy's default; the 30 µm graph is built before the clock),
``graph_nhood_enrichment`` (the same with the graph built inside the clock, as one
``mn.tl.nhood_enrichment`` call does), ``co_occurrence`` (10 bins to 100 µm, the interval
metaniche uses by default) and ``ripley`` (L function, 50 steps to 100 µm, 100 simulations,
squidpy's defaults but the distance).
"""

from __future__ import annotations

import sys

import anndata as ad
import numpy as np
import pandas as pd
import squidpy as sq
from _protocol import Tissue, run_step

RADIUS_UM = 30.0
INTERVAL_UM = np.linspace(0.0, 100.0, 11)
N_PERMS = 1000
KEY = "cell_type"


def to_anndata(tissue: Tissue, with_graph: bool = False) -> ad.AnnData:
    """AnnData with ``obsm['spatial']`` and a categorical ``obs['cell_type']`` whose category
    order is the tissue file's type order (so matrices line up with metaniche's codes)."""
    names = list(tissue["type_names"])
    obs = pd.DataFrame({KEY: pd.Categorical.from_codes(tissue["type_code"], categories=names)},
                       index=[str(i) for i in range(len(tissue["x_um"]))])
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = np.column_stack([tissue["x_um"], tissue["y_um"]])
    if with_graph:
        sq.gr.spatial_neighbors(adata, coord_type="generic", radius=RADIUS_UM, delaunay=False)
    return adata


def spatial_neighbors(tissue: Tissue):
    adata = to_anndata(tissue)
    return lambda: sq.gr.spatial_neighbors(adata, coord_type="generic", radius=RADIUS_UM,
                                           delaunay=False)


def nhood_enrichment(tissue: Tissue):
    adata = to_anndata(tissue, with_graph=True)
    return lambda: sq.gr.nhood_enrichment(adata, cluster_key=KEY, n_perms=N_PERMS, seed=0,
                                          show_progress_bar=False)


def co_occurrence(tissue: Tissue):
    adata = to_anndata(tissue)
    return lambda: sq.gr.co_occurrence(adata, cluster_key=KEY, interval=INTERVAL_UM,
                                       show_progress_bar=False)


def graph_nhood_enrichment(tissue: Tissue):
    adata = to_anndata(tissue)

    def call() -> None:
        sq.gr.spatial_neighbors(adata, coord_type="generic", radius=RADIUS_UM, delaunay=False)
        sq.gr.nhood_enrichment(adata, cluster_key=KEY, n_perms=N_PERMS, seed=0,
                               show_progress_bar=False)
    return call


def ripley(tissue: Tissue):
    adata = to_anndata(tissue)
    return lambda: sq.gr.ripley(adata, cluster_key=KEY, mode="L", max_dist=100.0, n_steps=50,
                                n_simulations=100, seed=0)


STEPS = {"spatial_neighbors": spatial_neighbors, "nhood_enrichment": nhood_enrichment,
         "graph_nhood_enrichment": graph_nhood_enrichment, "co_occurrence": co_occurrence,
         "ripley": ripley}

if __name__ == "__main__":
    sys.exit(run_step("squidpy", sq.__version__, STEPS))
