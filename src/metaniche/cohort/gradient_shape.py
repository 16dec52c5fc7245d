"""Pooled gradients per group, and a test that the *shape* of a gradient differs between groups.

The per-sample gradient (``tables/gradients.parquet``: cells and band area per bin of signed
distance to the tumour boundary) answers "how does density change across the border" for
one sample. Across a cohort two questions follow: what is the group's gradient (pooled), and
does its shape differ between groups — e.g. responders' CD8 T cells rising into the core while
non-responders' stop at the border — beyond a difference of level (more cells everywhere),
which the per-compartment density features already test.

Pooled gradient (:func:`pooled_group_gradients`): per group, cell type and bin,
Σ cells / Σ band area over the group's samples (:func:`metaniche.analyses.gradients.
pool_gradients`), cells/mm².

Shape test (:func:`gradient_shape_table`), the band × group interaction of a two-way layout:

1. Unit profiles. The unit is the patient when patients have several samples (their counts
   and areas are summed per bin), else the sample. Adjacent bins are merged into at most
   ``max_bands`` bands (cells and areas summed). Bands where some unit has less than
   ``min_area_mm2`` of tissue are left out (a sliver of band area makes the density noise),
   so every unit is compared over the same distances.
2. Each unit's profile is ``y_ub = log((n_ub + 0.5) / A_ub)`` (log cells/mm²; the 0.5 keeps
   empty bands finite), centred by its own mean over the bands: ``ỹ_ub = y_ub − ȳ_u``. The
   centring removes each unit's level, so only the shape is left: with centred profiles the
   group main effect is zero and a group difference is the band × group interaction.
3. Statistic: the pointwise one-way ANOVA F of the centred profiles across the groups,
   integrated over the band centres (the whole-curve statistic of
   :mod:`metaniche.cohort.curves`, Górecki & Smaga 2015), and its permutation p-value over
   the units' group labels (``n_permutations`` permutations, ``seed``). The permutation keeps
   the bands of a unit together, so dependence between a unit's bands is respected; the test
   is exact under exchangeability of the units.

A Poisson/NB GLM ``n ~ band × group + unit + offset(log A)`` would test the same hypothesis
parametrically; the permutation test needs no dispersion model and holds its size with few
patients, which is the usual case here.

Cost: O(units × bands × permutations) after one pass over the gradient table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metaniche.analyses.gradients import (
    MIN_BAND_AREA_MM2,
    merge_adjacent_bins,
    pool_gradients,
)
from metaniche.cohort.curves import curve_anova_permutation

__all__ = ["MAX_SHAPE_BANDS", "gradient_shape_table", "pooled_group_gradients",
           "unit_band_profiles"]

#: Bands of the shape test: adjacent gradient bins are merged down to at most this many.
MAX_SHAPE_BANDS = 12


def _whole_sample(gradients: pd.DataFrame) -> pd.DataFrame:
    if "lesion_id" in gradients.columns:
        return gradients[gradients["lesion_id"].isna()]
    return gradients


def pooled_group_gradients(gradients: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """The pooled gradient of every group (Σ cells / Σ band area over its samples).

    Parameters
    ----------
    gradients
        ``tables/gradients`` of the run (``sample``, ``lesion_id``, ``cell_type``,
        ``bin_start_um``, ``bin_end_um``, ``n_cells``, ``area_mm2``); whole-sample rows
        (null ``lesion_id``) are used.
    labels
        Group per sample (index: sample); samples without a group are left out.

    Returns
    -------
    pandas.DataFrame
        ``group``, then :func:`metaniche.analyses.gradients.pool_gradients`'s columns
        (``cell_type``, ``bin_start_um``, ``bin_end_um``, ``n_cells``, ``area_mm2``,
        ``density_per_mm2``, ``n_samples``).

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"sample": ["a", "b"], "lesion_id": [None, None],
    ...                      "cell_type": ["CD8_T"] * 2, "bin_start_um": [0.0, 0.0],
    ...                      "bin_end_um": [20.0, 20.0], "n_cells": [3, 5],
    ...                      "area_mm2": [0.1, 0.1]})
    >>> pooled_group_gradients(rows, pd.Series({"a": "R", "b": "R"}))["density_per_mm2"]
    0    40.0
    Name: density_per_mm2, dtype: float64
    """
    whole = _whole_sample(gradients)
    group = whole["sample"].astype(str).map(labels.dropna().astype(str))
    parts = [pool_gradients(part).assign(group=name)
             for name, part in whole[group.notna()].groupby(group[group.notna()], sort=True)]
    if not parts:
        return pd.DataFrame()
    pooled = pd.concat(parts, ignore_index=True)
    return pooled[["group", *[c for c in pooled.columns if c != "group"]]]


def unit_band_profiles(gradients: pd.DataFrame, cell_type: str, unit: pd.Series,
                       max_bands: int = MAX_SHAPE_BANDS,
                       min_area_mm2: float = MIN_BAND_AREA_MM2,
                       ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Cells and band areas of one cell type per unit and band (module docstring, step 1).

    Parameters
    ----------
    gradients
        The run's gradient table (whole-sample rows are used).
    cell_type
        The type whose profile is built.
    unit
        Unit (patient or sample) of every sample (index: sample).
    max_bands, min_area_mm2
        Merge to at most this many bands; keep bands where every unit has this much area.

    Returns
    -------
    cells, area, start_um, end_um
        ``cells`` units × kept bands (DataFrame, index: unit), ``area`` the matching band
        areas (mm², ndarray), and the kept bands' start and end (µm).
    """
    rows = _whole_sample(gradients)
    rows = rows[rows["cell_type"].astype(str) == cell_type]
    owner = rows["sample"].astype(str).map(unit.astype(str))
    rows = rows[owner.notna()].assign(unit=owner[owner.notna()])
    empty = (pd.DataFrame(), np.empty((0, 0)), np.empty(0), np.empty(0))
    if rows.empty:
        return empty
    cells = rows.pivot_table(index="unit", columns="bin_start_um", values="n_cells",
                             aggfunc="sum", fill_value=0.0)
    # a sample's band area is one value per bin; a patient's is the sum over its samples
    area = (rows.drop_duplicates(["sample", "bin_start_um"])
            .pivot_table(index="unit", columns="bin_start_um", values="area_mm2",
                         aggfunc="sum", fill_value=0.0).reindex_like(cells).fillna(0.0))
    starts = cells.columns.to_numpy(np.float64)
    ends = (rows.groupby("bin_start_um")["bin_end_um"].first().reindex(starts)
            .to_numpy(np.float64))
    bands = merge_adjacent_bins(starts, ends, max_bands)
    band_cells, band_area = bands.sum(cells.to_numpy()), bands.sum(area.to_numpy())
    band_start, band_end = bands.start_um, bands.end_um
    keep = np.all(band_area >= min_area_mm2, axis=0) & np.all(band_area > 0, axis=0)
    return (pd.DataFrame(band_cells[:, keep], index=cells.index), band_area[:, keep],
            band_start[keep], band_end[keep])


