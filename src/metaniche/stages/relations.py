"""Stage: cell–cell relations (distances, counts within radius, mixing, entropy, Clark–Evans,
neighbourhood enrichment, Ripley K/L/g on the tissue mask, co-occurrence).

Tables: ``distances``, ``count_within``, ``mixing``, ``clark_evans``, ``enrichment``,
``ripley``, ``cooccurrence``, ``border_cells``. Per-cell columns: ``neighbourhood_entropy``,
``hull_border_cluster``. Every statistic
shares the sample's one KD-tree; the contact graph is built once. The tables are built by
:mod:`metaniche.analyses.relations.sample_tables`; this stage adapts the sample context to
those calls and reads the named features off the tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.analyses.compartments import WHOLE
from metaniche.analyses.relations import (
    Window,
    co_occurrence,
    co_occurrence_table,
    count_within_by_type,
    nearest_type_distances,
    neighbour_graph,
    neighbourhood_entropy,
    ripley_table,
)
from metaniche.analyses.relations._graph import GRAPH_KINDS
from metaniche.analyses.relations.ripley_modes import ripley_sample
from metaniche.analyses.relations.sample_tables import (
    border_cells_table,
    clark_evans_table,
    distances_table,
    enrichment_tables,
    mean_nearest_distance,
    mixing_table,
    ripley_envelopes,
)
from metaniche.context import SampleContext, StageOutput
from metaniche.errors import ConfigError
from metaniche.features import feature_namer

__all__ = ["FEATURES", "SYMMETRIC_FAMILIES", "canonical_pairs", "run"]

#: Feature family → (unit, description).
FEATURES: dict[str, tuple[str, str]] = {
    "avg_min_dist_um": ("µm", "mean distance from each cell to its nearest other cell (SPIAT)"),
    "nn_dist_um": ("µm", "mean distance from a source-type cell to the nearest target-type cell"),
    "enrichment_z": ("z", "neighbourhood-enrichment z of contacts between two types, "
                          "whole-sample relabelling null (exact moments)"),
    "enrichment_z_within": ("z", "neighbourhood-enrichment z with labels permuted only within "
                                 "compartments"),
    "mixing_score": ("ratio", "immune–tumour over immune–immune contacts (Keren; SPIAT ≥1.0 "
                              "unordered pairs) for an immune type or all_immune"),
    "normalised_mixing_score": ("ratio", "SPIAT normalised mixing score (unordered convention)"),
    "clark_evans": ("ratio", "Clark–Evans nearest-neighbour index of a type on the tissue area"),
    "ripley_l_mean": ("µm", "mean over the radius grid of L(r) − r, cross-type (spicyR "
                            "statistic); translation corrected on the tissue mask by default, "
                            "per [relations] ripley_correction / ripley_window / ripley_max_um"),
    "neighbourhood_entropy": ("bits", "mean Shannon entropy of contact-neighbour types "
                                      "around cells of a type"),
    "border_cell_ratio": ("ratio", "SPIAT R_BC of a tumour type: its cells on the α-hull "
                                   "border (α = relations.border_alpha_um) over all its cells"),
}


_name = feature_namer(FEATURES)

#: Pair families whose statistic is symmetric in the two types (contacts counted on an
#: undirected graph; translation-corrected cross-K, the default — with
#: ``ripley_correction = "isotropic"`` ``ripley_l_mean`` is directed, A→B, and both orders of
#: every pair are emitted, as spicyR tests them). Each unordered pair is emitted once, in
#: the canonical order of :func:`canonical_pairs`, so A.B and B.A are never both features (nor
#: both tested and counted in the multiple-testing correction). ``nn_dist_um`` (source →
#: target nearest distance) is directed and keeps both orders.
SYMMETRIC_FAMILIES = ("enrichment_z", "enrichment_z_within", "ripley_l_mean")


def canonical_pairs(featured: list[int], types: list[str]) -> list[tuple[int, int]]:
    """Unordered pairs (a, b) of ``featured`` type codes, self-pairs included, each once with
    ``types[a] <= types[b]`` (the canonical order of symmetric pair features)."""
    ordered = sorted(featured, key=lambda t: str(types[t]))
    return [(a, b) for i, a in enumerate(ordered) for b in ordered[i:]]


def run(context: SampleContext) -> StageOutput:
    """All relation tables and features of one sample (defaults keep it a few seconds)."""
    params = context.config.relations
    if params.graph not in GRAPH_KINDS:
        raise ConfigError(f"'relations.graph' must be one of {', '.join(GRAPH_KINDS)}; "
                          f"got {params.graph!r}.")
    coords, codes, types = context.coordinates, context.type_codes, context.cell_types
    n_types, tree = len(types), context.tree
    compartment = np.asarray(context.compartments.compartment).astype(str)
    counts = np.bincount(codes, minlength=n_types)
    featured = sorted(np.argsort(-counts, kind="stable")[:params.max_types].tolist())
    featured_types = [types[t] for t in featured]

    nearest = nearest_type_distances(coords, codes, n_types)
    features: dict[str, object] = {_name("avg_min_dist_um"): mean_nearest_distance(nearest)}
    distances = distances_table(nearest, codes, types, compartment)
    whole = distances[distances["compartment"] == WHOLE]
    for row in whole.itertuples(index=False):
        if row.source_type in featured_types and row.target_type in featured_types:
            features[_name("nn_dist_um", row.source_type, row.target_type)] = row.mean_um

    interval = np.linspace(0.0, params.cooccurrence_max_um, params.cooccurrence_bins + 1)
    # pair statistics enumerate pairs on the fly in Numba cell-list kernels (no pair list)
    within = count_within_by_type(tree, codes, types, params.count_within_um)

    edges = neighbour_graph(coords, tree, params.graph, params.contact_radius_um, params.k)
    enrichment, z = enrichment_tables(edges, codes, types, compartment, params.n_permutations,
                                      params.seed, params.graph)
    pairs = canonical_pairs(featured, types)
    for null, family in (("sample", "enrichment_z"), ("compartment", "enrichment_z_within")):
        for a, b in pairs:
            features[_name(family, types[a], types[b])] = float(z[null][a, b])

    references = [(t, codes == types.index(t)) for t in context.immune_types]
    if context.immune_types:
        references.append(("all_immune", context.is_immune))
    mixing = mixing_table(coords, context.is_tumor, references, params.contact_radius_um)
    for row in mixing.itertuples(index=False):
        features[_name("mixing_score", row.reference)] = float(row.mixing_score)
        features[_name("normalised_mixing_score", row.reference)] = float(
            row.normalised_mixing_score)

    entropy = neighbourhood_entropy(edges, codes, n_types)
    for t in featured:
        if counts[t]:
            features[_name("neighbourhood_entropy", types[t])] = float(entropy[codes == t].mean())

    grid = context.compartments.grid
    window = Window(context.compartments.tissue, grid.x0, grid.y0, grid.pixel_um)
    clark = clark_evans_table(coords, codes, types, nearest, window)
    for t in featured:
        features[_name("clark_evans", types[t])] = float(clark["index"].iat[t])

    ripley = ripley_sample(coords, codes, n_types, window,
                           correction=params.ripley_correction, window=params.ripley_window,
                           max_um=params.ripley_max_um, step_um=params.ripley_step_um)
    ripley_long = ripley_table(ripley, types)
    if params.ripley_simulations > 0:  # translation on a shared grid (a config rule)
        ripley_long = ripley_envelopes(ripley_long, window, counts, types, ripley.radii,
                                       params.ripley_simulations, params.seed)
    summary = ripley.l_minus_r_mean
    directed = params.ripley_correction == "isotropic"
    for a, b in ([(a, b) for a in featured for b in featured] if directed else pairs):
        if np.isfinite(summary[a, b]):
            features[_name("ripley_l_mean", types[a], types[b])] = float(summary[a, b])

    ratio, _ = co_occurrence(coords, codes, n_types, interval)
    cooccurrence = co_occurrence_table(ratio, interval, types)

    border, border_cluster, border_features = _border_cells(context, params.border_alpha_um,
                                                            params.border_max_edges)
    features.update(border_features)

    tables = {T.DISTANCES: distances, T.COUNT_WITHIN: within, T.MIXING: mixing,
              T.CLARK_EVANS: clark, T.ENRICHMENT: enrichment, T.RIPLEY: ripley_long,
              T.COOCCURRENCE: cooccurrence, T.BORDER_CELLS: border}
    return StageOutput(tables=tables, features=features,
                       cell_columns={"neighbourhood_entropy": entropy,
                                     "hull_border_cluster": border_cluster})


def _border_cells(context: SampleContext, alpha_um: float, max_edges: int = 20_000,
                  ) -> tuple[pd.DataFrame, np.ndarray, dict[str, object]]:
    """The ``border_cells`` table, per-cell ``hull_border_cluster`` and the ``border_cell_ratio``
    features of the sample's tumour types (:func:`~metaniche.analyses.relations.
    sample_tables.border_cells_table`)."""
    table, cluster = border_cells_table(context.coordinates, context.labels,
                                        context.tumor_types, alpha_um, max_edges)
    features: dict[str, object] = {
        _name("border_cell_ratio", row.cell_type): float(row.border_cell_ratio)
        for row in table.itertuples(index=False)}
    return table, cluster, features
