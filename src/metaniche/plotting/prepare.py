"""The data each figure shows, prepared once for the report and for ``metaniche.pl``.

The report's sample-page charts are hand-written SVG (:mod:`metaniche.report.svg`, for size
and speed) and ``metaniche.pl`` draws with matplotlib, but both show what these functions
return, from the same long tables (``tables/*.parquet`` of a run, or ``uns["metaniche"]`` of
an AnnData written by ``metaniche.tl`` or read back by ``metaniche.read_run``):

- composition: whole-sample rows, cell types in sorted order, compartments core, border,
  adjacent (:func:`composition_grid`), drawn on a log density scale;
- gradients: bins merged to at most :data:`MAX_DISPLAY_BINS`, bins whose band area is below
  :data:`MIN_BAND_AREA_MM2` masked (:func:`gradient_panels`);
- neighbourhood enrichment: types in sorted order, the null model labelled ``sample`` when
  several were run, colour limit :func:`enrichment_limit` (:func:`enrichment_grid`);
- the cohort overview: effector densities per compartment (:func:`effector_densities`), the
  outcome groups (:func:`outcome_groups`) and the pooled gradient of each group with its
  bootstrap interval (:func:`gradient_profiles`).

Gradient bins: a bin's density is cells / band area, and the band area of a bin far from the
boundary (or of a thin sliver of tissue) can be a few µm²: one cell there reads as thousands
of cells per mm². Displayed bins whose band area is below :data:`MIN_BAND_AREA_MM2` are
therefore masked (not drawn); the full-resolution table (``tables/gradients.parquet``) keeps
every bin.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from metaniche import roles
from metaniche.analyses.compartments import COMPARTMENTS, WHOLE
from metaniche.analyses.gradients import MIN_BAND_AREA_MM2, merge_adjacent_bins
from metaniche.config import ClinicalColumns, Config, PhenotypeParams, time_unit_of

__all__ = ["MAX_DISPLAY_BINS", "MIN_BAND_AREA_MM2", "MIN_POOLED_SAMPLES",
           "MIN_SAMPLE_SHARE", "OVERLAY_BINS", "composition_grid",
           "effector_densities", "effector_labels", "enrichment_grid", "enrichment_limit",
           "gradient_intervals", "gradient_panels", "gradient_profiles", "grids", "merge_bins",
           "outcome_groups", "phenotype_params", "pooled_profile", "preferred",
           "survival_time_unit", "whole_sample"]


#: Gradient profiles are drawn with at most this many distance bins (adjacent bins merged).
MAX_DISPLAY_BINS = 40

#: Gradient overlay of the cohort: bins merged to at most this many for the pooled curves.
OVERLAY_BINS = 25


# --- long tables to grids --------------------------------------------------------------------
def whole_sample(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows covering the whole sample (null lesion_id) when the table has lesion rows."""
    if "lesion_id" in rows.columns:
        return rows[rows["lesion_id"].isna()]
    return rows


def preferred(values: pd.Series, wanted: str) -> str | None:
    """``wanted`` when it occurs in ``values``, else the first value (None when empty)."""
    present = list(pd.unique(values.dropna().astype(str)))
    if not present:
        return None
    return wanted if wanted in present else present[0]


def grids(rows: pd.DataFrame, index: str, columns: str, values: list[str],
          labels: list | None = None) -> dict[str, pd.DataFrame]:
    """Several wide tables over the same ``index × columns`` grid (NaN where no row).

    Row and column labels are sorted (as text) unless ``labels`` gives them (for both axes,
    in that order); where two rows share a cell the first wins. Built with NumPy.
    """
    row_labels = labels if labels is not None else sorted(rows[index].dropna().unique(), key=str)
    col_labels = labels if labels is not None else sorted(rows[columns].dropna().unique(),
                                                          key=str)
    i = pd.Index(row_labels).get_indexer(rows[index])
    j = pd.Index(col_labels).get_indexer(rows[columns])
    keep = (i >= 0) & (j >= 0)
    i, j = i[keep][::-1], j[keep][::-1]  # reversed so the first row is written last and wins
    out = {}
    for value in values:
        matrix = np.full((len(row_labels), len(col_labels)), np.nan)
        matrix[i, j] = pd.to_numeric(rows[value], errors="coerce").to_numpy(np.float64)[
            keep][::-1]
        out[value] = pd.DataFrame(matrix, index=row_labels, columns=col_labels)
    return out


