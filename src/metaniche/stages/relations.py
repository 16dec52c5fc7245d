"""Stage: cell–cell relations (distances, counts within radius, mixing, entropy, Clark–Evans,
neighbourhood enrichment, Ripley K/L/g on the tissue mask, co-occurrence).

Tables: ``distances``, ``count_within``, ``mixing``, ``clark_evans``, ``enrichment``,
``ripley``, ``cooccurrence``, ``border_cells``. Per-cell columns: ``neighbourhood_entropy``,
``hull_border_cluster``. Every statistic
shares the sample's one KD-tree; the contact graph is built once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metaniche.analyses.relations import (
    Window,
    alpha_shape_edges,
    border_cells,
    clark_evans,
    co_occurrence,
    co_occurrence_table,
    count_within_by_type,
    distance_summary,
    enrichment_table,
    mixing_score,
    nearest_type_distances,
    neighbour_graph,
    neighbourhood_enrichment,
    neighbourhood_entropy,
    ripley_cross,
    ripley_envelope,
    ripley_table,
    spiat_border_cells,
)
from metaniche.analyses.relations._graph import GRAPH_KINDS
from metaniche.context import SampleContext, StageOutput
from metaniche.errors import ConfigError

__all__ = ["FEATURES", "run"]

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
    "ripley_l_mean": ("µm", "mean over the radius grid of L(r) − r, cross-type, translation "
                            "corrected on the tissue mask (spicyR statistic)"),
    "neighbourhood_entropy": ("bits", "mean Shannon entropy of contact-neighbour types "
                                      "around cells of a type"),
    "border_cell_ratio": ("ratio", "SPIAT R_BC of a tumour type: its cells on the α-hull "
                                   "border (α = relations.border_alpha_um) over all its cells"),
}


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
    features: dict[str, object] = {"avg_min_dist_um": _average_minimum_distance(nearest)}
    distances = distance_summary(nearest, codes, types, groups=compartment)
    distances.insert(1, "lesion_id", pd.array([pd.NA] * len(distances), dtype="Int64"))
    whole = distances[distances["compartment"] == "all"]
    for row in whole.itertuples(index=False):
        if row.source_type in featured_types and row.target_type in featured_types:
            features[f"nn_dist_um.{row.source_type}.{row.target_type}"] = row.mean_um

    interval = np.linspace(0.0, params.cooccurrence_max_um, params.cooccurrence_bins + 1)
    radii = np.arange(params.ripley_step_um, params.ripley_max_um + 1e-9, params.ripley_step_um)
    # pair statistics enumerate pairs on the fly in Numba cell-list kernels (no pair list)
    within = count_within_by_type(tree, codes, types, params.count_within_um)

    edges = neighbour_graph(coords, tree, params.graph, params.contact_radius_um, params.k)
    enrichment_tables = []
    for null, strata in (("sample", None), ("compartment", compartment)):
        result = neighbourhood_enrichment(edges, codes, n_types, strata=strata,
                                          n_permutations=params.n_permutations,
                                          seed=params.seed)
        table = enrichment_table(result, types)
        table.insert(0, "null", null)
        enrichment_tables.append(table)
        family = "enrichment_z" if null == "sample" else "enrichment_z_within"
        for a in featured:
            for b in featured:
                features[f"{family}.{types[a]}.{types[b]}"] = float(result.z[a, b])
    enrichment = pd.concat(enrichment_tables, ignore_index=True)
    enrichment["graph"] = params.graph

    mixing, mixing_features = _mixing(context, params.contact_radius_um)
    features.update(mixing_features)

    entropy = neighbourhood_entropy(edges, codes, n_types)
    for t in featured:
        if counts[t]:
            features[f"neighbourhood_entropy.{types[t]}"] = float(entropy[codes == t].mean())

    grid = context.compartments.grid
    window = Window(context.compartments.tissue, grid.x0, grid.y0, grid.pixel_um)
    clark_rows = []
    # Distinct positions (every cell's nearest other cell is at > 0): the own-type column of
    # the nearest-distance matrix is Clark–Evans's nearest-neighbour distance.
    distinct = bool(np.all(np.nanmin(nearest, axis=1) > 0)) if len(nearest) else False
    for t in range(n_types):
        own = codes == t
        ce = clark_evans(coords[own], window.area,
                         nearest_um=nearest[own, t] if distinct else None)
        clark_rows.append((types[t], ce.n, window.area * 1e-6, ce.index, ce.z, ce.p, ce.pattern))
        if t in featured:
            features[f"clark_evans.{types[t]}"] = ce.index
    clark = pd.DataFrame(clark_rows, columns=["cell_type", "n_cells", "area_mm2", "index", "z",
                                              "p", "pattern"])

    ripley = ripley_cross(coords, codes, n_types, radii, window)
    ripley_long = ripley_table(ripley, types)
    if params.ripley_simulations > 0:
        ripley_long = _with_envelopes(ripley_long, window, counts, types, radii, params)
    summary = ripley.l_minus_r_mean
    for a in featured:
        for b in featured:
            if np.isfinite(summary[a, b]):
                features[f"ripley_l_mean.{types[a]}.{types[b]}"] = float(summary[a, b])

    ratio, _ = co_occurrence(coords, codes, n_types, interval)
    cooccurrence = co_occurrence_table(ratio, interval, types)

    border, border_cluster, border_features = _border_cells(context, params.border_alpha_um,
                                                            params.border_max_edges)
    features.update(border_features)

    tables = {"distances": distances, "count_within": within, "mixing": mixing,
              "clark_evans": clark, "enrichment": enrichment, "ripley": ripley_long,
              "cooccurrence": cooccurrence, "border_cells": border}
    return StageOutput(tables=tables, features=features,
                       cell_columns={"neighbourhood_entropy": entropy,
                                     "hull_border_cluster": border_cluster})


def _border_cells(context: SampleContext, alpha_um: float, max_edges: int = 20_000,
                  ) -> tuple[pd.DataFrame, np.ndarray, dict[str, object]]:
    """SPIAT's bordering cells and R_BC of each tumour type (``n_to_exclude = 0``, as ``R_BC``).

    Per-cell ``hull_border_cluster``: the polygon a bordering cell starts an arc of, numbered
    per tumour type in the order of ``context.tumor_types`` (0: not bordering). A type with
    more than ``max_edges`` α-shape edges (scattered cells; SPIAT's walk is a loop over arcs)
    gets the geometric definition (``border_cells``: α-shape components with more than 5
    border cells), named in ``definition``. A tumour type whose α-hull is degenerate where
    alphahull itself stops (an α-shape edge with only a half-plane in its complement) gets
    R_BC NaN and the reason in ``note``; the sample goes on.
    """
    labels = context.labels
    cluster = np.zeros(len(labels), dtype=np.int64)
    rows, features, offset = [], {}, 0
    for tumour_type in context.tumor_types:
        members = np.flatnonzero(labels == tumour_type)
        xy = context.coordinates[members]
        n_edges = len(alpha_shape_edges(np.unique(xy, axis=0), alpha_um))
        definition = "spiat" if n_edges <= max_edges else "geometric"
        try:
            result = (spiat_border_cells(xy, alpha=alpha_um) if definition == "spiat"
                      else border_cells(xy, alpha=alpha_um))
        except ValueError as error:   # a degenerate α-hull on which alphahull stops too
            rows.append((tumour_type, alpha_um, len(members), 0, 0, np.nan, definition,
                         str(error)))
            features[f"border_cell_ratio.{tumour_type}"] = np.nan
            continue
        cluster[members] = np.where(result.cluster > 0, result.cluster + offset, 0)
        offset += result.n_clusters
        rows.append((tumour_type, alpha_um, len(members), int(result.is_border.sum()),
                     result.n_clusters, result.ratio, definition,
                     "" if definition == "spiat" else f"{n_edges} α-shape edges > {max_edges}"))
        features[f"border_cell_ratio.{tumour_type}"] = result.ratio
    table = pd.DataFrame(rows, columns=["cell_type", "alpha_um", "n_cells", "n_border_cells",
                                        "n_clusters", "border_cell_ratio", "definition", "note"])
    return table, cluster, features


def _average_minimum_distance(nearest: np.ndarray) -> float:
    """SPIAT's average minimum distance from the nearest-distance-by-type matrix.

    The nearest other cell of any type is the minimum over types of the nearest other cell of
    each type, so this equals :func:`~metaniche.analyses.relations.average_minimum_distance`
    (bit for bit) without a second all-cell KD-tree query. NaN for fewer than 2 cells.
    """
    if nearest.shape[0] < 2 or nearest.shape[1] == 0:
        return float("nan")
    return float(np.mean(np.nanmin(nearest, axis=1)))


def _mixing(context: SampleContext, radius: float) -> tuple[pd.DataFrame, dict[str, object]]:
    """Keren tumour–immune mixing per immune type and for all immune cells pooled."""
    labels = context.labels
    is_tumor = np.isin(labels, context.tumor_types)
    references = [(t, labels == t) for t in context.immune_types]
    if context.immune_types:
        references.append(("all_immune", np.isin(labels, context.immune_types)))
    rows, features = [], {}
    for name, is_reference in references:
        score = mixing_score(context.coordinates, is_reference, is_tumor, radius)
        rows.append((name, "tumour", radius, score.n_reference, score.n_target,
                     score.reference_target, score.reference_reference, score.score,
                     score.normalised, score.convention))
        features[f"mixing_score.{name}"] = score.score
        features[f"normalised_mixing_score.{name}"] = score.normalised
    table = pd.DataFrame(rows, columns=["reference", "target", "radius_um", "n_reference",
                                        "n_target", "reference_target_pairs",
                                        "reference_reference_pairs", "mixing_score",
                                        "normalised_mixing_score", "convention"])
    return table, features


def _with_envelopes(table: pd.DataFrame, window: Window, counts: np.ndarray, types: list[str],
                    radii: np.ndarray, params) -> pd.DataFrame:
    """Add CSR envelope columns (``l_lo_um``, ``l_hi_um``, ``g_lo``, ``g_hi``) per type pair."""
    parts = []
    index = {t: i for i, t in enumerate(types)}
    for (a, b), rows in table.groupby(["type_a", "type_b"], sort=False):
        env = ripley_envelope(window, int(counts[index[a]]), int(counts[index[b]]), radii,
                              same_type=a == b, n_simulations=params.ripley_simulations,
                              seed=params.seed)
        position = np.searchsorted(radii, rows["r_um"].to_numpy())
        parts.append(rows.assign(l_lo_um=env["l_lo"][position], l_hi_um=env["l_hi"][position],
                                 g_lo=env["g_lo"][position], g_hi=env["g_hi"][position]))
    return pd.concat(parts, ignore_index=True)
