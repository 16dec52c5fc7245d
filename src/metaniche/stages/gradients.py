"""Stage ``gradients``: distance-to-border gradients, gradient statistics and lesion metrics.

Tables: ``gradients`` (type × signed-distance bin, per lesion and whole sample),
``gradient_markers`` (mean marker per bin), ``gradient_stats`` (trend, peak, borderline index)
and ``lesion_metrics`` (per lesion × infiltration type). Methods in
:mod:`metaniche.analyses.gradients` and :mod:`metaniche.analyses.lesion_metrics`. (Until
0.x this stage also ran zonation under the name ``border``; zonation is now its own stage,
:mod:`metaniche.stages.zonation`.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.analyses.gradients import (
    band_areas_mm2,
    bin_edges_um,
    gradient_profiles,
    gradient_statistics,
    marker_profiles,
)
from metaniche.analyses.lesion_metrics import (
    infiltration_depth_um,
    lesion_metrics,
    lesion_perimeters_um,
)
from metaniche.context import SampleContext, StageOutput
from metaniche.features import feature_namer

__all__ = ["FEATURES", "run"]

FEATURES: dict[str, tuple[str, str]] = {
    "gradient_slope": ("log ratio per 100 µm", "slope of log density per 100 µm farther from "
                       "the tumour edge (negative = rising toward the edge), within the window"),
    "gradient_p": ("p-value", "two-sided Wald p of the gradient slope (Poisson/NB2 GLM)"),
    "borderline_index": ("ratio", "border-band density over mean core and adjacent density"),
    "peak_um": ("µm", "signed distance of the density peak (bin centre) within the window"),
    "peak_density": ("cells/mm²", "density at the gradient peak"),
    "infiltration_depth_um": ("µm", "median signed distance of a type's cells inside tumour "
                              "(more negative = deeper)"),
}


_name = feature_namer(FEATURES)


def run(context: SampleContext) -> StageOutput:
    """Gradient profiles and statistics and lesion metrics of one sample."""
    params = context.config.gradients
    result = context.compartments
    border_um = context.config.compartments.border_um
    edges = bin_edges_um(params.min_um, params.max_um, params.bin_um)
    n_lesions = len(result.lesions)
    pixel_lesion = result.pixel_lesion_id if result.pixel_lesion_id is not None else None
    areas = band_areas_mm2(result.pixel_signed_distance_um, result.tissue, result.grid.pixel_um,
                           edges, pixel_lesion, n_lesions if pixel_lesion is not None else 0)
    if areas.shape[0] < n_lesions + 1:
        areas = np.vstack([areas, np.zeros((n_lesions + 1 - areas.shape[0], areas.shape[1]))])
    sd = result.signed_distance_um
    gradients = gradient_profiles(sd, context.type_codes, context.cell_types, result.lesion_id,
                                  areas, edges)
    stats_table = gradient_statistics(gradients, border_um, params.window_um,
                                      context.config.cohort.confidence)
    tables = {T.GRADIENTS: gradients, T.GRADIENT_STATS: stats_table}
    warnings = []
    if params.markers:
        columns = list(params.marker_columns) or context.marker_columns()
        columns = [c for c in columns if context.has_marker(c)]
        tables[T.GRADIENT_MARKERS] = sparse_marker_profiles(context, columns, edges)
        if context.genes is not None and not params.marker_columns:
            warnings.append(
                f"the {context.genes.n_genes:,} genes of the sparse expression matrix are not "
                "in gradient_markers (profiling every gene would give a table of genes × "
                "bins × lesions rows); list the genes to profile in [gradients] "
                "marker_columns.")

    effectors = context.infiltration_types
    perimeters = lesion_perimeters_um(result.lesion_labels, result.tissue, result.grid.pixel_um,
                                      n_lesions)
    labels = context.labels
    tables[T.LESION_METRICS] = lesion_metrics(result.lesions, perimeters, result.areas, sd,
                                              result.compartment, result.lesion_id, labels,
                                              effectors)
    features = _features(stats_table, sd, labels, effectors)
    return StageOutput(tables=tables, features=features, warnings=warnings)


#: Genes densified at a time by :func:`sparse_marker_profiles` (n_cells × 64 float64).
_GENE_CHUNK = 64


def sparse_marker_profiles(context: SampleContext, columns: list[str],
                           edges: np.ndarray) -> pd.DataFrame:
    """:func:`~metaniche.analyses.gradients.marker_profiles` of the named columns (cell-table
    columns or sparse genes), densifying at most 64 genes at a time; same table as one call
    on all the columns."""
    result = context.compartments
    n_lesions = len(result.lesions)
    sd = result.signed_distance_um
    if not columns:
        return marker_profiles(sd, context.marker_frame([]), result.lesion_id, n_lesions,
                               edges)
    parts = [marker_profiles(sd, context.marker_frame(columns[i:i + _GENE_CHUNK]),
                             result.lesion_id, n_lesions, edges)
             for i in range(0, len(columns), _GENE_CHUNK)]
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _features(stats_table: pd.DataFrame, sd: np.ndarray, labels: np.ndarray,
              effectors: list[str]) -> dict[str, object]:
    features: dict[str, object] = {}
    if not stats_table.empty:
        whole = stats_table[stats_table["lesion_id"].isna()]
        for row in whole.itertuples(index=False):
            features[_name("gradient_slope", row.cell_type)] = row.slope_per_100um
            features[_name("gradient_p", row.cell_type)] = row.p
            features[_name("borderline_index", row.cell_type)] = row.borderline_index
            features[_name("peak_um", row.cell_type)] = row.peak_um
            features[_name("peak_density", row.cell_type)] = row.peak_density_per_mm2
    for cell_type in effectors:
        depth = infiltration_depth_um(sd, labels == cell_type, np.zeros(len(sd), np.int64), 0)
        features[_name("infiltration_depth_um", cell_type)] = float(depth[0])
    return features
