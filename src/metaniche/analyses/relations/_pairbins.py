"""Numba kernels binning every ordered cell pair within a radius by (type a, type b, distance bin).

Used by Ripley's K (translation-weighted pairs) and co-occurrence (pair counts). Instead of
materialising the pair stream, cells are sorted into a uniform grid (cell list) of bins at
least ``max(edges)`` wide and every ordered pair ``(i, j)``, ``i != j``, in neighbouring bins
with ``dx² + dy² <= max(edges)²`` (the KD-tree's inclusion test) is binned on the fly:

    key = (type_i · K + type_j) · R + searchsorted(edges, d, side="left"),  d = sqrt(dx² + dy²)

with ``dx = x_j − x_i``, ``dy = y_j − y_i``. Pairs with ``d <= lower`` are skipped (shells of
co-occurrence; ``lower = −inf`` otherwise). Each pair adds its weight: 1, or the translation
edge-correction weight ``|W| / γ_W(dx, dy)`` read bilinearly from the set-covariance raster
exactly as :meth:`metaniche.analyses.relations.pointpattern.Window.set_covariance` does.

Time O(n + candidate pairs) (about 9/π times the pairs within the radius), memory O(n + bins):
no pair arrays. Blocks of grid rows run in parallel (Numba ``prange``) into separate sums added
in a fixed order, so results do not depend on the thread count; unweighted counts are exact
integers, translation-weighted sums may differ from a serial pass in the last bits.
:func:`bin_pair_chunks` bins precomputed ``(i, j, d)`` chunks the same way.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["CovarianceGrid", "bin_pair_chunks", "bin_pairs_within"]

_MAX_BINS_PER_SIDE = 2048
_ROW_BLOCKS = 64

#: (cov raster, centre row, centre col, coarse pixel µm, window area µm²) or None (weight 1)
CovarianceGrid = tuple[np.ndarray, float, float, float, float]


@numba.njit(cache=True, inline="always")
def _bin_left(edges: np.ndarray, d: float) -> int:  # pragma: no cover - numba
    """``np.searchsorted(edges, d, side="left")``."""
    lo, hi = 0, len(edges)
    while lo < hi:
        mid = (lo + hi) // 2
        if edges[mid] < d:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, inline="always")
def _bin_left_guess(edges: np.ndarray, d: float) -> int:  # pragma: no cover - numba
    """:func:`_bin_left` for ``0 <= d <= edges[-1]``: guess from evenly spaced edges, then step.

    Exact for any ascending edges (the steps correct any guess); about one comparison for a
    uniform radius grid instead of a binary search's mispredicted branches.
    """
    n = len(edges)
    guess = int(d / edges[n - 1] * n) if edges[n - 1] > 0 else 0
    guess = min(max(guess, 0), n)
    while guess > 0 and edges[guess - 1] >= d:
        guess -= 1
    while guess < n and edges[guess] < d:
        guess += 1
    return guess


@numba.njit(cache=True, inline="always")
def _translation_weight(cov: np.ndarray, centre_row: float, centre_col: float,
                        cov_pixel: float, area: float, dx: float,
                        dy: float) -> float:  # pragma: no cover - numba
    """``area / Window.set_covariance(dx, dy)`` for one displacement."""
    n_rows, n_cols = cov.shape
    rows = min(max(centre_row + dy / cov_pixel, 0.0), n_rows - 1.0)
    cols = min(max(centre_col + dx / cov_pixel, 0.0), n_cols - 1.0)
    r0 = min(int(rows), n_rows - 2)
    c0 = min(int(cols), n_cols - 2)
    fr, fc = rows - r0, cols - c0
    value = ((1 - fr) * ((1 - fc) * cov[r0, c0] + fc * cov[r0, c0 + 1])
             + fr * ((1 - fc) * cov[r0 + 1, c0] + fc * cov[r0 + 1, c0 + 1]))
    return area / max(value, cov_pixel * cov_pixel)


@numba.njit(cache=True, parallel=True)
def _cell_list_kernel(x: np.ndarray, y: np.ndarray, codes: np.ndarray, n_types: int,
                      edges: np.ndarray, lower: float, starts: np.ndarray, n_bx: int, n_by: int,
                      reach: int, weighted: bool, cov: np.ndarray, centre_row: float,
                      centre_col: float, cov_pixel: float, area: float,
                      partial: np.ndarray) -> None:  # pragma: no cover - numba
    """Binned sums; ``x, y, codes`` sorted by grid bin, bin b holding ``starts[b]:starts[b+1]``.

    Blocks of grid rows run in parallel, each into its own row of ``partial`` (zeroed,
    (blocks, K·K·R)); the blocks are fixed by the grid (not by the thread count), and the
    caller adds the rows in a fixed order, so the result does not depend on the number of
    threads. Allocating and summing here made the first compilation 1 s longer.
    """
    n_r = len(edges)
    radius = edges[n_r - 1]
    radius_sq = radius * radius
    n_blocks = partial.shape[0]
    for block in numba.prange(n_blocks):
        sums = partial[block]
        for by in range(block * n_by // n_blocks, (block + 1) * n_by // n_blocks):
            _cell_list_row(x, y, codes, n_types, edges, lower, starts, n_bx, n_by, reach,
                           weighted, cov, centre_row, centre_col, cov_pixel, area, radius_sq,
                           by, sums)


@numba.njit(cache=True)
def _cell_list_row(x: np.ndarray, y: np.ndarray, codes: np.ndarray, n_types: int,
                   edges: np.ndarray, lower: float, starts: np.ndarray, n_bx: int, n_by: int,
                   reach: int, weighted: bool, cov: np.ndarray, centre_row: float,
                   centre_col: float, cov_pixel: float, area: float, radius_sq: float,
                   by: int, sums: np.ndarray) -> None:  # pragma: no cover - numba
    """Add the pairs of the cells in grid row ``by`` to ``sums``."""
    n_r = len(edges)
    symmetric = not weighted  # unit weights: count each unordered pair once, in both keys
    for bx in range(n_bx):
        own = by * n_bx + bx
        for i in range(starts[own], starts[own + 1]):
            base = codes[i] * n_types
            first_row = by if symmetric else max(0, by - reach)
            for ny in range(first_row, min(n_by, by + reach + 1)):
                lo_bin = ny * n_bx + max(0, bx - reach)
                hi_bin = ny * n_bx + min(n_bx, bx + reach + 1)
                # bins of one grid row are contiguous in the sorted arrays; with symmetric
                # counting only later cells j > i are visited (rows below hold only j < i)
                lo = max(starts[lo_bin], i + 1) if symmetric else starts[lo_bin]
                for j in range(lo, starts[hi_bin]):
                    if j == i:
                        continue
                    dx = x[j] - x[i]
                    dy = y[j] - y[i]
                    d_sq = dx * dx + dy * dy
                    if d_sq > radius_sq:
                        continue
                    d = np.sqrt(d_sq)
                    if d <= lower:
                        continue
                    r_bin = _bin_left_guess(edges, d)
                    if r_bin >= n_r:
                        continue
                    if weighted:
                        sums[(base + codes[j]) * n_r + r_bin] += _translation_weight(
                            cov, centre_row, centre_col, cov_pixel, area, dx, dy)
                    else:
                        sums[(base + codes[j]) * n_r + r_bin] += 1.0
                        sums[(codes[j] * n_types + codes[i]) * n_r + r_bin] += 1.0


@numba.njit(cache=True)
def _chunk_kernel(i_idx: np.ndarray, j_idx: np.ndarray, dist: np.ndarray, x: np.ndarray,
                  y: np.ndarray, codes: np.ndarray, n_types: int, edges: np.ndarray,
                  lower: float, weighted: bool, cov: np.ndarray, centre_row: float,
                  centre_col: float, cov_pixel: float, area: float,
                  sums: np.ndarray) -> None:  # pragma: no cover - numba
    n_r = len(edges)
    for t in range(len(i_idx)):
        d = dist[t]
        if d <= lower:
            continue
        r_bin = _bin_left(edges, d)
        if r_bin >= n_r:
            continue
        i, j = i_idx[t], j_idx[t]
        key = (codes[i] * n_types + codes[j]) * n_r + r_bin
        if weighted:
            sums[key] += _translation_weight(cov, centre_row, centre_col, cov_pixel, area,
                                             x[j] - x[i], y[j] - y[i])
        else:
            sums[key] += 1.0


def _covariance_args(
    grid: CovarianceGrid | None,
) -> tuple[bool, np.ndarray, float, float, float, float]:
    """The kernels' ``weighted, cov, centre_row, centre_col, cov_pixel, area`` arguments."""
    if grid is None:
        return False, np.zeros((2, 2)), 0.0, 0.0, 1.0, 1.0
    cov, centre_row, centre_col, cov_pixel, area = grid
    return (True, np.ascontiguousarray(cov, dtype=np.float64), float(centre_row),
            float(centre_col), float(cov_pixel), float(area))


