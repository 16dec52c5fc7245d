"""Lesion size against immune exclusion, pooled across the lesions and patients of a cohort.

The review's observation for liver metastases is that CD8 T cells reach the core of small
lesions but are held at the edge of large ones. Each sample's ``lesion_metrics`` table (one
row per lesion × infiltration type,
:func:`metaniche.analyses.lesion_metrics.lesion_metrics`) gives a lesion's size and its
exclusion; this module pools those rows over the samples, attaches the patient of each
sample, and tests the association with
:func:`metaniche.cohort.lesion_size.lesion_size_exclusion` (Spearman across lesions, and a linear
mixed model with a patient random intercept when a patient has several lesions).

Exclusion measures (outcomes), per lesion and infiltration type:

``relative_infiltration_depth``
    ``-infiltration_depth_um / R_eq`` with ``R_eq = equivalent_diameter_um / 2``: the median
    depth of the type's cells inside the lesion as a fraction of its equivalent radius (0 = at
    the edge, larger = deeper). Size-free under uniform infiltration: for a disc filled
    uniformly the median depth is ``(1 - 1/sqrt(2)) R ≈ 0.29 R`` at every size.
``core_border_ratio``
    Core over border density of the type (compartments of the lesion). Size-free under
    uniform infiltration too.
``infiltration_depth_um``
    The raw median signed distance (µm, negative). Reported for completeness, but it is *not*
    a size-free exclusion measure: uniformly infiltrated lesions have a median depth
    proportional to their radius, so it correlates negatively with size even without any
    exclusion. Interpret the two measures above.

References
----------
.. [1] Halama N. et al. (2011) Localization and density of immune cells in the invasive margin
   of human colorectal cancer liver metastases are prognostic for response to chemotherapy.
   Cancer Res 71:5670–5677.
.. [2] Laird N.M., Ware J.H. (1982) Random-effects models for longitudinal data. Biometrics
   38:963–974.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metaniche.cohort._qvalues import add_q_values
from metaniche.cohort.lesion_size import lesion_size_exclusion
from metaniche.cohort.matrix import sample_patients
from metaniche.config import ClinicalColumns
from metaniche.errors import InputError

__all__ = ["EXCLUSION_OUTCOMES", "LESION_EXCLUSION_COLUMNS", "lesion_exclusion_table",
           "pool_lesions"]

#: Exclusion measures tested against lesion size, in table order.
EXCLUSION_OUTCOMES = ("relative_infiltration_depth", "core_border_ratio",
                      "infiltration_depth_um")
#: Columns of :func:`lesion_exclusion_table`.
LESION_EXCLUSION_COLUMNS = ["cell_type", "feature", "outcome", "test", "statistic", "effect",
                            "ci_low", "ci_high", "p", "q", "n_lesions", "n_patients", "note"]

_REQUIRED = ("sample", "lesion_id", "cell_type", "area_mm2", "equivalent_diameter_um",
             "core_border_ratio", "infiltration_depth_um")


def pool_lesions(lesion_metrics: pd.DataFrame, clinical: pd.DataFrame | None = None,
                 columns: ClinicalColumns | None = None,
                 patients: pd.Series | None = None) -> pd.DataFrame:
    """Lesion rows of all samples with their patient and the relative infiltration depth.

    Parameters
    ----------
    lesion_metrics
        The gathered ``tables/lesion_metrics.parquet`` (``sample`` first, then the columns of
        :func:`metaniche.analyses.lesion_metrics.lesion_metrics`).
    clinical
        Clinical table or None.
    columns
        Clinical column names (default :class:`metaniche.config.ClinicalColumns`).
    patients
        Patient id per sample from the cell table's ``[columns] patient`` (index ``sample``;
        the ``patient`` column of the features), or None.

    Returns
    -------
    pandas.DataFrame
        The input rows plus ``patient`` (str; by
        :func:`metaniche.cohort.matrix.sample_patients`: the clinical table's patient of the
        sample when it has one row per sample, else the cell table's, else the sample itself)
        and ``relative_infiltration_depth`` (see the module docstring; NaN without cells
        inside or without area).

    Raises
    ------
    InputError
        When a required column is missing.
    """
    columns = columns or ClinicalColumns()
    missing = [name for name in _REQUIRED if name not in lesion_metrics.columns]
    if missing:
        raise InputError(f"tables/lesion_metrics.parquet lacks column(s) {missing}; re-run the "
                         "samples with this version (the border stage writes them).")
    table = lesion_metrics.copy()
    table["sample"] = table["sample"].astype(str)
    names = pd.Index(pd.unique(table["sample"]))
    of_sample, _ = sample_patients(names, clinical, columns, patients)
    table["patient"] = table["sample"].map(of_sample).astype(str)
    radius = pd.to_numeric(table["equivalent_diameter_um"], errors="coerce") / 2.0
    depth = pd.to_numeric(table["infiltration_depth_um"], errors="coerce")
    table["relative_infiltration_depth"] = np.where(radius > 0, -depth / radius.where(
        radius > 0, 1.0), np.nan)
    return table


def lesion_exclusion_table(lesion_metrics: pd.DataFrame, clinical: pd.DataFrame | None = None,
                           columns: ClinicalColumns | None = None,
                           patients: pd.Series | None = None,
                           size_column: str = "area_mm2",
                           outcomes: tuple[str, ...] = EXCLUSION_OUTCOMES) -> pd.DataFrame:
    """Association of lesion size with every exclusion measure, per infiltration type.

    Parameters
    ----------
    lesion_metrics, clinical, columns, patients
        As in :func:`pool_lesions`. The infiltration types are the ``cell_type`` values of
        the table, i.e. ``[gradients] infiltration_types`` (default: labels containing CD8).
    size_column
        ``area_mm2`` (default) or ``equivalent_diameter_um``; modelled as log10(size). The
        Spearman rho is the same for both (monotone); the mixed-model slope per tenfold
        diameter is twice that per tenfold area.
    outcomes
        Exclusion measures, default :data:`EXCLUSION_OUTCOMES`.

    Returns
    -------
    pandas.DataFrame
        :data:`LESION_EXCLUSION_COLUMNS`: per ``cell_type`` × ``outcome`` a ``spearman`` row
        (effect = rho, two-sided p) and a ``mixedlm`` row (REML fit of
        ``outcome ~ log10(size) + (1 | patient)``, effect = slope per tenfold size with 95 %
        CI and p from a t reference with n_patients - 2 df; NaN with a ``note`` unless >= 3
        patients and some patient has several lesions), from
        :func:`metaniche.cohort.lesion_size.lesion_size_exclusion`; lesions with a non-finite
        outcome or non-positive size are left out of that row's fit (``n_lesions``
        counts the rest). ``q``: Benjamini–Hochberg over the finite p of each test. Empty
        (with these columns) when there are no lesion rows.

    Notes
    -----
    A negative association of size with ``relative_infiltration_depth`` or
    ``core_border_ratio`` means larger lesions exclude the type more. Lesions of one patient
    are not independent; the Spearman p treats them as if they were, the mixed model does not.
    """
    pooled = pool_lesions(lesion_metrics, clinical, columns, patients)
    parts = []
    for cell_type, group in pooled.groupby("cell_type", sort=True):
        for outcome in outcomes:
            part = lesion_size_exclusion(group, size_column=size_column,
                                         exclusion_column=outcome, patient_column="patient")
            parts.append(part.assign(cell_type=str(cell_type)))
    if not parts:
        return pd.DataFrame(columns=LESION_EXCLUSION_COLUMNS)
    table = pd.concat(parts, ignore_index=True)
    return add_q_values(table, "test")[LESION_EXCLUSION_COLUMNS]
