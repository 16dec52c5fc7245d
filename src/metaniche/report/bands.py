"""Distance bands of the gradient profiles as the report draws them: merged, pooled, masked.

A gradient bin's density is cells / band area, and the band area of a bin far from the
boundary (or of a thin sliver of tissue) can be a few µm²: one cell there reads as thousands
of cells per mm². The report therefore masks (does not draw) every displayed bin whose band
area is below :data:`MIN_BAND_AREA_MM2`; the full-resolution table
(``tables/gradients.parquet``) keeps every bin.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from metaniche.analyses.gradients import MIN_BAND_AREA_MM2

__all__ = ["MAX_DISPLAY_BINS", "MIN_BAND_AREA_MM2", "merge_bins", "pooled_profile"]


#: Gradient profiles are drawn with at most this many distance bins (adjacent bins merged).
MAX_DISPLAY_BINS = 40


def merge_bins(part: pd.DataFrame, start: str, end: str, max_bins: int,
               min_area_mm2: float = MIN_BAND_AREA_MM2) -> tuple[np.ndarray, np.ndarray]:
    """Merge runs of adjacent bins so at most ``max_bins`` remain: density = Σ cells / Σ area.

    Returns the merged bins' centres and densities (cells/mm²; NaN where the merged band area
    is below ``min_area_mm2``, default :data:`MIN_BAND_AREA_MM2`, or 0).
    """
    factor = max(1, -(-len(part) // max_bins))
    group = np.arange(len(part)) // factor
    n = np.bincount(group, weights=part["n_cells"].to_numpy(np.float64))
    area = np.bincount(group, weights=np.nan_to_num(part["area_mm2"].to_numpy(np.float64)))
    first = part[start].to_numpy(np.float64)[::factor]
    last = part[end].to_numpy(np.float64)[np.minimum(np.arange(len(n)) * factor + factor - 1,
                                                     len(part) - 1)]
    shown = (area > 0) & (area >= min_area_mm2)
    with np.errstate(invalid="ignore", divide="ignore"):
        density = np.where(shown, n / np.where(shown, area, 1.0), np.nan)
    return (first + last) / 2, density


def pooled_profile(cells: np.ndarray, area: np.ndarray, n_boot: int = 400, level: float = 0.95,
                   seed: int = 0, min_area_mm2: float = MIN_BAND_AREA_MM2,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled density of a group of samples per bin with a bootstrap-over-samples interval.

    Parameters
    ----------
    cells, area
        (n_samples, n_bins) cell counts and band areas (mm²) of each sample's bins.
    n_boot
        Bootstrap resamples of the samples (with replacement).
    level
        Confidence level of the percentile interval.
    seed
        Seed of the resampling.
    min_area_mm2
        Bins whose pooled area is below this are NaN (masked).

    Returns
    -------
    density, low, high
        (n_bins,) pooled density Σ cells / Σ area (cells/mm²) and its percentile interval;
        NaN where masked. With one sample the interval is NaN.
    """
    cells = np.asarray(cells, dtype=np.float64)
    area = np.nan_to_num(np.asarray(area, dtype=np.float64))
    total_area = area.sum(axis=0)
    shown = (total_area > 0) & (total_area >= min_area_mm2)
    with np.errstate(invalid="ignore", divide="ignore"):
        density = np.where(shown, cells.sum(axis=0) / np.where(shown, total_area, 1.0), np.nan)
    n = cells.shape[0]
    if n < 2:
        nan = np.full_like(density, np.nan)
        return density, nan, nan
    picks = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    weights = np.zeros((n_boot, n))
    np.add.at(weights, (np.arange(n_boot)[:, None], picks), 1.0)
    boot_cells = weights @ cells
    boot_area = weights @ area
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = np.where(boot_area > 0, boot_cells / np.where(boot_area > 0, boot_area, 1.0),
                        np.nan)
    tail = (1 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        low, high = np.nanpercentile(boot, [tail, 100 - tail], axis=0)
    return density, np.where(shown, low, np.nan), np.where(shown, high, np.nan)
