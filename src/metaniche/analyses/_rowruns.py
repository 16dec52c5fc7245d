"""Numba kernel of the disc morphology of :mod:`metaniche.analyses._raster` (row runs).

A disc is one horizontal run ``|dx| <= w(dy)`` per row offset dy. Pixel (r, c) of the
dilation is True when some run of the disc placed at (r, c) holds a True pixel; of the
erosion, when no run holds a False pixel. With ``h[r, c]`` the horizontal distance (pixels)
from (r, c) to the nearest deciding pixel of its row (True for dilation, False for erosion;
two sweeps per row), the run at offset dy holds one exactly when ``h[r + dy, c] <= w(dy)``:
O(pixels · (2 · reach + 1)) comparisons, which vectorise. Rows outside the raster hold no
deciding pixel (outside counts as False for dilation and True for erosion), nor do columns
outside it.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["disc_runs"]


_BLOCK_ROWS = 64


@numba.njit(cache=True, parallel=True)
def _disc_runs(mask: np.ndarray, half_widths: np.ndarray, erode: bool, gap: np.ndarray,
               hit: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    """Both passes: ``gap`` (rows, cols) int32 and ``hit`` (blocks, cols) are scratch."""
    n_rows, n_cols = mask.shape
    reach = len(half_widths) - 1
    far = n_cols + 1
    n_blocks = hit.shape[0]
    for block in numba.prange(n_blocks):
        for r in range(block * _BLOCK_ROWS, min(n_rows, (block + 1) * _BLOCK_ROWS)):
            last = -far
            for c in range(n_cols):
                if mask[r, c] != erode:
                    last = c
                gap[r, c] = c - last
            last = 2 * far
            for c in range(n_cols - 1, -1, -1):
                if mask[r, c] != erode:
                    last = c
                gap[r, c] = min(gap[r, c], last - c)
    for block in numba.prange(n_blocks):
        row_hit = hit[block]
        for r in range(block * _BLOCK_ROWS, min(n_rows, (block + 1) * _BLOCK_ROWS)):
            for c in range(n_cols):
                row_hit[c] = False
            for dy in range(-reach, reach + 1):
                row = r + dy
                if row < 0 or row >= n_rows:
                    continue
                width = half_widths[abs(dy)]
                near = gap[row]
                for c in range(n_cols):
                    row_hit[c] |= near[c] <= width
            for c in range(n_cols):
                out[r, c] = row_hit[c] != erode


def disc_runs(mask: np.ndarray, half_widths: np.ndarray, erode: bool) -> np.ndarray:
    """Dilate (``erode=False``) or erode a boolean raster by the disc whose run at row offset
    ±dy has half-width ``half_widths[dy]``.

    Blocks of rows run in parallel in both passes (each output row depends only on the
    input: the same result for any thread count). The arrays are allocated here, not in
    the kernels: array expressions inside a parallel kernel made Numba's first compilation
    take 1.2 s.
    """
    n_rows, n_cols = mask.shape
    n_blocks = (n_rows + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    out = np.empty((n_rows, n_cols), np.bool_)
    _disc_runs(mask, np.ascontiguousarray(half_widths), erode,
               np.empty((n_rows, n_cols), np.int32), np.empty((n_blocks, n_cols), np.bool_),
               out)
    return out