def gradient_shape_table(gradients: pd.DataFrame, labels: pd.Series,
                         patient: pd.Series | None = None, n_permutations: int = 999,
                         seed: int = 0, min_group: int = 3, max_bands: int = MAX_SHAPE_BANDS,
                         min_area_mm2: float = MIN_BAND_AREA_MM2) -> pd.DataFrame:
    """Band × group test of every cell type's gradient shape (module docstring).

    Parameters
    ----------
    gradients
        The run's gradient table.
    labels
        Group per sample (index: sample), NaN unknown.
    patient
        Patient per sample; when some patient has several samples, the unit is the patient
        (counts and areas summed per band).
    n_permutations, seed
        Permutations of the units' labels and the seed of their generator.
    min_group
        Fewest units per group for a test (else NaN).
    max_bands, min_area_mm2
        See :func:`unit_band_profiles`.

    Returns
    -------
    pandas.DataFrame
        Per cell type: ``feature`` = ``gradient_shape.<cell_type>``, ``test`` =
        ``gradient_shape_permutation``, ``statistic`` (integrated F), ``p``, ``effect`` NaN,
        ``effect_name`` = ``integrated_f``, ``n`` (units), ``unit`` (``patient`` or
        ``sample``), ``n_bands``, ``from_um``, ``to_um`` (the distances compared).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> rows = []
    >>> for s in range(12):
    ...     slope = 1.0 if s < 6 else -1.0          # group R rises into the core, N falls
    ...     for k, start in enumerate(range(-100, 100, 20)):
    ...         mu = 50 * np.exp(slope * (k - 5) / 5)
    ...         rows.append((f"s{s}", None, "CD8_T", float(start), start + 20.0,
    ...                      rng.poisson(mu), 0.1))
    >>> table = pd.DataFrame(rows, columns=["sample", "lesion_id", "cell_type",
    ...                                     "bin_start_um", "bin_end_um", "n_cells", "area_mm2"])
    >>> groups = pd.Series(["R"] * 6 + ["N"] * 6, index=[f"s{s}" for s in range(12)])
    >>> float(gradient_shape_table(table, groups, n_permutations=199)["p"].iloc[0]) < 0.01
    True
    """
    if gradients is None or gradients.empty:
        return pd.DataFrame()
    samples = labels.dropna().index.astype(str)
    unit_name = "sample"
    unit = pd.Series(samples, index=samples)
    if patient is not None:
        owners = patient.reindex(samples)
        if owners.notna().all() and owners.duplicated().any():
            unit, unit_name = owners.astype(str), "patient"
    unit_labels = (labels.reindex(samples).astype(str).groupby(unit.to_numpy()).first())
    rows = []
    for cell_type in sorted(_whole_sample(gradients)["cell_type"].astype(str).unique()):
        cells, area, start, end = unit_band_profiles(gradients, cell_type, unit, max_bands,
                                                     min_area_mm2)
        base = {"feature": f"gradient_shape.{cell_type}", "test": "gradient_shape_permutation",
                "statistic": np.nan, "p": np.nan, "effect": np.nan,
                "effect_name": "integrated_f", "n": len(cells), "unit": unit_name,
                "n_bands": len(start),
                "from_um": float(start[0]) if len(start) else np.nan,
                "to_um": float(end[-1]) if len(end) else np.nan}
        group = unit_labels.reindex(cells.index)
        counts = group.value_counts()
        if len(start) >= 2 and len(counts) >= 2 and counts.min() >= min_group:
            profile = np.log((cells.to_numpy(np.float64) + 0.5) / area)
            centred = profile - profile.mean(axis=1, keepdims=True)
            centre = (start + end) / 2
            statistic, p = curve_anova_permutation(centred, group.to_numpy(), centre,
                                                   n_permutations, seed)
            base |= {"statistic": statistic, "p": p}
        rows.append(base)
    return pd.DataFrame(rows)
