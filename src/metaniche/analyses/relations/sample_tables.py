"""The long tables of the relations stage, built from the kernels of this package (no context,
no configuration object: arrays and numbers in, :class:`pandas.DataFrame` out).

:mod:`metaniche.stages.relations` adapts a sample to these calls and reads its named features
off the returned tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from metaniche.analyses.relations.alphashape import (
    alpha_shape_edges,
    border_cells,
    spiat_border_cells,
)
from metaniche.analyses.relations.distances import clark_evans, distance_summary
from metaniche.analyses.relations.enrichment import enrichment_table, neighbourhood_enrichment
from metaniche.analyses.relations.mixing import mixing_score
from metaniche.analyses.relations.pointpattern import Window, ripley_envelope

__all__ = [
    "ENRICHMENT_NULLS",
    "border_cells_table",
    "clark_evans_table",
    "distances_table",
    "enrichment_tables",
    "mean_nearest_distance",
    "mixing_table",
    "ripley_envelopes",
]

#: Null models of the enrichment table (column ``null``): labels permuted over the whole
#: sample, or only within compartments.
ENRICHMENT_NULLS: tuple[str, ...] = ("sample", "compartment")


def distances_table(nearest: np.ndarray, type_codes: np.ndarray, cell_types: Sequence[str],
                    compartment: np.ndarray) -> pd.DataFrame:
    """``distances``: :func:`~metaniche.analyses.relations.distance_summary` per compartment
    and whole sample (``compartment`` ``all``), with a null ``lesion_id`` column (Int64)."""
    table = distance_summary(nearest, type_codes, list(cell_types), groups=compartment)
    table.insert(1, "lesion_id", pd.array([pd.NA] * len(table), dtype="Int64"))
    return table


def mean_nearest_distance(nearest: np.ndarray) -> float:
    """SPIAT's average minimum distance from the nearest-distance-by-type matrix.

    The nearest other cell of any type is the minimum over types of the nearest other cell of
    each type, so this equals :func:`~metaniche.analyses.relations.average_minimum_distance`
    (bit for bit) without a second all-cell KD-tree query. NaN for fewer than 2 cells.
    """
    if nearest.shape[0] < 2 or nearest.shape[1] == 0:
        return float("nan")
    return float(np.mean(np.nanmin(nearest, axis=1)))


def enrichment_tables(edges: np.ndarray, type_codes: np.ndarray, cell_types: Sequence[str],
                      compartment: np.ndarray, n_permutations: int, seed: int, graph: str,
                      ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """``enrichment`` under both nulls of :data:`ENRICHMENT_NULLS`.

    Returns the long table (columns ``null``, those of
    :func:`~metaniche.analyses.relations.enrichment_table`, ``graph``) and, per null, the
    (n_types, n_types) z matrix.
    """
    n_types = len(cell_types)
    parts, z = [], {}
    for null in ENRICHMENT_NULLS:
        strata = None if null == "sample" else compartment
        result = neighbourhood_enrichment(edges, type_codes, n_types, strata=strata,
                                          n_permutations=n_permutations, seed=seed)
        table = enrichment_table(result, list(cell_types))
        table.insert(0, "null", null)
        parts.append(table)
        z[null] = result.z
    enrichment = pd.concat(parts, ignore_index=True)
    enrichment["graph"] = graph
    return enrichment, z


def mixing_table(coordinates: np.ndarray, is_target: np.ndarray,
                 references: Sequence[tuple[str, np.ndarray]], radius_um: float,
                 target: str = "tumour") -> pd.DataFrame:
    """``mixing``: Keren's mixing score of every named reference mask against ``is_target``
    (:func:`~metaniche.analyses.relations.mixing_score`), one row per reference."""
    rows = []
    for name, is_reference in references:
        score = mixing_score(coordinates, is_reference, is_target, radius_um)
        rows.append((name, target, radius_um, score.n_reference, score.n_target,
                     score.reference_target, score.reference_reference, score.score,
                     score.normalised, score.convention))
    return pd.DataFrame(rows, columns=["reference", "target", "radius_um", "n_reference",
                                       "n_target", "reference_target_pairs",
                                       "reference_reference_pairs", "mixing_score",
                                       "normalised_mixing_score", "convention"])


def clark_evans_table(coordinates: np.ndarray, type_codes: np.ndarray,
                      cell_types: Sequence[str], nearest: np.ndarray, window: Window,
                      ) -> pd.DataFrame:
    """``clark_evans``: Clark–Evans index of every type on the tissue window's area.

    With distinct positions (every cell's nearest other cell at > 0) the own-type column of
    the nearest-distance matrix is the index's nearest-neighbour distance (no new query).
    """
    distinct = bool(np.all(np.nanmin(nearest, axis=1) > 0)) if len(nearest) else False
    rows = []
    for t, name in enumerate(cell_types):
        own = type_codes == t
        ce = clark_evans(coordinates[own], window.area,
                         nearest_um=nearest[own, t] if distinct else None)
        rows.append((name, ce.n, window.area * 1e-6, ce.index, ce.z, ce.p, ce.pattern))
    return pd.DataFrame(rows, columns=["cell_type", "n_cells", "area_mm2", "index", "z", "p",
                                       "pattern"])


def ripley_envelopes(table: pd.DataFrame, window: Window, counts: np.ndarray,
                     cell_types: Sequence[str], radii: np.ndarray, n_simulations: int,
                     seed: int) -> pd.DataFrame:
    """Add CSR envelope columns (``l_lo_um``, ``l_hi_um``, ``g_lo``, ``g_hi``) per type pair
    of a ``ripley`` table (:func:`~metaniche.analyses.relations.ripley_envelope`)."""
    parts = []
    index = {t: i for i, t in enumerate(cell_types)}
    for (a, b), rows in table.groupby(["type_a", "type_b"], sort=False):
        env = ripley_envelope(window, int(counts[index[a]]), int(counts[index[b]]), radii,
                              same_type=a == b, n_simulations=n_simulations, seed=seed)
        position = np.searchsorted(radii, rows["r_um"].to_numpy())
        parts.append(rows.assign(l_lo_um=env["l_lo"][position], l_hi_um=env["l_hi"][position],
                                 g_lo=env["g_lo"][position], g_hi=env["g_hi"][position]))
    return pd.concat(parts, ignore_index=True)


def border_cells_table(coordinates: np.ndarray, labels: np.ndarray,
                       tumour_types: Sequence[str], alpha_um: float, max_edges: int = 20_000,
                       ) -> tuple[pd.DataFrame, np.ndarray]:
    """SPIAT's bordering cells and R_BC of each tumour type (``n_to_exclude = 0``, as ``R_BC``).

    Returns the ``border_cells`` table (one row per tumour type) and per-cell
    ``hull_border_cluster``: the polygon a bordering cell starts an arc of, numbered per
    tumour type in the order of ``tumour_types`` (0: not bordering). A type with more than
    ``max_edges`` α-shape edges (scattered cells; SPIAT's walk is a loop over arcs) gets the
    geometric definition (:func:`~metaniche.analyses.relations.border_cells`: α-shape
    components with more than 5 border cells), named in ``definition``. A tumour type whose
    α-hull is degenerate where alphahull itself stops (an α-shape edge with only a half-plane
    in its complement) gets R_BC NaN and the reason in ``note``.
    """
    cluster = np.zeros(len(labels), dtype=np.int64)
    rows, offset = [], 0
    for tumour_type in tumour_types:
        members = np.flatnonzero(labels == tumour_type)
        xy = coordinates[members]
        n_edges = len(alpha_shape_edges(np.unique(xy, axis=0), alpha_um))
        definition = "spiat" if n_edges <= max_edges else "geometric"
        try:
            result = (spiat_border_cells(xy, alpha=alpha_um) if definition == "spiat"
                      else border_cells(xy, alpha=alpha_um))
        except ValueError as error:   # a degenerate α-hull on which alphahull stops too
            rows.append((tumour_type, alpha_um, len(members), 0, 0, np.nan, definition,
                         str(error)))
            continue
        cluster[members] = np.where(result.cluster > 0, result.cluster + offset, 0)
        offset += result.n_clusters
        rows.append((tumour_type, alpha_um, len(members), int(result.is_border.sum()),
                     result.n_clusters, result.ratio, definition,
                     "" if definition == "spiat" else f"{n_edges} α-shape edges > {max_edges}"))
    table = pd.DataFrame(rows, columns=["cell_type", "alpha_um", "n_cells", "n_border_cells",
                                        "n_clusters", "border_cell_ratio", "definition", "note"])
    return table, cluster
