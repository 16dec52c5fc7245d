"""Read cell tables (CSV, TSV, Parquet, AnnData) into standardised per-sample frames.

:func:`read_samples` never raises for a bad input: every problem becomes a
:class:`SampleInput` whose ``error`` is one sentence naming the file, the column or row
and the fix, so that a bad sample fails alone while the rest of the cohort is analysed.

Standardised cell table (``SampleInput.cells``), columns in this order:

============  ==========  ==========================================================
column        dtype       meaning
============  ==========  ==========================================================
sample        str         sample id (sample column, else the file stem)
cell_id       str         unique within the sample; ``"0"``, ``"1"``, … when absent
x, y          float64     centroid in µm (input coordinates × ``um_per_unit``)
cell_type     str         phenotype label
…             unchanged   every other input column (markers, metadata)
============  ==========  ==========================================================

An expression matrix of more than :data:`metaniche.genes.MAX_DENSE_VALUES` values is not
among those columns: it is kept sparse in ``SampleInput.genes`` (same rows, see
:mod:`metaniche.genes`), and its genes are resolved by name where a config names markers.

The export's own tissue class (inForm ``Tissue Category``, HALO ``Classifier Label``) is
one of those other columns, under the name ``tissue_category``
(:data:`metaniche._contract.TISSUE_CATEGORY`).

Checks beyond the column contract, each reported as one sentence naming file, column and row:

- **Duplicate sample ids across inputs**: when two inputs yield a sample of the same name,
  every one of them fails with an error naming all the files (none is analysed, so results
  and the run record agree); rename a sample or set ``[columns] sample``.
- **Coordinate range**: after scaling by ``um_per_unit``, a sample whose x or y values span
  more than :data:`MAX_EXTENT_UM` (100,000 µm = 10 cm, longer than a 75 mm slide) fails.
  When at most 1 % of its cells lie more than that distance from the sample's median, the
  message names the most extreme row (an outlier to fix); otherwise it suggests
  ``um_per_unit`` from the cell spacing (coordinates in the wrong unit).
- **Patient id**: the ``[columns] patient`` column (default ``patient``, used when present;
  kept unchanged among the other columns) must hold one id per sample, which becomes
  ``SampleInput.patient``; a sample whose rows carry several ids fails, and one whose rows
  carry none, or only some, gets a warning.
- **Text in a marker column**: a column other than the contract columns, not categorical,
  whose non-empty values are numbers in most rows (more than half) but text in some is kept
  unchanged, so it is not numeric and no analysis uses it as a marker; each sample with text
  in it gets a warning naming the column, the number of rows and the first ones with their
  values. Columns holding text in most rows are labels or metadata and are not reported.

Row numbers in messages are those a user sees in the file: for text tables the header is
line 1, so the first data row is row 2; for Parquet and AnnData the first row is row 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from metaniche._contract import CONTRACT_COLUMNS
from metaniche.config import Config
from metaniche.errors import InputError
from metaniche.genes import GeneMatrix, with_gene_columns
from metaniche.io._common import with_columns
from metaniche.io._spots import join_spot_proportions
from metaniche.io._tables import (
    RawTable,
    expand_paths,
    file_stem,
    find_column,
    format_rows,
    list_columns,
    reason,
)
from metaniche.io.cell_types import join_cell_types
from metaniche.io.readers import READERS, companion_files, read_mapped
from metaniche.phenotype import apply_gating, parse_panel

__all__ = ["MAX_EXTENT_UM", "NN_SPACING_UM", "STANDARD_COLUMNS", "SampleInput", "input_entries",
           "read_entry", "read_samples", "reload_sample", "scan_entry", "unique_names"]

#: Leading columns of every standardised cell table, in order.
STANDARD_COLUMNS: tuple[str, ...] = CONTRACT_COLUMNS
#: Largest span of a sample's x or y coordinates, µm after ``um_per_unit`` (10 cm: longer
#: than a 75 mm microscope slide); a larger span is an error (outlier or wrong unit).
MAX_EXTENT_UM = 100_000.0
#: A sample whose cells beyond :data:`MAX_EXTENT_UM` of its median are at most this
#: fraction is reported as holding outliers rather than coordinates in the wrong unit.
_OUTLIER_FRACTION = 0.01
#: Plausible range of the median nearest-neighbour distance between cells, µm (inclusive).
NN_SPACING_UM: tuple[float, float] = (3.0, 50.0)
#: Median nearest-neighbour distance, µm, that the suggested ``um_per_unit`` aims for.
_TARGET_SPACING_UM = 10.0
#: Cells queried for the spacing check; larger samples use an evenly spaced subset.
_SPACING_QUERIES = 5_000

_ROLES = {"x": "x coordinate", "y": "y coordinate", "cell_type": "cell type label"}


@dataclass
class SampleInput:
    """One sample read from an input file, or the error that prevented reading it.

    Attributes
    ----------
    name
        Sample id: the value of the sample column, else the file stem (name without
        ``.gz`` and the format suffix). For an error that concerns a whole file, the stem.
    source
        File (or directory) the sample came from.
    cells
        The standardised cell table (see module docstring); ``None`` when ``error`` is set.
    error
        One sentence naming the file, the column or row and the fix; ``None`` when usable.
    warnings
        One sentence per warning (e.g. coordinates that look like pixels).
    checksum
        SHA-256 hex digest of the standardised table (column names, dtypes and
        :func:`pandas.util.hash_pandas_object` row hashes); empty when ``error`` is set.
        Equal tables give equal checksums, whatever file format they came from.
    file_error
        ``True`` when the error concerns the file rather than one sample in it (unknown
        extension, unreadable, empty, missing column, rows without a sample id).
    patient
        The sample's patient id: the one value of the ``[columns] patient`` column over its
        rows (as text, like the sample id); ``None`` when the column is absent or empty.
    deferred
        ``True`` when the cells were read and checked but not kept (``cells`` is None): the
        task analysing the sample reads them again from ``source`` (:func:`reload_sample`),
        so a cluster run ships paths, not tables (:func:`scan_entry`).
    genes
        The sample's expression matrix when it was too large for marker columns, kept sparse
        with the rows of ``cells`` (:class:`metaniche.genes.GeneMatrix`); ``None`` otherwise
        or when ``cells`` is None. Part of ``checksum``.
    """

    name: str
    source: Path
    cells: pd.DataFrame | None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    checksum: str = ""
    file_error: bool = False
    patient: str | None = None
    deferred: bool = False
    genes: GeneMatrix | None = None

    @property
    def ok(self) -> bool:
        """Whether the sample can be analysed (its cells held, or deferred to its task)."""
        return self.error is None and (self.cells is not None or self.deferred)


def read_samples(paths: Sequence[str | Path], config: Config,
                 format: str | None = None) -> list[SampleInput]:
    """Read every sample from files and directories of cell tables.

    Parameters
    ----------
    paths
        Files (``.csv``, ``.tsv``, ``.txt``, each optionally ``.gz``; ``.parquet``, ``.pq``;
        ``.h5ad``) and directories (every supported file inside, sorted by name,
        non-recursive, hidden files skipped).
    config
        Column names (``config.columns``, matched exactly, else case-insensitively when
        unique), ``um_per_unit``, ``min_cells``, ``format`` (export format, default
        ``"auto"``: see :mod:`metaniche.io.formats`), ``phenotype_map`` and ``gating`` (a
        panel that phenotypes each sample from its markers: :mod:`metaniche.phenotype`).
    format
        Overrides ``config.format`` when given (``--format``).

    Returns
    -------
    list of SampleInput
        In input order; within a file, samples in order of first appearance. A file with a
        sample column yields one entry per sample, otherwise one entry named by the file
        stem. Problems are reported in ``error``/``warnings``; nothing is raised.

    Notes
    -----
    A sample name that several inputs yield fails in every one of them (see the module
    docstring, with the coordinate-range and marker-text checks).
    The spacing check warns when the median nearest-neighbour distance (after scaling) is
    outside 3–50 µm; on samples of more than 5,000 cells it queries an evenly spaced
    subset of 5,000 cells against all cells. Cost: parsing, plus O(n log n) per sample.
    """
    if format is not None:
        config = dataclasses.replace(config, format=format)
    results: list[SampleInput] = []
    for entry in input_entries(paths, config):
        results.extend(read_entry(entry, config))
    return unique_names(results)


#: One input of a run: a readable file, or ``(path, message)`` for a path that cannot be one.
Entry = Path | tuple[Path, str]


def input_entries(paths: Sequence[str | Path], config: Config) -> list[Entry]:
    """The inputs' files in reading order, without companion files (read with their table).

    Directories are expanded as in :func:`read_samples`; a path that is no usable file is
    kept as ``(path, message)`` so that it is reported in order.
    """
    entries = expand_paths(list(paths))
    companions = companion_files(entries, config)
    # e.g. a CODEX phenotype map is read with its cell table, not as a sample
    return [e for e in entries if isinstance(e, tuple) or e not in companions]


def read_entry(entry: Entry, config: Config) -> list[SampleInput]:
    """Every sample of one input entry (:func:`input_entries`); never raises."""
    if isinstance(entry, tuple):
        path, message = entry
        return [SampleInput(file_stem(path), path, None, message, file_error=True)]
    return _read_file(entry, config)


def scan_entry(item: tuple[Entry, Config], emit: object = None) -> list[SampleInput]:
    """Read and check one input entry, keeping every sample's record but not its cells.

    The task a cluster worker runs first (:func:`metaniche.executor.map_tasks`): workers read
    their own files and send back names, checksums, patients, warnings and errors — a few
    hundred bytes per sample — and the sample's task reads the cells again where it runs
    (:func:`reload_sample`). ``emit`` is unused (the executor's task signature).
    """
    entry, config = item
    return [dataclasses.replace(s, cells=None, genes=None, deferred=True) if s.ok else s
            for s in read_entry(entry, config)]


def reload_sample(sample: SampleInput, config: Config) -> SampleInput:
    """The sample with its cells, read again from ``sample.source`` when deferred.

    The cells must be those that were checked when the run started: a sample missing from
    the file now, or whose standardised table has another checksum, becomes an error naming
    the file (it changed during the run) instead of being analysed.
    """
    if not sample.deferred or not sample.ok:
        return sample
    found = [s for s in _read_file(sample.source, config)
             if s.name == sample.name and not s.file_error]
    fresh = found[0] if len(found) == 1 else None
    if fresh is None or not fresh.ok or fresh.checksum != sample.checksum:
        return dataclasses.replace(
            sample, deferred=False,
            error=f"{sample.source}: sample '{sample.name}' changed while the run was reading "
                  f"it (its cells differ from those checked when the run started); leave the "
                  f"input files unchanged during a run and rerun.")
    return dataclasses.replace(fresh, warnings=list(sample.warnings), deferred=False)


def unique_names(results: list[SampleInput]) -> list[SampleInput]:
    """Fail every sample whose name another input also yields, naming all their files."""
    by_name: dict[str, list[int]] = {}
    for i, sample in enumerate(results):
        if not sample.file_error:
            by_name.setdefault(sample.name, []).append(i)
    out = list(results)
    for name, where in by_name.items():
        if len(where) < 2:
            continue
        files = [results[i].source for i in where]
        for i in where:
            own = results[i].source
            others = [str(f) for f in files if f != own]
            if others:
                also = f"is also in {', '.join(dict.fromkeys(others))}"
                fix = ("rename the sample in one file (or rename the file when it has no sample "
                       "column, or set [columns] sample to a column that tells them apart)")
            else:
                also = "is read twice from this file, given more than once among the inputs"
                fix = "give each file once"
            out[i] = dataclasses.replace(
                results[i], cells=None, genes=None, checksum="",
                error=f"{own}: sample '{name}' {also}; sample ids must be unique across "
                      f"inputs, so none of them is analysed; {fix}.")
    return out


def _read_file(path: Path, config: Config) -> list[SampleInput]:
    """Read one file; every failure becomes an error :class:`SampleInput`."""
    stem = file_stem(path)
    try:
        mapped, fmt = read_mapped(path, config)
        mapped = join_cell_types(path, mapped, config)
        mapped = join_spot_proportions(path, mapped, config)
        # the patient column is the user's for every format (exports name none)
        columns = dataclasses.replace(mapped.columns, patient=config.columns.patient)
        samples = _standardise(path, stem, mapped.raw, with_columns(config, columns),
                               fmt=fmt, sources=mapped.sources)
        if config.gating:
            samples = [_gate(s, config) for s in samples]
        return samples
    except InputError as err:  # TableError included
        return [SampleInput(stem, path, None, str(err), file_error=True)]
    except Exception as err:  # a reader bug must not stop the cohort
        return [SampleInput(stem, path, None,
                            f"{path}: cannot be used ({reason(err)}); check the file, and "
                            "report this message if the file looks valid.", file_error=True)]


def _gate(sample: SampleInput, config: Config) -> SampleInput:
    """Replace ``cell_type`` by the gating panel's labels and add its ``gate.*`` columns."""
    if not sample.ok:
        return sample
    assert sample.cells is not None
    panel = parse_panel(config.gating)
    try:
        result = apply_gating(with_gene_columns(sample.cells, sample.genes, panel.marker_names,
                                                panel.markers), panel)
    except InputError as err:
        return dataclasses.replace(sample, cells=None, genes=None,
                                   error=f"{sample.source}: sample '{sample.name}': {err}")
    cells = sample.cells.copy()
    cells["cell_type"] = result.cell_type
    for column in result.matches.columns:
        cells[column] = result.matches[column].to_numpy()
    warnings = list(sample.warnings)
    if result.n_conflicting:
        pairs = ", ".join(f"{r.rule_a}/{r.rule_b} {r.n_cells}"
                          for r in result.conflicts.head(4).itertuples())
        warnings.append(f"{sample.source}: sample '{sample.name}': {result.n_conflicting} cells "
                        f"match more than one gating rule ({pairs}); each was given the rule "
                        "it passes by the widest margin (see metaniche.phenotype).")
    digest = hashlib.sha256(sample.checksum.encode())
    digest.update(pd.util.hash_pandas_object(cells[["cell_type"]], index=False)
                  .to_numpy().tobytes())
    return dataclasses.replace(sample, cells=cells, warnings=warnings,
                               checksum=digest.hexdigest())


def _missing_column(path: Path, key: str, want: str, columns: Sequence[str]) -> InputError:
    hint = _suggest(key, columns)
    return InputError(
        f"{path}: no column '{want}' for the {_ROLES[key]} (columns found: "
        f"{list_columns(columns)}); rename it or set [columns] {key} = \"{hint or '…'}\" in "
        "the config.")


def _suggest(key: str, columns: Sequence[str]) -> str | None:
    """Guess which column holds the x/y coordinate or cell type, for the fix hint."""
    ranked: list[tuple[int, int, str]] = []
    for i, name in enumerate(columns):
        tokens = re.findall(r"[a-z0-9]+", str(name).lower())
        low = str(name).lower()
        if key in ("x", "y"):
            if key not in tokens:
                continue
            score = 0 if {"centroid", "position", "center", "pos", "coord"} & set(tokens) else 1
        else:
            if not any(w in low for w in ("phenotype", "type", "class", "cluster", "label")):
                continue
            score = 0 if ("phenotype" in low or "type" in low) else 1
        ranked.append((score, i, str(name)))
    return min(ranked)[2] if ranked else None


def _as_text(values: pd.Series, blank_is_missing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(text, missing)``: labels as Python ``str`` and a mask of empty ones.

    Integral floats (``1.0`` from a column with gaps) are written without the ``.0``.
    With ``blank_is_missing``, whitespace-only labels count as missing too (checked on the
    distinct values, so it is cheap for label columns).
    """
    missing = values.isna().to_numpy()
    if pd.api.types.is_float_dtype(values.dtype):
        finite = values.to_numpy()[~missing]
        if np.all(np.isfinite(finite)) and np.all(finite == np.round(finite)):
            values = values.astype("Int64")
    if missing.any():
        values = values.astype(object).where(~missing, "")
    text = values.astype(str).to_numpy(dtype=object)
    if blank_is_missing and not missing.all():
        distinct = pd.unique(text)
        blank = distinct[pd.Series(distinct).str.strip().to_numpy() == ""]
        if blank.size:
            missing = missing | np.isin(text, blank)
    return text, missing


def _coordinate(values: pd.Series) -> np.ndarray:
    """Return coordinates as float64; anything non-numeric becomes NaN."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.full(len(values), np.nan)
    if not pd.api.types.is_numeric_dtype(values.dtype):
        values = pd.to_numeric(values, errors="coerce")
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _raw_value(frame: pd.DataFrame, name: str, raw_names: tuple[str, ...], i: int) -> str:
    """The offending value of row ``i`` as shown in the file (first non-numeric source)."""
    for raw in raw_names:
        value = frame[raw].iat[i]
        if not np.isfinite(pd.to_numeric(pd.Series([value]), errors="coerce").iat[0]):
            return f"{_shown_value(value)} in '{raw}'"
    return _shown_value(frame[name].iat[i])


def _shown_value(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "empty"
    text = str(value)
    if len(text) > 30:
        text = text[:27] + "…"
    return repr(text)


def _standardise(path: Path, stem: str, raw: RawTable, config: Config, fmt: str = "table",
                 sources: dict[str, tuple[str, ...]] | None = None) -> list[SampleInput]:
    """Turn a raw table into per-sample standardised tables with checks.

    ``fmt`` (the export format) is named in the messages of exports; ``sources`` gives the
    raw columns a derived column (e.g. HALO's box centre) was computed from, so that a bad
    value is shown as it is in the file.
    """
    frame = raw.frame
    cols = config.columns
    columns = [str(c) for c in frame.columns]
    found: dict[str, str] = {}
    for key in ("x", "y", "cell_type"):
        want = getattr(cols, key)
        hit = find_column(columns, want)
        if hit is None:
            raise _missing_column(path, key, want, columns)
        found[key] = hit
    sample_col = find_column(columns, cols.sample)
    id_col = find_column(columns, cols.cell_id)
    patient_col = find_column(columns, cols.patient)
    if patient_col in (sample_col, found["x"], found["y"], found["cell_type"]):
        patient_col = None
    n = len(frame)
    rows = np.arange(n) + raw.row_base
    results: list[SampleInput] = []

    # sample ids; rows without one are reported together, the other samples go on
    if sample_col is not None:
        sample_text, sample_missing = _as_text(frame[sample_col])
        if sample_missing.any():
            bad = rows[sample_missing]
            results.append(SampleInput(
                stem, path, None,
                f"{path}: column '{sample_col}' (the sample id) is empty at "
                f"{format_rows(bad)}; fill in the sample id or remove those rows.",
                file_error=True))
        codes, uniques = pd.factorize(pd.Series(sample_text).where(~sample_missing))
    else:
        sample_text = np.full(n, stem, dtype=object)
        codes, uniques = np.zeros(n, dtype=np.intp), pd.Index([stem])

    xs = _coordinate(frame[found["x"]])
    ys = _coordinate(frame[found["y"]])
    bad_x, bad_y = ~np.isfinite(xs), ~np.isfinite(ys)
    label_text, label_missing = _as_text(frame[found["cell_type"]])
    patients = _as_text(frame[patient_col]) if patient_col is not None else None
    if id_col is not None:
        id_text, id_missing = _as_text(frame[id_col], blank_is_missing=False)
        dup = pd.DataFrame({"s": codes, "id": id_text}).duplicated(keep=False).to_numpy()
        dup &= ~id_missing
    else:
        id_text = (pd.Series(codes).groupby(codes).cumcount().astype(str)
                   .to_numpy(dtype=object))
        id_missing = dup = np.zeros(n, dtype=bool)

    core = pd.DataFrame({
        "sample": sample_text,
        "cell_id": id_text,
        "x": xs * config.um_per_unit,
        "y": ys * config.um_per_unit,
        "cell_type": label_text,
    })
    used = {found["x"], found["y"], found["cell_type"], sample_col, id_col}
    rest = [c for c in columns if c not in used]
    file_warnings = list(raw.warnings)
    clash = [c for c in rest if c in STANDARD_COLUMNS]
    if clash:
        file_warnings.append(
            f"{path}: column(s) {', '.join(clash)} were dropped because the config maps "
            "other columns to these standard names; rename them in the file to keep them.")
        rest = [c for c in rest if c not in STANDARD_COLUMNS]
    text_cells = {c: m for c in rest
                  if c != patient_col and (m := _text_in_numbers(frame[c])) is not None}
    if rest:
        others = frame[rest]
        others.columns = rest
        out = pd.concat([core, others.reset_index(drop=True)], axis=1)
    else:
        out = core
    row_hashes = _row_hashes(out)
    header = "\x1f".join(f"{c}:{t}" for c, t in zip(out.columns, out.dtypes.astype(str),
                                                     strict=True)).encode()

    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    # rows without a sample id have code -1 and sort first
    offsets = int((codes < 0).sum()) + np.concatenate([[0], np.cumsum(counts)])
    for k, name in enumerate(uniques):
        idx = order[offsets[k]:offsets[k + 1]]
        name = str(name)
        where = f"{path}: sample '{name}'" if sample_col is not None else f"{path}"
        if fmt != "table":
            where += f" ({READERS[fmt].label})"
        error = _sample_error(where, idx, rows, frame, found, id_col, bad_x, bad_y,
                              label_missing, id_missing, dup, id_text, config, sources or {})
        if error is None:
            error = _extent_error(where, idx, rows, frame, found, sources or {},
                                  core["x"].to_numpy(), core["y"].to_numpy(), config.um_per_unit)
        sample_warnings = list(file_warnings)
        patient = None
        if error is None and patients is not None:
            assert patient_col is not None
            patient, error, warning = _sample_patient(where, idx, rows, patient_col, *patients)
            if warning:
                sample_warnings.append(warning)
        if error is not None:
            results.append(SampleInput(name, path, None, error, list(file_warnings)))
            continue
        cells = out.take(idx)
        cells.index = pd.RangeIndex(idx.size)   # reset_index would copy every column again
        genes = raw.genes.take(idx) if raw.genes is not None else None
        digest = hashlib.sha256(header)
        digest.update(np.ascontiguousarray(row_hashes[idx]).tobytes())
        if genes is not None:
            genes.update_digest(digest)
        for column, mask in text_cells.items():
            hit = idx[mask[idx]]
            if hit.size:
                shown = [_shown_value(frame[column].iat[i]) for i in hit[:3]]
                sample_warnings.append(
                    f"{where}: column '{column}' holds text in {hit.size:,} of {idx.size:,} "
                    f"rows ({format_rows(rows[hit], shown)}) among numbers, so it is not "
                    "used as a marker; fix those values in the export or drop the column.")
        spacing = _spacing_warning(where, cells["x"].to_numpy(), cells["y"].to_numpy(),
                                   config.um_per_unit)
        if spacing and not config.spots.proportions:  # spots lie 10-200 µm apart
            sample_warnings.append(spacing)
        results.append(SampleInput(name, path, cells, None, sample_warnings,
                                   digest.hexdigest(), patient=patient, genes=genes))
    return results


def _sample_patient(where: str, idx: np.ndarray, rows: np.ndarray, column: str,
                    text: np.ndarray, missing: np.ndarray,
                    ) -> tuple[str | None, str | None, str | None]:
    """``(patient, error, warning)`` of one sample from its rows of the patient column.

    One distinct id: that id (rows without one get a warning). Several: an error naming
    them. None at all: no patient, with a warning.
    """
    empty = missing[idx]
    ids = pd.unique(text[idx][~empty])
    if len(ids) > 1:
        shown = ", ".join(repr(str(v)) for v in ids[:3]) + (", …" if len(ids) > 3 else "")
        return None, (f"{where}: column '{column}' (the patient id) holds {len(ids)} different "
                      f"ids ({shown}); a sample is one patient's tissue, so all its rows must "
                      "carry the same patient id: fix the ids, or set [columns] sample to a "
                      "column that separates the patients' images."), None
    if len(ids) == 0:
        return None, None, (f"{where}: column '{column}' (the patient id) is empty in every "
                            "row, so the sample has no patient id; fill it in to join a "
                            "clinical table keyed by patient.")
    warning = None
    if empty.any():
        warning = (f"{where}: column '{column}' (the patient id) is empty at "
                   f"{format_rows(rows[idx[empty]])}; taken as the sample's patient "
                   f"'{ids[0]}'.")
    return str(ids[0]), None, warning


def _row_hashes(out: pd.DataFrame) -> np.ndarray:
    """Per-row uint64 hashes of the standardised table (content, not index)."""
    try:
        return pd.util.hash_pandas_object(out, index=False).to_numpy(dtype=np.uint64)
    except TypeError:  # unhashable cells (e.g. lists from Parquet): hash their text
        return pd.util.hash_pandas_object(out.astype(str), index=False).to_numpy(
            dtype=np.uint64)


def _sample_error(where: str, idx: np.ndarray, rows: np.ndarray, frame: pd.DataFrame,
                  found: dict[str, str], id_col: str | None, bad_x: np.ndarray,
                  bad_y: np.ndarray, label_missing: np.ndarray, id_missing: np.ndarray,
                  dup: np.ndarray, id_text: np.ndarray, config: Config,
                  sources: dict[str, tuple[str, ...]]) -> str | None:
    """Return the first problem of one sample as a sentence, or ``None``."""
    for key, bad in (("x", bad_x), ("y", bad_y)):
        hit = idx[bad[idx]]
        if hit.size:
            name = found[key]
            raw_names = sources.get(name, ())
            shown = [_raw_value(frame, name, raw_names, i) for i in hit[:3]]
            role = _ROLES[key]
            if raw_names:
                role += f", the mean of {' and '.join(repr(c) for c in raw_names)}"
            fix = "fix or remove those rows"
            if any(re.fullmatch(r"'-?\d+,\d+'.*", v) for v in shown):
                fix = ("the values use decimal commas, so export the file with decimal points "
                       "(or fix those rows)")
            return (f"{where}: column '{name}' ({role}) has a non-numeric, missing or "
                    f"infinite value at {format_rows(rows[hit], shown)}; {fix}.")
    hit = idx[label_missing[idx]]
    if hit.size:
        return (f"{where}: column '{found['cell_type']}' (cell type label) is empty at "
                f"{format_rows(rows[hit])}; give those cells a label (e.g. 'Unknown') or "
                "remove those rows.")
    if id_col is not None:
        hit = idx[id_missing[idx]]
        if hit.size:
            return (f"{where}: column '{id_col}' (cell id) is empty at "
                    f"{format_rows(rows[hit])}; fill in the ids, or remove the column (or "
                    "set [columns] cell_id to a missing name) to have ids generated.")
        hit = idx[dup[idx]]
        if hit.size:
            ids = pd.unique(id_text[hit])[:3]
            parts = [f"'{cid}' at {format_rows(rows[hit[id_text[hit] == cid]])}"
                     for cid in ids]
            more = pd.unique(id_text[hit]).size - len(ids)
            tail = f" ({more} more repeated ids)" if more > 0 else ""
            return (f"{where}: cell ids in column '{id_col}' repeat within the sample: "
                    f"{'; '.join(parts)}{tail}; make the ids unique within each sample, or "
                    "remove the column to have ids generated.")
    if idx.size < config.min_cells:
        return (f"{where}: has {idx.size} cell{'s' if idx.size != 1 else ''}, fewer than "
                f"min_cells = {config.min_cells} needed to analyse it; remove the sample from "
                "the input or lower min_cells in the config.")
    return None


def _text_in_numbers(values: pd.Series) -> np.ndarray | None:
    """Mask of the text values of a column that holds numbers in most non-empty rows.

    ``None`` when the column is numeric, boolean or categorical, holds no text, holds no
    number, or holds text in at least half of its non-empty rows (a label or metadata column).
    Numbers are values :func:`pandas.to_numeric` parses (``inf`` included); blank strings are
    empty. Work is on the distinct values.
    """
    dtype = values.dtype
    if (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype)):
        return None
    try:
        codes, uniques = pd.factorize(values)
    except TypeError:  # unhashable cells (lists from Parquet): not a marker column
        return None
    if len(uniques) == 0:
        return None
    text = pd.Series(np.asarray(uniques, dtype=object)).map(str).str.strip()
    number = pd.to_numeric(text, errors="coerce").notna().to_numpy()
    is_text = ~number & (text != "").to_numpy()
    if not is_text.any() or not number.any():
        return None
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    if counts[number].sum() <= counts[is_text].sum():
        return None
    return (codes >= 0) & is_text[np.maximum(codes, 0)]


def _extent_error(where: str, idx: np.ndarray, rows: np.ndarray, frame: pd.DataFrame,
                  found: dict[str, str], sources: dict[str, tuple[str, ...]],
                  x_um: np.ndarray, y_um: np.ndarray, um_per_unit: float) -> str | None:
    """Return the coordinate-range error of one sample (see module docstring), or ``None``."""
    if idx.size == 0:
        return None
    for key, values in (("x", x_um[idx]), ("y", y_um[idx])):
        with np.errstate(over="ignore", invalid="ignore"):
            extent = float(values.max() - values.min())
        if extent <= MAX_EXTENT_UM:
            continue
        name = found[key]
        role = _ROLES[key]
        limit = f"the {MAX_EXTENT_UM:,.0f} µm (10 cm) a tissue section can span"
        deviation = np.abs(values - np.median(values))
        far = deviation > MAX_EXTENT_UM
        if far.any() and far.sum() <= max(1, _OUTLIER_FRACTION * idx.size):
            worst = int(np.argmax(deviation))
            i = idx[worst]
            shown = _raw_value(frame, name, sources.get(name, ()), i)
            more = f" (with {int(far.sum()) - 1:,} more such rows)" if far.sum() > 1 else ""
            return (f"{where}: column '{name}' ({role}) holds {shown} at row {rows[i]}, "
                    f"{deviation[worst]:.3g} µm from the sample's median{more}, so the "
                    f"sample would span {extent:.3g} µm, more than {limit}; fix or remove "
                    "that row.")
        lo, hi = int(np.argmin(values)), int(np.argmax(values))
        spacing = _median_spacing(x_um[idx], y_um[idx])
        hint = ""
        if spacing is not None and spacing > 0 and np.isfinite(spacing):
            factor = um_per_unit * _TARGET_SPACING_UM / spacing
            hint = (f" (um_per_unit = {factor:.2g} would put cells about "
                    f"{_TARGET_SPACING_UM:g} µm apart)")
        return (f"{where}: column '{name}' ({role}) spans {extent:.3g} µm with um_per_unit = "
                f"{um_per_unit:g} (from row {rows[idx[lo]]} to row {rows[idx[hi]]}), more than "
                f"{limit}; if the coordinates are not micrometres set um_per_unit to the µm "
                f"per coordinate unit{hint}, else fix the export.")
    return None


def _median_spacing(x: np.ndarray, y: np.ndarray) -> float | None:
    """Median nearest-neighbour distance (``None`` below 2 cells).

    Queries an evenly spaced subset of :data:`_SPACING_QUERIES` cells on larger samples.
    """
    if x.size < 2:
        return None
    points = np.column_stack([x, y])
    tree = cKDTree(points, balanced_tree=False, compact_nodes=False)
    if x.size > _SPACING_QUERIES:
        queries = points[np.linspace(0, x.size - 1, _SPACING_QUERIES).astype(np.intp)]
    else:
        queries = points
    dist, _ = tree.query(queries, k=2)
    return float(np.median(dist[:, 1]))


def _spacing_warning(where: str, x: np.ndarray, y: np.ndarray,
                     um_per_unit: float) -> str | None:
    """Warn when the median nearest-neighbour distance is outside 3–50 µm."""
    spacing = _median_spacing(x, y)
    if spacing is None:
        return None
    median = spacing
    low, high = NN_SPACING_UM
    if low <= median <= high:
        return None
    if median == 0:
        return (f"{where}: median nearest-neighbour distance is 0 µm, so most cells share "
                "their coordinates with another cell; check for duplicated rows.")
    factor = um_per_unit * _TARGET_SPACING_UM / median
    suggested = np.format_float_positional(factor, precision=2, fractional=False, trim="-")
    return (f"{where}: median nearest-neighbour distance is {median:.3g} µm, typical cell "
            f"spacing is 3–50 µm; if the coordinates are not micrometres (e.g. pixels), set "
            f"um_per_unit to the µm per coordinate unit (um_per_unit = {suggested} would give "
            f"about {_TARGET_SPACING_UM:g} µm).")
