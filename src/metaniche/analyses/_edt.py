"""Exact Euclidean distance transform for integer pixel sizes (numba), equal to scipy's.

:func:`distance_to_features` gives, for every pixel, the distance (µm) to the nearest
feature pixel with square pixels of ``pixel_um`` µm: the lower envelope of parabolas of
Felzenszwalb & Huttenlocher [1]_ (a column pass of 1-D distances, then a row pass), in
integer squared pixel distances ``d² = dr² + dc²``, O(pixels). With an integer pixel size
``p``, scipy's ``distance_transform_edt(~features, sampling=p)`` computes
``sqrt((dr·p)² + (dc·p)²)`` from exact integers, i.e. ``sqrt(d²·p²)`` whichever nearest
feature it picks, so the two agree bit for bit; other pixel sizes are left to scipy (the
caller checks :func:`exact_for`).

References
----------
.. [1] Felzenszwalb P.F., Huttenlocher D.P. (2012) Distance transforms of sampled
   functions. Theory of Computing 8:415–428.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["distance_and_label", "distance_to_features", "exact_for"]


def exact_for(pixel_um: float, shape: tuple[int, ...]) -> bool:
    """True when the pixel size is a positive integer and every squared distance in µm²
    of a raster of ``shape`` is an integer below 2⁵³ (so the float64 results are exact)."""
    p = float(pixel_um)
    if not (p > 0 and p.is_integer()) or len(shape) != 2:
        return False
    return (shape[0] ** 2 + shape[1] ** 2) * p * p < 2.0**52


@numba.njit(cache=True)
def _column_distances(features: np.ndarray, none: int
                      ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """Rows to the nearest feature pixel in the same column (``none`` or more when the
    column has none) and that pixel's row: a forward and a backward sweep over rows, each
    across contiguous rows."""
    n_rows, n_cols = features.shape
    column = np.empty((n_rows, n_cols), np.int64)
    source = np.empty((n_rows, n_cols), np.int32)
    last = np.full(n_cols, -none, np.int64)
    for r in range(n_rows):
        for c in range(n_cols):
            if features[r, c]:
                last[c] = r
            column[r, c] = r - last[c]
            source[r, c] = last[c]
    for c in range(n_cols):  # a loop: a slice assignment is slow for Numba to compile
        last[c] = n_rows + none
    for r in range(n_rows - 1, -1, -1):
        for c in range(n_cols):
            if features[r, c]:
                last[c] = r
            if last[c] - r < column[r, c]:
                column[r, c] = last[c] - r
                source[r, c] = last[c]
    return column, source


_BLOCK_ROWS = 64


@numba.njit(cache=True, parallel=True)
def _rows_pass(column: np.ndarray, source: np.ndarray, none: int, scale: float,
               labels: np.ndarray, f: np.ndarray, v: np.ndarray, z: np.ndarray,
               out: np.ndarray, nearest: np.ndarray) -> None:  # pragma: no cover - numba
    """``out``: ``sqrt(d² · scale)`` per pixel, d² the integer squared pixel distance to the
    nearest feature pixel, and ``nearest`` (when ``labels`` is a raster, not an empty array)
    that pixel's label: the row pass of the lower envelope, blocks of rows in parallel
    (``f``, ``v``, ``z``: each block's buffers); every row depends only on the column pass,
    so the result does not depend on the thread count."""
    n_rows, n_cols = column.shape
    infinite = np.int64(none) * np.int64(none) * 2
    with_labels = labels.shape[0] > 0
    for block in numba.prange(f.shape[0]):
        fb, vb, zb = f[block], v[block], z[block]
        for r in range(block * _BLOCK_ROWS, min(n_rows, (block + 1) * _BLOCK_ROWS)):
            k = _envelope_row(column[r], none, infinite, fb, vb, zb)
            if k < 0:
                for c in range(n_cols):
                    out[r, c] = np.sqrt(np.float64(infinite) * scale)
                continue
            k = 0
            for c in range(n_cols):
                while zb[k + 1] < c:
                    k += 1
                p = vb[k]
                out[r, c] = np.sqrt(np.float64((c - p) * (c - p) + fb[p]) * scale)
                if with_labels:
                    nearest[r, c] = labels[source[r, p], p]


def _distance(features: np.ndarray, scale: float,
              labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances and labels (:func:`_rows_pass`) after the column pass. The arrays are
    allocated here, not in the parallel kernel: there they made Numba's first compilation
    take 1.4 s."""
    n_rows, n_cols = features.shape
    none = n_rows + n_cols + 1                      # farther than any pixel of the raster
    column, source = _column_distances(features, none)
    n_blocks = (n_rows + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    out = np.empty((n_rows, n_cols), np.float64)
    nearest = np.zeros((n_rows, n_cols) if labels.shape[0] > 0 else (0, 0), labels.dtype)
    _rows_pass(column, source, none, scale, labels, np.empty((n_blocks, n_cols), np.int64),
               np.empty((n_blocks, n_cols), np.int64), np.empty((n_blocks, n_cols + 1)), out,
               nearest)
    return out, nearest


@numba.njit(cache=True)
def _envelope_row(column: np.ndarray, none: int, infinite: np.int64, f: np.ndarray,
                  v: np.ndarray, z: np.ndarray) -> int:  # pragma: no cover - numba
    """Lower envelope of the parabolas ``(c − q)² + column[q]²`` of one row: fills ``f``
    (squared column distances), ``v`` (parabola apexes) and ``z`` (their boundaries);
    returns the index of the last parabola (−1: no feature pixel in any column)."""
    n_cols = len(column)
    for c in range(n_cols):
        d = column[c]
        f[c] = d * d if d < none else infinite
    k = -1
    for q in range(n_cols):
        if f[q] >= infinite:
            continue
        if k < 0:
            k = 0
            v[0] = q
            z[0] = -np.inf
            z[1] = np.inf
            continue
        while True:
            p = v[k]
            s = ((f[q] + q * q) - (f[p] + p * p)) / (2.0 * (q - p))
            if s <= z[k]:
                k -= 1
                if k < 0:
                    break
            else:
                break
        k += 1
        v[k] = q
        z[k] = s if k > 0 else -np.inf
        z[k + 1] = np.inf
    return k


def distance_to_features(features: np.ndarray, pixel_um: float) -> np.ndarray:
    """Distance (µm, float64) from every pixel to the nearest True pixel of ``features``
    (0 on them): ``scipy.ndimage.distance_transform_edt(~features, sampling=pixel_um)``
    when :func:`exact_for` holds. Needs at least one True pixel."""
    return _distance(np.ascontiguousarray(features, dtype=bool),
                     float(pixel_um) * float(pixel_um), np.zeros((0, 0), np.int32))[0]


def distance_and_label(labels: np.ndarray, pixel_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance (µm, float64) from every pixel to the nearest pixel with a label > 0, and
    that pixel's label (int32; 0 on a raster without labels).

    The distance is :func:`distance_to_features` of ``labels > 0`` (bit for bit scipy's
    when :func:`exact_for` holds). The label is that of a nearest labelled pixel, as
    ``labels[tuple(distance_transform_edt(labels == 0, return_indices=True)[1])]`` gives
    it, except where several labelled pixels are equally near: scipy and this function may
    then pick different ones (both at the minimum distance; tested against brute force).
    O(pixels): 0.25 s on a 3701 × 3701 raster with three lesions on this 2-core machine,
    against 1.4 s for scipy's transform with indices and the label lookup (same distances,
    same labels there).
    """
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    return _distance(labels > 0, float(pixel_um) * float(pixel_um), labels)
