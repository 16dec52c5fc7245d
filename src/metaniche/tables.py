"""The one registry of table and subset names (a leaf module: no imports).

Every per-sample table a stage emits is written to ``tables/<name>.parquet`` (with ``sample``
prepended); the stages and the report use these constants instead of retyping the strings.
"""

from __future__ import annotations

__all__ = [
    "AGGREGATES",
    "AGGREGATE_COMPOSITION",
    "BORDER_CELLS",
    "CLARK_EVANS",
    "CN_TRAINING",
    "CN_WINDOWS",
    "COMPARTMENTS",
    "COMPOSITION",
    "COOCCURRENCE",
    "COUNT_WITHIN",
    "DISTANCES",
    "ENRICHMENT",
    "GRADIENTS",
    "GRADIENT_MARKERS",
    "GRADIENT_STATS",
    "LESIONS",
    "LESION_METRICS",
    "LIGREC",
    "MARKER_GRADIENTS",
    "MARKER_GRADIENT_STATS",
    "MIXING",
    "NEIGHBOURHOODS",
    "NEIGHBOURHOOD_ABUNDANCE",
    "NEIGHBOURHOOD_COMPOSITION",
    "NEIGHBOURHOOD_SELECTION",
    "POOLED_GRADIENTS",
    "PRIVATE_TABLES",
    "RIPLEY",
    "SAMPLE_TABLES",
    "SPOT_COLOCALISATION",
    "SPOT_GRADIENT_STATS",
    "STATES",
    "STATE_CHANGES",
    "STATE_CHANGE_PROFILES",
    "STATE_GRADIENTS",
    "STATE_GRADIENT_STATS",
    "STATE_STRUCTURES",
    "STATE_THRESHOLDS",
    "ZONATION",
    "ZONATION_BEYOND_BORDER",
    "ZONATION_ENRICHMENT",
    "ZONATION_OUTSIDE",
    "ZONATION_SUBSETS",
]

# stage "composition"
COMPARTMENTS = "compartments"
COMPOSITION = "composition"
LESIONS = "lesions"
# stages "gradients" (gradients, lesion metrics) and "zonation"
GRADIENTS = "gradients"
GRADIENT_STATS = "gradient_stats"
GRADIENT_MARKERS = "gradient_markers"
# run-level: each response / condition group's pooled gradient (cohort step)
POOLED_GRADIENTS = "pooled_gradients"
LESION_METRICS = "lesion_metrics"
ZONATION = "zonation"
ZONATION_ENRICHMENT = "zonation_enrichment"
# stage "relations"
DISTANCES = "distances"
COUNT_WITHIN = "count_within"
MIXING = "mixing"
CLARK_EVANS = "clark_evans"
ENRICHMENT = "enrichment"
RIPLEY = "ripley"
COOCCURRENCE = "cooccurrence"
BORDER_CELLS = "border_cells"
# stage "communities"
CN_TRAINING = "cn_training"
AGGREGATES = "aggregates"
AGGREGATE_COMPOSITION = "aggregate_composition"
LIGREC = "ligrec"
#: The communities stage's per-cell window composition counts (uint16 or uint32, one column per
#: cell type of the sample; :func:`metaniche.analyses.communities.window_counts`), kept in the
#: sample's cache and read by the run-level neighbourhood step.
CN_WINDOWS = "cn_windows"
#: Per-sample tables kept in the sample's cache only (read by run-level steps, never gathered
#: into ``tables/``).
PRIVATE_TABLES = frozenset({CN_WINDOWS})
# stage "states"
STATES = "states"
STATE_GRADIENTS = "state_gradients"
STATE_GRADIENT_STATS = "state_gradient_stats"
STATE_THRESHOLDS = "state_thresholds"
STATE_STRUCTURES = "state_structures"
MARKER_GRADIENTS = "marker_gradients"
MARKER_GRADIENT_STATS = "marker_gradient_stats"
# stage "contact"
STATE_CHANGES = "state_changes"
STATE_CHANGE_PROFILES = "state_change_profiles"
# run-level step (written by the cohort neighbourhood step from ``cn_training``)
NEIGHBOURHOODS = "neighbourhoods"
#: Parts of the ``neighbourhoods`` table (its column ``table``): CN fractions per sample and
#: compartment, the cell-type composition of each CN, and the model-selection curve.
NEIGHBOURHOOD_ABUNDANCE = "abundance"
NEIGHBOURHOOD_COMPOSITION = "composition"
NEIGHBOURHOOD_SELECTION = "selection"

# stage "spots" (spot samples; they also emit composition, compartments, lesions, gradients)
SPOT_COLOCALISATION = "spot_colocalisation"
SPOT_GRADIENT_STATS = "spot_gradient_stats"

#: Every table a per-sample stage may emit, in stage order.
SAMPLE_TABLES: tuple[str, ...] = (
    COMPARTMENTS, COMPOSITION, LESIONS,
    GRADIENTS, GRADIENT_STATS, GRADIENT_MARKERS, LESION_METRICS, ZONATION, ZONATION_ENRICHMENT,
    DISTANCES, COUNT_WITHIN, MIXING, CLARK_EVANS, ENRICHMENT, RIPLEY, COOCCURRENCE, BORDER_CELLS,
    CN_TRAINING, CN_WINDOWS, AGGREGATES, AGGREGATE_COMPOSITION, LIGREC,
    STATES, STATE_GRADIENTS, STATE_GRADIENT_STATS, STATE_THRESHOLDS,
    MARKER_GRADIENTS, MARKER_GRADIENT_STATS, STATE_STRUCTURES,
    STATE_CHANGES, STATE_CHANGE_PROFILES,
    SPOT_COLOCALISATION, SPOT_GRADIENT_STATS,
)

#: Zonation subsets (column ``subset`` of ``zonation`` / ``zonation_enrichment``): all host
#: tissue (signed distance > 0) and host tissue beyond the border band.
ZONATION_OUTSIDE = "outside"
ZONATION_BEYOND_BORDER = "beyond_border"
ZONATION_SUBSETS: tuple[str, ...] = (ZONATION_OUTSIDE, ZONATION_BEYOND_BORDER)