def composition_grid(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Whole-sample density (cells/mm²) and cell count of every type per compartment.

    Parameters
    ----------
    rows
        One sample's composition table (``cell_type, compartment, n_cells,
        density_per_mm2``, optional ``lesion_id``).

    Returns
    -------
    dict
        ``"density_per_mm2"`` and ``"n_cells"``: cell type (sorted) × compartment, the
        compartments present among core, border, adjacent in that order, then ``all`` when
        present.
    """
    wide = grids(whole_sample(rows), "cell_type", "compartment",
                 ["density_per_mm2", "n_cells"])
    order = [c for c in (*COMPARTMENTS, WHOLE) if c in wide["density_per_mm2"].columns]
    return {name: frame.reindex(columns=order) for name, frame in wide.items()}


# --- gradients -------------------------------------------------------------------------------
def merge_bins(part: pd.DataFrame, start: str, end: str, max_bins: int,
               min_area_mm2: float = MIN_BAND_AREA_MM2) -> tuple[np.ndarray, np.ndarray]:
    """Merge runs of adjacent bins so at most ``max_bins`` remain: density = Σ cells / Σ area.

    Returns the merged bins' centres and densities (cells/mm²; NaN where the merged band area
    is below ``min_area_mm2``, default :data:`MIN_BAND_AREA_MM2`, or 0).
    """
    bins = merge_adjacent_bins(part[start].to_numpy(np.float64),
                               part[end].to_numpy(np.float64), max_bins)
    n = bins.sum(part["n_cells"].to_numpy(np.float64))
    area = bins.sum(part["area_mm2"].to_numpy(np.float64))
    shown = (area > 0) & (area >= min_area_mm2)
    with np.errstate(invalid="ignore", divide="ignore"):
        density = np.where(shown, n / np.where(shown, area, 1.0), np.nan)
    return (bins.start_um + bins.end_um) / 2, density


def _merged_gradient(rows: pd.DataFrame | None, max_bins: int,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Types, bin centres (µm), cells and band areas (mm², 0 where masked) of the displayed
    bins of one sample's gradient table (see :func:`gradient_panels`), or None when empty."""
    if rows is None or rows.empty:
        return None
    whole = whole_sample(rows)
    if whole.empty:
        whole = rows[rows["lesion_id"] == rows["lesion_id"].min()]
    types, type_index = np.unique(whole["cell_type"].astype(str).to_numpy(), return_inverse=True)
    starts, bin_index = np.unique(whole["bin_start_um"].to_numpy(np.float64),
                                  return_inverse=True)
    ends = np.zeros(len(starts))
    ends[bin_index] = whole["bin_end_um"].to_numpy(np.float64)
    cells = np.zeros((len(types), len(starts)))
    area = np.zeros_like(cells)
    np.add.at(cells, (type_index, bin_index),
              np.nan_to_num(whole["n_cells"].to_numpy(np.float64)))
    np.add.at(area, (type_index, bin_index),
              np.nan_to_num(whole["area_mm2"].to_numpy(np.float64)))
    bins = merge_adjacent_bins(starts, ends, max_bins)
    n, merged_area = bins.sum(cells), bins.sum(area)
    shown = (merged_area > 0) & (merged_area >= MIN_BAND_AREA_MM2)
    return types, (bins.start_um + bins.end_um) / 2, n, np.where(shown, merged_area, 0.0)


