"""Nearest-neighbour distances between cell types, counts within a radius, Clark–Evans.

Conventions (all distances in the coordinates' unit, µm in the pipeline):

* **Self exclusion** is by index: a cell is never its own neighbour, but a *different* cell at
  the same position is a neighbour at distance 0 (SPIAT's convention). phenoptr instead drops
  every zero distance; :func:`count_within` follows phenoptr (see there).
* **Radius boundary**: "within r" means ``distance <= r`` everywhere in this module.

References
----------
.. [1] Feng Y. et al. (2023) Spatial analysis with SPIAT and spaSim to characterize and simulate
   tissue microenvironments. Nat Commun 14:2697. (average minimum distance, average percentage
   of cells within radius, average nearest-neighbour index)
.. [2] Akoya Biosciences, phenoptr R package: ``count_within`` and ``find_nearest_distance``.
.. [3] Clark P.J., Evans F.C. (1954) Distance to nearest neighbor as a measure of spatial
   relationships in populations. Ecology 35:445–453.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from scipy.spatial import cKDTree

from metaniche.analyses.compartments import WHOLE
from metaniche.analyses.relations._graph import PairChunks

__all__ = [
    "ClarkEvans",
    "average_marker_within_radius",
    "average_minimum_distance",
    "average_percentage_within_radius",
    "bounding_box_area",
    "clark_evans",
    "count_within",
    "count_within_by_type",
    "distance_summary",
    "nearest_type_distances",
    "pairwise_distance_summary",
]


def nearest_type_distances(coordinates: np.ndarray, type_codes: np.ndarray, n_types: int,
                           tree_by_type: Sequence[cKDTree | None] | None = None,
                           grid_coverage: float = 0.9) -> np.ndarray:
    """Distance from every cell to the nearest *other* cell of each type.

    Parameters
    ----------
    coordinates
        (n, 2) positions.
    type_codes
        (n,) integer type codes in ``[0, n_types)``.
    n_types
        Number of types.
    tree_by_type
        Optional prebuilt KD-trees of each type's cells (built here when needed and absent).
    grid_coverage
        Types within reach of the capped ring search for at least this fraction of the cells
        (:func:`~metaniche.analyses.relations._grid.ring_coverage_by_type`) are found by the
        cell-list ring search; the others (rare, or confined to lesions: their nearest cell is
        typically far) by per-type KD-trees. Only speed depends on it, never the result.

    Returns
    -------
    numpy.ndarray
        (n, n_types) float64; entry ``[i, t]`` is the Euclidean distance from cell i to the
        nearest cell of type t other than i itself (index-based self exclusion: a coincident
        different cell gives 0). NaN when type t has no cell other than i.

    Notes
    -----
    Exact, and bit-identical to one KD-tree query per target type (``d = sqrt(dx² + dy²)``
    as scipy computes it). A Numba cell-list kernel
    (:func:`~metaniche.analyses.relations._grid.nearest_by_type_grid`) searches rings of grid
    bins around each cell until no unseen cell can be closer than the nearest cell found of
    every common type; the (cell, type) pairs left unresolved at its ring cap (a cell far from
    all cells of a type, e.g. outside a tumour) and all pairs of rare types go to a KD-tree of
    that type (``k = 2`` for its own cells, dropping the cell itself; ``k = 1`` otherwise).
    Time about O(n · c) for c cells within the farthest common type's nearest distance, plus
    O(u log n) for u unresolved pairs; memory O(n · n_types).
    """
    from metaniche.analyses.relations._grid import nearest_by_type_grid, ring_coverage_by_type
    from metaniche.analyses.relations._walk import (
        delaunay_neighbours,
        nearest_other_by_walk,
        nearest_target_by_walk,
    )

    coordinates = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    codes = np.asarray(type_codes, dtype=np.int64)
    counts = np.bincount(codes, minlength=n_types)
    wanted = ((counts >= 2)
              & (ring_coverage_by_type(coordinates, codes, n_types) >= grid_coverage))
    # rows in grid order (spatially coherent KD-tree queries); one scatter back at the end
    in_order, resolved, order = nearest_by_type_grid(coordinates, codes, n_types, wanted)
    ordered_xy, ordered_codes = coordinates[order], codes[order]
    for target in range(n_types):
        pending = np.flatnonzero(~resolved[:, target])
        if len(pending) == 0:
            continue
        is_member = ordered_codes[pending] == target
        others, own = pending[~is_member], pending[is_member]
        tree = tree_by_type[target] if tree_by_type is not None else None
        if tree is None:
            member_rows = np.flatnonzero(ordered_codes == target)   # target point -> row
            targets = ordered_xy[member_rows]
            # many queries per target: walks on the Delaunay graph beat KD-tree descents
            graph = (delaunay_neighbours(targets) if len(others) >= 4 * len(member_rows)
                     else None)
            if graph is not None:
                in_order[others, target] = nearest_target_by_walk(targets, graph,
                                                                   ordered_xy[others])
                in_order[own, target] = nearest_other_by_walk(
                    targets, graph, np.searchsorted(member_rows, own))
                continue
            tree = cKDTree(targets)
            member_cells = order[member_rows]
        else:
            member_cells = np.flatnonzero(codes == target)
        if len(others):
            in_order[others, target] = tree.query(ordered_xy[others], k=1, workers=-1)[0]
        if len(own):
            dist, index = tree.query(ordered_xy[own], k=2, workers=-1)
            is_self = member_cells[index[:, 0]] == order[own]
            in_order[own, target] = np.where(is_self, dist[:, 1], dist[:, 0])
    out = np.empty_like(in_order)
    out[order] = in_order
    return out


def distance_summary(nearest: np.ndarray, type_codes: np.ndarray, cell_types: Sequence[str],
                     groups: np.ndarray | None = None) -> pd.DataFrame:
    """Summaries of nearest-neighbour distances per (group, source type, target type).

    Parameters
    ----------
    nearest
        Output of :func:`nearest_type_distances`, (n, n_types).
    type_codes
        (n,) source type code of each cell.
    cell_types
        Labels of the codes.
    groups
        Optional (n,) group label per cell (e.g. compartment). Rows for the whole sample have
        group ``"all"``; per-group rows summarise the source cells *in* that group, whose
        nearest target may lie anywhere in the sample.

    Returns
    -------
    pandas.DataFrame
        Columns ``compartment, source_type, target_type, n_source, mean_um, median_um, q25_um,
        q75_um, min_um, max_um``; NaN distances (no target) are ignored, and ``n_source`` counts
        source cells with a defined distance.
    """
    n_types = len(cell_types)
    group_sets: list[tuple[str, np.ndarray]] = [(WHOLE, np.ones(len(type_codes), dtype=bool))]
    if groups is not None:
        groups = np.asarray(groups)
        group_sets += [(str(g), groups == g) for g in pd.unique(groups)]
    rows = []
    for group, in_group in group_sets:
        for source in range(n_types):
            selected = nearest[in_group & (type_codes == source)]
            if len(selected) == 0:
                continue
            # a (source, target) column is all-NaN or NaN-free: NaN only when the target type
            # has no cell other than the source cell itself
            n_valid = (~np.isnan(selected)).sum(axis=0)
            mean = np.mean(selected, axis=0)
            q = np.quantile(selected, [0.0, 0.25, 0.5, 0.75, 1.0], axis=0)
            for target in range(n_types):
                if n_valid[target] == 0:
                    continue
                rows.append((group, cell_types[source], cell_types[target], int(n_valid[target]),
                             mean[target], q[2, target], q[1, target], q[3, target],
                             q[0, target], q[4, target]))
    return pd.DataFrame(rows, columns=["compartment", "source_type", "target_type", "n_source",
                                       "mean_um", "median_um", "q25_um", "q75_um", "min_um",
                                       "max_um"])


def average_minimum_distance(tree: cKDTree) -> float:
    """Mean over all cells of the distance to the nearest other cell (SPIAT [1]_).

    Equals SPIAT's ``average_minimum_distance`` (RANN ``nn2`` with k = 2, second column): the
    nearest other cell by index, so coincident cells contribute 0. NaN for fewer than 2 cells.
    """
    if tree.n < 2:
        return float("nan")
    # query in the tree's own (spatially coherent) order for cache locality, then restore
    order = tree.indices
    dist, index = tree.query(tree.data[order], k=2, workers=-1)
    nearest = np.empty(tree.n)
    nearest[order] = np.where(index[:, 0] == order, dist[:, 1], dist[:, 0])
    return float(np.mean(nearest))


def count_within(from_coordinates: np.ndarray, to_coordinates: np.ndarray,
                 radius: float) -> tuple[int, float, np.ndarray]:
    """phenoptr's ``count_within``: ``to`` cells within ``radius`` of each ``from`` cell [2]_.

    Counts ``to`` cells j with ``0 < d(i, j) <= radius`` (phenoptr: ``r > 0 & r <= rad``), so a
    cell never counts itself and *any* coincident cell is excluded too.

    Returns
    -------
    from_with : int
        Number of ``from`` cells with at least one ``to`` cell within the radius.
    within_mean : float
        Mean number of ``to`` cells within the radius of a ``from`` cell (NaN without from cells).
    counts : numpy.ndarray
        Per ``from`` cell count.

    Notes
    -----
    O((n_from + n_to) log n_to). phenoptr builds the full distance matrix (O(n²) memory).
    """
    from_coordinates = np.asarray(from_coordinates, dtype=np.float64).reshape(-1, 2)
    to_coordinates = np.asarray(to_coordinates, dtype=np.float64).reshape(-1, 2)
    if len(from_coordinates) == 0 or len(to_coordinates) == 0:
        counts = np.zeros(len(from_coordinates), dtype=np.int64)
        mean = float(np.mean(counts)) if len(counts) else float("nan")
        return 0, mean, counts
    tree = cKDTree(to_coordinates)
    within = tree.query_ball_point(from_coordinates, float(radius), return_length=True)
    at_zero = tree.query_ball_point(from_coordinates, 0.0, return_length=True)
    counts = (within - at_zero).astype(np.int64)
    return int(np.count_nonzero(counts)), float(np.mean(counts)), counts


def count_within_by_type(tree: cKDTree, type_codes: np.ndarray, cell_types: Sequence[str],
                         radii: npt.ArrayLike, pairs: PairChunks | None = None,
                         ) -> pd.DataFrame:
    """:func:`count_within` for every ordered type pair and radius in one pass over pairs.

    Parameters
    ----------
    tree
        KD-tree of all cells (its ``data`` are the coordinates).
    type_codes
        (n,) type code per cell.
    cell_types
        Labels of the codes.
    radii
        Radii, in the coordinates' unit (µm in the pipeline).
    pairs
        Optional precomputed directed pair chunks ``(i, j, d)`` covering at least
        ``max(radii)``; by default pairs are enumerated on the fly by a Numba cell-list kernel
        (:func:`~metaniche.analyses.relations._grid.counts_within_by_type_grid`), which never
        stores pairs or per-cell counts.

    Returns
    -------
    pandas.DataFrame
        ``source_type, target_type, radius_um, from_count, to_count, from_with, within_mean``
        for every source type with cells, every target type and every radius (ascending):
        ``from_with`` is the number of source cells with at least one target cell at
        ``0 < d <= r`` and ``within_mean`` the mean number of such target cells per source cell
        (phenoptr's convention: coincident cells never count, the cell itself never counts).

    Notes
    -----
    Distances are computed as scipy's KD-tree computes them, and the inclusion tests are the
    KD-tree pair stream's: ``d² <= max(radii)²`` for the outermost radius, then
    ``sqrt(d²) <= r`` for each radius (the two differ only for a d² within one ulp above r²
    whose square root rounds to r: it counts at an inner radius r, not at the outermost).
    Time O(n + pairs within max(radii)), run in parallel over blocks of grid rows; memory
    O(n + K² · R). Counts are integers, so results do not depend on the number of threads.
    """
    from metaniche.analyses.relations._grid import counts_within_by_type_grid

    codes = np.asarray(type_codes, dtype=np.int64)
    k = len(cell_types)
    radii_um = np.sort(np.asarray(radii, dtype=np.float64))
    if pairs is not None:
        totals, with_any = _counts_from_pairs(pairs, codes, k, radii_um)
    else:
        totals, with_any = counts_within_by_type_grid(tree.data, codes, k, radii_um)
    n_by_type = np.bincount(codes, minlength=k)
    rows = []
    for r_index, radius in enumerate(radii_um):
        for source in range(k):
            if n_by_type[source] == 0:
                continue
            for target in range(k):
                rows.append((cell_types[source], cell_types[target], float(radius),
                             int(n_by_type[source]), int(n_by_type[target]),
                             int(with_any[r_index, source, target]),
                             float(totals[r_index, source, target]) / n_by_type[source]))
    return pd.DataFrame(rows, columns=["source_type", "target_type", "radius_um", "from_count",
                                       "to_count", "from_with", "within_mean"])


def _counts_from_pairs(pairs: PairChunks, codes: np.ndarray, k: int,
                       radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(totals, with_any)`` as (R, K, K) from directed pair chunks (``0 < d <= r``)."""
    n = len(codes)
    totals = np.zeros((len(radii), k, k), dtype=np.int64)
    with_any = np.zeros((len(radii), k, k), dtype=np.int64)
    if len(radii) == 0:
        return totals, with_any
    per_cell = np.zeros((len(radii), n * k), dtype=np.int64)
    for i, j, d in pairs:
        keep = (d > 0) & (d <= radii[-1])
        i, j, d = i[keep], j[keep], d[keep]
        for r_index, radius in enumerate(radii):
            inside = d <= radius
            per_cell[r_index] += np.bincount(i[inside] * k + codes[j[inside]], minlength=n * k)
    for r_index in range(len(radii)):
        counts = per_cell[r_index].reshape(n, k)
        for target in range(k):
            totals[r_index, :, target] = np.bincount(codes, weights=counts[:, target],
                                                     minlength=k)
            with_any[r_index, :, target] = np.bincount(codes, weights=counts[:, target] > 0,
                                                       minlength=k)
    return totals, with_any


def average_percentage_within_radius(coordinates: np.ndarray, is_reference: np.ndarray,
                                     is_target: np.ndarray, radius: float,
                                     tree: cKDTree | None = None) -> float:
    """SPIAT's average percentage of cells within radius that are targets [1]_.

    For each reference cell, the percentage of the *other* cells within ``radius`` (``<=``,
    self excluded by index) that are target cells; then the mean over reference cells that have
    at least one other cell within the radius (a reference cell alone in its disc has no
    defined percentage). NaN when there are no reference or no target cells.

    Complexity O(n_ref · neighbours).
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    is_reference = np.asarray(is_reference, dtype=bool)
    is_target = np.asarray(is_target, dtype=bool)
    if not is_reference.any() or not is_target.any():
        return float("nan")
    tree = tree if tree is not None else cKDTree(coordinates)
    reference = coordinates[is_reference]
    n_all = tree.query_ball_point(reference, float(radius), return_length=True) - 1
    target_tree = cKDTree(coordinates[is_target])
    n_target = target_tree.query_ball_point(reference, float(radius), return_length=True)
    n_target = n_target - is_target[is_reference].astype(np.int64)  # the cell itself
    defined = n_all > 0
    if not defined.any():
        return float("nan")
    return float(np.mean(100.0 * n_target[defined] / n_all[defined]))


def average_marker_within_radius(coordinates: np.ndarray, is_reference: np.ndarray,
                                 is_target: np.ndarray, values: np.ndarray,
                                 radius: float) -> float:
    """SPIAT's average marker intensity within radius [1]_.

    Mean of ``values`` over the *union* of target cells lying within ``radius`` (``<=``) of at
    least one reference cell (each such target cell once). Cells that are both reference and
    target are dropped from both sets first, as SPIAT does. NaN when no target cell qualifies.
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    is_reference = np.asarray(is_reference, dtype=bool)
    is_target = np.asarray(is_target, dtype=bool)
    both = is_reference & is_target
    reference = coordinates[is_reference & ~both]
    targets = np.flatnonzero(is_target & ~both)
    if len(reference) == 0 or len(targets) == 0:
        return float("nan")
    nearest = cKDTree(reference).query(coordinates[targets], k=1,
                                       distance_upper_bound=float(radius) * (1 + 1e-12))[0]
    hit = targets[nearest <= radius]
    if len(hit) == 0:
        return float("nan")
    return float(np.nanmean(np.asarray(values, dtype=np.float64)[hit]))


def pairwise_distance_summary(points_a: np.ndarray, points_b: np.ndarray,
                              same_set: bool = False,
                              max_pairs: int = 50_000_000) -> dict[str, float]:
    """Summary of *all* pairwise distances between two point sets (SPIAT's pairwise summary).

    This statistic is inherently quadratic: O(n_a · n_b) time and memory for the median, so it
    is not part of the pipeline and refuses more than ``max_pairs`` pairs. With ``same_set``
    the distances of all *ordered* pairs of distinct points are summarised (each unordered pair
    twice, as SPIAT's long table lists them); this changes only ``sd``.

    Returns
    -------
    dict
        ``mean, min, max, median, sd`` (sd with the n − 1 denominator, as R's ``sd``).
    """
    a = np.asarray(points_a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(points_b, dtype=np.float64).reshape(-1, 2)
    if len(a) * len(b) > max_pairs:
        raise ValueError(f"{len(a)} × {len(b)} pairs exceed max_pairs={max_pairs}.")
    from scipy.spatial.distance import cdist, pdist
    d = pdist(a) if same_set else cdist(a, b).ravel()
    n_values = 2 * len(d) if same_set else len(d)
    weight = 2.0 if same_set else 1.0
    sd = np.sqrt(weight * np.sum((d - d.mean()) ** 2) / (n_values - 1))
    return {"mean": float(d.mean()), "min": float(d.min()), "max": float(d.max()),
            "median": float(np.median(d)), "sd": float(sd)}


@dataclass(frozen=True)
class ClarkEvans:
    """Clark–Evans aggregation index of one point set.

    Attributes
    ----------
    index
        R = observed mean nearest-neighbour distance / expected under CSR.
    observed_mean, expected_mean
        Mean NN distance and its CSR expectation ``0.5 / sqrt(n / area)``.
    z
        ``(observed − expected) / (0.26136 / sqrt(n² / area))``.
    p
        One-sided p-value in the observed direction, ``Φ(−|z|)`` (as SPIAT reports it); the
        two-sided p-value is ``2p``.
    pattern
        ``"clustered"`` (R < 1), ``"dispersed"`` (R > 1) or ``"random"`` when ``p > alpha``.
    n, area
        Number of points and the window area used.
    """

    index: float
    observed_mean: float
    expected_mean: float
    z: float
    p: float
    pattern: str
    n: int
    area: float


def bounding_box_area(coordinates: np.ndarray) -> float:
    """Area of the axis-aligned bounding box of ``coordinates`` (SPIAT's window)."""
    coordinates = np.asarray(coordinates, dtype=np.float64)
    span = coordinates.max(axis=0) - coordinates.min(axis=0)
    return float(span[0] * span[1])


def clark_evans(points: np.ndarray, area: float, alpha: float = 5e-6,
                nearest_um: np.ndarray | None = None) -> ClarkEvans:
    """Clark–Evans average nearest-neighbour index [3]_ without edge correction.

    Parameters
    ----------
    points
        (n, 2) positions of the cells of one type. Duplicate positions are dropped first (as
        spatstat's ``ppp`` in SPIAT does).
    area
        Window area. SPIAT uses the bounding box of *all* cells of the image
        (:func:`bounding_box_area`); the pipeline uses the tissue-mask area, which does not
        count empty background as space the cells could have occupied.
    alpha
        Significance level for ``pattern`` (SPIAT's default 5e-6).
    nearest_um
        Optional, when the positions are known to be distinct: each point's distance to the
        nearest other point of the set (e.g. the own-type column of
        :func:`nearest_type_distances`), which saves the de-duplication and the KD-tree.

    Returns
    -------
    ClarkEvans
        With the standard error ``0.26136 / sqrt(n² / area)`` of Clark & Evans.
    """
    if nearest_um is None:
        points = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, 2), axis=0)
        n = len(points)
    else:
        n = len(nearest_um)
    if n < 2 or not area > 0:
        nan = float("nan")
        return ClarkEvans(nan, nan, nan, nan, nan, "undetermined", n, float(area))
    observed = float(np.mean(nearest_um if nearest_um is not None
                             else cKDTree(points).query(points, k=2)[0][:, 1]))
    expected = 0.5 / np.sqrt(n / area)
    se = 0.26136 / np.sqrt(n * n / area)
    z = (observed - expected) / se
    p = float(stats.norm.cdf(-abs(z)))
    if p > alpha:
        pattern = "random"
    else:
        pattern = "clustered" if observed <= expected else "dispersed"
    return ClarkEvans(float(observed / expected), observed, float(expected), float(z), p,
                      pattern, n, float(area))
