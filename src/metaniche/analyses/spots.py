"""Spot analyses: tumour region, compartments, composition, gradients and co-localisation.

Pure functions over arrays for **spot samples** (Visium-type spots with deconvolved cell types;
reading: :mod:`metaniche.io._spots`). A spot i at ``(x_i, y_i)`` µm carries a value ``v_it`` per
type t: a proportion (``kind = "proportion"``, ``Σ_t v_it = 1``) or an abundance (``kind =
"abundance"``, cells of type t in the spot, e.g. cell2location). Every spot covers the same
area ``A`` (µm²): a disc of the spot diameter, or a square bin (Visium HD).

Tumour region and compartments
------------------------------
The cell rule of :mod:`metaniche.analyses.compartments` with each spot as a weighted point:
per pixel, T, I and O are the Gaussian-smoothed sums of the spots' tumour, immune and other
weights (``T_i = Σ_{t ∈ tumour} v_it``, ``I_i = Σ_{t ∈ immune} v_it``, ``O_i`` the rest), and a
tissue pixel is tumour where ``T / (T + O + immune_weight·I) > tumor_fraction`` (isodata
threshold by default, clipped to [0.2, 0.6]). For one-hot weights (a spot holding one cell)
this is exactly the cell rule. ``immune_weight`` is ``[spots] immune_weight`` (default 1, no
down-weighting: a spot's immune share is measured beside its tumour share, not instead of
it; see :class:`metaniche.config.SpotsParams`). The outline is regularised, small lesions
dropped and small holes filled as for cells; signed distances (negative inside tumour) are
interpolated at the spot centres; compartments ``core`` (d < −w), ``border`` (|d| ≤ w),
``adjacent`` (d > w). Alternatively the tumour region comes from a per-spot region column
(``[compartments] region = "tissue_category"`` with ``[spots] region`` and ``tumor_regions``:
spots of those regions have T = 1, the others O = 1) or a GeoJSON annotation.

Scales (automatic unless set in ``[compartments]``) follow the spot spacing s (median
nearest-neighbour distance of the spots), not the cell spacing: pixel ``s / 20``, smoothing
sigma ``s / 2`` (the field between two spots is their weighted mean, and one isolated spot
cannot reach the threshold alone), tissue = discs of radius ``0.75 s`` around spots (this
covers the gaps of hexagonal (Visium) and square (legacy ST) lattices) closed by ``s / 4``,
smallest lesion and largest filled hole ``3 s²`` (about three spots); each at least the cell
rule's reference (5, 20, 30 µm; 20,000 µm²), so 8 µm Visium HD bins are smoothed like cells.
See :data:`SPOT_SCALES`.

Composition, gradients
----------------------
Per group of spots G (a compartment, a lesion's compartment, a signed-distance band):
``area_mm2 = |G| · A``; ``n_cells_t = Σ_{i∈G} v_it`` for abundances, ``cells_per_spot ·
Σ_{i∈G} v_it`` for proportions when ``[spots] cells_per_spot`` is set (the assumption that
every spot holds that many cells), else NaN; ``density_per_mm2 = n_cells_t / area_mm2``
(cells per mm² of the spots' area: spots sample the tissue, so this estimates the cells/mm²
of that compartment's tissue); ``proportion_t = Σ v_it / Σ_t Σ v_it`` (the mean proportion for
proportions; the share of the group's cells for abundances). Gradient bands are ``[a, b)`` of
signed distance, of width ``max([gradients] bin_um, s)`` aligned on the boundary (0) and
covering ``[min_um, max_um]``; the trend
test of :func:`metaniche.analyses.gradients.gradient_statistics` is applied when cells are
known (abundances or ``cells_per_spot``).

Co-localisation
---------------
For types a, b over the graph E of neighbouring spots (centre distance ≤ ``1.2 s``: the
first ring of a hexagonal or square lattice), ``observed_ab = Σ_{(i,j)∈E, i≠j} v_ia v_jb``
(both directions of every edge). The null permutes whole spot rows over the positions
(composition of each spot kept, positions exchanged), so only the arrangement of spots is
tested, not the mixing of types within a spot. Under it the expectation is closed form,
``E[observed_ab] = |E| · (S_a S_b − Σ_i v_ia v_ib) / (n (n − 1))`` with ``S_t = Σ_i v_it`` and
|E| the number of directed edges. ``z = (observed − E) / sd`` with sd from ``n_permutations``
permutations; two-sided Monte Carlo ``p = (#{|null − E| ≥ |observed − E|} + 1) / (n_perm + 1)``.
This differs from cell neighbourhood enrichment (squidpy's ``nhood_enrichment``, [1]_): a cell
has one label, so contacts are counted; a spot mixes types, so products of proportions are
summed, and contacts between types *within* a spot are not counted at all (a spot is the
smallest unit the null exchanges).

References
----------
.. [1] Palla G. et al. (2022) Squidpy: a scalable framework for spatial omics analysis.
   Nat Methods 19:171–178.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree

from metaniche.analyses._raster import Grid
from metaniche.analyses.compartments import (
    COMPARTMENTS,
    MAX_PIXELS,
    REFERENCE_SCALES,
    WHOLE,
    CompartmentResult,
    _clean_tumor_mask,
    _compartment_areas,
    _geometry_warnings,
    _label_lesions,
    _lesion_table,
    _signed_distance_field,
    compartment_codes,
    compartment_of,
    isodata_threshold,
    median_nn_distance,
    region_agreement,
    tissue_mask,
    tumor_mask_from_polygons,
)
from metaniche.config import CompartmentParams, Config
from metaniche.errors import InputError

__all__ = [
    "NEIGHBOUR_RADIUS_FACTOR",
    "SPOT_SCALES",
    "SpotData",
    "band_edges_um",
    "proportion_gradient_statistics",
    "sample_spot_compartments",
    "spot_area_um2",
    "spot_colocalisation",
    "spot_compartments",
    "spot_composition",
    "spot_gradients",
    "spot_neighbours",
    "spot_scales",
]

#: Automatic compartment scale → (multiple of the spot spacing s, power of s): lengths s¹,
#: areas s². Each is at least the cell rule's reference value
#: (:data:`metaniche.analyses.compartments.REFERENCE_SCALES`), so that dense small bins
#: (Visium HD, 8 µm) are smoothed at least as much as cells. The one source of the spot scale
#: rule (see the module docstring).
SPOT_SCALES: dict[str, tuple[float, int]] = {
    "grid_um": (0.05, 1),
    "smoothing_um": (0.5, 1),
    "tissue_radius_um": (0.75, 1),
    "tissue_closing_um": (0.25, 1),
    "min_lesion_area_um2": (3.0, 2),
    "min_hole_area_um2": (3.0, 2),
}
#: Neighbouring spots: centre distance ≤ this × the spot spacing (first lattice ring).
NEIGHBOUR_RADIUS_FACTOR = 1.2


@dataclass(frozen=True)
class SpotData:
    """The deconvolution of one spot sample.

    Attributes
    ----------
    types
        Type names, in the table's order.
    values
        (n_spots, n_types) float64: proportions or abundances.
    kind
        ``"proportion"`` or ``"abundance"``.
    area_um2
        Area of one spot, µm².
    cells_per_spot
        Assumed cells per spot for proportions (0 = unknown: densities NaN).
    """

    types: list[str]
    values: np.ndarray
    kind: str
    area_um2: float
    cells_per_spot: float = 0.0

    @property
    def cell_values(self) -> np.ndarray | None:
        """(n_spots, n_types) cells per spot and type; None when unknown (see module docs)."""
        if self.kind == "abundance":
            return self.values
        if self.cells_per_spot > 0:
            return self.values * self.cells_per_spot
        return None


def spot_area_um2(diameter_um: float, square: bool = False) -> float:
    """Area of one spot, µm²: ``pi (d / 2)²`` for a disc, ``d²`` for a square bin."""
    return float(diameter_um) ** 2 if square else math.pi * (float(diameter_um) / 2.0) ** 2


def spot_scales(params: CompartmentParams, x_um: np.ndarray, y_um: np.ndarray
                ) -> tuple[CompartmentParams, dict[str, float]]:
    """Replace the automatic (0) compartment scales by the spot rule of :data:`SPOT_SCALES`.

    Each scale left at 0 becomes ``max(multiple · s^power, reference)`` with s the spot spacing
    and the reference of the cell rule; the automatic pixel is moreover at least
    ``sqrt(extent area / MAX_PIXELS)``. Returns the completed parameters and the scales used
    (with ``median_nn_um``, the spot spacing s). A scale the user set is kept.
    """
    spacing = median_nn_distance(x_um, y_um)
    values = {}
    for name, (multiple, power) in SPOT_SCALES.items():
        given = float(getattr(params, name))
        floor = REFERENCE_SCALES[name][0] if name in REFERENCE_SCALES else 0.0
        values[name] = given if given > 0 else max(multiple * spacing**power, floor)
    if params.grid_um <= 0 and len(x_um):
        extent = (float(np.ptp(x_um)) + 1.0) * (float(np.ptp(y_um)) + 1.0)
        values["grid_um"] = max(values["grid_um"], float(np.sqrt(extent / MAX_PIXELS)))
    return replace(params, **values), {"median_nn_um": spacing, **values}  # type: ignore[arg-type]


def spot_compartments(x_um: np.ndarray, y_um: np.ndarray, tumour_weight: np.ndarray,
                      immune_weight: np.ndarray, other_weight: np.ndarray,
                      params: CompartmentParams | None = None,
                      annotation: Sequence[shapely.Geometry] | None = None
                      ) -> CompartmentResult:
    """Tumour region, lesions, signed distance and compartment of every spot.

    Parameters
    ----------
    x_um, y_um
        Spot centres, µm, shape (n,).
    tumour_weight, immune_weight, other_weight
        Per spot, the summed proportion (or abundance) of tumour, immune and other types.
    params
        ``[compartments]`` parameters; scales left at 0 follow :func:`spot_scales`.
    annotation
        Tumour polygons in µm replacing the detection (as for cells).

    Returns
    -------
    CompartmentResult
        As :func:`metaniche.analyses.compartments.assign_compartments`, one entry per spot.
        Areas in ``areas`` are tissue-raster areas (the tissue the spots cover).
    """
    params = params or CompartmentParams()
    x_um = np.asarray(x_um, dtype=np.float64)
    y_um = np.asarray(y_um, dtype=np.float64)
    t_w, i_w, o_w = (np.asarray(w, dtype=np.float64) for w in (tumour_weight, immune_weight,
                                                              other_weight))
    params, scales = spot_scales(params, x_um, y_um)
    margin = params.tissue_radius_um + params.tissue_closing_um + 4 * params.smoothing_um \
        + params.grid_um
    grid = Grid.covering(x_um, y_um, params.grid_um, margin)
    tissue = tissue_mask(x_um, y_um, grid, params.tissue_radius_um, params.tissue_closing_um)
    if annotation is not None:
        tumor = tumor_mask_from_polygons(annotation, grid)
    else:
        sigma = params.smoothing_um / grid.pixel_um
        tumour = ndimage.gaussian_filter(grid.counts(x_um, y_um, t_w), sigma)
        rest = ndimage.gaussian_filter(grid.counts(x_um, y_um, o_w + params.immune_weight * i_w),
                                       sigma)
        total = t_w + i_w + o_w
        floor = 0.01 * max(float(np.mean(grid.counts(x_um, y_um, total)[tissue])), 1e-6) \
            if tissue.any() else 1e-6
        fraction = tumour / (tumour + rest + floor)
        threshold = params.tumor_fraction or isodata_threshold(fraction[tissue])
        tumor = _clean_tumor_mask((fraction > threshold) & tissue, tissue, grid, params)
    lesion_labels = _label_lesions(tumor)
    pixel_sd, nearest_lesion = _signed_distance_field(tumor, tissue, lesion_labels, grid)
    sd = ndimage.map_coordinates(pixel_sd, grid.continuous_index(x_um, y_um), order=1,
                                 mode="nearest").astype(np.float64)
    row, col = grid.cell_index(x_um, y_um)
    lesion = nearest_lesion[row, col].astype(np.int64)
    present = bool(tumor.any())
    if not present or not (tissue & ~tumor).any():
        sd[:] = np.nan
    compartment = compartment_of(sd, params.border_um, tumor_present=present)
    pixel_codes = compartment_codes(pixel_sd, params.border_um, tumor_present=present)
    result = CompartmentResult(sd, compartment, lesion,
                               _compartment_areas(pixel_codes, tissue, nearest_lesion, grid),
                               _lesion_table(lesion_labels, grid), grid, tissue, tumor,
                               lesion_labels, pixel_sd, nearest_lesion, scales=scales)
    result.warnings.extend(w.replace("cells", "spots") for w in _geometry_warnings(
        result, x_um, y_um, t_w > 0.5 * (t_w + i_w + o_w), params, annotation))
    return result


def _group_sums(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, n_types) sums of ``values`` rows per group code (codes < 0 ignored)."""
    keep = groups >= 0
    matrix = sp.csr_matrix((np.ones(int(keep.sum())), (groups[keep], np.flatnonzero(keep))),
                           shape=(n_groups, len(groups)))
    return np.asarray(matrix @ values)


