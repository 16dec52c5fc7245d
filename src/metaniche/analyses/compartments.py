"""Tumour region, lesions, signed distance to the tumour boundary and compartments.

Every cell gets a signed distance in µm to the nearest tumour boundary (negative inside
tumour) and a compartment: ``core`` (d < −w), ``border`` (|d| ≤ w) or ``adjacent`` (d > w),
with border half-width w (default 100 µm; Immunoscore's invasive margin uses 500 µm [1]_).

Method
------
All masks live on one raster of pixel size ``grid_um`` (automatic: 5 µm at the reference cell
spacing, see *Scales* below):

1. **Tissue mask**: union of discs of radius ``tissue_radius_um`` around every cell (default
   half the median nearest-neighbour distance), closed by a disc of ``tissue_closing_um``
   (automatic: 30 µm at the reference spacing) to fill the gaps between cells. Compartment
   areas are measured on this mask, never on the bounding box.
2. **Tumour mask**: per-pixel counts of tumour (T), immune (I) and other (O) cells are smoothed
   with a Gaussian of sigma ``smoothing_um`` (automatic: 20 µm at the reference spacing); a
   tissue pixel is tumour where ``T / (T + O + immune_weight·I) > tumor_fraction``
   (``immune_weight`` 0.25; ``tumor_fraction`` by default the isodata threshold below).
   Down-weighting immune cells keeps a lesion whole under dense infiltrate; smoothing makes
   scattered single tumour cells outside a lesion fall far below the threshold. Connected
   tumour regions below ``min_lesion_area_um2`` are dropped, and holes of non-tumour tissue
   below ``min_hole_area_um2`` are filled; larger holes (stroma islands) stay non-tumour. The
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

A user annotation (GeoJSON polygons, e.g. exported from QuPath) replaces step 2. With
``[compartments] region = "tissue_category"`` the export's own tissue segmentation (inForm
``Tissue Category``, HALO/QuPath classification, column ``tissue_category``) replaces the cell
labels in step 2: cells of a tumour category (``tumor_categories``) play the tumour cells and
no cell is down-weighted. Whenever the cells carry a tissue category, the agreement between
inside/outside tumour and that category is reported as Cohen's kappa
(:func:`region_agreement`; feature ``region_agreement.kappa``), and warned below 0.4.

Scales
------
The four scales of step 1–2 (``grid_um``, ``smoothing_um``, ``tissue_closing_um``, and the
areas ``min_lesion_area_um2``, ``min_hole_area_um2``) default to 0 = automatic
(:func:`resolve_scales`). With s the sample's median nearest-neighbour distance,

    f = clip(s / 13 µm, 0.1, 1);  length = reference · f;  area = reference · f²,

with the references of :data:`REFERENCE_SCALES` (5, 20, 30 µm; 20,000 µm²). Reasoning: the
smoothing must average a fixed number of cells to estimate a local tumour fraction (a
Gaussian of sigma σ averages about 4πσ²ρ cells at density ρ ∝ 1/s²), so σ ∝ s; the pixel
must resolve σ (σ/4), the closing must bridge the gaps between cells (∝ s), and the smallest
lesion or hole worth keeping is a fixed number of kernel areas (∝ σ²). The references were
set on tissue of 3,000 cells/mm² (jittered lattice, s ≈ 13.1–13.3 µm), where f = 1 and the
scales are exactly the former fixed defaults, so such tissue (the simulator's cohorts, a
whole liver slide) gives the same results as before. Sparser tissue keeps the references
(f is capped at 1: coarser scales would blur lesion outlines measured against a 100 µm
border); a dense field scales down. On the phenoptr Vectra field (s = 6.6 µm, f = 0.51,
only the tumour label set) inside/outside agrees with inForm's tissue category at kappa
0.74, against 0.57 with the fixed scales (hand-tuned scales: 0.83). f ≥ 0.1 guards against
coordinates in the wrong unit, and an automatic pixel is at least
``sqrt(bounding-box area / MAX_PIXELS)``. A scale the user sets is used as given. The scales
used are recorded per sample (:attr:`CompartmentResult.scales`; columns of the
``compartments`` table).

Warnings
--------
A result that is NA or doubtful carries its reason and fix in
:attr:`CompartmentResult.warnings` (copied into the sample's record, ``run.json``): no cell
matched the tumour labels (with the labels present and their counts), no tumour region
survives the size filter, the tumour covers all tissue, an annotation contains no tissue,
the border band holds more than half of the cells, poor agreement with the export's tissue
category.

Complexity: O(n_cells + n_pixels · log) time, O(n_pixels) memory; a 1M-cell sample at
3,000 cells/mm² (≈330 mm², 13M pixels at 5 µm) runs in seconds.

References
----------
.. [1] Pagès F. et al. (2018) International validation of the consensus Immunoscore for the
   classification of colon cancer. Lancet 391:2128–2139.
.. [2] Feng Y. et al. (2023) Spatial analysis with SPIAT and spaSim to characterize and
   simulate tissue microenvironments. Nat Commun 14:2697.
.. [5] Landis J.R., Koch G.G. (1977) The measurement of observer agreement for categorical
   data. Biometrics 33:159–174.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numba
import numpy as np
import pandas as pd
import shapely
from scipy import ndimage

from metaniche._contract import TISSUE_CATEGORY
from metaniche.analyses._raster import Grid, disc_dilate, disc_erode
from metaniche.config import DEFAULT_TUMOR_PATTERN, CompartmentParams, Config
from metaniche.errors import InputError

__all__ = [
    "ADJACENT",
    "BORDER",
    "CODE",
    "COMPARTMENTS",
    "CORE",
    "MAX_PIXELS",
    "MIN_SCALE_FACTOR",
    "REFERENCE_SCALES",
    "REFERENCE_SPACING_UM",
    "WHOLE",
    "CompartmentResult",
    "assign_compartments",
    "compartment_codes",
    "compartment_of",
    "isodata_threshold",
    "median_nn_distance",
    "no_tumour_cells_message",
    "region_agreement",
    "resolve_scales",
    "sample_compartments",
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

#: Median nearest-neighbour cell spacing (µm) at which :data:`REFERENCE_SCALES` apply
#: unchanged: 13 µm is the spacing of 3,000 cells/mm² on a jittered lattice (the simulator's
#: tissue and the liver-like whole slides the scales were set on).
REFERENCE_SPACING_UM = 13.0
#: Automatic scale → (value at :data:`REFERENCE_SPACING_UM`, power of the spacing ratio it
#: scales with: 1 for lengths in µm, 2 for areas in µm²). The one source of these defaults.
REFERENCE_SCALES: dict[str, tuple[float, int]] = {
    "grid_um": (5.0, 1),
    "smoothing_um": (20.0, 1),
    "tissue_closing_um": (30.0, 1),
    "min_lesion_area_um2": (20_000.0, 2),
    "min_hole_area_um2": (20_000.0, 2),
}
#: Lower clip of the scale factor (a spacing below 1.3 µm is a unit error, not cells).
MIN_SCALE_FACTOR = 0.1
#: Upper bound on the raster size of an automatic pixel (pixels); the pixel grows beyond the
#: rule only for slides whose bounding box exceeds 1,000 mm² at 5 µm.
MAX_PIXELS = 40_000_000
#: A border band holding more than this share of the cells is warned as too wide.
BORDER_SHARE_WARNING = 0.5
#: Cohen's kappa below this (agreement with the export's tissue category) is warned.
KAPPA_WARNING = 0.4


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
    scales
        The scales used (µm, µm²) and the spacing they came from; see :func:`resolve_scales`.
    warnings
        One sentence per reason the result is degenerate or doubtful, naming the fix (no
        tumour region, no non-tumour tissue, an annotation containing no cell, a border band
        holding most cells, low agreement with the export's tissue category).
    region_agreement_kappa
        Cohen's kappa between inside/outside tumour per cell and the export's tissue
        category (see :func:`region_agreement`); None when the cells carry no category.
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
    scales: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    region_agreement_kappa: float | None = None


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
        Boolean, shape (n,): cell is a tumour cell (with ``region = "tissue_category"``, the
        caller passes the cells of a tumour tissue category and no immune cells).
    is_immune
        Boolean, shape (n,): cell is an immune cell (down-weighted, see module docstring).
        Default: no immune cells.
    params
        Detection and compartment parameters; defaults of :class:`CompartmentParams`. Scales
        left at 0 are derived from the cells' spacing (:func:`resolve_scales`).
    annotation
        Tumour polygons in µm (shapely). When given, they define the tumour region instead of
        the cell-density detection.

    Returns
    -------
    CompartmentResult
        See its attributes; ``scales`` holds the scales used and ``warnings`` every reason why
        the compartments are degenerate (no tumour region, no non-tumour tissue, an annotation
        containing no cell, a border band holding most cells). Method, defaults and
        complexity in the module docstring.
    """
    params = params or CompartmentParams()
    x_um = np.asarray(x_um, dtype=np.float64)
    y_um = np.asarray(y_um, dtype=np.float64)
    is_tumor = np.asarray(is_tumor, dtype=bool)
    is_immune = np.zeros_like(is_tumor) if is_immune is None else np.asarray(is_immune, bool)

    params, scales = resolve_scales(params, x_um, y_um)
    radius_um = params.tissue_radius_um
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
    result = CompartmentResult(sd_cells, compartment, lesion_cells, areas, lesions, grid,
                               tissue, tumor, lesion_labels, pixel_sd, nearest_lesion,
                               scales=scales)
    result.warnings.extend(_geometry_warnings(result, x_um, y_um, is_tumor, params,
                                              annotation))
    return result


