"""A regular raster over the tissue, shared by the mask-based analyses.

Pixel ``(row, col)`` covers ``[x0 + col·p, x0 + (col+1)·p) × [y0 + row·p, y0 + (row+1)·p)``
with pixel size ``p`` in µm; its centre is at ``x0 + (col + 0.5)·p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

__all__ = ["Grid", "disc_dilate", "disc_erode"]


@dataclass(frozen=True)
class Grid:
    """Raster geometry: origin (µm), pixel size (µm) and shape ``(n_rows, n_cols)``."""

    x0: float
    y0: float
    pixel_um: float
    shape: tuple[int, int]

    @classmethod
    def covering(cls, x_um: np.ndarray, y_um: np.ndarray, pixel_um: float,
                 margin_um: float) -> Grid:
        """Smallest grid covering the points with ``margin_um`` of empty space on each side."""
        x0 = float(np.min(x_um)) - margin_um
        y0 = float(np.min(y_um)) - margin_um
        n_cols = int(np.ceil((float(np.max(x_um)) + margin_um - x0) / pixel_um)) + 1
        n_rows = int(np.ceil((float(np.max(y_um)) + margin_um - y0) / pixel_um)) + 1
        return cls(x0, y0, float(pixel_um), (n_rows, n_cols))

    @property
    def pixel_area_mm2(self) -> float:
        """Area of one pixel in mm²."""
        return self.pixel_um**2 * 1e-6

    def cell_index(self, x_um: np.ndarray, y_um: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer ``(row, col)`` of the pixel containing each point."""
        col = np.floor((x_um - self.x0) / self.pixel_um).astype(np.intp)
        row = np.floor((y_um - self.y0) / self.pixel_um).astype(np.intp)
        return (np.clip(row, 0, self.shape[0] - 1), np.clip(col, 0, self.shape[1] - 1))

    def continuous_index(self, x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
        """Fractional ``(row, col)`` of each point in pixel-centre coordinates, shape (2, n)."""
        return np.vstack([(y_um - self.y0) / self.pixel_um - 0.5,
                          (x_um - self.x0) / self.pixel_um - 0.5])

    def pixel_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Centre coordinates (µm) of the columns and rows: ``(x_centres, y_centres)``."""
        xs = self.x0 + (np.arange(self.shape[1]) + 0.5) * self.pixel_um
        ys = self.y0 + (np.arange(self.shape[0]) + 0.5) * self.pixel_um
        return xs, ys

    def counts(self, x_um: np.ndarray, y_um: np.ndarray,
               weights: np.ndarray | None = None) -> np.ndarray:
        """Number (or summed weights) of points per pixel, float32 raster."""
        if weights is None:
            return self.class_counts(x_um, y_um, np.zeros(len(x_um), np.intp), 1)[0]
        row, col = self.cell_index(x_um, y_um)
        flat = np.bincount(row * self.shape[1] + col, weights=weights,
                           minlength=self.shape[0] * self.shape[1])
        return flat.reshape(self.shape).astype(np.float32)

    def class_counts(self, x_um: np.ndarray, y_um: np.ndarray, classes: np.ndarray,
                     n_classes: int) -> np.ndarray:
        """Points per pixel of each class ``0 … n_classes − 1``: float32, shape
        ``(n_classes, *shape)``; ``result[k]`` holds the points of class k (exact integers
        below 2²⁴ per pixel). One pass over the points straight into the float32 raster
        (numba): ``np.bincount`` would fill an int64 raster 2× larger and convert it, which
        took 0.5 s of the 1M-cell compartments."""
        row, col = self.cell_index(x_um, y_um)
        out = np.zeros((n_classes, *self.shape), np.float32)
        _add_points(out, np.asarray(classes, np.intp), row, col)
        return out


@numba.njit(cache=True)
def _add_points(out: np.ndarray, classes: np.ndarray, row: np.ndarray,
                col: np.ndarray) -> None:  # pragma: no cover - numba
    for i in range(len(row)):
        out[classes[i], row[i], col[i]] += 1.0


_STRUCTURE_MAX_PX = 32   # above this radius the distance transform is cheaper


def _disc(radius_px: float) -> np.ndarray:
    """Boolean disc of offsets with ``hypot(dy, dx) <= radius_px``."""
    offsets = np.arange(-int(radius_px), int(radius_px) + 1)
    return np.hypot(*np.meshgrid(offsets, offsets)) <= radius_px


def disc_dilate(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Dilate a boolean raster by a disc of ``radius_px`` pixels: pixels within Euclidean
    distance ``<= radius_px`` of a True pixel (pixels outside the raster count as False).

    Exact either way: the disc split into one horizontal run per row offset
    (:func:`_disc_by_rows`; about 5x faster than a binary dilation with the disc as
    structuring element, the same pixels) or, above 32 px, a thresholded Euclidean distance
    transform.
    """
    if radius_px <= 0:
        return mask.copy()
    if radius_px <= _STRUCTURE_MAX_PX:
        return _disc_by_rows(mask, radius_px, erode=False)
    return ndimage.distance_transform_edt(~mask) <= radius_px


def disc_erode(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Erode a boolean raster by a disc of ``radius_px`` pixels: True pixels with no False
    pixel within Euclidean distance ``<= radius_px`` (pixels outside the raster do not erode).

    Exact either way: the disc split into one horizontal run per row offset
    (:func:`_disc_by_rows`, O(N · radius)) or, above 32 px, a thresholded Euclidean distance
    transform.
    """
    if radius_px <= 0:
        return mask.copy()
    if radius_px <= _STRUCTURE_MAX_PX:
        return _disc_by_rows(mask, radius_px, erode=True)
    return ndimage.distance_transform_edt(mask) > radius_px


def _disc_by_rows(mask: np.ndarray, radius_px: float, erode: bool = True) -> np.ndarray:
    """Disc erosion (AND) or dilation (OR) as a union of horizontal runs, one per row offset.

    Row offset dy of :func:`_disc` holds the run ``|dx| <= w(dy)``; each run is tested from
    the horizontal distance to the nearest deciding pixel of its row
    (:func:`metaniche.analyses._rowruns.disc_runs`, numba). Outside the raster counts as True
    for erosion and False for dilation.
    """
    from metaniche.analyses._rowruns import disc_runs

    disc = _disc(radius_px)
    reach = disc.shape[0] // 2
    half_widths = np.array([(int(disc[reach + dy].sum()) - 1) // 2
                            for dy in range(reach + 1)], dtype=np.int64)
    return disc_runs(np.ascontiguousarray(mask, dtype=bool), half_widths, bool(erode))