def bin_pairs_within(coordinates: np.ndarray, codes: np.ndarray, n_types: int,
                     edges: np.ndarray, lower: float = -np.inf,
                     covariance: CovarianceGrid | None = None) -> np.ndarray:
    """Weighted pair counts ``(K · K · R,)`` over all ordered pairs with ``d <= edges[-1]``.

    See the module docstring for the binning, boundary (``<=``) and weights.
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    edges = np.ascontiguousarray(edges, dtype=np.float64)
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    n = len(coordinates)
    x = np.ascontiguousarray(coordinates[:, 0])
    y = np.ascontiguousarray(coordinates[:, 1])
    if n == 0:
        return np.zeros(n_types * n_types * len(edges))
    radius = float(edges[-1])
    x0, y0 = float(x.min()), float(y.min())
    extent = max(float(x.max()) - x0, float(y.max()) - y0, 1e-12)
    width = max(radius, extent / _MAX_BINS_PER_SIDE, 1e-12)
    reach = max(1, int(np.ceil(radius / width)))
    n_bx = int(np.floor((float(x.max()) - x0) / width)) + 1
    n_by = int(np.floor((float(y.max()) - y0) / width)) + 1
    bx = np.minimum(((x - x0) / width).astype(np.int64), n_bx - 1)
    by = np.minimum(((y - y0) / width).astype(np.int64), n_by - 1)
    bin_of_cell = by * n_bx + bx
    order = np.argsort(bin_of_cell, kind="stable")
    starts = np.zeros(n_bx * n_by + 1, dtype=np.int64)
    np.cumsum(np.bincount(bin_of_cell, minlength=n_bx * n_by), out=starts[1:])
    partial = np.zeros((min(n_by, _ROW_BLOCKS), n_types * n_types * len(edges)))
    _cell_list_kernel(x[order], y[order], codes[order], n_types, edges, float(lower),
                      starts, n_bx, n_by, reach, *_covariance_args(covariance), partial)
    out = np.zeros(partial.shape[1])
    for block_sums in partial:  # fixed order: deterministic sums
        out += block_sums
    return out


def bin_pair_chunks(chunks, coordinates: np.ndarray, codes: np.ndarray, n_types: int,
                    edges: np.ndarray, lower: float = -np.inf,
                    covariance: CovarianceGrid | None = None) -> np.ndarray:
    """As :func:`bin_pairs_within` over precomputed directed ``(i, j, d)`` chunks."""
    coordinates = np.asarray(coordinates, dtype=np.float64)
    edges = np.ascontiguousarray(edges, dtype=np.float64)
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    x = np.ascontiguousarray(coordinates[:, 0])
    y = np.ascontiguousarray(coordinates[:, 1])
    sums = np.zeros(n_types * n_types * len(edges))
    args = _covariance_args(covariance)
    for i, j, d in chunks:
        _chunk_kernel(np.ascontiguousarray(i, dtype=np.int64),
                      np.ascontiguousarray(j, dtype=np.int64),
                      np.ascontiguousarray(d, dtype=np.float64), x, y, codes, n_types, edges,
                      float(lower), *args, sums)
    return sums
