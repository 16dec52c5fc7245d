"""Numba cell-list kernels: nearest cell of each type, and counts of each type within radii.

Cells are sorted into a uniform grid of square bins (a "cell list"); bin ``b`` holds the sorted
cells ``starts[b]:starts[b + 1]`` and the bins of one grid row are contiguous, so a row of bins
is one contiguous range. Distances are computed exactly as scipy's ``cKDTree`` does for p = 2:
``d² = dx·dx + dy·dy`` (x term first), ``d = sqrt(d²)``, so every distance, and every
``<=``-inclusion decision, is bit-identical to the KD-tree's.

* :func:`nearest_by_type_grid` searches rings of bins around each cell until no unseen cell can
  be closer than the nearest one found of every requested type (a conservative lower bound on
  the distance to cells outside the searched block, with a margin of 1e-7 bin widths against
  rounding), or until a ring cap is reached; (cell, type) pairs unresolved at the cap are
  reported so the caller can query a per-type KD-tree for them.
* :func:`counts_within_by_type_grid` counts, for every cell, the cells of each type at
  ``0 < d <= r`` for every radius r (phenoptr's convention) and sums them per (source type,
  target type, radius) without storing per-cell counts.

Both run in parallel over blocks of grid rows (Numba ``prange``); each cell's result depends only
on the input, and integer totals are exact, so results do not depend on the number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from metaniche.analyses.relations._pairbins import _bin_left

__all__ = ["CellGrid", "counts_within_by_type_grid", "nearest_by_type_grid"]

#: Relative safety margin (of the bin width) on the ring search's lower distance bound.
_MARGIN = 1e-7


class CellGrid:
    """Cells sorted into square bins of width ``width`` (at most ``max_bins`` bins).

    Attributes
    ----------
    order
        (n,) original index of each sorted cell.
    x, y
        (n,) sorted coordinates (float64, contiguous).
    starts
        (n_bins + 1,) first sorted cell of every bin (row-major, ``by * n_bx + bx``).
    x0, y0, width, n_bx, n_by
        Grid origin, bin width and bins per side.
    """

    def __init__(self, coordinates: np.ndarray, width: float, max_bins: int) -> None:
        coordinates = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
        x, y = coordinates[:, 0], coordinates[:, 1]
        n = len(coordinates)
        self.x0 = float(x.min()) if n else 0.0
        self.y0 = float(y.min()) if n else 0.0
        span_x = float(x.max()) - self.x0 if n else 0.0
        span_y = float(y.max()) - self.y0 if n else 0.0
        width = float(width) if width > 0 else 1.0
        width = max(width, max(span_x, span_y, 1e-12) / 2**20)
        while (np.floor(span_x / width) + 1) * (np.floor(span_y / width) + 1) > max_bins:
            width *= 1.25
        self.width = width
        self.n_bx = int(np.floor(span_x / width)) + 1
        self.n_by = int(np.floor(span_y / width)) + 1
        bx = np.minimum(((x - self.x0) / width).astype(np.int64), self.n_bx - 1)
        by = np.minimum(((y - self.y0) / width).astype(np.int64), self.n_by - 1)
        bin_of_cell = by * self.n_bx + bx
        self.order = np.argsort(bin_of_cell, kind="stable")
        self.starts = np.zeros(self.n_bx * self.n_by + 1, dtype=np.int64)
        np.cumsum(np.bincount(bin_of_cell, minlength=self.n_bx * self.n_by),
                  out=self.starts[1:])
        self.x = np.ascontiguousarray(x[self.order])
        self.y = np.ascontiguousarray(y[self.order])


@numba.njit(cache=True, inline="always")
def _scan_range(x: np.ndarray, y: np.ndarray, codes: np.ndarray, i: int, lo: int, hi: int,
                best: np.ndarray) -> None:  # pragma: no cover - numba
    """Lower ``best[type]`` (squared distance) with sorted cells ``lo:hi`` other than ``i``."""
    xi, yi = x[i], y[i]
    for j in range(lo, hi):
        if j == i:
            continue
        dx = xi - x[j]
        dy = yi - y[j]
        d_sq = dx * dx + dy * dy
        t = codes[j]
        if d_sq < best[t]:
            best[t] = d_sq


@numba.njit(cache=True, inline="always")
def _scan_ring(x: np.ndarray, y: np.ndarray, codes: np.ndarray, starts: np.ndarray, n_bx: int,
               n_by: int, i: int, bx: int, by: int, ring: int,
               best: np.ndarray) -> None:  # pragma: no cover - numba
    """Lower ``best`` with the cells of ring ``ring`` of bins around bin (bx, by)."""
    lo_x, hi_x = max(bx - ring, 0), min(bx + ring, n_bx - 1)
    for row in (by - ring, by + ring):
        if 0 <= row < n_by:
            _scan_range(x, y, codes, i, starts[row * n_bx + lo_x],
                        starts[row * n_bx + hi_x + 1], best)
        if ring == 0:
            return
    for row in range(max(by - ring + 1, 0), min(by + ring, n_by)):
        if bx - ring >= 0:
            b = row * n_bx + bx - ring
            _scan_range(x, y, codes, i, starts[b], starts[b + 1], best)
        if bx + ring < n_bx:
            b = row * n_bx + bx + ring
            _scan_range(x, y, codes, i, starts[b], starts[b + 1], best)


@numba.njit(cache=True, inline="always")
def _unseen_bound(xi: float, yi: float, bx: int, by: int, ring: int, n_bx: int, n_by: int,
                  x0: float, y0: float, width: float) -> float:  # pragma: no cover - numba
    """No cell outside rings 0..ring is closer than this (inf: the rings cover the grid)."""
    bound = np.inf
    if bx - ring > 0:
        bound = min(bound, xi - (x0 + (bx - ring) * width))
    if bx + ring < n_bx - 1:
        bound = min(bound, x0 + (bx + ring + 1) * width - xi)
    if by - ring > 0:
        bound = min(bound, yi - (y0 + (by - ring) * width))
    if by + ring < n_by - 1:
        bound = min(bound, y0 + (by + ring + 1) * width - yi)
    return bound


@numba.njit(cache=True, parallel=True)
def _nearest_kernel(x: np.ndarray, y: np.ndarray, codes: np.ndarray, starts: np.ndarray,
                    n_bx: int, n_by: int, x0: float, y0: float, width: float,
                    wanted: np.ndarray, counts: np.ndarray, max_ring: int, scratch: np.ndarray,
                    best_out: np.ndarray, resolved: np.ndarray) -> None:  # pragma: no cover
    """Ring search of every cell, by blocks of grid rows; ``scratch`` is (blocks, K)."""
    n_types = len(wanted)
    margin = _MARGIN * width
    n_blocks = scratch.shape[0]
    for block in prange(n_blocks):
        best = scratch[block]
        for by in range(block * n_by // n_blocks, (block + 1) * n_by // n_blocks):
            for bx in range(n_bx):
                own = by * n_bx + bx
                for i in range(starts[own], starts[own + 1]):
                    ci = codes[i]
                    for t in range(n_types):
                        best[t] = np.inf
                    bound_sq = 0.0
                    everything = False
                    for ring in range(max_ring + 1):
                        _scan_ring(x, y, codes, starts, n_bx, n_by, i, bx, by, ring, best)
                        # no unseen cell is closer than the block's edge on a side with bins
                        bound = _unseen_bound(x[i], y[i], bx, by, ring, n_bx, n_by, x0, y0,
                                              width)
                        if bound == np.inf:
                            everything = True
                            break
                        bound -= margin
                        bound_sq = bound * bound if bound > 0 else 0.0
                        done = True
                        for t in range(n_types):
                            if wanted[t] and counts[t] - (ci == t) > 0 and best[t] > bound_sq:
                                done = False
                                break
                        if done:
                            break
                    for t in range(n_types):
                        if counts[t] - (ci == t) > 0:
                            best_out[i, t] = np.sqrt(best[t])
                            resolved[i, t] = everything or best[t] <= bound_sq
                        else:  # no cell of type t other than i: undefined, nothing to search
                            best_out[i, t] = np.nan
                            resolved[i, t] = True


#: Called, not inlined, by :func:`_finish_kernel`: it runs for a few cells at most, and
#: inlining the ring scan into a second parallel kernel cost about 0.6 s of compilation on
#: first use (1.7 s with the scratch allocated inside, 1.1 s now).
_scan_ring_call = numba.njit(cache=True)(_scan_ring.py_func)
_unseen_bound_call = numba.njit(cache=True)(_unseen_bound.py_func)


@numba.njit(cache=True, parallel=True)
def _finish_kernel(x: np.ndarray, y: np.ndarray, codes: np.ndarray, starts: np.ndarray,
                   n_bx: int, n_by: int, x0: float, y0: float, width: float, rows: np.ndarray,
                   target: int, max_ring: int, scratch: np.ndarray, best_out: np.ndarray,
                   resolved: np.ndarray) -> None:  # pragma: no cover - numba
    """Ring search for one type from the cells ``rows`` (grid order), up to ``max_ring``;
    ``scratch`` is (len(rows), K), all inf."""
    margin = _MARGIN * width
    for r in prange(len(rows)):
        i = rows[r]
        bx = min(int((x[i] - x0) / width), n_bx - 1)
        by = min(int((y[i] - y0) / width), n_by - 1)
        best = scratch[r]
        for ring in range(max_ring + 1):
            _scan_ring_call(x, y, codes, starts, n_bx, n_by, i, bx, by, ring, best)
            bound = _unseen_bound_call(x[i], y[i], bx, by, ring, n_bx, n_by, x0, y0, width)
            bound -= margin
            if bound == np.inf or (bound > 0 and best[target] <= bound * bound):
                best_out[i, target] = np.sqrt(best[target])
                resolved[i, target] = True
                break


@numba.njit(cache=True, parallel=True)
def _counts_kernel(x: np.ndarray, y: np.ndarray, codes: np.ndarray, starts: np.ndarray,
                   n_bx: int, n_by: int, reach: int, radii: np.ndarray, local: np.ndarray,
                   totals: np.ndarray, with_any: np.ndarray) -> None:  # pragma: no cover
    """Add block ``b``'s sums to ``totals[b]`` and ``with_any[b]`` (zeroed, (B, R, K, K));
    ``local`` is (B, R, K) scratch. Arrays are allocated and summed by the caller: array
    expressions inside a parallel kernel made Numba's first compilation take 3.4 s."""
    n_r = len(radii)
    n_types = local.shape[2]
    n_blocks = totals.shape[0]
    outer_sq = radii[n_r - 1] * radii[n_r - 1]
    for block in prange(n_blocks):
        for by in range(block * n_by // n_blocks, (block + 1) * n_by // n_blocks):
            for bx in range(n_bx):
                own = by * n_bx + bx
                for i in range(starts[own], starts[own + 1]):
                    for r in range(n_r):
                        for t in range(n_types):
                            local[block, r, t] = 0
                    xi, yi = x[i], y[i]
                    for row in range(max(0, by - reach), min(n_by, by + reach + 1)):
                        lo = starts[row * n_bx + max(0, bx - reach)]
                        hi = starts[row * n_bx + min(n_bx, bx + reach + 1)]
                        for j in range(lo, hi):
                            dx = xi - x[j]
                            dy = yi - y[j]
                            d_sq = dx * dx + dy * dy
                            if d_sq > outer_sq or d_sq == 0.0:
                                continue  # beyond the outer radius; coincident or itself
                            r = _bin_left(radii, np.sqrt(d_sq))
                            if r < n_r:
                                local[block, r, codes[j]] += 1
                    ci = codes[i]
                    for t in range(n_types):
                        running = 0
                        for r in range(n_r):
                            running += local[block, r, t]
                            totals[block, r, ci, t] += running
                            if running > 0:
                                with_any[block, r, ci, t] += 1


def _grid_width(coordinates: np.ndarray, cells_per_bin: float) -> float:
    """Bin width giving about ``cells_per_bin`` cells per bin of the bounding box."""
    n = len(coordinates)
    if n == 0:
        return 1.0
    span = coordinates.max(axis=0) - coordinates.min(axis=0)
    area = float(span[0] * span[1])
    if area <= 0:
        return max(float(span.max()) * cells_per_bin / n, 1e-9)
    return float(np.sqrt(cells_per_bin * area / n))


def ring_coverage_by_type(coordinates: np.ndarray, codes: np.ndarray, n_types: int,
                          cells_per_bin: float = 2.0, max_candidates: int = 256) -> np.ndarray:
    """(K,) fraction of cells whose ring-search block surely holds a cell of each type.

    The plane is cut into square blocks of ``max_ring + 1`` bins of
    :func:`nearest_by_type_grid` (same ``cells_per_bin`` and ``max_candidates``), so a cell's
    block lies inside the area its capped ring search scans. Entry t is the fraction of cells
    in blocks holding a cell of type t: near 1 for types spread through the tissue, small for
    types confined to a few lesions, whose nearest cell most ring searches would not reach.
    O(n).
    """
    coordinates = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    codes = np.asarray(codes, dtype=np.int64)
    n = len(coordinates)
    if n == 0:
        return np.zeros(n_types)
    width = _grid_width(coordinates, cells_per_bin)
    side = np.sqrt(max_candidates / cells_per_bin)
    block_width = width * (max(1, int(np.ceil((side - 1) / 2))) + 1)
    block = ((coordinates - coordinates.min(axis=0)) / block_width).astype(np.int64)
    block_id = block[:, 0] * (int(block[:, 1].max()) + 1) + block[:, 1]
    n_blocks = int(block_id.max()) + 1
    present = np.bincount(block_id * n_types + codes, minlength=n_blocks * n_types) > 0
    cells = np.bincount(block_id, minlength=n_blocks)
    return cells @ present.reshape(n_blocks, n_types) / n


def nearest_by_type_grid(coordinates: np.ndarray, codes: np.ndarray, n_types: int,
                         wanted: np.ndarray, cells_per_bin: float = 2.0,
                         max_candidates: int = 256,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance from each cell to the nearest other cell of each wanted type, in grid order.

    Parameters
    ----------
    coordinates
        (n, 2) positions.
    codes
        (n,) type codes in ``[0, n_types)``.
    n_types
        K.
    wanted
        (K,) bool: the ring search continues until these types are resolved (or the cap).
    cells_per_bin
        Mean cells per grid bin over the bounding box.
    max_candidates
        Ring cap: rings stop once the searched block holds about this many cells on average
        (pairs left unresolved are cheaper to finish with a per-type KD-tree). A wanted type
        left unresolved for at most 1/16 of its own count of cells is searched further from
        those cells only, up to blocks of 64 times this many cells.

    Returns
    -------
    (distance, resolved, order)
        Rows in grid order: row ``s`` is cell ``order[s]`` (spatially coherent order, for
        follow-up KD-tree queries). ``distance`` (n, K) float64 is the distance to the nearest
        other cell of each type seen (inf when none was seen; NaN when the type has no cell
        other than this one); ``resolved`` (n, K) bool says whether that value is final (the
        exact minimum over all other cells, or NaN), for every type, wanted or not.
    """
    coordinates = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    codes = np.asarray(codes, dtype=np.int64)
    n = len(coordinates)
    grid = CellGrid(coordinates, _grid_width(coordinates, cells_per_bin), max_bins=4 * n + 16)
    mean_per_bin = n / (grid.n_bx * grid.n_by)
    side = np.sqrt(max_candidates / max(mean_per_bin, 1e-12))
    max_ring = int(max(1, min(np.ceil((side - 1) / 2), max(grid.n_bx, grid.n_by))))
    counts = np.bincount(codes, minlength=n_types).astype(np.int64)
    distance = np.empty((n, n_types))
    resolved = np.empty((n, n_types), dtype=np.bool_)
    if n == 0:
        return distance, resolved, grid.order
    sorted_codes = np.ascontiguousarray(codes[grid.order])
    _nearest_kernel(grid.x, grid.y, sorted_codes, grid.starts, grid.n_bx, grid.n_by, grid.x0,
                    grid.y0, grid.width, np.asarray(wanted, dtype=np.bool_), counts, max_ring,
                    np.empty((min(grid.n_by, 256), n_types)), distance, resolved)
    # A few cells of a common type left at the cap (e.g. hepatocytes seen from a tumour's
    # centre) are cheaper to finish here than with a KD-tree over all cells of that type.
    far_ring = int(max(1, min(np.ceil((np.sqrt(64 * max_candidates / max(mean_per_bin, 1e-12))
                                       - 1) / 2), max(grid.n_bx, grid.n_by))))
    for target in np.flatnonzero(wanted):
        rows = np.flatnonzero(~resolved[:, target])
        if 0 < len(rows) <= counts[target] // 16:
            _finish_kernel(grid.x, grid.y, sorted_codes, grid.starts, grid.n_bx, grid.n_by,
                           grid.x0, grid.y0, grid.width, rows, int(target), far_ring,
                           np.full((len(rows), n_types), np.inf), distance, resolved)
    return distance, resolved, grid.order


def counts_within_by_type_grid(coordinates: np.ndarray, codes: np.ndarray, n_types: int,
                               radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (radius, source type, target type): summed counts and cells with at least one.

    For every cell i and radius r, ``c_i(t, r) = #{j of type t : 0 < d(i, j) <= r}`` (``d`` as
    the KD-tree computes it; coincident cells and the cell itself excluded). Returns
    ``totals[r, a, t] = Σ_{i of type a} c_i(t, r)`` and ``with_any[r, a, t] = #{i of type a :
    c_i(t, r) > 0}``, both (R, K, K) int64, for ascending ``radii``. O(n + candidate pairs)
    time, O(n + K²R · blocks) memory.
    """
    coordinates = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    codes = np.asarray(codes, dtype=np.int64)
    radii = np.ascontiguousarray(radii, dtype=np.float64)
    n, n_r = len(coordinates), len(radii)
    if n == 0 or n_r == 0:
        empty = np.zeros((n_r, n_types, n_types), dtype=np.int64)
        return empty, empty.copy()
    outer = float(radii[-1])
    grid = CellGrid(coordinates, outer / 2 if outer > 0 else 1.0, max_bins=4 * n + 16)
    reach = max(1, int(np.ceil(outer / grid.width)))
    n_blocks = min(grid.n_by, 64)
    totals = np.zeros((n_blocks, n_r, n_types, n_types), dtype=np.int64)
    with_any = np.zeros_like(totals)
    _counts_kernel(grid.x, grid.y, np.ascontiguousarray(codes[grid.order]), grid.starts,
                   grid.n_bx, grid.n_by, reach, radii,
                   np.zeros((n_blocks, n_r, n_types), dtype=np.int64), totals, with_any)
    return totals.sum(axis=0), with_any.sum(axis=0)
