"""Cells painted straight into an RGBA raster with NumPy (shared by the tissue map and its
zoomable view; no matplotlib state)."""

from __future__ import annotations

import numpy as np

__all__ = ["paint_cells"]


def paint_cells(x: np.ndarray, y: np.ndarray, codes: np.ndarray, colours: np.ndarray,
                extent: tuple[float, float, float, float], width_px: int,
                dot_radius_px: int) -> np.ndarray:
    """Paint cells as square dots into an RGBA raster (row 0 = smallest y).

    Parameters
    ----------
    x, y
        Cell centroids (µm), shape (n,).
    codes
        Integer type code per cell, indexing ``colours``.
    colours
        RGB in [0, 1] per type code, shape (n_types, 3).
    extent
        ``(x0, x1, y0, y1)`` in µm covered by the raster.
    width_px
        Raster width; the height keeps square pixels.
    dot_radius_px
        Half-size of each dot (0 = one pixel per cell).

    Returns
    -------
    numpy.ndarray
        uint8, shape (height, width, 4); alpha 0 where no cell was painted. Cells are painted
        in ascending order of their type's abundance, so rare types are on top. O(n · dot²).
    """
    x0, x1, y0, y1 = extent
    pixel = max((x1 - x0) / width_px, 1e-9)
    height_px = max(1, int(np.ceil((y1 - y0) / pixel)))
    image = np.zeros((height_px, width_px, 4), dtype=np.uint8)
    if len(x) == 0:
        return image
    counts = np.bincount(codes, minlength=len(colours))
    rank = np.argsort(np.argsort(-counts, kind="stable"), kind="stable")
    order = np.argsort(rank[codes], kind="stable")
    col = np.clip(((x[order] - x0) / pixel).astype(np.intp), 0, width_px - 1)
    row = np.clip(((y[order] - y0) / pixel).astype(np.intp), 0, height_px - 1)
    rgba = np.concatenate([np.asarray(colours) * 255, np.full((len(colours), 1), 255)], axis=1)
    rgba = rgba.astype(np.uint8)[codes[order]]
    for dr in range(-dot_radius_px, dot_radius_px + 1):
        for dc in range(-dot_radius_px, dot_radius_px + 1):
            image[np.clip(row + dr, 0, height_px - 1), np.clip(col + dc, 0, width_px - 1)] = rgba
    return image
