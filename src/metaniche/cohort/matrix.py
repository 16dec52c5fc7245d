"""The cohort feature matrix: numeric features per sample, joined to the clinical table.

:func:`feature_matrix` turns ``features.parquet`` (one row per sample) into a float matrix:
non-finite values become missing, low-cardinality string features (``phenotype``) become 0/1
indicators, and features that are missing everywhere, (near-)constant or exact copies of an
earlier column are dropped with a recorded reason. A feature missing in some samples is kept:
each test uses the samples that have it (and says how many), and the prediction model leaves
out features finite in fewer than ``[cohort] min_non_missing`` of the units. None of these
filters looks at an outcome, so they cannot leak outcome information into cross-validation.

:func:`join_clinical` joins the clinical table by ``sample`` (or by ``patient`` when the clinical
table has one row per patient) and :func:`patient_means` aggregates several images of a
patient to their mean, the independent unit for rank tests, Cox models and prediction.
:func:`sample_patients` is the one rule for the patient of each sample: the clinical table's
patient column when it has one row per sample, else the cell table's ``[columns] patient``
(column :data:`PATIENT` of the features), else the sample itself.
:func:`response_contrast` reads the response column as two groups (any two-level condition).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from metaniche.config import ClinicalColumns, CohortParams
from metaniche.errors import InputError
from metaniche.io.clinical import (
    ContrastUnavailable,
    ResponseContrast,
    response_contrast,
)

__all__ = ["PATIENT", "CohortData", "ContrastUnavailable", "FeatureMatrix", "ResponseContrast",
           "feature_matrix", "feature_patients", "join_clinical", "patient_means",
           "response_contrast", "sample_patients"]

#: Column of ``features.parquet`` holding each sample's patient id (from the cell table's
#: ``[columns] patient``); not a feature.
PATIENT = "patient"


@dataclass
class FeatureMatrix:
    """Numeric per-sample features and the columns that were dropped.

    Attributes
    ----------
    values : pandas.DataFrame
        Index ``sample`` (str); one float column per kept feature, NaN where missing.
    dropped : pandas.DataFrame
        ``feature``, ``reason`` (``non-numeric``, ``missing`` (no finite value),
        ``constant``, ``duplicate of <feature>``).
    """

    values: pd.DataFrame
    dropped: pd.DataFrame


@dataclass
class CohortData:
    """Features and clinical columns on the same samples.

    Attributes
    ----------
    features : pandas.DataFrame
        Index ``sample``; float feature columns.
    clinical : pandas.DataFrame
        Index ``sample`` (same order); ``patient`` (str) plus every clinical column.
    warnings : list of str
        Clinical rows without features and similar non-fatal mismatches.
    """

    features: pd.DataFrame
    clinical: pd.DataFrame
    warnings: list[str]


def feature_matrix(features: pd.DataFrame, params: CohortParams,
                   exclude: tuple[str, ...] = ()) -> FeatureMatrix:
    """Numeric feature matrix of ``features.parquet`` with outcome-free filters.

    Parameters
    ----------
    features
        One row per sample: a ``sample`` column and the named features.
    params
        ``min_variance`` (variance of the finite values must exceed it; population
        variance, ddof = 0) and ``max_levels``
        (string columns with at most this many distinct values become indicators
        ``<name>.<level>``, 1.0 where equal, NaN where the string is missing).
    exclude
        Columns that are not features besides ``sample`` and :data:`PATIENT`.

    Returns
    -------
    FeatureMatrix
        Kept columns in input order (indicators where their string column was); an exact
        duplicate of an earlier kept column (equal values and missingness) is dropped.

    Raises
    ------
    InputError
        No ``sample`` column or repeated sample ids.
    """
    if "sample" not in features.columns:
        raise InputError("features table has no 'sample' column; pass features.parquet as "
                         "written by the pipeline (one row per sample).")
    samples = features["sample"].astype(str)
    if samples.duplicated().any():
        first = samples[samples.duplicated()].iloc[0]
        raise InputError(f"features table has more than one row for sample '{first}'; keep one "
                         "row per sample.")
    columns: dict[str, np.ndarray] = {}
    dropped: list[tuple[str, str]] = []
    for name in features.columns:
        if name in ("sample", PATIENT) or name in exclude:
            continue
        column = features[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan)
            values[~np.isfinite(values)] = np.nan
            columns[str(name)] = values
            continue
        levels = sorted(column.dropna().astype(str).unique())
        if not 1 <= len(levels) <= params.max_levels:
            dropped.append((str(name), "non-numeric"))
            continue
        present = column.notna().to_numpy()
        for level in levels:
            columns[f"{name}.{level}"] = np.where(
                present, (column.astype(str) == level).to_numpy(np.float64), np.nan)
    kept: dict[str, np.ndarray] = {}
    seen: dict[bytes, str] = {}
    n = len(features)
    for name, values in columns.items():
        finite = np.isfinite(values)
        if n == 0 or not finite.any():
            dropped.append((name, "missing"))
            continue
        if not np.var(values[finite]) > params.min_variance:
            dropped.append((name, "constant"))
            continue
        key = np.where(finite, values, np.inf).tobytes()
        if key in seen:
            dropped.append((name, f"duplicate of {seen[key]}"))
            continue
        seen[key] = name
        kept[name] = values
    values = pd.DataFrame(kept, index=pd.Index(samples.to_numpy(), name="sample"))
    return FeatureMatrix(values, pd.DataFrame(dropped, columns=["feature", "reason"]))


def join_clinical(values: pd.DataFrame, clinical: pd.DataFrame, columns: ClinicalColumns,
                  patients: pd.Series | None = None) -> CohortData:
    """Join features (index ``sample``) with the clinical table, by sample or by patient.

    Parameters
    ----------
    values
        Feature matrix, index ``sample``.
    clinical
        With a ``sample`` column: one row per sample (as :func:`metaniche.io.read_clinical`
        returns). Without one: one row per patient, keyed by ``columns.patient``, and
        ``patients`` must map each feature sample to its patient.
    columns
        Clinical column names.
    patients
        Patient id per sample (index ``sample``), e.g. from a ``patient`` column of the
        features; used when the clinical table has no ``sample`` column or no patient column.

    Returns
    -------
    CohortData
        Samples present in both, in feature order; ``patient`` is the clinical patient column,
        else ``patients``, else the sample id (one patient per sample).

    Raises
    ------
    InputError
        A feature sample (or its patient) has no clinical row; no sample in common; patient
        ids missing when joining by patient.
    """
    warnings: list[str] = []
    samples = values.index.astype(str)
    if "sample" in clinical.columns:
        table = clinical.copy()
        table["sample"] = table["sample"].astype(str)
        if table["sample"].duplicated().any():
            first = table.loc[table["sample"].duplicated(), "sample"].iloc[0]
            raise InputError(f"clinical table has more than one row for sample '{first}'; keep "
                             "one row per sample.")
        table = table.set_index("sample")
        missing = samples[~samples.isin(table.index)]
        if len(missing):
            raise InputError(
                f"clinical table has no row for {len(missing)} of {len(samples)} samples "
                f"({_examples(missing)}; clinical ids look like {_examples(table.index)}); add "
                "their rows or check that the sample ids are spelled the same in both.")
        extra = table.index[~table.index.isin(samples)]
        if len(extra):
            warnings.append(f"{len(extra)} clinical rows have no features and were ignored "
                            f"({_examples(extra)}).")
        table = table.loc[samples]
        of_sample, notes = sample_patients(samples, table.reset_index(), columns, patients)
        warnings.extend(notes)
        if columns.patient in table.columns and columns.patient != "patient":
            table = table.drop(columns=["patient"], errors="ignore")
            table = table.rename(columns={columns.patient: "patient"})
        table["patient"] = of_sample.to_numpy()
    else:
        key = columns.patient
        if key not in clinical.columns:
            raise InputError(f"clinical table has neither a 'sample' nor a '{key}' column "
                             f"(columns: {', '.join(map(str, clinical.columns[:12]))}); add "
                             "one or set [clinical] sample/patient in the config.")
        known = None if patients is None else patients.reindex(samples)
        if known is None or known.isna().all():
            raise InputError(f"clinical table is keyed by '{key}' but the features carry no "
                             "patient id; set [columns] patient to the cell table's patient "
                             f"column (e.g. patient = \"{key}\") so that each sample gets "
                             "its patient, or give the clinical table a 'sample' column.")
        if known.isna().any():
            lost = samples[known.isna().to_numpy()]
            raise InputError(f"{len(lost)} of {len(samples)} samples have no patient id "
                             f"({_examples(lost)}), so the clinical table keyed by '{key}' "
                             "cannot be joined to them; fill in the [columns] patient column "
                             "of their cells.")
        table = clinical.copy()
        table[key] = table[key].astype(str)
        if table[key].duplicated().any():
            first = table.loc[table[key].duplicated(), key].iloc[0]
            raise InputError(f"clinical table has more than one row for patient '{first}'; "
                             "keep one row per patient or add a 'sample' column.")
        table = table.set_index(key)
        of_sample = known.astype(str)
        unknown = of_sample[~of_sample.isin(table.index)]
        if len(unknown):
            raise InputError(
                f"clinical table has no row for patient(s) {_examples(unknown.unique())} of "
                f"{len(unknown)} samples; add their rows or check the patient ids.")
        table = table.loc[of_sample.to_numpy()].reset_index(names="patient")
        table.index = pd.Index(samples, name="sample")
    table.index.name = "sample"
    table["patient"] = table["patient"].astype(str)
    return CohortData(values.loc[samples], table, warnings)


def feature_patients(features: pd.DataFrame) -> pd.Series | None:
    """Patient id per sample (index ``sample``) from the :data:`PATIENT` column of the
    features, None when there is no such column; missing ids stay missing."""
    if PATIENT not in features.columns or "sample" not in features.columns:
        return None
    ids = [None if pd.isna(v) else str(v) for v in features[PATIENT]]
    return pd.Series(ids, index=pd.Index(features["sample"].astype(str).to_numpy(),
                                         name="sample"), dtype=object, name=PATIENT)


def sample_patients(samples: pd.Index, clinical: pd.DataFrame | None,
                    columns: ClinicalColumns,
                    patients: pd.Series | None = None) -> tuple[pd.Series, list[str]]:
    """The patient of each sample, and warnings where the sources disagree.

    Parameters
    ----------
    samples
        Sample ids.
    clinical
        Clinical table or None. When it has a ``sample`` column and the patient column
        (``columns.patient``), its non-missing ids win; a per-patient table (no ``sample``
        column) maps nothing by itself.
    columns
        Clinical column names.
    patients
        Patient id per sample from the cell table (index ``sample``, e.g.
        :func:`feature_patients`); used where the clinical table gives none.

    Returns
    -------
    (pandas.Series, list of str)
        Patient id (str) per sample, index ``samples``; a sample with no id from either
        source is its own patient. One warning naming the samples whose clinical and
        cell-table ids differ (the clinical id is used).
    """
    samples = pd.Index(samples).astype(str)
    result = samples.to_numpy(dtype=object).copy()
    cells = np.full(len(samples), None, dtype=object)
    if patients is not None:
        known = patients.reindex(samples).to_numpy(dtype=object)
        has = ~pd.isna(known)
        cells[has] = [str(v) for v in known[has]]
    result[cells != None] = cells[cells != None]  # noqa: E711 (elementwise)
    warnings: list[str] = []
    if (clinical is not None and "sample" in clinical.columns
            and columns.patient in clinical.columns):
        rows = clinical.dropna(subset=[columns.patient]).drop_duplicates("sample")
        mapping = dict(zip(rows["sample"].astype(str), _as_id(rows[columns.patient]),
                           strict=True))
        chosen = np.array([mapping.get(s) for s in samples], dtype=object)
        has = chosen != None  # noqa: E711 (elementwise)
        differ = has & (cells != None) & (chosen != cells)  # noqa: E711
        if differ.any():
            shown = ", ".join(f"'{s}': '{c}' in the clinical table, '{p}' in the cells"
                              for s, c, p in list(zip(samples[differ], chosen[differ],
                                                      cells[differ], strict=True))[:3])
            more = ", …" if differ.sum() > 3 else ""
            warnings.append(f"the clinical table and the cell table's [columns] patient give "
                            f"different patients for {int(differ.sum())} samples ({shown}"
                            f"{more}); the clinical table's ids are used.")
        result[has] = chosen[has]
    return pd.Series(result, index=samples, dtype=object).astype(str), warnings


def _as_id(values: pd.Series) -> np.ndarray:
    """Ids as text, integral floats (``3.0`` from a column with gaps) without the ``.0``."""
    if pd.api.types.is_float_dtype(values.dtype):
        finite = values.to_numpy()
        if np.all(np.isfinite(finite)) and np.all(finite == np.round(finite)):
            values = values.astype("Int64")
    return values.astype(str).to_numpy(dtype=object)


def patient_means(values: pd.DataFrame, patient: pd.Series) -> pd.DataFrame:
    """Mean of each feature over a patient's samples (NaN ignored); index ``patient``."""
    grouped = values.groupby(patient.reindex(values.index).to_numpy(), sort=False)
    means = grouped.mean()
    means.index.name = "patient"
    return means


def _examples(ids: pd.Index | np.ndarray, k: int = 3) -> str:
    shown = [f"'{v}'" for v in list(ids)[:k]]
    return ", ".join(shown) + (", …" if len(ids) > k else "")
