"""Read the clinical table: one row per sample with outcomes and covariates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metaniche.config import Config
from metaniche.errors import InputError
from metaniche.io._tables import (
    file_format,
    find_column,
    format_rows,
    list_columns,
    read_parquet_table,
    read_text_table,
)

__all__ = ["read_clinical"]


def read_clinical(path: str | Path, config: Config) -> pd.DataFrame:
    """Read a clinical table (CSV/TSV/TXT, optionally gzipped, or Parquet).

    Parameters
    ----------
    path
        The table; one row per sample.
    config
        ``config.clinical.sample`` names the sample column (matched exactly, else
        case-insensitively when unique).

    Returns
    -------
    pandas.DataFrame
        The table with the sample column renamed to ``sample``, moved first and held as
        ``str`` (read as text, so ``007`` keeps its zeros); other columns unchanged, rows in
        file order. A table without the sample column but with the patient column
        (``config.clinical.patient``) is read as one row per patient: that column is kept
        under its own name, first, as ``str``, unique, and there is no ``sample`` column
        (:func:`metaniche.cohort.matrix.join_clinical` joins it through each sample's
        patient).

    Raises
    ------
    InputError
        Missing, unreadable, empty or unsupported file; no sample column; empty or
        repeated sample ids (named with their rows).
    """
    path = Path(path)
    want = config.clinical.sample
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise InputError(f"{path}: clinical table {what}; check the --clinical path.")
    kind, gz = file_format(path)
    if kind == "text":  # a TableError is an InputError
        raw = read_text_table(path, gz, (want, config.clinical.patient), what="clinical table")
    elif kind == "parquet":
        raw = read_parquet_table(path, what="clinical table")
    else:
        raise InputError(f"{path}: unsupported clinical table type (supported: .csv, .tsv, "
                         ".txt, optionally .gz, .parquet, .pq); export it as CSV.")
    frame = raw.frame
    col = find_column(frame.columns, want)
    patient = find_column(frame.columns, config.clinical.patient)
    per_patient = col is None and patient is not None
    if per_patient:
        col = patient  # one row per patient, keyed by the patient column
    if col is None:
        raise InputError(f"{path}: no column '{want}' for the sample id (columns found: "
                         f"{list_columns(frame.columns)}); rename it or set [clinical] "
                         "sample = \"…\" in the config.")
    values = frame[col]
    missing = values.isna().to_numpy()
    if pd.api.types.is_float_dtype(values.dtype) and not missing.all():
        finite = values.to_numpy()[~missing]
        if np.all(np.isfinite(finite)) and np.all(finite == np.round(finite)):
            values = values.astype("Int64")
    text = values.astype(object).where(~missing, "").astype(str)
    missing |= (text.str.strip() == "").to_numpy()
    rows = np.arange(len(frame)) + raw.row_base
    what = "patient" if per_patient else "sample"
    if missing.any():
        raise InputError(f"{path}: column '{col}' (the {what} id) is empty at "
                         f"{format_rows(rows[missing])}; fill in the sample ids or remove "
                         "those rows.")
    dup = text.duplicated(keep=False).to_numpy()
    if dup.any():
        first = text[dup].iloc[0]
        at = rows[(text == first).to_numpy()]
        n_ids = text[dup].nunique()
        more = f" ({n_ids - 1} more repeated ids)" if n_ids > 1 else ""
        raise InputError(f"{path}: {what} '{first}' has more than one row ({format_rows(at)})"
                         f"{more}; keep one row per {what}.")
    out = frame.drop(columns=[col])
    if per_patient:
        out.insert(0, col, text.to_numpy(dtype=object))
        return out.reset_index(drop=True)
    if "sample" in out.columns:
        raise InputError(f"{path}: has both '{col}' (configured as the sample id) and a "
                         "column 'sample'; rename or drop one of them.")
    out.insert(0, "sample", text.to_numpy(dtype=object))
    return out.reset_index(drop=True)
