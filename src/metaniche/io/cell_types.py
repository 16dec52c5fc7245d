"""Join a cell-type table to the cells of any input by cell id (``[input] cell_types``).

Imaging-ST outputs (Xenium, CosMx, MERSCOPE) carry their clusters in a separate table; so can
any other input. The table (CSV/TSV, optionally gzipped, or Parquet; relative paths are from
the working directory) gives one label per cell id:

- columns ``cell_id`` and ``cell_type`` (else ``label``) when present (matched like
  ``[columns]``: exactly, else case-insensitively when unique), else its first two columns
  (e.g. 10x's ``Barcode,Cluster`` export);
- ids are compared as text (``12`` and ``12.0`` are the same id); an id given twice is an
  error;
- the labels **replace** the input's own cell-type column (a ``[gating]`` panel, applied
  afterwards, replaces them in turn);
- cells without a row, or with an empty label, are labelled :data:`UNLABELED` and counted in
  one warning per input; when no cell at all matches the input fails (the ids are of
  another kind, e.g. a sample prefix).

When the table also has a ``sample`` column (the ``[columns] sample`` name), it is keyed by
(sample, cell id): a cell's sample is its input's sample column, else the file or folder
name (as in the cell tables), so one table can label several samples whose ids repeat.
Without it, ids are matched within each input file (or folder), so one table may list the
cells of several inputs as long as the ids do not repeat.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from metaniche.config import Config
from metaniche.io._common import ABSENT, MappedTable
from metaniche.io._tables import (
    TableError,
    file_format,
    file_stem,
    find_column,
    list_columns,
    read_parquet_table,
    read_text_table,
)

__all__ = ["UNLABELED", "join_cell_types"]

#: Label of cells that the ``[input] cell_types`` table does not list (10x's own word).
UNLABELED = "Unlabeled"

_KEY = "[input] cell_types"
_SEP = "\x1f"


def _as_ids(values: pd.Series) -> np.ndarray:
    missing = values.isna().to_numpy()
    if pd.api.types.is_float_dtype(values.dtype) and not missing.all():
        finite = values.to_numpy()[~missing]
        if np.all(finite == np.round(finite)):
            values = values.astype("Int64")
    return values.astype(str).str.strip().to_numpy(dtype=object)


def _read_labels(table: Path, sample: str) -> tuple[pd.Series, bool]:
    """The table as a Series of labels by cell id, or by ``"<sample>\x1f<cell id>"`` when it
    has a ``sample`` column (text); raises one sentence on any problem."""
    if not table.is_file():
        raise TableError(f"{table}: {_KEY} file not found; check the path (relative paths are "
                         "from the working directory).")
    kind, gz = file_format(table)
    if kind == "text":
        frame = read_text_table(table, gz, ("cell_id",), what="cell-type table",
                                label="a cell-type table").frame
    elif kind == "parquet":
        frame = read_parquet_table(table, what="cell-type table").frame
    else:
        raise TableError(f"{table}: {_KEY} must be a CSV, TSV or Parquet table of cell_id and "
                         "cell_type; export it as CSV.")
    if frame.shape[1] - (find_column(frame.columns, sample) is not None) < 2:
        raise TableError(f"{table}: {_KEY} has {frame.shape[1]} column (columns found: "
                         f"{list_columns(frame.columns)}); it needs a cell id and a label "
                         "column, e.g. cell_id,cell_type.")
    sample_col = find_column(frame.columns, sample)
    rest = [str(c) for c in frame.columns if str(c) != sample_col]
    id_col = find_column(rest, "cell_id") or rest[0]
    label_col = (find_column(rest, "cell_type") or find_column(rest, "label")
                 or next(c for c in rest if c != id_col))
    ids = _as_ids(frame[id_col])
    if sample_col is not None:
        ids = _as_ids(frame[sample_col]) + _SEP + ids
    dup = pd.Index(ids).duplicated()
    if dup.any():
        shown = ", ".join(repr(str(v).replace(_SEP, " ")) for v in pd.unique(ids[dup])[:3])
        raise TableError(f"{table}: {_KEY} column '{id_col}' lists cell ids more than once "
                         f"({shown}); give each cell one label.")
    labels = frame[label_col]
    return pd.Series(labels.where(labels.notna(), None).to_numpy(dtype=object),
                     index=pd.Index(ids), name=str(label_col)), sample_col is not None


def join_cell_types(path: Path, mapped: MappedTable, config: Config) -> MappedTable:
    """Replace the labels of ``mapped`` (read from ``path``) by the ``[input] cell_types`` table.

    Returns ``mapped`` unchanged when the key is empty; the warning on unlabelled cells is
    appended to the table's warnings.

    Raises
    ------
    TableError
        The table is missing or malformed, the input has no cell id column, or no cell
        matches (one sentence naming the file and the fix).
    """
    if not config.input.cell_types:
        return mapped
    table = Path(config.input.cell_types)
    labels, by_sample = _read_labels(table, config.columns.sample)
    frame = mapped.raw.frame
    columns = mapped.columns
    id_col = find_column(frame.columns, columns.cell_id) if columns.cell_id != ABSENT else None
    if id_col is None:
        raise TableError(f"{path}: {_KEY} joins labels by cell id but this input has no cell id "
                         f"column '{config.columns.cell_id}' (columns found: "
                         f"{list_columns(frame.columns)}); set [columns] cell_id to the column "
                         "the table's ids refer to.")
    ids = _as_ids(frame[id_col])
    keys = ids
    if by_sample:
        sample_col = (find_column(frame.columns, columns.sample)
                      if columns.sample != ABSENT else None)
        samples = (_as_ids(frame[sample_col]) if sample_col is not None
                   else np.full(len(ids), file_stem(path), dtype=object))
        keys = samples + _SEP + ids
    found = labels.reindex(keys)
    unlabeled = (found.isna() | (found.astype(str).str.strip() == "")).to_numpy()
    if len(ids) and unlabeled.all():
        theirs = str(labels.index[0]).replace(_SEP, " ") if labels.size else "none"
        raise TableError(f"{path}: none of its {len(ids):,} cell ids (e.g. {ids[0]!r}) is in "
                         f"{table} ({_KEY}, ids e.g. {theirs!r}); use the table made from this "
                         "output's cell ids.")
    text = np.where(unlabeled, UNLABELED, found.astype(str).to_numpy(dtype=object))
    label_col = find_column(frame.columns, columns.cell_type)
    if label_col is None or label_col == id_col:
        label_col = "cell_type"
    frame = frame.copy()
    frame[label_col] = text.astype(object)
    notes = list(mapped.raw.warnings)
    if unlabeled.any():
        notes.append(f"{path}: {int(unlabeled.sum()):,} of {len(ids):,} cells have no label in "
                     f"{table} ({_KEY}) and are labelled '{UNLABELED}'; add them to the table "
                     "to label them.")
    return MappedTable(dataclasses.replace(mapped.raw, frame=frame, warnings=notes),
                       dataclasses.replace(columns, cell_type=label_col), mapped.sources)
