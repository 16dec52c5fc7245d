"""Stage ``states``: cell states per compartment and band, and density ratios.

Tables ``states`` (lesion × compartment × cell type × state), ``state_gradients`` (state
fraction per signed-distance band, whole sample), ``state_gradient_stats`` (band trend) and
``state_thresholds`` (the threshold used per state), ``state_structures`` (states inside vs
outside each structure kind of the communities stage, when it ran before:
:mod:`metaniche.analyses.state_structures`), ``marker_gradients`` and
``marker_gradient_stats`` (mean intensity of the state markers and ``[states]
gradient_markers`` per band, per cell type and pooled, and its trend test); per-cell columns
``state.<name>``. Features ``state_fraction.<compartment>.<cell_type>.<state>``,
``state_density.<compartment>.<cell_type>.<state>``, ``state_gradient_slope.<cell_type>.
<state>``, ``state_gradient_p.<cell_type>.<state>``, ``marker_gradient_slope.<cell_type>.
<marker>`` and ``marker_gradient_p.<cell_type>.<marker>`` (cell type ``all`` = every cell),
``state_fraction_inside`` / ``state_fraction_outside`` / ``state_log_odds_inside``
``.<kind>.<cell_type>.<state>`` and ``ratio.<compartment>.<A>.<B>``. Methods in
:mod:`metaniche.analyses.states`, :mod:`metaniche.analyses.state_structures` and
:mod:`metaniche.analyses.marker_trends`; no ``[states]`` rules and no gradient markers gives
the ratios only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.analyses.gradients import bin_edges_um
from metaniche.analyses.marker_trends import (
    marker_band_means,
    marker_gradient_statistics,
    trend_markers,
)
from metaniche.analyses.state_structures import structure_members, structure_states
from metaniche.analyses.states import (
    call_states,
    default_ratio_pairs,
    density_ratios,
    state_gradient_statistics,
    state_gradients,
    state_table,
)
from metaniche.context import SampleContext, StageOutput
from metaniche.features import feature_namer

__all__ = ["FEATURES", "run"]

FEATURES: dict[str, tuple[str, str]] = {
    "state_fraction": ("fraction", "share of a compartment's cells of a type that carry a "
                       "state ([states])"),
    "state_density": ("cells/mm²", "cells of a type carrying a state per mm² of a "
                      "compartment's tissue area"),
    "state_gradient_slope": ("log odds per 100 µm", "slope of the state's log odds per 100 µm "
                             "farther from the tumour edge (negative = more frequent toward "
                             "the edge), binomial / quasi-binomial GLM within the window"),
    "state_gradient_p": ("p-value", "two-sided Wald p of the state gradient slope"),
    "marker_gradient_slope": ("intensity units per 100 µm", "slope of a marker's mean "
                              "intensity (of a cell type, or of all cells) per 100 µm farther "
                              "from the tumour edge (negative = higher toward the edge), "
                              "band-mean WLS within the window"),
    "marker_gradient_p": ("p-value", "two-sided p of the marker gradient slope (cluster-robust "
                          "CR3 t test, clusters = [states] trend_block_um blocks of bands)"),
    "state_fraction_inside": ("fraction", "share of a type's cells inside a structure of a "
                              "kind (tls, lymphoid_cluster, a [units] name) that carry a "
                              "state"),
    "state_fraction_outside": ("fraction", "share of a type's cells outside every structure "
                               "of a kind that carry a state"),
    "state_log_odds_inside": ("log odds ratio", "log odds of a state inside vs outside a "
                              "structure kind, counts + [states] pseudocount (0.5)"),
    "ratio": ("ratio", "density ratio of two types in a compartment, (n_A + c) / (n_B + c) "
              "with pseudocount c = [states] pseudocount cells (default 0.5); NaN when "
              "neither type has a cell there"),
}
_name = feature_namer(FEATURES)


def run(context: SampleContext) -> StageOutput:
    """States, their band profiles and trends, and density ratios of one sample."""
    config = context.config
    params = config.states
    result = context.compartments
    labels = context.labels
    features: dict[str, object] = {}
    tables = {}
    cell_columns = {}
    if params.rules:
        calls = call_states(context.with_genes(_rule_markers(params.rules)), labels,
                            params.rules, context.name, params.cohort_thresholds)
        table = state_table(calls, context.type_codes, context.cell_types, result.compartment,
                            result.lesion_id, result.areas)
        gparams = config.gradients
        edges = bin_edges_um(gparams.min_um, gparams.max_um, gparams.bin_um)
        profiles = state_gradients(calls, context.type_codes, context.cell_types,
                                   result.signed_distance_um, edges)
        trends = state_gradient_statistics(profiles, gparams.window_um, config.cohort.confidence)
        tables = {T.STATES: table, T.STATE_GRADIENTS: profiles, T.STATE_GRADIENT_STATS: trends,
                  T.STATE_THRESHOLDS: calls.thresholds}
        cell_columns = calls.columns()
        communities = context.previous.get("communities")
        if communities is not None and "aggregate_id" in communities.cell_columns:
            members = structure_members(
                communities.cell_columns["aggregate_id"],
                communities.cell_columns.get("unit_id", np.zeros(len(labels), np.int64)),
                communities.tables.get(T.AGGREGATES, pd.DataFrame()), list(config.units))
            inside = structure_states(calls, context.type_codes, context.cell_types, members,
                                      params.pseudocount)
            tables[T.STATE_STRUCTURES] = inside
            for row in inside.itertuples(index=False):
                parts = (row.kind, row.cell_type, row.state)
                features[_name("state_fraction_inside", *parts)] = float(row.fraction_inside)
                features[_name("state_fraction_outside", *parts)] = float(row.fraction_outside)
                features[_name("state_log_odds_inside", *parts)] = float(row.log_odds_ratio)
        whole = table[table["lesion_id"].isna()]
        for row in whole.itertuples(index=False):
            features[_name("state_fraction", row.compartment, row.cell_type, row.state)] = (
                float(row.fraction))
            features[_name("state_density", row.compartment, row.cell_type, row.state)] = (
                float(row.density_per_mm2))
        for row in trends.itertuples(index=False):
            features[_name("state_gradient_slope", row.cell_type, row.state)] = (
                float(row.slope_per_100um))
            features[_name("state_gradient_p", row.cell_type, row.state)] = float(row.p)
    marker_tables, marker_features, marker_warnings = _marker_gradients(context)
    tables.update(marker_tables)
    features.update(marker_features)
    present = set(context.cell_types)
    warnings = [f"state '{name}' is limited to cell types {list(rule.cell_types)}, none of which "
                f"is a label of this sample (labels: {', '.join(context.cell_types[:12])}); "
                f"check [states.{name}] cell_types." for name, rule in params.rules.items()
                if rule.cell_types and not present.intersection(rule.cell_types)]
    warnings += [f"neither label of the ratio [{a!r}, {b!r}] is a label of this sample, so its "
                 f"features are NaN; check [states] ratios." for a, b in params.ratios
                 if a not in present and b not in present]
    pairs = (list(params.ratios) if params.ratios
             else default_ratio_pairs(context.cell_types, context.effector_types))
    ratios = density_ratios(labels, result.compartment, result.areas, pairs,
                            params.pseudocount)
    for row in ratios.itertuples(index=False):
        features[_name("ratio", row.compartment, row.numerator, row.denominator)] = (
            float(row.ratio))
    return StageOutput(tables=tables, features=features, cell_columns=cell_columns,
                       warnings=warnings + marker_warnings)


def _rule_markers(rules: dict) -> list[str]:
    """The markers the ``[states]`` rules read (genes among them are densified, only they)."""
    return [rule.marker for rule in rules.values() if rule.marker]


def _marker_gradients(context: SampleContext) -> tuple[dict, dict[str, object], list[str]]:
    """Marker intensity per band (per type and pooled) and its trend test
    (:mod:`metaniche.analyses.marker_trends`)."""
    config = context.config
    params = config.states
    column_of, types_of, missing = trend_markers(
        params.rules, params.gradient_markers,
        [str(c) for c in context.cells.columns] + context.gene_names)
    warnings = [f"[states] gradient_markers names '{name}', which has no column in the cell "
                f"table; fix the name or remove it." for name in missing]
    if not column_of:
        return {}, {}, warnings
    gparams = config.gradients
    edges = bin_edges_um(gparams.min_um, gparams.max_um, gparams.bin_um)
    frame = context.marker_frame(list(dict.fromkeys(column_of.values())))
    values = {marker: pd.to_numeric(frame[column], errors="coerce").to_numpy(
        np.float64) for marker, column in column_of.items()}
    profiles = marker_band_means(context.compartments.signed_distance_um, values,
                                 context.type_codes, context.cell_types, types_of, edges)
    trends = marker_gradient_statistics(profiles, gparams.window_um, params.trend_block_um,
                                        config.cohort.confidence)
    features: dict[str, object] = {}
    for row in trends.itertuples(index=False):
        features[_name("marker_gradient_slope", row.cell_type, row.marker)] = float(
            row.slope_per_100um)
        features[_name("marker_gradient_p", row.cell_type, row.marker)] = float(row.p)
    return ({T.MARKER_GRADIENTS: profiles, T.MARKER_GRADIENT_STATS: trends}, features,
            warnings)
