"""Compute squidpy's arrays for the agreement test and save them (``.venv-squidpy`` only).

Usage: ``python dump_squidpy.py TISSUE.npz OUT.npz``. Writes ``edges`` (undirected pairs i < j
of squidpy's radius-30 µm graph), ``nhood_z`` and ``nhood_count`` (``gr.nhood_enrichment``,
1,000 permutations, seed 0), ``occ`` and ``interval`` (``gr.co_occurrence`` on 10 bins to
100 µm) and ``version``. Matrices follow the tissue file's type order.
"""

from __future__ import annotations

import sys

import numpy as np
import squidpy as sq
from _protocol import load_tissue
from run_squidpy import INTERVAL_UM, KEY, N_PERMS, to_anndata
from scipy import sparse


def dump(tissue_path: str, out_path: str) -> None:
    """Run the three squidpy calls on the tissue and save their arrays."""
    adata = to_anndata(load_tissue(tissue_path), with_graph=True)
    sq.gr.nhood_enrichment(adata, cluster_key=KEY, n_perms=N_PERMS, seed=0,
                           show_progress_bar=False)
    sq.gr.co_occurrence(adata, cluster_key=KEY, interval=INTERVAL_UM, show_progress_bar=False)
    graph = sparse.triu(adata.obsp["spatial_connectivities"], k=1).tocoo()
    enrichment = adata.uns[f"{KEY}_nhood_enrichment"]
    cooccurrence = adata.uns[f"{KEY}_co_occurrence"]
    np.savez(out_path, edges=np.column_stack([graph.row, graph.col]).astype(np.int64),
             nhood_z=np.asarray(enrichment["zscore"], dtype=np.float64),
             nhood_count=np.asarray(enrichment["count"], dtype=np.float64),
             occ=np.asarray(cooccurrence["occ"], dtype=np.float64),
             interval=np.asarray(cooccurrence["interval"], dtype=np.float64),
             version=np.asarray(sq.__version__))


if __name__ == "__main__":
    dump(sys.argv[1], sys.argv[2])
