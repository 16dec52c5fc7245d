"""Analysis tools on AnnData / DataFrame / SpatialData objects (``import metaniche as mn;
mn.tl.compartments(adata, "cell_type")``); see :mod:`metaniche._api.tools`."""

from metaniche._api.tools import (
    aggregates,
    analyse,
    co_occurrence,
    compartments,
    composition,
    contact,
    gradients,
    immune_phenotype,
    ligrec,
    mixing_score,
    nearest_distances,
    neighbourhoods,
    nhood_enrichment,
    ripley,
    states,
    zonation,
)

__all__ = ["aggregates", "analyse", "co_occurrence", "compartments", "composition", "contact",
           "gradients", "immune_phenotype", "ligrec", "mixing_score", "nearest_distances",
           "neighbourhoods", "nhood_enrichment", "ripley", "states", "zonation"]
