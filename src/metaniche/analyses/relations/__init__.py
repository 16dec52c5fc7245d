"""Cell–cell relations: distances, mixing, neighbourhood enrichment, point patterns."""

from metaniche.analyses.relations._graph import (
    GRAPH_KINDS,
    iter_pairs_within,
    neighbour_graph,
)
from metaniche.analyses.relations.alphashape import (
    BorderCells,
    alpha_shape_edges,
    border_cells,
    spiat_border_cells,
)
from metaniche.analyses.relations.cooccurrence import co_occurrence, co_occurrence_table
from metaniche.analyses.relations.distances import (
    ClarkEvans,
    average_marker_within_radius,
    average_minimum_distance,
    average_percentage_within_radius,
    bounding_box_area,
    clark_evans,
    count_within,
    count_within_by_type,
    distance_summary,
    nearest_type_distances,
    pairwise_distance_summary,
)
from metaniche.analyses.relations.enrichment import (
    EnrichmentResult,
    combine_z_stouffer,
    contact_counts,
    enrichment_table,
    join_count_moments,
    neighbourhood_enrichment,
    stouffer_z,
)
from metaniche.analyses.relations.mixing import (
    MixingScore,
    mixing_score,
    neighbourhood_entropy,
    shannon_entropy,
)
from metaniche.analyses.relations.pointpattern import (
    RipleyResult,
    Window,
    ripley_cross,
    ripley_envelope,
    ripley_table,
)

__all__ = [
    "GRAPH_KINDS",
    "BorderCells",
    "ClarkEvans",
    "EnrichmentResult",
    "MixingScore",
    "RipleyResult",
    "Window",
    "alpha_shape_edges",
    "average_marker_within_radius",
    "average_minimum_distance",
    "average_percentage_within_radius",
    "border_cells",
    "bounding_box_area",
    "clark_evans",
    "co_occurrence",
    "co_occurrence_table",
    "combine_z_stouffer",
    "contact_counts",
    "count_within",
    "count_within_by_type",
    "distance_summary",
    "enrichment_table",
    "iter_pairs_within",
    "join_count_moments",
    "mixing_score",
    "nearest_type_distances",
    "neighbour_graph",
    "neighbourhood_enrichment",
    "neighbourhood_entropy",
    "pairwise_distance_summary",
    "ripley_cross",
    "ripley_envelope",
    "ripley_table",
    "shannon_entropy",
    "spiat_border_cells",
    "stouffer_z",
]
