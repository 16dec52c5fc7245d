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

from collections.abc import Iterable

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
)
from metaniche.analyses.compartments import COMPARTMENTS, WHOLE
from metaniche.config import AggregateParams, Config
from metaniche.context import SampleContext, StageOutput
from metaniche.features import feature_namer

__all__ = ["FEATURES", "cohort_neighbourhoods", "run", "window_counts",
           "window_fractions"]

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

#: Rows per block when converting window fractions to counts and back.
_CHUNK = 262_144

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
    for column in context.marker_columns():
        if column.upper() in wanted:
            found |= marker_positive(context.cells[column].to_numpy(np.float64), threshold)
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
    columns = context.marker_columns()
    matched = match_pairs(table, columns)
    local = pairs.within(params.radius_um)
    expression = {c: context.cells[c].to_numpy(np.float64)
                  for p in matched for c in (p[2], p[3])}
    return ligand_receptor(local.i, local.j, expression, matched, context.type_codes,
                           context.cell_types, np.asarray(context.compartments.compartment),
                           params.n_permutations, params.seed, params.min_edges,
                           params.max_permutations, params.min_exceedances,
                           params.normal_min_edges)


def window_counts(compositions: np.ndarray, cell_types: list[str], k: int) -> pd.DataFrame:
    """Per-cell window composition as integer counts, the compact form the cohort step reads.

    Parameters
    ----------
    compositions
        (n_cells, n_types) fractions of :func:`~metaniche.analyses.communities.
        neighbourhood_composition` (each ``count / k_eff``, float32).
    cell_types
        Column labels (the sample's sorted types).
    k
        Configured window size; the effective size is ``min(k, n_cells)``.

    Returns
    -------
    pandas.DataFrame
        One column per cell type, one row per cell (input order): number of cells of that type
        in the cell's window, uint16 (uint32 when ``k`` > 65,535). Exact:
        :func:`window_fractions` gives back ``compositions`` bit for bit.
    """
    k_eff = min(int(k), compositions.shape[0])
    dtype = np.uint16 if k_eff <= np.iinfo(np.uint16).max else np.uint32
    counts = np.empty(compositions.shape, dtype=dtype)
    for start in range(0, compositions.shape[0], _CHUNK):    # bounded float64 temporaries
        block = compositions[start:start + _CHUNK] * np.float64(k_eff)
        counts[start:start + _CHUNK] = np.rint(block)
    return pd.DataFrame(counts, columns=[str(t) for t in cell_types])


def window_fractions(counts: pd.DataFrame) -> np.ndarray:
    """(n_cells, n_types) float32 window fractions from :func:`window_counts` (same values as
    :func:`~metaniche.analyses.communities.neighbourhood_composition`: count / k_eff computed in
    float64, then rounded to float32)."""
    values = counts.to_numpy()
    out = np.empty(values.shape, dtype=np.float32)
    if values.shape[0] == 0:
        return out
    k_eff = int(values[0].sum())
    for start in range(0, values.shape[0], _CHUNK):          # bounded float64 temporaries
        out[start:start + _CHUNK] = values[start:start + _CHUNK] / np.float64(k_eff)
    return out


def cohort_neighbourhoods(training: pd.DataFrame,
                          windows: Iterable[tuple[str, pd.DataFrame, np.ndarray]],
                          config: Config) -> tuple[dict[str, np.ndarray], pd.DataFrame,
                                                   dict[str, dict[str, float]]]:
    """The cohort step of the cellular neighbourhoods (no I/O).

    Fits one model on the pooled ``cn_training`` windows of every sample and labels every
    cell of every sample with its CN from the window counts the stage saved
    (:func:`window_counts`; no KD-tree is rebuilt, no window recomputed).

    Parameters
    ----------
    training
        ``tables/cn_training`` (every sample's training windows, ``sample`` first).
    windows
        ``(sample, counts, compartment)`` per sample: its :func:`window_counts` table and the
        per-cell compartment labels (same cell order), consumed one at a time.
    config
        Run configuration (``[neighbourhoods]``).

    Returns
    -------
    labels
        Sample → per-cell CN (1…), int32.
    table
        ``tables/neighbourhoods``: ``sample, table`` (``abundance``, ``composition`` or
        ``selection``), ``compartment, neighbourhood, cell_type, n_cells, fraction,
        n_neighbourhoods, silhouette`` (columns a row kind does not use are null).
    features
        Sample → ``cn_fraction.CN<i>`` (fraction of the sample's cells in CN i).
    """
    from metaniche.analyses.communities import (
        assign_neighbourhoods,
        fit_neighbourhoods,
        neighbourhood_tables,
    )

    params = config.neighbourhoods
    model = fit_neighbourhoods(training, params.n_neighbourhoods, params.seed)
    labels, parts, features = {}, [], {}
    for name, counts, compartment in windows:
        labels[name] = assign_neighbourhoods(model, window_fractions(counts),
                                             [str(t) for t in counts.columns])
        tables = neighbourhood_tables(labels[name], np.asarray(compartment).astype(str), model)
        abundance = tables[T.NEIGHBOURHOOD_ABUNDANCE].assign(table=T.NEIGHBOURHOOD_ABUNDANCE)
        parts.append(abundance.assign(sample=name))
        whole = abundance[abundance["compartment"] == WHOLE]
        features[name] = {f"cn_fraction.CN{cn}": float(f)
                          for cn, f in zip(whole["neighbourhood"], whole["fraction"],
                                           strict=True)}
    composition = neighbourhood_tables(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=object),
                                       model)[T.NEIGHBOURHOOD_COMPOSITION]
    parts.append(composition.assign(table=T.NEIGHBOURHOOD_COMPOSITION, sample=None))
    parts.append(model.selection.assign(table=T.NEIGHBOURHOOD_SELECTION, sample=None))
    columns = ["sample", "table", "compartment", "neighbourhood", "cell_type", "n_cells",
               "fraction", "n_neighbourhoods", "silhouette"]
    result = pd.concat(parts, ignore_index=True).reindex(columns=columns)
    return labels, result, features
