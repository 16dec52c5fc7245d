"""Time one scimap step on the shared tissue file (``.venv-scimap`` only); one JSON line.

Steps: ``spatial_distance`` (nearest cell of each phenotype), ``spatial_count`` (radius 30 µm),
``spatial_count_knn`` (10 nearest cells) and ``spatial_interaction`` (radius 30 µm, 1,000
permutations). scimap reads coordinates from ``obs`` columns ``X_centroid`` / ``Y_centroid``
and needs an ``imageid`` column (one image here).
"""

from __future__ import annotations

import sys

import anndata as ad
import numpy as np
import pandas as pd
import scimap as sm
from _protocol import Tissue, run_step

RADIUS_UM = 30.0
KNN = 10
N_PERMS = 1000
COMMON = {"x_coordinate": "X_centroid", "y_coordinate": "Y_centroid",
          "phenotype": "phenotype", "imageid": "imageid", "verbose": False}


def to_anndata(tissue: Tissue) -> ad.AnnData:
    """AnnData in scimap's layout (a 1-column dummy expression matrix)."""
    n = len(tissue["x_um"])
    names = np.asarray(tissue["type_names"])
    obs = pd.DataFrame({"X_centroid": tissue["x_um"], "Y_centroid": tissue["y_um"],
                        "phenotype": names[tissue["type_code"]], "imageid": "sample"},
                       index=[str(i) for i in range(n)])
    return ad.AnnData(X=np.zeros((n, 1), dtype=np.float32), obs=obs)


def spatial_distance(tissue: Tissue):
    adata = to_anndata(tissue)
    return lambda: sm.tl.spatial_distance(adata, **COMMON)


def spatial_count(tissue: Tissue):
    adata = to_anndata(tissue)
    return lambda: sm.tl.spatial_count(adata, method="radius", radius=RADIUS_UM, **COMMON)


def spatial_count_knn(tissue: Tissue):
    adata = to_anndata(tissue)
    return lambda: sm.tl.spatial_count(adata, method="knn", knn=KNN, **COMMON)


def spatial_interaction(tissue: Tissue):
    adata = to_anndata(tissue)
    return lambda: sm.tl.spatial_interaction(adata, method="radius", radius=RADIUS_UM,
                                             permutation=N_PERMS, **COMMON)


STEPS = {"spatial_distance": spatial_distance, "spatial_count": spatial_count,
         "spatial_count_knn": spatial_count_knn, "spatial_interaction": spatial_interaction}

if __name__ == "__main__":
    sys.exit(run_step("scimap", getattr(sm, "__version__", "2.3.6"), STEPS))