def gradient_panels(rows: pd.DataFrame, max_bins: int = MAX_DISPLAY_BINS,
                    ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(cell type, bin centres µm, density cells/mm²)`` of every type with cells.

    Parameters
    ----------
    rows
        One sample's gradient table (``cell_type, bin_start_um, bin_end_um, n_cells,
        area_mm2``, optional ``lesion_id``): its whole-sample rows, or the first lesion's when
        there is none.
    max_bins
        Bins merged to at most this many (:func:`merge_bins`; masked below
        :data:`MIN_BAND_AREA_MM2`).

    Returns
    -------
    list
        One panel per cell type in sorted order; types whose merged density is all zero or
        masked are left out.

    Notes
    -----
    Every type of a gradient table has the same bins, so the types are laid out as one
    (types × bins) grid and merged together (:func:`merge_bins`' rule and masking, one
    :func:`~metaniche.analyses.gradients.merge_adjacent_bins` for all): a bin a type lacks
    counts as no cells and no area. A loop of :func:`merge_bins` over the types took about
    5 ms per report page.
    """
    merged = _merged_gradient(rows, max_bins)
    if merged is None:
        return []
    types, centre, n, area = merged
    with np.errstate(invalid="ignore", divide="ignore"):
        density = np.where(area > 0, n / np.where(area > 0, area, 1.0), np.nan)
    return [(str(t), centre, density[k]) for k, t in enumerate(types)
            if np.nansum(density[k]) > 0]


def gradient_intervals(rows: pd.DataFrame, max_bins: int = MAX_DISPLAY_BINS,
                       level: float = 0.95) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Exact Poisson confidence interval of every displayed gradient bin, cells/mm².

    For the n cells of a type counted in a bin of band area A (mm², the bins of
    :func:`gradient_panels`), the central ``level`` interval of the rate λ in
    n ~ Poisson(λ·A): ``[χ²(α/2; 2n) / 2A, χ²(1 − α/2; 2n + 2) / 2A]`` with α = 1 − level
    (Garwood 1936; R's ``poisson.test``; statsmodels' ``confint_poisson`` method
    ``"exact-c"``, which computes it here). The lower limit is 0 when n = 0. It treats the
    cells of a bin as a Poisson count given the bin's area: the counting noise a density
    of a rare type carries in a thin band, not the variation between regions or samples
    (the cohort overlay's bootstrap over samples is that).

    Parameters
    ----------
    rows
        One sample's gradient table, as :func:`gradient_panels` takes it.
    max_bins
        Bins merged to at most this many, as there.
    level
        Confidence level (default 0.95).

    Returns
    -------
    dict
        ``{cell type: (low, high)}`` for the types :func:`gradient_panels` returns, arrays
        aligned with its bin centres; NaN where the bin is masked.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"cell_type": "CD8_T", "bin_start_um": [0.0], "bin_end_um": [25.0],
    ...                      "n_cells": [3], "area_mm2": [0.5]})
    >>> low, high = gradient_intervals(rows)["CD8_T"]
    >>> round(float(low[0]), 3), round(float(high[0]), 3)
    (1.237, 17.535)
    """
    from statsmodels.stats.rates import confint_poisson

    merged = _merged_gradient(rows, max_bins)
    if merged is None:
        return {}
    types, _, n, area = merged
    shown = area > 0
    low = np.full(n.shape, np.nan)
    high = np.full(n.shape, np.nan)
    if shown.any():
        low[shown], high[shown] = confint_poisson(n[shown], area[shown], method="exact-c",
                                                  alpha=1.0 - level)
    return {str(t): (low[k], high[k]) for k, t in enumerate(types)
            if np.nansum(np.where(shown[k], n[k], 0.0)) > 0}


#: A pooled gradient bin is drawn only when at least this share of the group's samples (and
#: at least :data:`MIN_POOLED_SAMPLES`) have tissue in it: far from the boundary only a few
#: large or odd-shaped samples reach, and their pooled density is theirs, not the group's.
MIN_SAMPLE_SHARE = 0.1
#: The least number of samples with tissue in a pooled bin (see :data:`MIN_SAMPLE_SHARE`).
MIN_POOLED_SAMPLES = 2


