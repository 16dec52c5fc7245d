"""Stage: functional communities — neighbourhood windows for the cohort CN fit, B/T aggregates
and TLS with maturity grade, user-defined multicellular units, spatial ligand–receptor.

Tables: ``cn_training`` (seeded subsample of window compositions; the run-level
``neighbourhoods`` step fits the CNs on it and writes ``neighbourhoods``), ``cn_windows``
(sample-private: every cell's window counts, from which that step labels the cells),
``aggregates`` (one row per lymphoid cluster, TLS or unit), ``aggregate_composition``,
``ligrec``. Per-cell columns: ``aggregate_id`` (B/T
cluster or TLS, 0 = none) and ``unit_id`` (custom unit, 0 = none; a cell in several units keeps
the first declared). Ids are unique within a sample across kinds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.analyses.communities import (
    GRADES,
    aggregate_tables,
    classify_lymphoid,
    density_clusters,
    keep_clusters,
    ligand_receptor,
    load_pairs,
    marker_positive,
    match_pairs,
    neighbour_pairs,
    neighbourhood_composition,
    training_windows,
    window_counts,
)
from metaniche.analyses.compartments import COMPARTMENTS, WHOLE
from metaniche.config import AggregateParams
from metaniche.context import SampleContext, StageOutput
from metaniche.features import feature_namer

__all__ = ["FEATURES", "run"]

#: Feature family → (unit, description).
FEATURES: dict[str, tuple[str, str]] = {
    "tls": ("count | per mm² | fraction",
            "tertiary lymphoid structures (>= tls_min_cells B+T cells, B fraction >= "
            "tls_min_b_fraction): count, density per mm² of tissue (or of a compartment), "
            "fraction mature (primary or secondary follicle), whole sample and by compartment"),
    "lymphoid_cluster": ("count", "B/T density clusters below the TLS rule"),
    "unit": ("count | per mm²", "user-defined multicellular units: count and density per mm² "
                                "of tissue"),
    "ligrec": ("count", "ligand–receptor sender/receiver type pairs with q <= 0.05 (all "
                        "compartments pooled)"),
}

_name = feature_namer(FEATURES)


def run(context: SampleContext) -> StageOutput:
    """Neighbourhood windows, aggregates / TLS, custom units and ligand–receptor of one sample."""
    config = context.config
    n_types = len(context.cell_types)
    compositions = neighbourhood_composition(context.tree, context.type_codes, n_types,
                                             config.neighbourhoods.k)
    training = training_windows(compositions, context.cell_types,
                                config.neighbourhoods.n_training, config.neighbourhoods.seed)
    windows = window_counts(compositions, context.cell_types, config.neighbourhoods.k)
    del compositions
    ligrec_on = config.ligrec.n_permutations > 0
    radii = [config.aggregates.radius_um, *(u.radius_um for u in config.units.values())]
    if ligrec_on:
        radii.append(config.ligrec.radius_um)
    pairs = neighbour_pairs(context.tree, max(radii))

    lymphoid, lymphoid_comp, aggregate_id = _lymphoid(context, pairs)
    units, units_comp, unit_id = _units(context, pairs, first_id=len(lymphoid) + 1)
    aggregates = pd.concat([lymphoid, units], ignore_index=True)
    composition = pd.concat([lymphoid_comp, units_comp], ignore_index=True)
    features = _aggregate_features(context, aggregates)

    tables = {T.CN_TRAINING: training, T.CN_WINDOWS: windows, T.AGGREGATES: aggregates,
              T.AGGREGATE_COMPOSITION: composition}
    if ligrec_on:
        lr = _ligrec(context, pairs)
        tables[T.LIGREC] = lr
        whole = lr[lr["compartment"] == WHOLE]
        features[_name("ligrec", "n_significant")] = int((whole["q"] <= 0.05).sum())
    return StageOutput(tables=tables, features=features,
                       cell_columns={"aggregate_id": aggregate_id, "unit_id": unit_id})


def _lymphoid(context: SampleContext, pairs) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """B/T density clusters, TLS classification and maturity grade."""
    params: AggregateParams = context.config.aggregates
    is_b = context.is_b
    clusters = density_clusters(pairs, is_b | context.is_t, params.radius_um,
                                params.min_neighbours, params.min_cells)
    summary, composition = _summaries(context, clusters)
    fdc = _evidence(context, params.fdc_types, params.fdc_markers, params.marker_threshold)
    gc = _evidence(context, params.gc_types, (), params.marker_threshold)
    gc |= is_b & _evidence(context, (), params.gc_markers, params.marker_threshold)
    gc |= _evidence(context, params.plasma_types, params.plasma_markers,
                    params.marker_threshold)
    summary, composition = classify_lymphoid(
        clusters, summary, composition, is_b, fdc, gc, params.tls_min_cells,
        params.tls_min_b_fraction, params.min_fdc_cells, params.min_fdc_fraction,
        params.min_gc_cells)
    return summary, composition, clusters.label


def _units(context: SampleContext, pairs, first_id: int
           ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Every ``[units.<name>]`` motif as density clusters of its types."""
    labels = context.labels
    unit_id = np.zeros(len(labels), dtype=np.int64)
    summaries, compositions = [], []
    next_id = first_id
    for name, unit in context.config.units.items():
        selected = np.isin(labels, unit.types)
        if not selected.any():
            continue
        clusters = density_clusters(pairs, selected, unit.radius_um, unit.min_neighbours,
                                    unit.min_cells, attach=False)
        if clusters.n_clusters == 0:
            continue
        required = [labels == t for t in unit.types] if unit.require_all else []
        kept = keep_clusters(clusters, required)
        if kept.n_clusters == 0:
            continue
        label = kept.label
        summary, composition = _summaries(context, kept)
        offset = next_id - 1
        summary["cluster"] += offset
        composition["cluster"] += offset
        free = (label > 0) & (unit_id == 0)
        unit_id[free] = label[free] + offset
        summary.insert(1, "kind", name)
        composition.insert(1, "kind", name)
        summaries.append(summary.rename(columns={"cluster": "aggregate_id"}))
        compositions.append(composition.rename(columns={"cluster": "aggregate_id"}))
        next_id += kept.n_clusters
    if not summaries:
        return pd.DataFrame(), pd.DataFrame(), unit_id
    return (pd.concat(summaries, ignore_index=True), pd.concat(compositions, ignore_index=True),
            unit_id)


