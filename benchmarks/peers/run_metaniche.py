"""Time one metaniche step on the shared tissue file (main venv); prints one JSON line.

Steps and the peer calls they stand beside (see ``bench_peers.py``):

- ``radius_graph``: KD-tree + undirected edges at ``<=`` 30 µm (squidpy ``spatial_neighbors``).
- ``enrichment_exact`` / ``enrichment_perm1000``: neighbourhood enrichment on the 30 µm graph
  (built before the clock), exact null moments / plus 1,000 label permutations (squidpy
  ``nhood_enrichment``, scimap ``spatial_interaction``).
- ``co_occurrence``: ratio in 10 bins to 100 µm, KD-tree included (squidpy ``co_occurrence``).
- ``nearest_distance``: distance from every cell to the nearest cell of each type (scimap
  ``spatial_distance``).
- ``count_within``: per-cell counts of each type at ``0 < d <= 30`` µm, summarised by type
  pair, KD-tree included (scimap ``spatial_count`` radius 30).
- ``knn_composition``: type fractions of each cell's 10 nearest cells, KD-tree included
  (scimap ``spatial_count`` knn 10).
- ``tl_nhood_enrichment_exact`` / ``tl_nhood_enrichment_perm1000``, ``tl_co_occurrence``,
  ``tl_ripley``: the notebook API on an AnnData (``mn.tl.*``, one call each, graph and
  sample context built inside the clock) beside squidpy's ``graph_nhood_enrichment``,
  ``co_occurrence`` and ``ripley`` on the same AnnData layout. ``mn.tl.ripley`` computes the
  cross-type L of every type pair (translation edge correction on the tissue mask) where
  squidpy's is one univariate L per type; both on 100 µm.
- ``tl_compartments``: ``mn.tl.compartments`` alone (the lesions and compartments every
  ``mn.tl`` tool needs; squidpy has no counterpart). ``tl_nhood_enrichment_exact_after_
  compartments``: ``mn.tl.nhood_enrichment`` after ``mn.tl.compartments`` ran on the same
  AnnData (before the clock), as in a notebook: the compartments are then reused
  (:class:`metaniche._api._adapter.CompartmentMemo`), so the clock holds the graph and both
  nulls. Its row beside squidpy is to be read with the ``tl_compartments`` row: compartments
  cost once per sample, whichever tools follow.
"""

from __future__ import annotations

import sys
from importlib.metadata import version

import numpy as np
from _protocol import Tissue, run_step
from scipy.spatial import cKDTree

from metaniche.analyses.communities import neighbourhood_composition
from metaniche.analyses.relations import (
    co_occurrence,
    count_within_by_type,
    nearest_type_distances,
    neighbour_graph,
    neighbourhood_enrichment,
)

RADIUS_UM = 30.0
INTERVAL_UM = np.linspace(0.0, 100.0, 11)
KNN = 10


def _xy(tissue: Tissue) -> np.ndarray:
    return np.column_stack([tissue["x_um"], tissue["y_um"]])


def radius_graph(tissue: Tissue):
    xy = _xy(tissue)
    return lambda: neighbour_graph(xy, cKDTree(xy), "radius", RADIUS_UM)


def _enrichment(n_permutations: int):
    def setup(tissue: Tissue):
        xy = _xy(tissue)
        edges = neighbour_graph(xy, cKDTree(xy), "radius", RADIUS_UM)
        k = len(tissue["type_names"])
        return lambda: neighbourhood_enrichment(edges, tissue["type_code"], k,
                                                n_permutations=n_permutations)
    return setup


def cooccurrence(tissue: Tissue):
    xy, k = _xy(tissue), len(tissue["type_names"])
    return lambda: co_occurrence(xy, tissue["type_code"], k, INTERVAL_UM)


def nearest_distance(tissue: Tissue):
    xy, k = _xy(tissue), len(tissue["type_names"])
    return lambda: nearest_type_distances(xy, tissue["type_code"], k)


def count_within(tissue: Tissue):
    xy, names = _xy(tissue), list(tissue["type_names"])
    return lambda: count_within_by_type(cKDTree(xy), tissue["type_code"], names, [RADIUS_UM])


def knn_composition(tissue: Tissue):
    xy, k = _xy(tissue), len(tissue["type_names"])
    return lambda: neighbourhood_composition(cKDTree(xy), tissue["type_code"], k, k=KNN)


def _anndata(tissue: Tissue):
    import anndata as ad
    import pandas as pd

    names = list(tissue["type_names"])
    obs = pd.DataFrame({"cell_type": pd.Categorical.from_codes(tissue["type_code"],
                                                               categories=names)},
                       index=[str(i) for i in range(len(tissue["x_um"]))])
    adata = ad.AnnData(obs=obs)
    adata.obsm["spatial"] = _xy(tissue)
    return adata


def _tl(name: str, after_compartments: bool = False, **kwargs):
    def setup(tissue: Tissue):
        import metaniche as mn

        adata = _anndata(tissue)
        if after_compartments:     # the usual notebook order: compartments first
            mn.tl.compartments(adata, "cell_type")
        tool = getattr(mn.tl, name)
        return lambda: tool(adata, "cell_type", **kwargs)
    return setup


STEPS = {"radius_graph": radius_graph, "enrichment_exact": _enrichment(0),
         "enrichment_perm1000": _enrichment(1000), "co_occurrence": cooccurrence,
         "nearest_distance": nearest_distance, "count_within": count_within,
         "knn_composition": knn_composition,
         "tl_nhood_enrichment_exact": _tl("nhood_enrichment", graph="radius",
                                          contact_radius_um=RADIUS_UM, n_permutations=0),
         "tl_nhood_enrichment_perm1000": _tl("nhood_enrichment", graph="radius",
                                             contact_radius_um=RADIUS_UM, n_permutations=1000),
         "tl_compartments": _tl("compartments"),
         "tl_nhood_enrichment_exact_after_compartments": _tl(
             "nhood_enrichment", after_compartments=True, graph="radius",
             contact_radius_um=RADIUS_UM, n_permutations=0),
         "tl_co_occurrence": _tl("co_occurrence", cooccurrence_max_um=100.0,
                                 cooccurrence_bins=10),
         "tl_ripley": _tl("ripley", ripley_max_um=100.0)}

if __name__ == "__main__":
    sys.exit(run_step("metaniche", version("metaniche"), STEPS))
