"""Read the clinical table: one row per sample with outcomes and covariates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metaniche.config import ClinicalColumns, Config
from metaniche.errors import InputError
from metaniche.io._tables import (
    file_format,
    find_column,
    format_rows,
    list_columns,
    read_parquet_table,
    read_text_table,
)

__all__ = ["DEFAULT_RESPONDER_LABELS", "ContrastUnavailable", "Groups", "ResponseContrast",
           "condition_groups", "read_clinical", "response_contrast"]

#: Labels compared against the other label of a two-label response column when
#: ``[clinical] responder_values`` is empty (see :func:`response_contrast`).
DEFAULT_RESPONDER_LABELS = frozenset({"responder", "responders", "yes", "true", "1", "r", "cr",
                                      "pr", "crpr", "cr/pr"})


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


@dataclass(frozen=True)
class ResponseContrast:
    """A two-group contrast read from the response column.

    Attributes
    ----------
    labels : pandas.Series
        1.0 for units in ``level``, 0.0 for units in ``reference``, NaN where the label is
        missing; index of the response column. Every response statistic (AUC, mixed-model
        difference, prediction) is for ``level`` relative to ``reference``.
    level : str
        The compared label(s) (several joined by ``/``), in their spelling in the table.
    reference : str
        The reference label(s).
    """

    labels: pd.Series
    level: str
    reference: str

    @property
    def name(self) -> str:
        """``"<level> vs <reference>"``, the ``contrast`` column of the association table."""
        return f"{self.level} vs {self.reference}"

    def groups(self) -> Groups:
        """The contrast as two :class:`Groups`: ``reference`` first, then ``level``."""
        names = self.labels.map({1.0: self.level, 0.0: self.reference})
        return Groups(names.astype(object).where(self.labels.notna()),
                      (self.reference, self.level))


@dataclass(frozen=True)
class Groups:
    """An unpaired grouping of the units: the one input of every group comparison.

    Attributes
    ----------
    labels : pandas.Series
        The group of each unit (one of ``levels``), NaN where unknown.
    levels : tuple of str
        The groups, reference first; every effect compares a later level with an earlier
        one (``"<later> vs <earlier>"``), so with two groups ``levels[1] vs levels[0]``.
    """

    labels: pd.Series
    levels: tuple[str, ...]

    @property
    def reference(self) -> str:
        """The reference group (``levels[0]``)."""
        return self.levels[0]


class ContrastUnavailable(InputError):
    """The response column cannot be read as two groups (the response analyses are skipped)."""


def response_contrast(response: pd.Series, columns: ClinicalColumns) -> ResponseContrast:
    """Read the response column as a two-group contrast: which level is compared to which.

    Any two-level condition is accepted, not only responder / non-responder (treatment arm vs
    sham, primary vs metastasis, mixed vs compartmentalized). Labels are compared
    case-insensitively after stripping spaces. The compared level is chosen by the first rule
    that applies:

    1. ``[clinical] responder_values`` given: those labels (every one present) against all
       other non-missing labels;
    2. exactly two labels, one of them in :data:`DEFAULT_RESPONDER_LABELS` (``responder``,
       ``yes``, ``true``, ``1``, ``CR``, …; so a 0/1 or boolean column compares 1/true): that
       label against the other;
    3. exactly two other labels: the second in sorted (lower-case) order against the first,
       e.g. ``mixed vs compartmentalized``, ``sham vs arm_a``.

    Parameters
    ----------
    response
        The response column (strings, booleans or numbers; NaN is missing).
    columns
        ``response`` (its name, for messages) and ``responder_values``.

    Returns
    -------
    ResponseContrast

    Raises
    ------
    ContrastUnavailable
        No ``responder_values`` and not exactly two labels; or the ``responder_values``
        cover every label present (no reference group). The cohort step records the message
        as the reason the response analyses were skipped.
    InputError
        ``responder_values`` given but none of them occurs in the column (a config typo).
    """
    present = response.notna()
    original, text = _label_text(response)
    spelling = dict(zip(text.dropna(), original.dropna(), strict=True))
    levels = sorted(text.dropna().unique())
    name = columns.response
    if columns.responder_values:
        wanted = {str(v).strip().lower() for v in columns.responder_values}
        if not wanted & set(levels):
            raise InputError(f"clinical column '{name}' holds none of the responder values "
                             f"{list(columns.responder_values)} (found {levels[:6]}); fix "
                             "[clinical] responder_values.")
        if set(levels) <= wanted:
            raise ContrastUnavailable(
                f"every label of clinical column '{name}' ({levels[:6]}) is one of "
                f"[clinical] responder_values {list(columns.responder_values)}; no reference "
                "group to compare with.")
    elif len(levels) != 2:
        raise ContrastUnavailable(
            f"clinical column '{name}' has {len(levels)} labels ({levels[:6]}), not two; "
            "set [clinical] responder_values to the labels to compare with all others, "
            f"set [clinical] condition = \"{name}\" to compare every group, or recode the "
            "column to two groups.")
    elif len(known := set(levels) & DEFAULT_RESPONDER_LABELS) == 1:
        wanted = known
    else:
        wanted = {levels[1]}
    level = "/".join(spelling[v] for v in levels if v in wanted)
    reference = "/".join(spelling[v] for v in levels if v not in wanted)
    labels = text.isin(wanted).astype(np.float64).where(present)
    return ResponseContrast(labels, level, reference)


def condition_groups(column: pd.Series, name: str, reference: str = "") -> Groups:
    """Read a condition column (``[clinical] condition``) as two or more unpaired groups.

    Labels are compared case-insensitively after stripping spaces (numbers as ``%g``), each
    kept in its first spelling in the table; missing values stay missing. The reference is
    ``reference`` when given, else the first label in sorted (lower-case) order; the other
    groups follow in sorted order. The same reading as :func:`response_contrast`, without
    the responder rules.

    Parameters
    ----------
    column
        The condition column.
    name
        Its name, for messages.
    reference
        ``[clinical] condition_reference``; empty for the sorted-first label.

    Returns
    -------
    Groups

    Raises
    ------
    ContrastUnavailable
        Fewer than two labels (nothing to compare).
    InputError
        ``reference`` given but not a label of the column.
    """
    original, text = _label_text(column)
    spelling: dict[str, str] = {}
    for low, orig in zip(text.dropna(), original.dropna(), strict=True):
        spelling.setdefault(low, orig)
    levels = sorted(spelling)
    if len(levels) < 2:
        raise ContrastUnavailable(f"clinical column '{name}' has {len(levels)} labels "
                                  f"({levels}); a condition needs at least two groups.")
    if reference:
        wanted = reference.strip().lower()
        if wanted not in spelling:
            raise InputError(f"clinical column '{name}' has no label '{reference}' (found "
                             f"{[spelling[v] for v in levels][:6]}); fix [clinical] "
                             "condition_reference.")
        levels.remove(wanted)
        levels.insert(0, wanted)
    labels = text.map(spelling, na_action="ignore").astype(object).where(text.notna())
    return Groups(labels, tuple(spelling[v] for v in levels))


def _label_text(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Labels as stripped text (numbers as ``%g``) and lower-cased; NaN stays missing."""
    present = column.notna()
    original = column.astype(str).str.strip().where(present)
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        original = column.map(lambda v: f"{v:g}", na_action="ignore")
    return original, original.str.lower()
