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
import pandas as pd
from scipy import stats
from scipy.spatial import cKDTree

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
                           tree_by_type: Sequence[cKDTree | None] | None = None) -> np.ndarray:
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
        Optional prebuilt KD-trees of each type's cells (built here when absent).

    Returns
    -------
    numpy.ndarray
        (n, n_types) float64; entry ``[i, t]`` is the distance from cell i to the nearest cell
        of type t other than i itself (index-based self exclusion: a coincident different cell
        gives 0). NaN when type t has no cell other than i.

    Notes
    -----
    One KD-tree per target type, queried with k = 2 for cells of that same type (dropping the
    cell itself) and k = 1 otherwise. O(n log n · n_types) time, O(n · n_types) memory.
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    type_codes = np.asarray(type_codes)
    out = np.full((len(coordinates), n_types), np.nan)
    for target in range(n_types):
        members = np.flatnonzero(type_codes == target)
        if len(members) == 0:
            continue
        tree = tree_by_type[target] if tree_by_type is not None else None
        if tree is None:
            tree = cKDTree(coordinates[members])
        others = type_codes != target
        if others.any():
            out[others, target] = tree.query(coordinates[others], k=1)[0]
        if len(members) > 1:
            dist, index = tree.query(coordinates[members], k=2)
            is_self = members[index[:, 0]] == members
            out[members, target] = np.where(is_self, dist[:, 1], dist[:, 0])
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
    group_sets: list[tuple[str, np.ndarray]] = [("all", np.ones(len(type_codes), dtype=bool))]
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
            ordered = np.sort(selected, axis=0)
            mean = np.mean(selected, axis=0)
            q = np.quantile(ordered, [0.0, 0.25, 0.5, 0.75, 1.0], axis=0)
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
    dist, index = tree.query(tree.data, k=2)
    is_self = index[:, 0] == np.arange(tree.n)
    return float(np.mean(np.where(is_self, dist[:, 1], dist[:, 0])))


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
                         radii: Sequence[float], chunk_size: int = 50_000,
                         pairs: list | None = None) -> pd.DataFrame:
    """:func:`count_within` for every ordered type pair and radius in one pass over pairs.

    Same convention as phenoptr (``0 < d <= r``). Returns ``source_type, target_type, radius_um,
    from_count, to_count, from_with, within_mean``. O(pairs within max(radii) + n·K·R) time,
    O(n·K) memory per radius. ``pairs`` optionally shares precomputed directed pair chunks
    covering at least ``max(radii)``.
    """
    from metaniche.analyses.relations._graph import iter_pairs_within

    codes = np.asarray(type_codes, dtype=np.int64)
    n, k = len(codes), len(cell_types)
    radii = np.sort(np.asarray(radii, dtype=np.float64))
    per_cell = np.zeros((len(radii), n * k))
    if len(radii):
        chunks = (pairs if pairs is not None
                  else iter_pairs_within(tree, float(radii[-1]), chunk_size))
        for i, j, d in chunks:
            keep = (d > 0) & (d <= radii[-1])
            i, j, d = i[keep], j[keep], d[keep]
            for r_index, radius in enumerate(radii):
                inside = d <= radius
                per_cell[r_index] += np.bincount(i[inside] * k + codes[j[inside]],
                                                 minlength=n * k)
    n_by_type = np.bincount(codes, minlength=k)
    rows = []
    for r_index, radius in enumerate(radii):
        counts = per_cell[r_index].reshape(n, k)
        with_any = np.stack([np.bincount(codes, weights=(counts[:, t] > 0), minlength=k)
                             for t in range(k)], axis=1)
        totals = np.stack([np.bincount(codes, weights=counts[:, t], minlength=k)
                           for t in range(k)], axis=1)
        for source in range(k):
            if n_by_type[source] == 0:
                continue
            for target in range(k):
                rows.append((cell_types[source], cell_types[target], float(radius),
                             int(n_by_type[source]), int(n_by_type[target]),
                             int(with_any[source, target]),
                             totals[source, target] / n_by_type[source]))
    return pd.DataFrame(rows, columns=["source_type", "target_type", "radius_um", "from_count",
                                       "to_count", "from_with", "within_mean"])


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


def clark_evans(points: np.ndarray, area: float, alpha: float = 5e-6) -> ClarkEvans:
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

    Returns
    -------
    ClarkEvans
        With the standard error ``0.26136 / sqrt(n² / area)`` of Clark & Evans.
    """
    points = np.unique(np.asarray(points, dtype=np.float64).reshape(-1, 2), axis=0)
    n = len(points)
    if n < 2 or not area > 0:
        nan = float("nan")
        return ClarkEvans(nan, nan, nan, nan, nan, "undetermined", n, float(area))
    observed = float(np.mean(cKDTree(points).query(points, k=2)[0][:, 1]))
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
