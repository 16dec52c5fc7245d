"""Liver zonation: position of host-tissue cells on the portal→central axis of the lobule.

For a point outside tumour with Euclidean distances ``d_p`` to the nearest portal landmark cell
(portal vein / bile duct) and ``d_c`` to the nearest central-vein cell, the zonation coordinate
is ``eta = d_p / (d_p + d_c)`` in [0, 1]: 0 on a portal tract, 1 on a central vein, ½ halfway.
This is the distance-ratio lobule coordinate of spatial liver atlases [1]_ [2]_. Cells use
exact KD-tree distances to the landmark cells; tissue pixels (for areas) use Euclidean distance
transforms of the rasterised landmark cells (distance from a pixel centre to the nearest pixel
holding a landmark cell, error ≤ pixel·√2/2).

Densities per eta bin are cells over the tissue area in that bin (tissue pixels × pixel area),
for two subsets: ``outside`` (signed distance d > 0, i.e. all host tissue; the whole tissue when
the sample has no tumour) and ``beyond_border`` (d > ``beyond_um``, default the border
half-width) so that tumour-edge biology does not confound zonation. Bins are ``[a, b)`` on
[0, 1] with eta = 1 in the last bin.

Portal vs central enrichment per type compares the periportal zone (eta < 1/3) with the
pericentral zone (eta > 2/3): ``portal_fraction = D_p / (D_p + D_c)`` (0.5 = no preference),
``log2_ratio = log2(D_p / D_c)``, and an exact conditional test of equal Poisson rates: given
``n = n_p + n_c`` cells, ``n_p ~ Binomial(n, A_p / (A_p + A_c))`` under equal densities,
two-sided binomial p (scipy ``binomtest``; Przyborowski & Wilenski [3]_).

Complexity: O(n_cells log n_landmarks + n_pixels).

References
----------
.. [1] Halpern K.B. et al. (2017) Single-cell spatial reconstruction reveals global division of
   labour in the mammalian liver. Nature 542:352–356.
.. [2] Guilliams M. et al. (2022) Spatial proteogenomics reveals distinct and evolutionarily
   conserved hepatic macrophage niches. Cell 185:379–396.
.. [3] Przyborowski J., Wilenski H. (1940) Homogeneity of results in testing samples from
   Poisson series. Biometrika 31:313–323.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage, stats
from scipy.spatial import cKDTree

from metaniche.config import ZonationParams
from metaniche.tables import ZONATION_BEYOND_BORDER, ZONATION_OUTSIDE

__all__ = [
    "PERICENTRAL_MIN_ETA",
    "PERIPORTAL_MAX_ETA",
    "ZonationResult",
    "landmark_distance_field_um",
    "zonation",
    "zonation_coordinate",
    "zonation_enrichment",
    "zonation_profiles",
]

#: Periportal zone: eta strictly below this.
PERIPORTAL_MAX_ETA = 1.0 / 3.0
#: Pericentral zone: eta strictly above this.
PERICENTRAL_MIN_ETA = 2.0 / 3.0


def zonation_coordinate(d_portal_um: np.ndarray, d_central_um: np.ndarray) -> np.ndarray:
    """``eta = d_p / (d_p + d_c)``; NaN where a distance is infinite/NaN or both are 0."""
    dp = np.asarray(d_portal_um, dtype=np.float64)
    dc = np.asarray(d_central_um, dtype=np.float64)
    total = dp + dc
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(np.isfinite(total) & (total > 0), dp / np.where(total > 0, total, 1.0),
                       np.nan)
    return eta


def landmark_distance_field_um(landmark_x_um: np.ndarray, landmark_y_um: np.ndarray,
                               grid) -> np.ndarray:
    """Distance (µm) from every pixel centre to the nearest pixel holding a landmark cell.

    ``grid`` is a :class:`metaniche.analyses._raster.Grid`. Infinite everywhere without
    landmarks. Exact Euclidean distance transform, O(n_pixels).
    """
    if len(landmark_x_um) == 0:
        return np.full(grid.shape, np.inf)
    occupied = grid.counts(np.asarray(landmark_x_um), np.asarray(landmark_y_um)) > 0
    return ndimage.distance_transform_edt(~occupied, sampling=grid.pixel_um)


def _eta_bin(eta: np.ndarray, n_bins: int) -> np.ndarray:
    index = np.floor(eta * n_bins)
    index = np.where(eta == 1.0, n_bins - 1, index)
    return np.where(np.isfinite(index), index, -1).astype(np.int64)


def zonation_profiles(eta_cells: np.ndarray, type_codes: np.ndarray,
                      cell_types: Sequence[str], cell_subsets: dict[str, np.ndarray],
                      eta_pixels: np.ndarray, pixel_subsets: dict[str, np.ndarray],
                      pixel_area_mm2: float, n_bins: int) -> pd.DataFrame:
    """Cells, area and density of every type per eta bin, for each named subset.

    Parameters
    ----------
    eta_cells
        Per-cell eta (NaN = not counted).
    type_codes, cell_types
        Per-cell index into the labels.
    cell_subsets, pixel_subsets
        Same keys: boolean masks of the cells / tissue pixels (flattened) in each subset.
    eta_pixels
        Per-pixel eta, same shape as the pixel masks.
    pixel_area_mm2
        Area of one pixel.
    n_bins
        Equal-width bins on [0, 1].

    Returns
    -------
    pandas.DataFrame
        ``subset``, ``cell_type``, ``eta_start``, ``eta_end``, ``n_cells``, ``area_mm2``,
        ``density_per_mm2`` (NaN where the bin has no area).
    """
    n_types = len(cell_types)
    codes = np.asarray(type_codes, dtype=np.int64)
    cell_bin = _eta_bin(np.asarray(eta_cells, dtype=np.float64), n_bins)
    pixel_bin = _eta_bin(np.asarray(eta_pixels, dtype=np.float64), n_bins)
    starts = np.arange(n_bins) / n_bins
    frames = []
    for subset, cell_mask in cell_subsets.items():
        ok = cell_mask & (cell_bin >= 0)
        counts = np.bincount(codes[ok] * n_bins + cell_bin[ok],
                             minlength=n_types * n_bins).reshape(n_types, n_bins)
        px = pixel_subsets[subset] & (pixel_bin >= 0)
        area = np.bincount(pixel_bin[px], minlength=n_bins) * pixel_area_mm2
        with np.errstate(divide="ignore", invalid="ignore"):
            density = np.where(area > 0, counts / np.where(area > 0, area, 1.0), np.nan)
        frames.append(pd.DataFrame({
            "subset": subset,
            "cell_type": np.repeat(np.asarray(cell_types, dtype=object), n_bins),
            "eta_start": np.tile(starts, n_types),
            "eta_end": np.tile(starts + 1.0 / n_bins, n_types),
            "n_cells": counts.ravel(),
            "area_mm2": np.tile(area, n_types),
            "density_per_mm2": density.ravel(),
        }))
    return pd.concat(frames, ignore_index=True)


def zonation_enrichment(eta_cells: np.ndarray, type_codes: np.ndarray,
                        cell_types: Sequence[str], cell_subsets: dict[str, np.ndarray],
                        eta_pixels: np.ndarray, pixel_subsets: dict[str, np.ndarray],
                        pixel_area_mm2: float) -> pd.DataFrame:
    """Periportal (eta < 1/3) vs pericentral (eta > 2/3) density of every type per subset.

    Returns
    -------
    pandas.DataFrame
        ``subset``, ``cell_type``, ``n_periportal``, ``n_pericentral``, ``area_periportal_mm2``,
        ``area_pericentral_mm2``, ``density_periportal_per_mm2``,
        ``density_pericentral_per_mm2``, ``portal_fraction`` (D_p / (D_p + D_c)),
        ``log2_ratio`` (log2 D_p / D_c; ±inf when one is zero), ``p`` (exact conditional
        binomial test, two-sided; NaN without cells or area). See the module docstring.
    """
    codes = np.asarray(type_codes, dtype=np.int64)
    eta = np.asarray(eta_cells, dtype=np.float64)
    eta_px = np.asarray(eta_pixels, dtype=np.float64)
    n_types = len(cell_types)
    rows = []
    for subset, cell_mask in cell_subsets.items():
        portal = cell_mask & (eta < PERIPORTAL_MAX_ETA)
        central = cell_mask & (eta > PERICENTRAL_MIN_ETA)
        n_p = np.bincount(codes[portal], minlength=n_types)
        n_c = np.bincount(codes[central], minlength=n_types)
        px = pixel_subsets[subset]
        area_p = float(np.sum(px & (eta_px < PERIPORTAL_MAX_ETA))) * pixel_area_mm2
        area_c = float(np.sum(px & (eta_px > PERICENTRAL_MIN_ETA))) * pixel_area_mm2
        for code, cell_type in enumerate(cell_types):
            dens_p = n_p[code] / area_p if area_p > 0 else math.nan
            dens_c = n_c[code] / area_c if area_c > 0 else math.nan
            total = dens_p + dens_c
            fraction = dens_p / total if total > 0 else math.nan
            with np.errstate(divide="ignore", invalid="ignore"):
                log2 = float(np.log2(np.float64(dens_p) / np.float64(dens_c))) if (
                    total > 0) else math.nan
            n = int(n_p[code] + n_c[code])
            p = (stats.binomtest(int(n_p[code]), n, area_p / (area_p + area_c)).pvalue
                 if n > 0 and area_p > 0 and area_c > 0 else math.nan)
            rows.append({"subset": subset, "cell_type": cell_type,
                         "n_periportal": int(n_p[code]), "n_pericentral": int(n_c[code]),
                         "area_periportal_mm2": area_p, "area_pericentral_mm2": area_c,
                         "density_periportal_per_mm2": dens_p,
                         "density_pericentral_per_mm2": dens_c, "portal_fraction": fraction,
                         "log2_ratio": log2, "p": float(p)})
    return pd.DataFrame(rows)


@dataclass
class ZonationResult:
    """Output of :func:`zonation`.

    Attributes
    ----------
    eta
        Per-cell zonation coordinate (NaN inside tumour or without both landmark kinds).
    profiles
        :func:`zonation_profiles` table.
    enrichment
        :func:`zonation_enrichment` table.
    """

    eta: np.ndarray
    profiles: pd.DataFrame
    enrichment: pd.DataFrame


def zonation(x_um: np.ndarray, y_um: np.ndarray, type_codes: np.ndarray,
             cell_types: Sequence[str], signed_distance_um: np.ndarray,
             is_portal: np.ndarray, is_central: np.ndarray, grid, tissue: np.ndarray,
             pixel_signed_distance_um: np.ndarray, beyond_um: float,
             n_bins: int = ZonationParams.n_bins) -> ZonationResult:
    """Zonation coordinate of host cells, density per eta bin and portal/central enrichment.

    Parameters
    ----------
    x_um, y_um
        Cell coordinates, µm.
    type_codes, cell_types
        Per-cell index into the labels.
    signed_distance_um
        Per-cell signed distance to the tumour (NaN when the sample has no tumour: then every
        cell is host tissue).
    is_portal, is_central
        Per-cell masks of the landmark cells.
    grid, tissue, pixel_signed_distance_um
        Raster geometry, tissue mask and signed-distance raster of the compartments.
    beyond_um
        Signed-distance threshold (µm) of the ``beyond_border`` subset (d > beyond_um).
    n_bins
        Number of eta bins.

    Returns
    -------
    ZonationResult
        Empty tables (and all-NaN eta) when either landmark kind is absent.
    """
    x = np.asarray(x_um, dtype=np.float64)
    y = np.asarray(y_um, dtype=np.float64)
    portal, central = np.asarray(is_portal, bool), np.asarray(is_central, bool)
    eta = np.full(x.size, np.nan)
    if not (portal.any() and central.any()):
        empty = pd.DataFrame()
        return ZonationResult(eta, empty, empty)
    points = np.column_stack([x, y])
    d_portal, _ = cKDTree(points[portal]).query(points, workers=-1)
    d_central, _ = cKDTree(points[central]).query(points, workers=-1)
    sd = np.asarray(signed_distance_um, dtype=np.float64)
    no_tumor = bool(np.all(np.isnan(sd)))
    host = np.ones(x.size, bool) if no_tumor else sd > 0
    eta = np.where(host, zonation_coordinate(d_portal, d_central), np.nan)
    eta_px = zonation_coordinate(landmark_distance_field_um(x[portal], y[portal], grid),
                                 landmark_distance_field_um(x[central], y[central], grid))
    field = np.asarray(pixel_signed_distance_um)
    if no_tumor:
        px_host = tissue.copy()
        px_beyond = tissue.copy()
        beyond = np.ones(x.size, bool)
    else:
        px_host = tissue & (field > 0)
        px_beyond = tissue & (field > beyond_um)
        beyond = sd > beyond_um
    cell_subsets = {ZONATION_OUTSIDE: host, ZONATION_BEYOND_BORDER: beyond & host}
    pixel_subsets = {ZONATION_OUTSIDE: px_host, ZONATION_BEYOND_BORDER: px_beyond}
    profiles = zonation_profiles(eta, type_codes, cell_types, cell_subsets, eta_px,
                                 pixel_subsets, grid.pixel_area_mm2, n_bins)
    enrichment = zonation_enrichment(eta, type_codes, cell_types, cell_subsets, eta_px,
                                     pixel_subsets, grid.pixel_area_mm2)
    return ZonationResult(eta, profiles, enrichment)