def median_nn_distance(x_um: np.ndarray, y_um: np.ndarray, max_queries: int = 50_000) -> float:
    """Median distance (µm) from a cell to its nearest neighbour: the sample's cell spacing.

    Computed from an evenly spaced subset of at most ``max_queries`` query cells against all
    cells (deterministic); coincident cells are ignored. 20 µm for fewer than two cells and
    10 µm when every cell coincides with another (fallbacks that keep the masks defined).
    """
    from metaniche.analyses._nearest import nearest_other_distance

    if len(x_um) < 2:
        return 20.0
    queries = np.arange(0, len(x_um), max(1, len(x_um) // max_queries))
    # = cKDTree(points).query(points[queries], k=2)[0][:, 1], bit for bit, on a cell grid.
    nearest = nearest_other_distance(x_um, y_um, queries)
    return float(np.median(nearest[nearest > 0])) if (nearest > 0).any() else 10.0


def resolve_scales(params: CompartmentParams, x_um: np.ndarray, y_um: np.ndarray
                   ) -> tuple[CompartmentParams, dict[str, float]]:
    """Replace the automatic (0) compartment scales by the values of the scale rule.

    With s the median nearest-neighbour distance (:func:`median_nn_distance`) and
    ``f = clip(s / REFERENCE_SPACING_UM, MIN_SCALE_FACTOR, 1)``, every scale left at 0 becomes
    its value in :data:`REFERENCE_SCALES` times ``f`` (lengths) or ``f²`` (areas); the
    automatic pixel is moreover at least ``sqrt(extent area / MAX_PIXELS)`` so that the raster
    stays below :data:`MAX_PIXELS` pixels. The tissue radius left at 0 is ``max(s / 2, 1)``.
    A value the user set is kept. The reasoning is in the module docstring.

    Returns
    -------
    params
        A copy of ``params`` with every scale set (µm, µm²).
    scales
        ``median_nn_um``, ``scale_factor`` and the five scales plus ``tissue_radius_um``, as
        used (for the sample's record and features).
    """
    spacing = median_nn_distance(x_um, y_um)
    factor = float(np.clip(spacing / REFERENCE_SPACING_UM, MIN_SCALE_FACTOR, 1.0))
    values: dict[str, float] = {}
    for name, (reference, power) in REFERENCE_SCALES.items():
        given = float(getattr(params, name))
        values[name] = given if given > 0 else reference * factor**power
    if params.grid_um <= 0 and len(x_um):
        extent = (float(np.ptp(x_um)) + 1.0) * (float(np.ptp(y_um)) + 1.0)
        values["grid_um"] = max(values["grid_um"], float(np.sqrt(extent / MAX_PIXELS)))
    values["tissue_radius_um"] = float(params.tissue_radius_um) or max(spacing / 2, 1.0)
    scales = {"median_nn_um": spacing, "scale_factor": factor, **values}
    return replace(params, **values), scales  # type: ignore[arg-type]  # float fields only


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
    mask = disc_dilate(occupied, radius_um / grid.pixel_um)
    closing_px = closing_um / grid.pixel_um
    return disc_erode(disc_dilate(mask, closing_px), closing_px)


def tumor_mask_from_density(x_um: np.ndarray, y_um: np.ndarray, is_tumor: np.ndarray,
                            is_immune: np.ndarray, grid: Grid, tissue: np.ndarray,
                            params: CompartmentParams) -> np.ndarray:
    """Tumour raster from the smoothed, immune-down-weighted local tumour fraction.

    A tissue pixel is tumour where ``T / (T + O + immune_weight·I) > tumor_fraction`` with T, I,
    O the Gaussian-smoothed (sigma ``smoothing_um``) counts of tumour, immune and other cells.
    """
    from metaniche.analyses._smoothing import gaussian_smooth

    sigma_px = params.smoothing_um / grid.pixel_um
    # Each cell is tumour, immune (not tumour) or other: counts of the three classes per pixel.
    role = np.where(is_tumor, 0, np.where(is_immune, 1, 2))
    tumor_counts, immune_counts, other_counts = grid.class_counts(x_um, y_um, role, 3)
    # A floor of 1% of a pixel's worth of cells keeps empty space from dividing 0 by 0.
    all_counts = tumor_counts + immune_counts + other_counts
    floor = 0.01 * max(float(np.mean(all_counts[tissue])), 1e-6)
    del all_counts
    tumor_density = gaussian_smooth(tumor_counts, sigma_px)
    immune_counts *= params.immune_weight   # in place: 13M-pixel float32 rasters at 1M cells
    other_counts += immune_counts
    fraction = gaussian_smooth(other_counts, sigma_px)  # the other density, then the fraction
    fraction += tumor_density
    fraction += floor
    np.divide(tumor_density, fraction, out=fraction)
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
    values = np.ascontiguousarray(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    threshold = 0.5
    for _ in range(max_iter):
        sum_above, n_above, sum_below, n_below = _split_sums(values, threshold)
        if n_above == 0 or n_below == 0:
            break
        new = 0.5 * (sum_above / n_above + sum_below / n_below)
        if abs(new - threshold) < tol:
            threshold = new
            break
        threshold = new
    return float(np.clip(threshold, lower, upper))


@numba.njit(cache=True)
def _split_sums(values: np.ndarray, threshold: float
                ) -> tuple[float, int, float, int]:  # pragma: no cover - numba
    """Sum (float64) and count of the values above ``threshold`` and of those at or below it,
    in one pass over float32 or float64 values (the boolean-indexed float64 copies it replaces
    took 0.5 s on a 13M-pixel raster)."""
    sum_above = 0.0
    sum_below = 0.0
    n_above = 0
    for value in values:
        if value > threshold:
            sum_above += value
            n_above += 1
        else:
            sum_below += value
    return sum_above, n_above, sum_below, len(values) - n_above


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
    from metaniche.analyses._smoothing import gaussian_smooth

    votes = gaussian_smooth((tumor & tissue).astype(np.float32), sigma_px)
    weight = gaussian_smooth(tissue.astype(np.float32), sigma_px)
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
    """Per-pixel signed distance (µm) to the tumour boundary and the nearest lesion label.

    Distances are scipy's Euclidean distance transform; with an integer pixel size
    (:func:`metaniche.analyses._edt.exact_for`) the same values come from the faster
    :func:`metaniche.analyses._edt.distance_to_features` (one lesion) or
    :func:`metaniche.analyses._edt.distance_and_label` (several: the nearest lesion comes
    with the distance; a pixel equally near two lesions may get the other one than scipy's
    indices would give it).
    """
    from metaniche.analyses._edt import distance_and_label, distance_to_features, exact_for

    half = 0.5 * grid.pixel_um
    if not tumor.any():
        return np.full(grid.shape, np.nan, np.float32), np.zeros(grid.shape, np.int32)
    exact = exact_for(grid.pixel_um, grid.shape)
    if exact and int(lesion_labels.max()) == 1:
        outside_um = distance_to_features(tumor, grid.pixel_um)
        nearest_lesion = np.ones(grid.shape, dtype=lesion_labels.dtype)
    elif exact:
        outside_um, nearest_lesion = distance_and_label(lesion_labels, grid.pixel_um)
    else:
        outside_um, nearest = ndimage.distance_transform_edt(
            ~tumor, sampling=grid.pixel_um, return_indices=True)
        nearest_lesion = lesion_labels[nearest[0], nearest[1]]
        del nearest
    host = tissue & ~tumor
    if host.any():
        inside_um = (distance_to_features(host, grid.pixel_um) if exact else
                     ndimage.distance_transform_edt(~host, sampling=grid.pixel_um))
    else:
        inside_um = np.full(grid.shape, np.inf)
    # In place: float64 rasters are the largest temporaries of the sample (8 bytes a pixel).
    np.subtract(outside_um, half, out=outside_um)
    np.subtract(half, inside_um, out=outside_um, where=tumor)
    del inside_um
    return outside_um.astype(np.float32), nearest_lesion


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


def sample_compartments(cells: pd.DataFrame, x_um: np.ndarray, y_um: np.ndarray,
                        is_tumor: np.ndarray, is_immune: np.ndarray, config: Config,
                        annotation: Sequence[shapely.Geometry] | None = None
                        ) -> CompartmentResult:
    """Compartments of one sample as the pipeline runs them, with every reason for an NA.

    The tumour region comes from ``annotation`` when given, else from the export's tissue
    category when ``[compartments] region = "tissue_category"`` (cells whose
    :data:`~metaniche._contract.TISSUE_CATEGORY` is one of ``tumor_categories``, any case,
    play the tumour cells and no cell is down-weighted as immune), else from the tumour cells
    (``is_tumor``, ``is_immune``). When the cells carry a tissue category, the agreement
    between inside/outside tumour and that category is measured (:func:`region_agreement`).
    On top of :func:`assign_compartments`' warnings, a sample without tumour cells gets one
    naming the tumour labels looked for, the labels present (with counts) and the key to set.

    Parameters
    ----------
    cells
        The sample's standardised cell table (``cell_type``, optionally ``tissue_category``).
    x_um, y_um, is_tumor, is_immune
        As for :func:`assign_compartments`.
    config
        Run configuration (``[compartments]`` and ``[cell_types]``).
    annotation
        Tumour polygons in µm, or None.

    Raises
    ------
    InputError
        ``region = "tissue_category"`` but the cells carry no tissue category.
    """
    params = config.compartments
    category = _tissue_category(cells)
    in_category = None
    if category is not None:
        wanted = {c.casefold() for c in params.tumor_categories}
        in_category = category.str.casefold().isin(wanted).to_numpy()
    notes: list[str] = []
    region_tumor, region_immune = is_tumor, is_immune
    if params.region == "tissue_category" and annotation is None:
        if in_category is None:
            raise InputError(
                f"[compartments] region = 'tissue_category' but the cells have no "
                f"'{TISSUE_CATEGORY}' column (inForm 'Tissue Category', HALO/QuPath "
                "classification); set [compartments] region = 'cells' or export the tissue "
                "category.")
        region_tumor, region_immune = in_category, np.zeros(len(in_category), dtype=bool)
        if not in_category.any():
            notes.append(
                f"no cell has a tissue category in {list(params.tumor_categories)}; categories "
                f"present: {_counted(category)}; set [compartments] tumor_categories.")
    elif annotation is None and not np.asarray(is_tumor).any():
        notes.append(no_tumour_cells_message(cells, config))
    result = assign_compartments(x_um, y_um, region_tumor, region_immune, params, annotation)
    result.warnings[:0] = notes
    if category is not None and in_category is not None:
        known = category.notna().to_numpy()
        kappa = region_agreement(_inside_tumour(result)[known], in_category[known])
        result.region_agreement_kappa = kappa
        if not np.isfinite(kappa):
            inside = _inside_tumour(result)[known]
            one_class = ("the tumour region holds every cell" if inside.all() else
                         "no cell is inside the tumour region" if not inside.any() else
                         "every cell's tissue category is "
                         + ("a tumour category" if in_category[known].all() else
                            "a non-tumour category"))
            result.warnings.append(
                f"region_agreement.kappa is undefined (NaN): {one_class}, so agreement with "
                "the export's tissue category cannot be measured.")
        elif kappa < KAPPA_WARNING:
            fix = ("the category is patchier than the smoothing: set [compartments] "
                   "smoothing_um and min_lesion_area_um2 smaller"
                   if params.region == "tissue_category" and annotation is None else
                   "check [cell_types] tumor, or set [compartments] region = "
                   "'tissue_category' to use the export's region")
            result.warnings.append(
                f"the tumour region agrees poorly with the export's tissue category "
                f"(Cohen's kappa {kappa:.2f} < {KAPPA_WARNING}); {fix}.")
    return result


def region_agreement(inside: np.ndarray, category_tumour: np.ndarray) -> float:
    """Cohen's kappa [4]_ between two per-cell tumour/non-tumour calls.

    ``(p_o − p_e) / (1 − p_e)`` with p_o the observed share of cells on which the calls agree
    and p_e the share expected by chance from their marginals (via
    :func:`sklearn.metrics.cohen_kappa_score`). 1 is perfect agreement, 0 chance level.
    NaN when either call puts every cell in one class (kappa undefined) or there are no
    cells. Landis & Koch [5]_ call 0.41–0.60 moderate and 0.61–0.80 substantial agreement.

    References
    ----------
    .. [4] Cohen J. (1960) A coefficient of agreement for nominal scales. Educ Psychol Meas
       20:37–46.
    """
    from sklearn.metrics import cohen_kappa_score

    inside = np.asarray(inside, dtype=bool)
    category_tumour = np.asarray(category_tumour, dtype=bool)
    if len(np.unique(inside)) < 2 or len(np.unique(category_tumour)) < 2:
        return float("nan")
    return float(cohen_kappa_score(inside, category_tumour))


def _tissue_category(cells: pd.DataFrame) -> pd.Series | None:
    """The cells' tissue category as strings (NaN kept); None without the column or a value."""
    if TISSUE_CATEGORY not in cells.columns:
        return None
    column = cells[TISSUE_CATEGORY]
    if not column.notna().any():
        return None
    return column.astype("string").str.strip().astype(object).where(column.notna())


def _inside_tumour(result: CompartmentResult) -> np.ndarray:
    """Per cell: inside tumour (negative signed distance; with NaN, tumour present)."""
    sd = result.signed_distance_um
    return np.where(np.isnan(sd), bool(result.tumor.any()), sd < 0)


def _counted(values: pd.Series, limit: int = 12) -> str:
    """``"CK+ (2,257), CD8+ (412), …"``: the most frequent values with their counts."""
    counts = values.dropna().astype(str).value_counts()
    if counts.empty:
        return "none"
    shown = ", ".join(f"{name} ({count:,})" for name, count in counts.head(limit).items())
    return shown + (f", … ({len(counts) - limit} more)" if len(counts) > limit else "")


def no_tumour_cells_message(cells: pd.DataFrame, config: Config) -> str:
    """Why no cell is a tumour cell: the labels looked for, those present and the key to set.

    The sentence of the sample warning when no cell matches the tumour labels (for
    ``validate`` too); call it only when no cell does.
    """
    present = _counted(cells["cell_type"]) if "cell_type" in cells.columns else "none"
    if config.cell_types.tumor:
        looked_for = f"the tumour labels {list(config.cell_types.tumor)}"
    else:
        looked_for = f"the default tumour pattern '{DEFAULT_TUMOR_PATTERN}' (any case)"
    message = (f"no cell matched {looked_for}; labels present: {present}; set [cell_types] "
               "tumor to the tumour label(s)")
    if _tissue_category(cells) is not None:
        message += " or [compartments] region = 'tissue_category'"
    return message + ". Without tumour every cell is 'adjacent' and the phenotype undetermined."


def _geometry_warnings(result: CompartmentResult, x_um: np.ndarray, y_um: np.ndarray,
                       is_tumor: np.ndarray, params: CompartmentParams,
                       annotation: Sequence[shapely.Geometry] | None) -> list[str]:
    """Reasons why a compartment result is degenerate or doubtful, each with its fix."""
    warnings: list[str] = []
    n_cells = len(x_um)
    tumor_present = bool(result.tumor.any())
    if annotation is not None and not (result.tumor & result.tissue).any():
        bounds = np.array([g.bounds for g in annotation if not g.is_empty]).reshape(-1, 4)
        where = (f"x {bounds[:, 0].min():,.0f}–{bounds[:, 2].max():,.0f}, y "
                 f"{bounds[:, 1].min():,.0f}–{bounds[:, 3].max():,.0f} µm" if len(bounds)
                 else "empty")
        warnings.append(
            f"the tumour annotation ({where}) contains no tissue: the cells lie at x "
            f"{np.min(x_um):,.0f}–{np.max(x_um):,.0f}, y {np.min(y_um):,.0f}–"
            f"{np.max(y_um):,.0f} µm; check that the annotation belongs to this sample and "
            "that um_per_unit applies to it.")
    elif annotation is None and not tumor_present and is_tumor.any():
        warnings.append(
            f"{int(is_tumor.sum()):,} tumour cells but no tumour region: none of their "
            f"clusters reaches [compartments] min_lesion_area_um2 = "
            f"{params.min_lesion_area_um2:,.0f} µm² at smoothing_um = "
            f"{params.smoothing_um:g}; set them smaller if these cells form a tumour.")
    if tumor_present and not (result.tissue & ~result.tumor).any():
        warnings.append(
            "the tumour region covers all of the tissue: there is no boundary, every cell is "
            "'core' and border/adjacent quantities are undetermined; check [cell_types] tumor "
            "(it may list non-tumour labels) or use a field that includes stroma.")
    if tumor_present and n_cells:
        n_border = int(np.sum(result.compartment == BORDER))
        if n_border > BORDER_SHARE_WARNING * n_cells:
            width = float(np.ptp(x_um)) if n_cells else 0.0
            height = float(np.ptp(y_um)) if n_cells else 0.0
            suggestion = max(5 * round(min(width, height) / 20 / 5), 5)
            warnings.append(
                f"border_um = {params.border_um:g} puts {n_border:,} of {n_cells:,} cells "
                f"({n_border / n_cells:.0%}) in the border on this {width:,.0f} × "
                f"{height:,.0f} µm field; set [compartments] border_um smaller (e.g. "
                f"{min(suggestion, params.border_um / 2):g}).")
    return warnings
