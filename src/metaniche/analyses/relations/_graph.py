"""Neighbour graphs and pair streams over one shared KD-tree (no N×N anything).

Graphs are returned as an ``(m, 2)`` int64 array of **undirected** edges ``i < j`` (each edge
once, no self loops); statistics that count ordered contacts use both directions of each edge.
Pair streams yield directed pairs ``(i, j, d)`` with ``i != j`` and ``d <= radius`` in chunks,
so that pair-heavy statistics (Ripley, co-occurrence) run in bounded memory on whole slides.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from scipy.spatial import Delaunay, cKDTree

from metaniche.config import RelationsParams

__all__ = ["GRAPH_KINDS", "PairChunks", "delaunay_edges", "iter_pairs_within", "knn_edges",
           "neighbour_graph", "radius_edges"]

#: Directed pair chunks ``(i, j, distance)`` as yielded by :func:`iter_pairs_within`.
PairChunks = Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]

#: Supported contact graphs.
GRAPH_KINDS: tuple[str, ...] = ("radius", "knn", "delaunay")


def radius_edges(tree: cKDTree, radius_um: float) -> np.ndarray:
    """Undirected edges between cells at distance ``<= radius_um`` (scipy ``query_pairs``).

    Boundary: a pair exactly at ``radius_um`` is an edge (``<=``). Coincident cells (distance 0)
    are edges too. Complexity O(n log n + m) for m edges.
    """
    # query_pairs already returns each unordered pair once with i < j
    return tree.query_pairs(float(radius_um), output_type="ndarray").astype(np.int64, copy=False)


def knn_edges(tree: cKDTree, k: int) -> np.ndarray:
    """Symmetrised k-nearest-neighbour graph: ``i—j`` when j is among i's k nearest or vice versa.

    Ties at the k-th distance are broken by the KD-tree's order. Complexity O(n k log n).
    """
    n = tree.n
    k_eff = min(int(k), n - 1)
    if k_eff < 1:
        return np.empty((0, 2), dtype=np.int64)
    _, index = tree.query(tree.data, k=k_eff + 1)
    rows = np.repeat(np.arange(n), k_eff)
    cols = index[:, 1:].ravel()
    # the first neighbour is normally the cell itself; with coincident cells it may not be
    self_first = index[:, 0] != np.arange(n)
    if self_first.any():
        cols = np.where(cols == rows, np.repeat(index[:, 0], k_eff), cols)
    return _canonical(np.column_stack([rows, cols]))


def delaunay_edges(coordinates: np.ndarray) -> np.ndarray:
    """Edges of the Delaunay triangulation (Qhull); coincident points are joined to none.

    Complexity O(n log n).
    """
    if len(coordinates) < 3:
        return np.empty((0, 2), dtype=np.int64)
    simplices = Delaunay(coordinates).simplices
    pairs = np.concatenate([simplices[:, [0, 1]], simplices[:, [1, 2]], simplices[:, [0, 2]]])
    return _canonical(pairs)


def neighbour_graph(coordinates: np.ndarray, tree: cKDTree,
                    kind: str = RelationsParams.graph,
                    radius_um: float = RelationsParams.contact_radius_um,
                    k: int = RelationsParams.k) -> np.ndarray:
    """Undirected contact graph of the given ``kind`` (see :data:`GRAPH_KINDS`)."""
    if kind == "radius":
        return radius_edges(tree, radius_um)
    if kind == "knn":
        return knn_edges(tree, k)
    if kind == "delaunay":
        return delaunay_edges(coordinates)
    raise ValueError(f"`graph` must be one of {', '.join(GRAPH_KINDS)}; got {kind!r}.")


def iter_pairs_within(tree: cKDTree, radius_um: float,
                      chunk_size: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]]:
    """Yield directed pairs ``(i, j, distance)`` with ``i != j`` and ``distance <= radius_um``.

    Every ordered pair appears exactly once over all chunks (both ``(i, j)`` and ``(j, i)``).
    Query cells are processed in spatial strips of ``chunk_size`` cells (sorted by x) so peak
    memory is proportional to ``chunk_size`` × neighbours per cell, not to the total pair count.
    """
    n = tree.n
    order = np.argsort(tree.data[:, 0], kind="stable")
    for start in range(0, n, chunk_size):
        chunk = order[start:start + chunk_size]
        sub = cKDTree(tree.data[chunk])
        coo = sub.sparse_distance_matrix(tree, float(radius_um), output_type="ndarray")
        i = chunk[coo["i"]]
        j = coo["j"].astype(np.int64)
        keep = i != j
        yield i[keep], j[keep], coo["v"][keep]


def _canonical(pairs: np.ndarray) -> np.ndarray:
    """Unique undirected edges as ``i < j`` rows, self loops dropped."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if len(pairs) == 0:
        return pairs
    n = int(pairs.max()) + 1
    keys = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.column_stack([keys // n, keys % n])
