"""Stage ``spots``: the analyses of a spot sample (Visium-type spots with deconvolved types).

A spot sample (``[spots] proportions`` set; see :mod:`metaniche.io._spots`) is a sample kind
of its own: its context carries the deconvolution (:attr:`metaniche.context.SampleContext.
spots`) and its compartments come from the tumour types' proportions
(:func:`metaniche.analyses.spots.sample_spot_compartments`). Only the stages named in
:data:`SPOT_SAMPLE_STAGES` run on it (the cell stages count labelled cells, which spots are
not); on a cell sample this stage emits nothing, so cell results are unchanged.

Tables (one row per spot in ``cells/<sample>.parquet`` with ``signed_distance_um``,
``compartment``, ``lesion_id`` as for cells):

- ``composition`` (same columns as for cells plus ``n_spots``; ``area_mm2`` is the spots'
  area, ``n_cells`` and ``density_per_mm2`` are NaN for proportions without ``[spots]
  cells_per_spot``);
- ``compartments`` (tissue area of each compartment, ``n_spots``, scales used);
- ``lesions``; ``gradients`` (bands of signed distance, columns of ``composition``) and, when
  cells are known, ``gradient_stats`` (the trend test of the cell gradients);
- ``spot_gradient_stats`` (trend of each type's mean proportion across the border,
  :func:`metaniche.analyses.spots.proportion_gradient_statistics`; no cells assumption);
- ``gradient_markers`` (mean of each gene per band, when the spots carry at most
  :data:`MAX_GRADIENT_GENES` genes or ``[gradients] marker_columns`` lists them);
- ``spot_colocalisation`` (:func:`metaniche.analyses.spots.spot_colocalisation`; the
  permutations are drawn over the spots sorted by x then y, so that results do not depend on
  the input's row order).

Features keep the cell names where the meaning is the same — ``density.<compartment>.<type>``
(cells/mm², Σ cells over the spots' area), ``proportion.<compartment>.<type>``,
``area_mm2.<compartment>`` (here the spots' area), ``n_lesions``, ``region_agreement.kappa``,
the gradient families — and are computed over spots: the family ``n_spots`` marks a spot
sample in the data dictionary. New families: ``n_spots``, ``proportion_gradient_slope``,
``proportion_gradient_p``, ``colocalisation_z``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.analyses.compartments import WHOLE
from metaniche.analyses.gradients import gradient_statistics
from metaniche.analyses.spots import (
    SpotData,
    band_edges_um,
    proportion_gradient_statistics,
    spot_area_um2,
    spot_colocalisation,
    spot_composition,
    spot_gradients,
    spot_neighbours,
)
from metaniche.config import Config
from metaniche.context import SampleContext, StageOutput
from metaniche.features import feature_namer
from metaniche.io._spots import SPOT_TYPE_PREFIX, spot_type_columns
from metaniche.stages import gradients as gradient_stage
from metaniche.stages.composition import FEATURES as COMPOSITION_FEATURES

__all__ = ["FEATURES", "MAX_GRADIENT_GENES", "SPOT_SAMPLE_STAGES", "run", "spot_data"]

#: The registered stages that run on a spot sample (the others are skipped for it).
SPOT_SAMPLE_STAGES = frozenset({"spots"})
#: Genes per spot above which gene gradients need ``[gradients] marker_columns``.
MAX_GRADIENT_GENES = 500

#: Families shared with the cell stages (same meaning, computed over spots): their entries
#: are the cell stages' own, and this stage is registered before them, so the data
#: dictionary names the cell stage as their owner.
_SHARED = {**{name: COMPOSITION_FEATURES[name] for name in (
    "n_cells", "n_lesions", "area_mm2", "density", "proportion", "immune_density",
    "region_agreement")}, **{name: gradient_stage.FEATURES[name] for name in (
        "gradient_slope", "gradient_p", "borderline_index", "peak_um", "peak_density")}}

FEATURES: dict[str, tuple[str, str]] = {
    **_SHARED,
    "n_spots": ("spots", "number of spots of a spot sample; its density, proportion, area and "
                "gradient features are computed over spots (area = spots × spot area)"),
    "proportion_gradient_slope": ("log odds per 100 µm", "slope of the logit of a type's mean "
                                  "proportion per 100 µm farther from the edge, within the "
                                  "window (quasi-binomial; spot samples)"),
    "proportion_gradient_p": ("p-value", "two-sided Wald p of proportion_gradient_slope"),
    "colocalisation_z": ("z-score", "co-localisation of two deconvolved types over "
                         "neighbouring spots against spot permutations (spot samples)"),
}
_name = feature_namer(FEATURES)


def spot_data(cells: pd.DataFrame, config: Config) -> SpotData | None:
    """The deconvolution of a standardised spot table; None for a cell sample."""
    if not config.spots.proportions:
        return None
    columns = spot_type_columns(cells.columns)
    if not columns:
        return None
    params = config.spots
    return SpotData([c[len(SPOT_TYPE_PREFIX):] for c in columns],
                    cells[columns].to_numpy(np.float64), params.kind,
                    spot_area_um2(params.diameter_um, params.square), params.cells_per_spot)


def run(context: SampleContext) -> StageOutput:
    """Composition, gradients and co-localisation of a spot sample (nothing for cells)."""
    spots = context.spots
    if spots is None:
        return StageOutput()
    config = context.config
    result = context.compartments
    composition = spot_composition(spots, result.compartment, result.lesion_id)
    spacing = float(result.scales.get("median_nn_um", 0.0))
    gradient_params = config.gradients
    edges = band_edges_um(gradient_params.min_um, gradient_params.max_um,
                          gradient_params.bin_um, spacing)
    gradients = spot_gradients(spots, result.signed_distance_um, result.lesion_id, edges)
    params = config.spots
    # spots in (x, y) order, so that the permutations do not depend on the input's row order
    order = np.lexsort((context.y_um, context.x_um))
    coloc = spot_colocalisation(spots.values[order], spots.types,
                                spot_neighbours(context.x_um[order], context.y_um[order],
                                                spacing or None),
                                params.n_permutations, params.seed)
    proportion_stats = proportion_gradient_statistics(gradients, gradient_params.window_um,
                                                      config.cohort.confidence)
    tables = {T.COMPOSITION: composition, T.COMPARTMENTS: _compartments(context),
              T.LESIONS: result.lesions, T.GRADIENTS: gradients,
              T.SPOT_GRADIENT_STATS: proportion_stats, T.SPOT_COLOCALISATION: coloc}
    warnings = []
    stats = None
    if spots.cell_values is not None:
        stats = gradient_statistics(gradients, config.compartments.border_um,
                                    gradient_params.window_um, config.cohort.confidence)
        tables[T.GRADIENT_STATS] = stats
    else:
        warnings.append("spot proportions without [spots] cells_per_spot: densities, cell "
                        "counts and gradient trend tests are NA (proportions are reported); "
                        "set cells_per_spot to assume a number of cells per spot.")
    genes = _gene_columns(context, warnings)
    if genes:
        tables[T.GRADIENT_MARKERS] = gradient_stage.sparse_marker_profiles(context, genes,
                                                                           edges)
    features = _features(context, composition, stats, coloc)
    for row in proportion_stats[proportion_stats["lesion_id"].isna()].itertuples(index=False):
        features[_name("proportion_gradient_slope", row.cell_type)] = row.slope_per_100um
        features[_name("proportion_gradient_p", row.cell_type)] = row.p
    return StageOutput(tables=tables, features=features, warnings=warnings)


def _gene_columns(context: SampleContext, warnings: list[str]) -> list[str]:
    """Gene columns (or sparse genes) for the gene gradients (see module docstring); a
    warning when there are too many to profile by default."""
    params = context.config.gradients
    if not params.markers:
        return []
    if params.marker_columns:
        return [c for c in params.marker_columns if context.has_marker(c)]
    skip = {"array_row", "array_col", "array_x", "array_y", "pixel_x", "pixel_y",
            context.config.spots.region}
    genes = [c for c in context.marker_columns()
             if not c.startswith(SPOT_TYPE_PREFIX) and c not in skip] + context.gene_names
    if len(genes) <= MAX_GRADIENT_GENES:
        return genes
    warnings.append(f"the spots carry {len(genes):,} genes, more than the "
                    f"{MAX_GRADIENT_GENES} profiled by default, so gradient_markers is not "
                    "written; list the genes to profile in [gradients] marker_columns.")
    return []


def _compartments(context: SampleContext) -> pd.DataFrame:
    """Tissue area per lesion × compartment with spot counts and the scales used."""
    result = context.compartments
    spots = pd.DataFrame({"lesion_id": result.lesion_id, "compartment": result.compartment})
    counts = pd.concat([
        spots.value_counts(["lesion_id", "compartment"]).rename("n_spots").reset_index(),
        spots.value_counts("compartment").rename("n_spots").reset_index().assign(lesion_id=0),
        pd.DataFrame({"lesion_id": [0], "compartment": [WHOLE], "n_spots": [len(spots)]}),
    ])
    table = result.areas.merge(counts, on=["lesion_id", "compartment"], how="left")
    table["n_spots"] = table["n_spots"].fillna(0).astype(np.int64)
    table["lesion_id"] = table["lesion_id"].astype("Int64").mask(table["lesion_id"] == 0)
    table = table[["lesion_id", "compartment", "n_spots", "area_mm2"]]
    return table.assign(**{name: float(value) for name, value in result.scales.items()})


def _features(context: SampleContext, composition: pd.DataFrame,
              stats: pd.DataFrame | None, coloc: pd.DataFrame) -> dict[str, object]:
    spots = context.spots
    assert spots is not None
    result = context.compartments
    features: dict[str, object] = {_name("n_spots"): len(context.x_um),
                                   _name("n_lesions"): len(result.lesions)}
    whole = composition[composition["lesion_id"].isna()]
    if spots.cell_values is not None:
        total = whole.loc[whole["compartment"] == WHOLE, "n_cells"].sum()
        features[_name("n_cells")] = float(total)
    for compartment, area in whole.groupby("compartment", sort=False)["area_mm2"].first().items():
        features[_name("area_mm2", compartment)] = float(area)
    for row in whole.itertuples(index=False):
        features[_name("density", row.compartment, row.cell_type)] = \
            float(row.density_per_mm2)
        features[_name("proportion", row.compartment, row.cell_type)] = \
            float(row.proportion)
    immune = whole[whole["cell_type"].isin(_immune(context))]
    if spots.cell_values is not None:
        for compartment, group in immune.groupby("compartment", sort=False):
            area = float(group["area_mm2"].iloc[0])
            features[_name("immune_density", compartment)] = (
                float(group["n_cells"].sum()) / area if area > 0 else math.nan)
    if result.region_agreement_kappa is not None:
        features[_name("region_agreement", "kappa")] = result.region_agreement_kappa
    if stats is not None and not stats.empty:
        for row in stats[stats["lesion_id"].isna()].itertuples(index=False):
            features[_name("gradient_slope", row.cell_type)] = row.slope_per_100um
            features[_name("gradient_p", row.cell_type)] = row.p
            features[_name("borderline_index", row.cell_type)] = row.borderline_index
            features[_name("peak_um", row.cell_type)] = row.peak_um
            features[_name("peak_density", row.cell_type)] = row.peak_density_per_mm2
    pairs = coloc[coloc["type_a"] <= coloc["type_b"]]
    for row in pairs.itertuples(index=False):
        features[_name("colocalisation_z", row.type_a, row.type_b)] = float(row.z)
    return features


def _immune(context: SampleContext) -> list[str]:
    spots = context.spots
    assert spots is not None
    roles = context.config.cell_types
    return [t for t, yes in zip(spots.types, roles.is_immune(spots.types), strict=True) if yes]