def _long(sums: np.ndarray, cells: np.ndarray | None, n_spots: np.ndarray, area_mm2: float,
          types: list[str]) -> dict[str, np.ndarray]:
    """Long columns (group-major, type-minor) of a grouped composition."""
    n_groups, n_types = sums.shape
    totals = sums.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        proportion = np.where(totals > 0, sums / totals, np.nan)
    area = np.repeat(n_spots * area_mm2, n_types)
    n_cells = cells.ravel() if cells is not None else np.full(n_groups * n_types, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        density = np.where(area > 0, n_cells / np.where(area > 0, area, 1), np.nan)
    return {"cell_type": np.tile(np.asarray(types, dtype=object), n_groups),
            "n_spots": np.repeat(n_spots, n_types).astype(np.int64), "n_cells": n_cells,
            "area_mm2": area, "density_per_mm2": density, "proportion": proportion.ravel()}


def spot_composition(spots: SpotData, compartment: np.ndarray, lesion_id: np.ndarray
                     ) -> pd.DataFrame:
    """Composition per lesion × compartment and for the whole sample (rules: module docstring).

    Returns
    -------
    pandas.DataFrame
        ``lesion_id`` (nullable; null = whole sample), ``compartment`` (core, border,
        adjacent, ``all``), ``cell_type``, ``n_spots``, ``n_cells`` (NaN when cells per spot
        are unknown), ``area_mm2`` (spots × spot area), ``density_per_mm2``, ``proportion``.
    """
    codes = pd.Categorical(compartment, categories=list(COMPARTMENTS)).codes.astype(np.int64)
    lesion_id = np.asarray(lesion_id, dtype=np.int64)
    n_lesions = int(lesion_id.max()) if lesion_id.size else 0
    k = len(COMPARTMENTS)
    area_mm2 = spots.area_um2 * 1e-6
    cells = spots.cell_values
    frames = []
    # per lesion × compartment (lesion 0 = no tumour: only in the whole-sample rows)
    group = np.where(lesion_id > 0, (lesion_id - 1) * k + codes, -1)
    if n_lesions:
        n_groups = n_lesions * k
        columns = _long(_group_sums(spots.values, group, n_groups),
                        None if cells is None else _group_sums(cells, group, n_groups),
                        np.bincount(group[group >= 0], minlength=n_groups), area_mm2,
                        spots.types)
        frames.append(pd.DataFrame({
            "lesion_id": np.repeat(np.arange(1, n_lesions + 1), k * len(spots.types)),
            "compartment": np.tile(np.repeat(np.asarray(COMPARTMENTS, dtype=object),
                                             len(spots.types)), n_lesions), **columns}))
    whole = np.concatenate([codes, np.full(len(codes), k)])   # every spot once more in "all"
    values = np.vstack([spots.values, spots.values])
    cell_values = None if cells is None else np.vstack([cells, cells])
    columns = _long(_group_sums(values, whole, k + 1),
                    None if cell_values is None else _group_sums(cell_values, whole, k + 1),
                    np.bincount(whole, minlength=k + 1), area_mm2, spots.types)
    frames.append(pd.DataFrame({
        "lesion_id": 0, "compartment": np.repeat(np.asarray([*COMPARTMENTS, WHOLE],
                                                            dtype=object), len(spots.types)),
        **columns}))
    table = pd.concat(frames, ignore_index=True)
    table["lesion_id"] = table["lesion_id"].astype("Int64").mask(table["lesion_id"] == 0)
    return table


def band_edges_um(min_um: float, max_um: float, bin_um: float, spacing_um: float
                  ) -> np.ndarray:
    """Edges of the spot gradient bands (µm): multiples ``k·h`` of the width
    ``h = max(bin_um, spacing_um)``, so that one edge is the tumour boundary (0), from the
    largest multiple at or below ``min_um`` to the smallest at or above ``max_um``."""
    width = max(float(bin_um), float(spacing_um))
    low = math.floor(min_um / width + 1e-9)
    high = max(math.ceil(max_um / width - 1e-9), low + 1)
    return width * np.arange(low, high + 1, dtype=np.float64)


def spot_gradients(spots: SpotData, signed_distance_um: np.ndarray, lesion_id: np.ndarray,
                   edges_um: np.ndarray) -> pd.DataFrame:
    """Per-type composition in bands ``[a, b)`` of signed distance, per lesion and in total.

    Returns
    -------
    pandas.DataFrame
        ``lesion_id`` (null = whole sample), ``cell_type``, ``bin_start_um``, ``bin_end_um``,
        then the columns of :func:`spot_composition` (``n_spots``, ``n_cells``, ``area_mm2``,
        ``density_per_mm2``, ``proportion``) for the spots of the band. Spots with a NaN
        distance or outside the bands are not counted.
    """
    sd = np.asarray(signed_distance_um, dtype=np.float64)
    lesion_id = np.asarray(lesion_id, dtype=np.int64)
    n_bins = len(edges_um) - 1
    band = np.full(len(sd), -1, dtype=np.int64)
    ok = np.isfinite(sd) & (sd >= edges_um[0]) & (sd < edges_um[-1])
    band[ok] = np.clip(np.searchsorted(edges_um, sd[ok], side="right") - 1, 0, n_bins - 1)
    n_lesions = int(lesion_id.max()) if lesion_id.size else 0
    area_mm2 = spots.area_um2 * 1e-6
    cells = spots.cell_values
    frames = []
    for lesion in range(0, n_lesions + 1):      # 0 = whole sample (a handful of lesions)
        group = band if lesion == 0 else np.where(lesion_id == lesion, band, -1)
        columns = _long(_group_sums(spots.values, group, n_bins),
                        None if cells is None else _group_sums(cells, group, n_bins),
                        np.bincount(group[group >= 0], minlength=n_bins), area_mm2,
                        spots.types)
        frames.append(pd.DataFrame({
            "lesion_id": lesion,
            "cell_type": columns.pop("cell_type"),
            "bin_start_um": np.repeat(edges_um[:-1], len(spots.types)),
            "bin_end_um": np.repeat(edges_um[1:], len(spots.types)), **columns}))
    table = pd.concat(frames, ignore_index=True)
    table["lesion_id"] = table["lesion_id"].astype("Int64").mask(table["lesion_id"] == 0)
    return table


def spot_neighbours(x_um: np.ndarray, y_um: np.ndarray, spacing_um: float | None = None
                    ) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency of spots whose centres lie within ``1.2 s`` (``<=``; s the
    spot spacing, :func:`metaniche.analyses.compartments.median_nn_distance` by default)."""
    x_um, y_um = np.asarray(x_um, np.float64), np.asarray(y_um, np.float64)
    s = median_nn_distance(x_um, y_um) if spacing_um is None else float(spacing_um)
    pairs = cKDTree(np.column_stack([x_um, y_um])).query_pairs(
        NEIGHBOUR_RADIUS_FACTOR * s, output_type="ndarray")
    n = len(x_um)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))


def spot_colocalisation(values: np.ndarray, types: Sequence[str], adjacency: sp.csr_matrix,
                        n_permutations: int = 199, seed: int = 0) -> pd.DataFrame:
    """Co-localisation of deconvolved types over neighbouring spots (see module docstring).

    Parameters
    ----------
    values
        (n_spots, n_types) proportions or abundances.
    types
        Type names.
    adjacency
        Symmetric 0/1 spot graph without self-loops (:func:`spot_neighbours`).
    n_permutations
        Spot permutations for sd, z and p (0: z and p NaN).
    seed
        Seed of the permutations: one generator per permutation from
        ``np.random.SeedSequence(seed).spawn(n_permutations)``.

    Returns
    -------
    pandas.DataFrame
        One row per ordered pair of types: ``type_a``, ``type_b``, ``observed``,
        ``expected`` (closed form), ``ratio`` (observed / expected), ``z``, ``p``,
        ``n_edges`` (directed), ``n_permutations``.
    """
    values = np.asarray(values, dtype=np.float64)
    n, n_types = values.shape
    adjacency = sp.csr_matrix(adjacency)
    n_edges = float(adjacency.sum())
    observed = values.T @ (adjacency @ values)
    totals = values.sum(axis=0)
    self_products = values.T @ values
    expected = (n_edges * (np.outer(totals, totals) - self_products) / (n * (n - 1))
                if n > 1 else np.full((n_types, n_types), np.nan))
    z = np.full((n_types, n_types), np.nan)
    p = np.full((n_types, n_types), np.nan)
    if n_permutations > 0 and n > 1:
        deviation = np.abs(observed - expected)
        sum_sq = np.zeros((n_types, n_types))
        exceed = np.zeros((n_types, n_types))
        for child in np.random.SeedSequence(seed).spawn(n_permutations):
            order = np.random.default_rng(child).permutation(n)
            shuffled = values[order]
            null = shuffled.T @ (adjacency @ shuffled)
            sum_sq += (null - expected) ** 2
            exceed += np.abs(null - expected) >= deviation - 1e-12 * np.maximum(deviation, 1)
        sd = np.sqrt(sum_sq / n_permutations)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(sd > 0, (observed - expected) / sd, np.nan)
        p = (exceed + 1) / (n_permutations + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(expected > 0, observed / expected, np.nan)
    names = np.asarray(list(types), dtype=object)
    return pd.DataFrame({
        "type_a": np.repeat(names, n_types), "type_b": np.tile(names, n_types),
        "observed": observed.ravel(), "expected": expected.ravel(), "ratio": ratio.ravel(),
        "z": z.ravel(), "p": p.ravel(), "n_edges": int(n_edges),
        "n_permutations": int(n_permutations)})


def sample_spot_compartments(cells: pd.DataFrame, x_um: np.ndarray, y_um: np.ndarray,
                             spots: SpotData, tumour_types: Sequence[str],
                             immune_types: Sequence[str], config: Config,
                             annotation: Sequence[shapely.Geometry] | None = None
                             ) -> CompartmentResult:
    """Compartments of one spot sample as the pipeline runs them.

    The tumour region comes from ``annotation`` when given; else, with ``[compartments]
    region = "tissue_category"``, from the spots whose ``[spots] region`` value is one of
    ``[spots] tumor_regions`` (any case); else from the tumour types' proportions (tumour
    types: ``[cell_types] tumor`` applied to the deconvolved type names; immune types are
    weighted by ``[spots] immune_weight``). With ``[spots] region`` and ``tumor_regions`` set,
    the agreement of inside/outside tumour with the region labels is Cohen's kappa
    (:func:`metaniche.analyses.compartments.region_agreement`) over the spots with a label.

    Raises
    ------
    InputError
        ``[spots] region`` names a column the spots do not have.
    """
    params = config.spots
    types = np.asarray(spots.types, dtype=object)
    is_tumour = np.isin(types, list(tumour_types))
    is_immune = np.isin(types, list(immune_types)) & ~is_tumour
    values = spots.values
    t_w = values[:, is_tumour].sum(axis=1)
    i_w = values[:, is_immune].sum(axis=1)
    o_w = values.sum(axis=1) - t_w - i_w
    notes: list[str] = []
    in_region = known = None
    if params.region:
        if params.region not in cells.columns:
            shown = ", ".join(map(str, cells.columns[:12]))
            raise InputError(f"[spots] region = '{params.region}' is not a column of the spots "
                             f"(columns: {shown}, …); set it to the per-spot region column.")
        labels = cells[params.region]
        known = labels.notna().to_numpy()
        wanted = {r.casefold() for r in params.tumor_regions}
        in_region = labels.astype(str).str.strip().str.casefold().isin(wanted).to_numpy()
    from_region = (config.compartments.region == "tissue_category" and annotation is None)
    if from_region:
        if in_region is None or not params.tumor_regions:
            raise InputError("[compartments] region = 'tissue_category' on spots needs [spots] "
                             "region (the per-spot region column) and tumor_regions (its "
                             "tumour values); set both, or region = 'cells'.")
        t_w = in_region.astype(np.float64)
        i_w = np.zeros(len(t_w))
        o_w = 1.0 - t_w
    elif annotation is None and not is_tumour.any():
        notes.append(f"no deconvolved type matched the tumour labels; types present: "
                     f"{', '.join(spots.types)}; set [cell_types] tumor to the tumour type(s). "
                     "Without tumour every spot is 'adjacent'.")
    compartment_params = replace(config.compartments, immune_weight=params.immune_weight)
    result = spot_compartments(x_um, y_um, t_w, i_w, o_w, compartment_params, annotation)
    result.warnings[:0] = notes
    if in_region is not None and known is not None and params.tumor_regions:
        inside = np.where(np.isnan(result.signed_distance_um), bool(result.tumor.any()),
                          result.signed_distance_um < 0)
        result.region_agreement_kappa = region_agreement(inside[known], in_region[known])
    return result


def proportion_gradient_statistics(gradients: pd.DataFrame, window_um: float,
                                   confidence: float = 0.95) -> pd.DataFrame:
    """Trend of every type's mean proportion across the border, per lesion and in total.

    For a type t and the bands whose centre c_k satisfies ``|c_k| <= window_um``, the
    (quasi-)binomial GLM of :func:`metaniche.analyses.states.state_trend_test` with the summed
    proportion ``Σ_{i∈k} p_it`` as successes out of ``n_spots_k`` trials:
    ``logit p_k = b0 + b_out·[c_k > 0] + b1·|c_k| / 100``. The slope b1 is the change of the
    log odds of the type's proportion per 100 µm farther from the edge (negative = rising
    toward the edge); Pearson dispersion above the threshold of the state trends makes it
    quasi-binomial (spots' proportions are not Bernoulli draws, so this is the usual case).
    Needs no cells-per-spot assumption. Spots with abundances use their shares of the band's
    cells (``proportion`` column) in the same way.

    Returns
    -------
    pandas.DataFrame
        ``lesion_id`` (null = whole sample), ``cell_type``, ``n_spots`` (in the window),
        ``slope_per_100um`` (log odds), ``ci_low``, ``ci_high``, ``p``, ``model``,
        ``dispersion``.
    """
    from metaniche.analyses.states import state_trend_test

    columns = ["lesion_id", "cell_type", "n_spots", "slope_per_100um", "ci_low", "ci_high",
               "p", "model", "dispersion"]
    centre = 0.5 * (gradients["bin_start_um"].to_numpy() + gradients["bin_end_um"].to_numpy())
    window = gradients[np.abs(centre) <= window_um + 1e-9]
    rows = []
    for (lesion, cell_type), group in window.groupby(["lesion_id", "cell_type"], dropna=False,
                                                     sort=False):
        mid = 0.5 * (group["bin_start_um"].to_numpy() + group["bin_end_um"].to_numpy())
        trials = group["n_spots"].to_numpy(np.float64)
        successes = np.nan_to_num(group["proportion"].to_numpy(np.float64)) * trials
        trend = state_trend_test(mid, successes, trials, confidence=confidence)
        rows.append({"lesion_id": lesion, "cell_type": cell_type, "n_spots": int(trials.sum()),
                     "slope_per_100um": trend.slope_per_100um, "ci_low": trend.ci_low,
                     "ci_high": trend.ci_high, "p": trend.p, "model": trend.model,
                     "dispersion": trend.dispersion})
    table = pd.DataFrame(rows, columns=columns)
    table["lesion_id"] = table["lesion_id"].astype("Int64")
    return table
