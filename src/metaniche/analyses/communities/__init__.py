"""Functional communities: cellular neighbourhoods, aggregates / TLS, custom multicellular
units and spatial ligand–receptor co-localisation."""

from metaniche.analyses.communities.aggregates import (
    GRADES,
    Clusters,
    NeighbourPairs,
    aggregate_tables,
    classify_lymphoid,
    density_clusters,
    grade_tls,
    keep_clusters,
    marker_positive,
    neighbour_pairs,
)
from metaniche.analyses.communities.ligrec import (
    benjamini_hochberg,
    ligand_receptor,
    load_pairs,
    match_pairs,
)
from metaniche.analyses.communities.neighbourhoods import (
    NeighbourhoodModel,
    abundance_counts,
    abundance_table,
    assign_neighbourhoods,
    fit_neighbourhoods,
    neighbourhood_composition,
    neighbourhood_tables,
    training_windows,
    window_counts,
    window_fractions,
    windows_matrix,
)

__all__ = [
    "GRADES",
    "Clusters",
    "NeighbourPairs",
    "NeighbourhoodModel",
    "abundance_counts",
    "abundance_table",
    "aggregate_tables",
    "assign_neighbourhoods",
    "benjamini_hochberg",
    "classify_lymphoid",
    "density_clusters",
    "fit_neighbourhoods",
    "grade_tls",
    "keep_clusters",
    "ligand_receptor",
    "load_pairs",
    "marker_positive",
    "match_pairs",
    "neighbour_pairs",
    "neighbourhood_composition",
    "neighbourhood_tables",
    "training_windows",
    "window_counts",
    "window_fractions",
    "windows_matrix",
]
