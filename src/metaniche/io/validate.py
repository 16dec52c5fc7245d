"""Check inputs and list every problem (``metaniche validate``).

Cell tables are checked by reading them (:func:`~metaniche.io.read_samples`); a clinical
table by :func:`validate_clinical`: it is read (:func:`~metaniche.io.read_clinical`: empty or
repeated sample/patient ids are errors) and its outcome columns checked:

- response (``[clinical] response``): labels that cannot be read as a two-group contrast
  (the rule of :func:`metaniche.io.clinical.response_contrast`: exactly two
  labels unless ``responder_values`` is set) give a warning listing the labels present with
  their counts (the response analyses cannot run);
- survival time (``os_time``): a non-empty value that is not a non-negative number is an
  error naming its rows and values;
- event (``os_event``): a non-empty value other than 0 and 1 is an error;
  ``os_time`` without an ``os_event`` column is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metaniche.config import Config
from metaniche.errors import InputError
from metaniche.io._tables import file_format, find_column, format_rows
from metaniche.io.cells import read_samples
from metaniche.io.clinical import read_clinical, response_contrast

__all__ = ["Problem", "validate_clinical", "validate_inputs"]


@dataclass(frozen=True)
class Problem:
    """One problem found in the inputs.

    Attributes
    ----------
    severity
        ``"error"`` (the sample or file cannot be analysed) or ``"warning"``.
    file
        The file (or directory) as given or found, as a string.
    sample
        The sample concerned; ``None`` when the problem concerns the whole file.
    message
        One sentence naming the file, the column or row and the fix.
    """

    severity: str
    file: str
    sample: str | None
    message: str


def validate_inputs(paths: Sequence[str | Path], config: Config,
                    format: str | None = None,
                    clinical: str | Path | None = None) -> list[Problem]:
    """Read the inputs with :func:`~metaniche.io.read_samples` and list their problems.

    Returns one :class:`Problem` per error and per distinct warning, in input order;
    a warning that applies to a whole file (and so repeats for each of its samples) is
    listed once, with ``sample`` set to ``None``. An empty list means every sample can be
    analysed. ``format`` overrides ``config.format`` (see :func:`read_samples`); the
    problems of a ``clinical`` table (:func:`validate_clinical`) follow those of the cells.
    """
    problems = _cell_problems(paths, config, format)
    if clinical is not None:
        problems.extend(validate_clinical(clinical, config))
    return problems


def _cell_problems(paths: Sequence[str | Path], config: Config,
                   format: str | None) -> list[Problem]:
    problems: list[Problem] = []
    counts: dict[tuple[str, str], int] = {}
    samples = read_samples(paths, config, format=format)
    for s in samples:
        for message in s.warnings:
            key = (str(s.source), message)
            counts[key] = counts.get(key, 0) + 1
    shown: set[tuple[str, str]] = set()
    for s in samples:
        file = str(s.source)
        if s.error is not None:
            problems.append(Problem("error", file, None if s.file_error else s.name, s.error))
        for message in s.warnings:
            key = (file, message)
            if key in shown:
                continue
            shown.add(key)
            repeated = counts[key] > 1
            problems.append(Problem("warning", file, None if repeated else s.name, message))
    return problems


def validate_clinical(path: str | Path, config: Config) -> list[Problem]:
    """List the problems of a clinical table (see the module docstring for the checks).

    Every problem names the file, the column and the rows; ``sample`` is ``None``.
    """
    path = Path(path)
    try:
        frame = read_clinical(path, config)
    except InputError as err:
        return [Problem("error", str(path), None, str(err))]
    row_base = 2 if file_format(path)[0] == "text" else 1
    rows = np.arange(len(frame)) + row_base
    names = config.clinical
    out: list[Problem] = []

    def add(severity: str, message: str) -> None:
        out.append(Problem(severity, str(path), None, f"{path}: {message}"))

    response = find_column(frame.columns, names.response)
    if response is not None:
        try:
            response_contrast(frame[response].rename(names.response), names)
        except InputError as err:
            counts = frame[response].dropna().astype(str).str.strip().value_counts()
            present = ", ".join(f"'{label}' ({n})" for label, n in counts.head(8).items())
            add("warning", f"{str(err).rstrip('.')}; labels present: {present or 'none'}; the "
                           "response analyses cannot run until it is fixed.")
    time = find_column(frame.columns, names.os_time)
    event = find_column(frame.columns, names.os_event)
    if time is not None:
        bad, values = _bad_values(frame[time], lambda v: v >= 0)
        if bad.any():
            add("error", f"column '{time}' (overall-survival time) is not a non-negative "
                         f"number at {format_rows(rows[bad], values)}; write the time as a "
                         "number (e.g. days) or leave it empty when unknown.")
        if event is None:
            add("error", f"has the survival time column '{time}' but no event column "
                         f"'{names.os_event}'; add it (1 = event, 0 = censored) or set "
                         "[clinical] os_event.")
    if event is not None:
        bad, values = _bad_values(frame[event], lambda v: (v == 0) | (v == 1))
        if bad.any():
            add("error", f"column '{event}' (overall-survival event) must be 1 (event) or 0 "
                         f"(censored); got {format_rows(rows[bad], values)}; recode those "
                         "rows or leave them empty when unknown.")
    return out


def _bad_values(column: pd.Series,
                ok: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Rows whose non-empty value is not a number passing ``ok``, and the first 3 values.

    A boolean column counts as 1/0 (as :func:`pandas.to_numeric` reads it in the cohort step).
    """
    if pd.api.types.is_bool_dtype(column.dtype):
        column = column.astype(float)
    text = column.astype(object).where(column.notna(), "").astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    empty = (text == "").to_numpy()
    with np.errstate(invalid="ignore"):
        good = np.isfinite(numbers) & np.asarray(ok(numbers), dtype=bool)
    bad = ~empty & ~good
    shown = [repr(v) for v in text.to_numpy()[bad][:3]]
    return bad, shown
