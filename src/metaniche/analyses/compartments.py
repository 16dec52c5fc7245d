"""Tumour region, lesions, signed distance to the tumour boundary and compartments.

Every cell gets a signed distance in µm to the nearest tumour boundary (negative inside
tumour) and a compartment: ``core`` (d < −w), ``border`` (|d| ≤ w) or ``adjacent`` (d > w),
with border half-width w (default 100 µm; Immunoscore's invasive margin uses 500 µm [1]_).

Method
------
All masks live on one raster of pixel size ``grid_um`` (default 5 µm):

1. **Tissue mask**: union of discs of radius ``tissue_radius_um`` around every cell (default
   half the median nearest-neighbour distance), closed by a disc of ``tissue_closing_um``
   (default 30 µm) to fill the gaps between cells. Compartment areas are measured on this mask,
   never on the bounding box.
2. **Tumour mask**: per-pixel counts of tumour (T), immune (I) and other (O) cells are smoothed
   with a Gaussian of sigma ``smoothing_um`` (default 20 µm); a tissue pixel is tumour where
   ``T / (T + O + immune_weight·I) > tumor_fraction`` (defaults 0.25 and 0.5). Down-weighting
   immune cells keeps a lesion whole under dense infiltrate; smoothing makes scattered single
   tumour cells outside a lesion fall far below the threshold. Connected tumour regions below
   ``min_lesion_area_um2`` are dropped, and holes of non-tumour tissue below
   ``min_hole_area_um2`` are filled; larger holes (stroma islands) stay non-tumour. The
   outline is regularised by re-thresholding the mask smoothed with the same sigma. This
   density-ratio approach follows the tumour/stroma segmentation idea of inForm's tissue
   categories and of SPIAT's tumour-structure analysis [2]_ without requiring an alpha hull.
3. **Lesions** are the 8-connected components of the tumour mask, numbered 1… by size
   (largest first); every pixel and cell outside tumour belongs to its nearest lesion.
4. **Signed distance**: Euclidean distance transforms give, for a non-tumour pixel, the distance
   to the nearest tumour pixel and, for a tumour pixel, the distance to the nearest non-tumour
   *tissue* pixel, each minus half a pixel so that the boundary lies between pixels. The image
   edge and cell-free regions (necrosis, tissue tears) are therefore not tumour boundaries.
   Per-cell values are bilinear interpolations of this field, so the quantisation error is
   below ``grid_um / 2``.

A user annotation (GeoJSON polygons, e.g. exported from QuPath) replaces step 2.

Complexity: O(n_cells + n_pixels · log) time, O(n_pixels) memory; a 1M-cell sample at
3,000 cells/mm² (≈330 mm², 13M pixels at 5 µm) runs in seconds.

References
----------
.. [1] Pagès F. et al. (2018) International validation of the consensus Immunoscore for the
   classification of colon cancer. Lancet 391:2128–2139.
.. [2] Feng Y. et al. (2023) Spatial analysis with SPIAT and spaSim to characterize and
   simulate tissue microenvironments. Nat Commun 14:2697.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree

from metaniche.analyses._raster import Grid, disc_dilate, disc_erode
from metaniche.config import CompartmentParams

__all__ = [
    "ADJACENT",
    "BORDER",
    "CODE",
    "COMPARTMENTS",
    "CORE",
    "WHOLE",
    "CompartmentResult",
    "assign_compartments",
    "compartment_codes",
    "compartment_of",
    "isodata_threshold",
    "tissue_mask",
    "tumor_mask_from_density",
    "tumor_mask_from_polygons",
]

#: Compartment names in their order from inside the tumour outwards (the one spelling).
COMPARTMENTS: tuple[str, ...] = ("core", "border", "adjacent")
CORE, BORDER, ADJACENT = COMPARTMENTS
#: Compartment name → integer code (index into :data:`COMPARTMENTS`).
CODE: dict[str, int] = {name: code for code, name in enumerate(COMPARTMENTS)}
#: The pseudo-compartment of whole-sample rows in compartment tables.
WHOLE = "all"
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass
class CompartmentResult:
    """Per-cell compartments and the rasters they came from.

    Attributes
    ----------
    signed_distance_um
        Per cell, distance to the nearest tumour boundary in µm, negative inside tumour;
        NaN when the sample has no tumour or no non-tumour tissue.
    compartment
        Per cell, ``"core"``, ``"border"`` or ``"adjacent"``.
    lesion_id
        Per cell, the lesion containing it or, outside tumour, the nearest lesion; 0 when the
        sample has no tumour.
    areas
        Long table ``lesion_id, compartment, area_mm2``: tissue area of every compartment of
        every lesion (outside pixels belong to their nearest lesion); ``lesion_id`` 0 rows with
        compartment ``all``/… give whole-sample totals.
    lesions
        One row per lesion: ``lesion_id, area_mm2, centroid_x, centroid_y, n_pixels``.
    grid, tissue, tumor, lesion_labels, pixel_signed_distance_um
        The raster geometry and masks (for figures and later analyses).
    pixel_lesion_id
        Per pixel, the lesion containing it or, outside tumour, the nearest lesion (0 when the
        sample has no tumour); the pixel counterpart of ``lesion_id``. None when not computed.
    """

    signed_distance_um: np.ndarray
    compartment: np.ndarray
    lesion_id: np.ndarray
    areas: pd.DataFrame
    lesions: pd.DataFrame
    grid: Grid
    tissue: np.ndarray
    tumor: np.ndarray
    lesion_labels: np.ndarray
    pixel_signed_distance_um: np.ndarray
    pixel_lesion_id: np.ndarray | None = None


def assign_compartments(
    x_um: np.ndarray,
    y_um: np.ndarray,
    is_tumor: np.ndarray,
    is_immune: np.ndarray | None = None,
    params: CompartmentParams | None = None,
    annotation: Sequence[shapely.Geometry] | None = None,
) -> CompartmentResult:
    """Detect the tumour region and give every cell a signed distance and a compartment.

    Parameters
    ----------
    x_um, y_um
        Cell centroids in µm, shape (n,).
    is_tumor
        Boolean, shape (n,): cell is a tumour cell.
    is_immune
        Boolean, shape (n,): cell is an immune cell (down-weighted, see module docstring).
        Default: no immune cells.
    params
        Detection and compartment parameters; defaults of :class:`CompartmentParams`.
    annotation
        Tumour polygons in µm (shapely). When given, they define the tumour region instead of
        the cell-density detection.

    Returns
    -------
    CompartmentResult
        See its attributes. Method, defaults and complexity in the module docstring.
    """
    params = params or CompartmentParams()
    x_um = np.asarray(x_um, dtype=np.float64)
    y_um = np.asarray(y_um, dtype=np.float64)
    is_tumor = np.asarray(is_tumor, dtype=bool)
    is_immune = np.zeros_like(is_tumor) if is_immune is None else np.asarray(is_immune, bool)

    radius_um = params.tissue_radius_um or _half_median_nn_distance(x_um, y_um)
    margin_um = radius_um + params.tissue_closing_um + 4 * params.smoothing_um + params.grid_um
    grid = Grid.covering(x_um, y_um, params.grid_um, margin_um)
    tissue = tissue_mask(x_um, y_um, grid, radius_um, params.tissue_closing_um)
    if annotation is not None:
        # A user's outline is authoritative: no smoothing, size filter or hole filling.
        tumor = tumor_mask_from_polygons(annotation, grid)
    else:
        tumor = tumor_mask_from_density(x_um, y_um, is_tumor, is_immune, grid, tissue, params)
        tumor = _clean_tumor_mask(tumor, tissue, grid, params)
    lesion_labels = _label_lesions(tumor)
    pixel_sd, nearest_lesion = _signed_distance_field(tumor, tissue, lesion_labels, grid)

    sd_cells = ndimage.map_coordinates(pixel_sd, grid.continuous_index(x_um, y_um),
                                       order=1, mode="nearest").astype(np.float64)
    row, col = grid.cell_index(x_um, y_um)
    lesion_cells = nearest_lesion[row, col].astype(np.int64)
    if not tumor.any():
        sd_cells[:] = np.nan
    elif not (tissue & ~tumor).any():
        sd_cells[:] = np.nan
    compartment = compartment_of(sd_cells, params.border_um, tumor_present=bool(tumor.any()))
    pixel_codes = compartment_codes(pixel_sd, params.border_um, tumor_present=bool(tumor.any()))
    areas = _compartment_areas(pixel_codes, tissue, nearest_lesion, grid)
    lesions = _lesion_table(lesion_labels, grid)
    return CompartmentResult(sd_cells, compartment, lesion_cells, areas, lesions, grid,
                             tissue, tumor, lesion_labels, pixel_sd, nearest_lesion)


def compartment_codes(signed_distance_um: np.ndarray, border_um: float,
                      tumor_present: bool = True) -> np.ndarray:
    """The compartment rule, as integer codes indexing :data:`COMPARTMENTS`.

    ``core`` (0) for d < −w, ``border`` (1) for |d| ≤ w, ``adjacent`` (2) for d > w, with d the
    signed distance to the tumour boundary in µm (negative inside tumour) and w the border
    half-width ``border_um``.

    A NaN distance means the boundary is undetermined: the sample has no tumour (every cell is
    then ``adjacent``, i.e. non-tumour tissue) or no non-tumour tissue (``tumor_present``: every
    cell is ``core``). This is what :func:`assign_compartments` gives the cells of such a
    sample; every copy of the rule (cells, pixels, aggregates, the simulator's ground truth)
    calls this function. int8 so that whole rasters stay small.
    """
    sd = np.asarray(signed_distance_um)
    codes = np.full(sd.shape, CODE[BORDER], dtype=np.int8)
    codes[sd < -border_um] = CODE[CORE]
    codes[sd > border_um] = CODE[ADJACENT]
    codes[np.isnan(sd)] = CODE[CORE] if tumor_present else CODE[ADJACENT]
    return codes


def compartment_of(signed_distance_um: np.ndarray, border_um: float,
                   tumor_present: bool = True) -> np.ndarray:
    """Compartment names (object array) by the rule of :func:`compartment_codes`."""
    return np.asarray(COMPARTMENTS, dtype=object)[compartment_codes(signed_distance_um,
                                                                    border_um, tumor_present)]


def tissue_mask(x_um: np.ndarray, y_um: np.ndarray, grid: Grid, radius_um: float,
                closing_um: float) -> np.ndarray:
    """Tissue raster: discs of ``radius_um`` around cells, closed by a ``closing_um`` disc.

    Areas measured on it approximate the area the cells cover, excluding empty space such as
    the background around a biopsy or a large tear, unlike a bounding box.
    """
    occupied = grid.counts(x_um, y_um) > 0
    radius_px = radius_um / grid.pixel_um
    if radius_px <= 4:
        # A small disc as a structuring element is much cheaper than a distance transform.
        offsets = np.arange(-int(radius_px), int(radius_px) + 1)
        disc = np.hypot(*np.meshgrid(offsets, offsets)) <= radius_px
        mask = ndimage.binary_dilation(occupied, structure=disc)
    else:
        mask = disc_dilate(occupied, radius_px)
    closing_px = closing_um / grid.pixel_um
    return disc_erode(disc_dilate(mask, closing_px), closing_px)


def tumor_mask_from_density(x_um: np.ndarray, y_um: np.ndarray, is_tumor: np.ndarray,
                            is_immune: np.ndarray, grid: Grid, tissue: np.ndarray,
                            params: CompartmentParams) -> np.ndarray:
    """Tumour raster from the smoothed, immune-down-weighted local tumour fraction.

    A tissue pixel is tumour where ``T / (T + O + immune_weight·I) > tumor_fraction`` with T, I,
    O the Gaussian-smoothed (sigma ``smoothing_um``) counts of tumour, immune and other cells.
    """
    sigma_px = params.smoothing_um / grid.pixel_um
    other = ~is_tumor & ~is_immune
    tumor_density = ndimage.gaussian_filter(grid.counts(x_um[is_tumor], y_um[is_tumor]),
                                            sigma_px)
    other_density = ndimage.gaussian_filter(
        grid.counts(x_um[other], y_um[other]) + params.immune_weight
        * grid.counts(x_um[is_immune & ~is_tumor], y_um[is_immune & ~is_tumor]), sigma_px)
    # A floor of 1% of a pixel's worth of cells keeps empty space from dividing 0 by 0.
    floor = 0.01 * max(float(np.mean(grid.counts(x_um, y_um)[tissue])), 1e-6)
    fraction = tumor_density / (tumor_density + other_density + floor)
    threshold = params.tumor_fraction or isodata_threshold(fraction[tissue])
    return (fraction > threshold) & tissue


def isodata_threshold(values: np.ndarray, lower: float = 0.2, upper: float = 0.6,
                      tol: float = 1e-4, max_iter: int = 100) -> float:
    """Ridler–Calvard (isodata) threshold of tumour fractions, clipped to ``[lower, upper]``.

    Iterates ``t = (mean(v[v > t]) + mean(v[v <= t])) / 2`` from t = 0.5: the midpoint between
    the typical tumour fraction inside lesions and outside them, so the boundary sits where the
    smoothed fraction is halfway between the two — on a straight edge, at the edge itself [3]_.
    Clipping keeps a tumour-free or all-tumour image from moving the threshold to noise.

    References
    ----------
    .. [3] Ridler T.W., Calvard S. (1978) Picture thresholding using an iterative selection
       method. IEEE Trans Syst Man Cybern 8:630–632.
    """
    values = np.asarray(values, dtype=np.float64)
    threshold = 0.5
    for _ in range(max_iter):
        above, below = values[values > threshold], values[values <= threshold]
        if above.size == 0 or below.size == 0:
            break
        new = 0.5 * (above.mean() + below.mean())
        if abs(new - threshold) < tol:
            threshold = new
            break
        threshold = new
    return float(np.clip(threshold, lower, upper))


def tumor_mask_from_polygons(polygons: Sequence[shapely.Geometry], grid: Grid) -> np.ndarray:
    """Tumour raster from annotation polygons (µm): pixel centres inside any polygon."""
    mask = np.zeros(grid.shape, dtype=bool)
    xs, ys = grid.pixel_centres()
    for polygon in polygons:
        if polygon.is_empty:
            continue
        min_x, min_y, max_x, max_y = polygon.bounds
        cols = np.flatnonzero((xs >= min_x) & (xs <= max_x))
        rows = np.flatnonzero((ys >= min_y) & (ys <= max_y))
        if cols.size == 0 or rows.size == 0:
            continue
        grid_x, grid_y = np.meshgrid(xs[cols], ys[rows])
        shapely.prepare(polygon)
        inside = shapely.contains_xy(polygon, grid_x, grid_y)
        mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] |= inside
    return mask


def _half_median_nn_distance(x_um: np.ndarray, y_um: np.ndarray,
                             max_queries: int = 50_000) -> float:
    """Half the median nearest-neighbour distance (µm), from an evenly spaced subset of at
    most ``max_queries`` query cells against all cells (deterministic)."""
    points = np.column_stack([x_um, y_um])
    if len(points) < 2:
        return 10.0
    queries = points[:: max(1, len(points) // max_queries)]
    distances, _ = cKDTree(points).query(queries, k=2)
    nearest = distances[:, 1]
    return float(max(np.median(nearest[nearest > 0]) / 2 if (nearest > 0).any() else 5.0, 1.0))


def _clean_tumor_mask(tumor: np.ndarray, tissue: np.ndarray, grid: Grid,
                      params: CompartmentParams) -> np.ndarray:
    """Regularise the outline, drop small tumour regions and fill small non-tumour holes.

    The outline is regularised by thresholding the Gaussian-smoothed (sigma ``smoothing_um``)
    mask at 0.5 (normalised over tissue pixels). This removes boundary wiggles narrower than
    about two sigma (they come from label noise and would bias every distance to the nearest
    boundary low) while moving a smooth boundary by only ~sigma²/(2·radius of curvature).
    """
    sigma_px = params.smoothing_um / grid.pixel_um
    # Normalised convolution: off-tissue pixels carry no vote, so the image edge and cell-free
    # gaps neither erode nor grow the tumour.
    votes = ndimage.gaussian_filter((tumor & tissue).astype(np.float32), sigma_px)
    weight = ndimage.gaussian_filter(tissue.astype(np.float32), sigma_px)
    tumor = (votes > 0.5 * weight) & (weight > 1e-3)
    labels, n_regions = ndimage.label(tumor, structure=_EIGHT_CONNECTED)
    if n_regions:
        sizes = np.bincount(labels.ravel())
        keep = sizes * grid.pixel_um**2 >= params.min_lesion_area_um2
        keep[0] = False
        tumor = keep[labels]
    holes, n_holes = ndimage.label(~tumor)
    if n_holes:
        sizes = np.bincount(holes.ravel())
        border_labels = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0],
                                                  holes[:, -1]]))
        fill = sizes * grid.pixel_um**2 < params.min_hole_area_um2
        fill[0] = False
        fill[border_labels] = False
        tumor = tumor | fill[holes]
    return tumor


def _label_lesions(tumor: np.ndarray) -> np.ndarray:
    """Label 8-connected tumour regions 1…n, largest first."""
    labels, n_regions = ndimage.label(tumor, structure=_EIGHT_CONNECTED)
    if n_regions == 0:
        return labels.astype(np.int32)
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(-sizes, kind="stable")
    relabel = np.zeros(n_regions + 1, dtype=np.int32)
    relabel[order + 1] = np.arange(1, n_regions + 1, dtype=np.int32)
    return relabel[labels]


def _signed_distance_field(tumor: np.ndarray, tissue: np.ndarray, lesion_labels: np.ndarray,
                           grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel signed distance (µm) to the tumour boundary and the nearest lesion label."""
    half = 0.5 * grid.pixel_um
    if not tumor.any():
        return np.full(grid.shape, np.nan, np.float32), np.zeros(grid.shape, np.int32)
    outside_um, nearest = ndimage.distance_transform_edt(
        ~tumor, sampling=grid.pixel_um, return_indices=True)
    nearest_lesion = lesion_labels[nearest[0], nearest[1]]
    del nearest
    host = tissue & ~tumor
    if host.any():
        inside_um = ndimage.distance_transform_edt(~host, sampling=grid.pixel_um)
    else:
        inside_um = np.full(grid.shape, np.inf)
    signed = np.where(tumor, -(inside_um - half), outside_um - half).astype(np.float32)
    return signed, nearest_lesion


def _compartment_areas(pixel_codes: np.ndarray, tissue: np.ndarray,
                       nearest_lesion: np.ndarray, grid: Grid) -> pd.DataFrame:
    """Tissue area (mm²) per lesion × compartment, plus whole-sample rows (lesion_id 0)."""
    n_compartments = len(COMPARTMENTS)
    lesion = nearest_lesion[tissue].astype(np.int64)
    n_lesions = int(nearest_lesion.max())
    counts = np.bincount(lesion * n_compartments + pixel_codes[tissue],
                         minlength=(n_lesions + 1) * n_compartments)
    areas = counts.reshape(n_lesions + 1, n_compartments) * grid.pixel_area_mm2
    per_lesion = pd.DataFrame({
        "lesion_id": np.repeat(np.arange(1, n_lesions + 1), n_compartments),
        "compartment": np.tile(COMPARTMENTS, n_lesions),
        "area_mm2": areas[1:].ravel(),
    })
    totals = areas.sum(axis=0)
    whole = pd.DataFrame({"lesion_id": 0, "compartment": [*COMPARTMENTS, WHOLE],
                          "area_mm2": [*totals, totals.sum()]})
    return pd.concat([per_lesion, whole], ignore_index=True)


def _lesion_table(lesion_labels: np.ndarray, grid: Grid) -> pd.DataFrame:
    """One row per lesion: area (mm²) and centroid (µm)."""
    n_lesions = int(lesion_labels.max())
    if n_lesions == 0:
        return pd.DataFrame({"lesion_id": pd.Series(dtype=np.int64),
                             "area_mm2": pd.Series(dtype=float),
                             "centroid_x": pd.Series(dtype=float),
                             "centroid_y": pd.Series(dtype=float)})
    index = np.arange(1, n_lesions + 1)
    rows, cols = np.nonzero(lesion_labels)      # one pass over the lesion pixels only
    labels = lesion_labels[rows, cols]
    n_pixels = np.bincount(labels, minlength=n_lesions + 1)[1:].astype(np.float64)
    mean_row = np.bincount(labels, weights=rows, minlength=n_lesions + 1)[1:] / n_pixels
    mean_col = np.bincount(labels, weights=cols, minlength=n_lesions + 1)[1:] / n_pixels
    return pd.DataFrame({
        "lesion_id": index,
        "area_mm2": n_pixels * grid.pixel_area_mm2,
        "centroid_x": grid.x0 + (mean_col + 0.5) * grid.pixel_um,
        "centroid_y": grid.y0 + (mean_row + 0.5) * grid.pixel_um,
    })
