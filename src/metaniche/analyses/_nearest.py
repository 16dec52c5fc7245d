"""Nearest-neighbour distance of query points among all points, on a uniform grid (numba).

:func:`nearest_other_distance` gives, for each query point i (an index into the points),
``min over j != i of sqrt(dx² + dy²)`` with ``dx = x_i − x_j``: the value
``cKDTree(points).query(points[i], k=2)[0][1]`` returns (the same float64 operations, so
the same bits). Points are binned into square cells of about one mean spacing; the rings of
cells around a query's cell are scanned outwards and the search stops once the best
distance is within the scanned radius (every unscanned point is farther). O(n) for
spread-out points.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["nearest_other_distance"]


@numba.njit(cache=True, parallel=True)
def _nearest(x: np.ndarray, y: np.ndarray, queries: np.ndarray,
             size: float) -> np.ndarray:  # pragma: no cover - numba
    n = len(x)
    x0, y0 = x.min(), y.min()
    n_cols = int((x.max() - x0) / size) + 1
    n_rows = int((y.max() - y0) / size) + 1
    col = np.empty(n, np.int64)
    row = np.empty(n, np.int64)
    for i in range(n):
        col[i] = min(int((x[i] - x0) / size), n_cols - 1)
        row[i] = min(int((y[i] - y0) / size), n_rows - 1)
    cell = row * n_cols + col
    order = np.argsort(cell, kind="mergesort")
    start = np.zeros(n_rows * n_cols + 1, np.int64)
    for i in range(n):
        start[cell[i] + 1] += 1
    for c in range(n_rows * n_cols):
        start[c + 1] += start[c]
    out = np.empty(len(queries))
    reach = max(n_rows, n_cols)
    for k in numba.prange(len(queries)):     # queries are independent: any thread count
        i = queries[k]
        best = np.inf
        for ring in range(reach + 1):
            for r in range(row[i] - ring, row[i] + ring + 1):
                if r < 0 or r >= n_rows:
                    continue
                edge = r == row[i] - ring or r == row[i] + ring
                step = 1 if edge else 2 * ring
                c = col[i] - ring
                while c <= col[i] + ring:
                    if 0 <= c < n_cols:
                        index = r * n_cols + c
                        for m in range(start[index], start[index + 1]):
                            j = order[m]
                            if j != i:
                                dx = x[i] - x[j]
                                dy = y[i] - y[j]
                                d = dx * dx + dy * dy
                                if d < best:
                                    best = d
                    c += step
            reached = ring * size
            if best <= reached * reached:
                break
        out[k] = np.sqrt(best)
    return out


def nearest_other_distance(x: np.ndarray, y: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Distance from each query point (indices into ``x``, ``y``) to its nearest other point;
    needs at least two points."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    extent = max(float(np.ptp(x)), float(np.ptp(y)), 1e-9)
    size = max(extent / max(np.sqrt(len(x)), 1.0), 1e-9)
    return _nearest(x, y, np.ascontiguousarray(queries, dtype=np.int64), size)