def _summaries(context: SampleContext, clusters) -> tuple[pd.DataFrame, pd.DataFrame]:
    result = context.compartments
    return aggregate_tables(clusters, context.x_um, context.y_um, context.type_codes,
                            context.cell_types, np.asarray(result.signed_distance_um, float),
                            np.asarray(result.lesion_id), context.config.compartments.border_um,
                            tumor_present=bool(result.tumor.any()))


def _evidence(context: SampleContext, types, markers, threshold: float) -> np.ndarray:
    """Cells with a label in ``types`` or positive for any of ``markers`` (case-insensitive)."""
    found = np.isin(context.labels, list(types)) if types else np.zeros(len(context.labels),
                                                                        dtype=bool)
    wanted = {m.upper() for m in markers}
    columns = [c for c in [*context.marker_columns(), *context.gene_names]
               if c.upper() in wanted]
    if columns:
        frame = context.marker_frame(columns)
        for column in columns:
            found |= marker_positive(frame[column].to_numpy(np.float64), threshold)
    return found


def _aggregate_features(context: SampleContext, aggregates: pd.DataFrame) -> dict[str, object]:
    areas = context.compartments.areas
    whole = areas[areas["lesion_id"] == 0].set_index("compartment")["area_mm2"]
    tissue = float(whole.get(WHOLE, np.nan))
    kinds = aggregates["kind"].to_numpy() if len(aggregates) else np.array([], dtype=object)
    tls = aggregates[kinds == "tls"] if len(aggregates) else aggregates
    features: dict[str, object] = {}
    for compartment in (WHOLE, *COMPARTMENTS):
        part = tls if compartment == WHOLE else tls[tls["compartment"] == compartment]
        suffix = () if compartment == WHOLE else (compartment,)
        area = float(whole.get(compartment, np.nan))
        features[_name("tls", "count", *suffix)] = len(part)
        features[_name("tls", "density_per_mm2", *suffix)] = (len(part) / area if area > 0
                                                              else np.nan)
        mature = part["grade"].isin(GRADES[1:]).sum() if len(part) else 0
        features[_name("tls", "fraction_mature", *suffix)] = (mature / len(part) if len(part)
                                                              else np.nan)
    features[_name("lymphoid_cluster", "count")] = int((kinds == "lymphoid_cluster").sum())
    for name in context.config.units:
        count = int((kinds == name).sum())
        features[_name("unit", name, "count")] = count
        features[_name("unit", name, "density_per_mm2")] = (count / tissue if tissue > 0
                                                           else np.nan)
    return features


def _ligrec(context: SampleContext, pairs) -> pd.DataFrame:
    params = context.config.ligrec
    table = load_pairs(params.pairs or None)
    columns = [*context.marker_columns(), *context.gene_names]
    matched = match_pairs(table, columns)
    local = pairs.within(params.radius_um)
    needed = list(dict.fromkeys(c for p in matched for c in (p[2], p[3])))
    frame = context.marker_frame(needed)
    expression = {c: frame[c].to_numpy(np.float64) for c in needed}
    return ligand_receptor(local.i, local.j, expression, matched, context.type_codes,
                           context.cell_types, np.asarray(context.compartments.compartment),
                           params.n_permutations, params.seed, params.min_edges,
                           params.max_permutations, params.min_exceedances,
                           params.normal_min_edges)