def pooled_profile(cells: np.ndarray, area: np.ndarray, n_boot: int = 400, level: float = 0.95,
                   seed: int = 0, min_area_mm2: float = MIN_BAND_AREA_MM2,
                   min_sample_share: float = MIN_SAMPLE_SHARE,
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
    min_sample_share
        Bins where fewer than ``max(MIN_POOLED_SAMPLES, ceil(min_sample_share · n))`` of the
        n samples have tissue (area > 0) are NaN (masked); with a single sample, that one.

    Returns
    -------
    density, low, high
        (n_bins,) pooled density Σ cells / Σ area (cells/mm²) and its percentile interval;
        NaN where masked. With one sample the interval is NaN.
    """
    cells = np.asarray(cells, dtype=np.float64)
    area = np.nan_to_num(np.asarray(area, dtype=np.float64))
    total_area = area.sum(axis=0)
    n_samples = area.shape[0]
    needed = min(n_samples, max(MIN_POOLED_SAMPLES, math.ceil(min_sample_share * n_samples)))
    shown = ((total_area > 0) & (total_area >= min_area_mm2)
             & ((area > 0).sum(axis=0) >= needed))
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


# --- neighbourhood enrichment ----------------------------------------------------------------
def enrichment_limit(z: np.ndarray) -> float:
    """Symmetric colour limit of an enrichment heatmap: the largest finite absolute z, clipped to
    [3, 20] (3 without a finite value), so a sample without structure is not painted as if
    it had some, and one extreme pair does not wash out the rest."""
    finite = np.abs(np.asarray(z, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    return float(np.clip(finite.max() if finite.size else 3.0, 3.0, 20.0))


def enrichment_grid(rows: pd.DataFrame) -> tuple[list[str], dict[str, pd.DataFrame], str]:
    """Type × type grids of one sample's enrichment table.

    Parameters
    ----------
    rows
        One sample's enrichment rows (``type_a, type_b, observed, expected, z, p``, optional
        ``null``).

    Returns
    -------
    types, grids, null
        The types (sorted, both axes), ``observed``, ``expected``, ``z`` and ``p`` grids
        (row type a, column type b) and the null model used (``sample`` when several were
        run; '' without a ``null`` column).
    """
    null = ""
    if "null" in rows.columns:
        chosen = preferred(rows["null"], "sample")
        if chosen is not None:
            rows = rows[rows["null"].astype(str) == chosen]
            null = chosen
    types = sorted({str(t) for t in rows["type_a"].dropna()}
                   | {str(t) for t in rows["type_b"].dropna()})
    rows = rows.assign(type_a=rows["type_a"].astype(str), type_b=rows["type_b"].astype(str))
    return types, grids(rows, "type_a", "type_b", ["observed", "expected", "z", "p"],
                        types), null


# --- the cohort overview ---------------------------------------------------------------------
def phenotype_params(config: Mapping[str, Any] | None) -> PhenotypeParams:
    """The ``[phenotype]`` parameters of a recorded configuration (run.json's ``config`` or
    ``uns["metaniche"]["config"]``); defaults where absent."""
    recorded = (config or {}).get("phenotype") or {}
    defaults = PhenotypeParams()
    effectors = recorded.get("effector_types")   # a list, or an array once stored in uns
    return PhenotypeParams(
        effector_types=tuple(str(t) for t in effectors) if effectors is not None else (),
        desert_max_per_mm2=float(recorded.get("desert_max_per_mm2",
                                               defaults.desert_max_per_mm2)),
        inflamed_min_core_border_ratio=float(recorded.get(
            "inflamed_min_core_border_ratio", defaults.inflamed_min_core_border_ratio)))


def survival_time_unit(config: Mapping[str, Any] | None) -> str:
    """The unit of the survival times under a recorded configuration:
    :func:`metaniche.config.time_unit_of` its ``[clinical] time_unit`` and ``os_time``
    (defaults where absent); ``""`` when neither says."""
    recorded = (config or {}).get("clinical") or {}
    return time_unit_of(str(recorded.get("time_unit", "") or ""),
                        str(recorded.get("os_time", ClinicalColumns.os_time)))


def effector_labels(config: Mapping[str, Any] | None, labels: Sequence[str]) -> list[str]:
    """The effector labels among ``labels`` under a recorded configuration
    (:func:`metaniche.roles.effector_types`), in the order of ``labels``."""
    wanted = set(roles.effector_types(list(labels), _phenotype_config(phenotype_params(config))))
    return [t for t in labels if t in wanted]


@functools.lru_cache(maxsize=8)
def _phenotype_config(params: PhenotypeParams) -> Config:
    """A default configuration with these ``[phenotype]`` parameters, built (and validated)
    once per distinct parameters rather than once per report page."""
    return Config(phenotype=params)


def effector_densities(composition: pd.DataFrame | None, config: Mapping[str, Any] | None,
                       ) -> tuple[pd.DataFrame, list[str]] | None:
    """Sample × compartment effector density (cells/mm²; effector types summed) and the types.

    Whole-sample rows of the composition table of every sample; a compartment without tissue
    area is NaN; columns core, border, adjacent. None without a composition table or effector
    cells.
    """
    if composition is None or composition.empty:
        return None
    rows = whole_sample(composition)
    types = effector_labels(config, sorted(rows["cell_type"].dropna().astype(str).unique()))
    if not types:
        return None
    picked = rows[rows["cell_type"].astype(str).isin(types)
                  & rows["compartment"].astype(str).isin(list(COMPARTMENTS))]
    picked = picked.assign(sample=picked["sample"].astype(str),
                           compartment=picked["compartment"].astype(str))
    cells = picked.pivot_table(index="sample", columns="compartment", values="n_cells",
                               aggfunc="sum", observed=True)
    area = picked.pivot_table(index="sample", columns="compartment", values="area_mm2",
                              aggfunc="first", observed=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        density = cells / area.where(area > 0)
    density = density.reindex(columns=list(COMPARTMENTS))
    density.index = density.index.astype(str)
    density.columns.name = "compartment"
    return density, types


def outcome_groups(clinical: pd.DataFrame | None, config: Mapping[str, Any] | None,
                   ) -> tuple[str, pd.Series] | None:
    """The response column's name and sample → label (string; missing → 'no outcome').

    ``clinical`` is the run's clinical table (``clinical.parquet``); its column names are
    the recorded ``[clinical]`` ones. None without a clinical table or response column.
    """
    if clinical is None:
        return None
    names = (config or {}).get("clinical") or {}
    sample_col = names.get("sample", ClinicalColumns.sample)
    response_col = names.get("response", ClinicalColumns.response)
    if sample_col not in clinical.columns or response_col not in clinical.columns:
        return None
    labels = clinical[response_col].astype("string").fillna("no outcome")
    groups = pd.Series(labels.to_numpy(), index=clinical[sample_col].astype(str))
    groups = groups[~groups.index.duplicated()]
    return response_col, groups


def gradient_profiles(gradients: pd.DataFrame | None, types: Sequence[str],
                      groups: pd.Series | None, max_bins: int = OVERLAY_BINS,
                      ) -> dict[str, Any] | None:
    """The pooled gradient of the ``types`` (summed) in each outcome group.

    Whole-sample gradient rows of every sample; bins merged to at most ``max_bins``; each
    group's density is Σ cells / Σ band area over its samples with a 95 % bootstrap interval
    over samples (:func:`pooled_profile`, masked below :data:`MIN_BAND_AREA_MM2` of pooled
    area or where fewer than :data:`MIN_SAMPLE_SHARE` of the group's samples have tissue).

    Returns
    -------
    dict or None
        ``centre`` (bin centres, µm), ``curves`` (group → (n samples, density, low, high)),
        ``per_sample`` (samples × bins, masked like the groups), ``sample_groups`` and
        ``bin_um``; None without gradient rows of the types.
    """
    if gradients is None or gradients.empty:
        return None
    rows = whole_sample(gradients)
    rows = rows[rows["cell_type"].astype(str).isin(list(types))]
    if rows.empty:
        return None
    rows = rows.assign(sample=rows["sample"].astype(str))
    cells = rows.pivot_table(index="sample", columns="bin_start_um", values="n_cells",
                             aggfunc="sum", observed=True).fillna(0.0)
    area = rows.pivot_table(index="sample", columns="bin_start_um", values="area_mm2",
                            aggfunc="first", observed=True).reindex_like(cells).fillna(0.0)
    starts = cells.columns.to_numpy(np.float64)
    width = float(np.median(np.diff(starts))) if len(starts) > 1 else 1.0
    bins = merge_adjacent_bins(starts, starts + width, max_bins)
    merged_cells, merged_area = bins.sum(cells.to_numpy()), bins.sum(area.to_numpy())
    first, last = bins.start_um, bins.end_um
    samples = cells.index.astype(str)
    labels = (groups.reindex(samples).fillna("no outcome").astype(str).to_numpy()
              if groups is not None else np.full(len(samples), "all samples"))
    curves = {}
    for label in sorted(set(labels)):
        member = labels == label
        curves[label] = (int(member.sum()), *pooled_profile(merged_cells[member],
                                                              merged_area[member]))
    with np.errstate(invalid="ignore", divide="ignore"):
        per_sample = np.where(merged_area >= MIN_BAND_AREA_MM2,
                              merged_cells / np.where(merged_area > 0, merged_area, 1.0), np.nan)
    return {"centre": (first + last) / 2, "curves": curves, "per_sample": per_sample,
            "sample_groups": labels, "bin_um": width * bins.factor}
