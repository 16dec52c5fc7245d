"""The registry of input readers: one entry per format, everything else derives from it.

Each :class:`~metaniche.io._common.Reader` in :data:`READERS` gives a format's name (the
``format`` config key and ``--format``), its label in messages, the containers it reads, its
signature (columns that identify it) and its mapper to the cell-table contract. The config's
allowed ``format`` values (:data:`metaniche._contract.INPUT_FORMATS`, checked against this
registry at import), ``format = "auto"`` detection, the error messages and
:func:`format_table` (the listing for help texts and docs) all read this one list. Adding a
format is one entry here (plus its name in :data:`metaniche._contract.READER_NAMES`).

``format = "auto"`` (the default) chooses the reader from the file's content:

1. a directory is an imaging-ST folder when its file names say so (``xenium``,
   ``cosmx``, ``merscope``: see below), else a ``zarr`` store (``spatialdata``);
2. the generic contract (``"table"``) when the configured ``[columns]`` x and y columns are
   present, so explicit column settings always win;
3. else the first reader, in registry order, that accepts the file's container and has one
   of its signature columns in the header (text files: tested on the raw header line, so a
   file with the wrong delimiter is still recognised and reported as that format):

   ========================  =======================================================
   ``inform``                ``Cell X Position`` / ``Cell Y Position`` (inForm cell_seg_data)
   ``halo``                  ``XMin``, ``XMax``, ``YMin``, ``YMax`` (HALO object data)
   ``codex``                 ``X.X``, ``Y.Y`` (CODEX / Goltsev et al. cell table)
   ``cellprofiler``          ``Location_Center_X`` / ``_Y`` or ``AreaShape_Center_X`` /
                             ``_Y`` (CellProfiler)
   ``mcmicro``               ``X_centroid``, ``Y_centroid`` (MCMICRO quantification)
   ``scimap``                ``.h5ad`` with obs ``X_centroid``/``X_position`` (scimap)
   ``squidpy``               ``.h5ad`` with ``obsm["spatial"]`` (squidpy / scanpy)
   ``spatialdata``           a directory named ``*.zarr`` or holding ``zarr.json`` /
                             ``.zgroup`` (SpatialData store; needs the ``spatialdata``
                             extra; see :mod:`metaniche.io._spatialdata`)
   ``xenium``                a folder holding ``cell_feature_matrix.h5`` or
                             ``cell_feature_matrix/`` (10x Xenium output)
   ``cosmx``                 a folder holding ``*_exprMat_file.csv`` /
                             ``*_metadata_file.csv`` (CosMx flat files)
   ``merscope``              a folder holding ``*cell_by_gene.csv`` /
                             ``*cell_metadata.csv`` (MERSCOPE output)
   ``visium``                a folder holding ``filtered_feature_bc_matrix.h5`` /
                             ``filtered_feature_bc_matrix/`` or ``binned_outputs/``
                             (10x Visium / Visium HD outs; see :mod:`metaniche.io._spots`)
   ========================  =======================================================

   Imaging-ST folders (``xenium``, ``cosmx``, ``merscope``) are recognised by their file
   names (their signature: :data:`metaniche.io._tables.VENDOR_FILES`), before zarr
   stores; each folder is one sample named after it (see :mod:`metaniche.io._imaging`).

4. else the generic reader, which names the missing columns.

How each export maps to the contract: :mod:`metaniche.io.formats`.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
from pathlib import Path

import pyarrow.parquet as pq

from metaniche._contract import AUTO_FORMAT, READER_NAMES
from metaniche.config import Config
from metaniche.io._anndata import read_h5ad_table
from metaniche.io._common import PLACEHOLDER_LABEL, H5adKeys, MappedTable, Reader
from metaniche.io._imaging import map_cosmx, map_merscope, map_xenium
from metaniche.io._spatialdata import map_spatialdata
from metaniche.io._spots import map_visium
from metaniche.io._tables import (
    VENDOR_FILES,
    TableError,
    file_format,
    find_column,
    read_parquet_table,
    read_text_table,
    supported_list,
    vendor_layout,
)
from metaniche.io.formats import (
    map_cellprofiler,
    map_codex,
    map_halo,
    map_inform,
    map_mcmicro,
    map_scimap,
    map_squidpy,
    phenotype_map_for,
)

__all__ = ["READERS", "companion_files", "detect_format", "format_table", "read_mapped",
           "reader"]

_TABLE_KINDS = ("text", "parquet")

#: Every input reader, in the order ``format = "auto"`` tries their signatures.
READERS: dict[str, Reader] = {r.name: r for r in (
    Reader("table", "cell table", "a", ("text", "parquet", "h5ad")),
    Reader("inform", "inForm cell_seg_data export", "an", _TABLE_KINDS,
           signature=("Cell X Position", "Cell Y Position"), mapper=map_inform,
           text_columns=("Sample Name",)),
    Reader("halo", "HALO object-data export", "a", _TABLE_KINDS,
           signature=("XMin", "XMax", "YMin", "YMax"), mapper=map_halo,
           text_columns=("Image Location",)),
    Reader("codex", "CODEX cell table", "a", _TABLE_KINDS, signature=("X.X", "Y.Y"),
           mapper=map_codex, text_columns=("sample_Xtile_Ytile",),
           pixel_hint="0.377 for the CODEX 20× images of Goltsev et al. 2018",
           companion=phenotype_map_for),
    Reader("cellprofiler", "CellProfiler object export", "a", _TABLE_KINDS,
           signature=("Location_Center_X", "Location_Center_Y", "AreaShape_Center_X",
                      "AreaShape_Center_Y"), mapper=map_cellprofiler,
           pixel_hint="the microscope's µm per pixel; 1 for imaging mass cytometry"),
    Reader("mcmicro", "MCMICRO quantification table", "an", _TABLE_KINDS,
           signature=("X_centroid", "Y_centroid"), mapper=map_mcmicro,
           text_columns=("imageid",),
           pixel_hint="0.65 for the MCMICRO exemplar-001 CyCIF image; 1 for imaging mass "
                      "cytometry"),
    Reader("scimap", "scimap AnnData file", "a", ("h5ad",),
           signature=("X_centroid", "X_position"), mapper=map_scimap),
    Reader("squidpy", "squidpy AnnData file", "a", ("h5ad",), signature=("obsm['spatial']",),
           mapper=map_squidpy),
    Reader("spatialdata", "SpatialData zarr store", "a", ("zarr",), mapper=map_spatialdata),
    Reader("xenium", "Xenium output folder", "a", ("folder",), mapper=map_xenium,
           signature=VENDOR_FILES["xenium"]),
    Reader("cosmx", "CosMx flat-file folder", "a", ("folder",), mapper=map_cosmx,
           signature=VENDOR_FILES["cosmx"]),
    Reader("merscope", "MERSCOPE output folder", "a", ("folder",), mapper=map_merscope,
           signature=VENDOR_FILES["merscope"]),
    Reader("visium", "10x Visium output folder", "a", ("folder",), mapper=map_visium,
           signature=VENDOR_FILES["visium"]),
)}

if tuple(READERS) != READER_NAMES:  # pragma: no cover - a developer error, caught by tests
    raise RuntimeError(f"metaniche._contract.READER_NAMES {READER_NAMES} must list the "
                       f"registered readers {tuple(READERS)} in the same order.")

_MAX_HEADER = 4 * 1024 * 1024


def reader(name: str) -> Reader:
    """The registered reader called ``name``."""
    return READERS[name]


def format_table() -> str:
    """One line per accepted ``format`` value: name, label and signature (for help and docs)."""
    lines = [f"{AUTO_FORMAT}: detected from the file (the first reader whose signature matches)"]
    for r in READERS.values():
        if r.name == "table":
            sign = "the [columns] of the config"
        elif r.signature:
            sign = ", ".join(r.signature)
        else:
            sign = "a " + " or ".join(r.kinds) + " container"
        lines.append(f"{r.name}: {r.article} {r.label} ({sign})")
    return "\n".join(lines)


def companion_files(entries: list, config: Config) -> set[Path]:
    """Side files read with a cell table (CODEX phenotype maps) among ``entries``."""
    found: set[Path] = set()
    for entry in entries:
        if isinstance(entry, tuple):
            continue
        for r in READERS.values():
            if r.companion is not None and (side := r.companion(entry, config)) is not None:
                found.add(side)
    return found


def _header_line(path: Path, gz: bool) -> str:
    """Return the first line of a text file ('' when it cannot be read)."""
    try:
        opener = gzip.open if gz else open
        with opener(path, "rb") as handle:
            line = handle.readline(_MAX_HEADER)
        return line.decode("utf-8-sig", errors="replace")
    except (OSError, EOFError, ValueError):
        return ""


def _first_match(kind: str, names: list[str], header: str = "") -> str:
    """The first export reader for container ``kind`` whose signature is in the header."""
    for r in READERS.values():
        if r.name == "table" or kind not in r.kinds:
            continue
        if kind == "text":
            hit = any(token in header for token in r.signature)
        else:
            hit = any(find_column(names, token) is not None for token in r.signature)
        if hit or not r.signature:
            return r.name
    return "table"


def detect_format(kind: str, path: Path, gz: bool, config: Config) -> str:
    """Return the reader name of a file for ``format = "auto"`` (see module docstring).

    ``kind`` is the container (``"text"``, ``"parquet"``, ``"h5ad"``, ``"zarr"``).
    """
    cols = config.columns
    if kind == "zarr":
        return _first_match("zarr", [])
    if kind == "text":
        header = _header_line(path, gz)
        names = [n.strip().strip('"') for n in re.split(r"[\t,;|]", header.strip())]
    elif kind == "parquet":
        try:
            names = list(pq.read_schema(path).names)
        except Exception:
            return "table"  # the generic reader reports the problem
        header = ""
    elif kind == "h5ad":
        keys = _h5ad_keys(path)
        if keys is None:
            return "table"
        names, header = keys.names(), ""
    else:
        return "table"
    if kind == "h5ad":
        if find_column(names, cols.x) and find_column(names, cols.y):
            return "table"
    elif {cols.x, cols.y} <= set(names):
        return "table"
    return _first_match(kind, names, header)


def _h5ad_keys(path: Path) -> H5adKeys | None:
    """``obs`` columns and ``obsm`` keys of an ``.h5ad`` file (h5py; ``None`` if unreadable)."""
    try:
        import h5py

        with h5py.File(path, "r") as handle:
            obs = list(handle["obs"].keys()) if "obs" in handle else []
            obsm = list(handle["obsm"].keys()) if "obsm" in handle else []
    except Exception:
        return None
    return H5adKeys(obs, obsm)


def _names_for(kind: str) -> str:
    names = [AUTO_FORMAT, *(r.name for r in READERS.values() if kind in r.kinds)]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def read_mapped(path: Path, config: Config) -> tuple[MappedTable, str]:
    """Read a file with the reader ``config.format`` names or detects.

    Returns the mapped table and the name of the reader used.

    Raises
    ------
    TableError
        One sentence naming the file, the format it was read as, the problem and the fix.
    """
    fmt = config.format
    kind: str | None
    layout = vendor_layout(path)
    if path.is_dir():
        kind, gz = ("folder" if layout is not None else "zarr"), False
    else:
        kind, gz = file_format(path)
    chosen = None if fmt == AUTO_FORMAT else READERS[fmt]
    if chosen is not None and chosen.kinds in (("zarr",), ("folder",)):
        kind = chosen.kinds[0]  # e.g. --format xenium on a file: the reader says what is wrong
    if kind is None:
        raise TableError(f"{path}: unsupported file type (supported: {supported_list()}); "
                         "export the table as CSV or Parquet.")
    if chosen is not None and kind not in chosen.kinds:
        what = {"zarr": "a directory (a SpatialData zarr store)",
                "folder": f"an imaging-ST output folder ({layout})",
                "h5ad": "an AnnData .h5ad file"}.get(kind, "a table")
        if kind in _TABLE_KINDS:
            raise TableError(f"{path}: {chosen.label}s are "
                             f"{' or '.join('.' + k for k in chosen.kinds)} files; use "
                             "--format auto for this table.")
        raise TableError(f"{path}: is {what}, not {chosen.described}; use --format "
                         f"{_names_for(kind)}.")
    if chosen is None:
        fmt = layout if layout is not None else detect_format(kind, path, gz, config)
        chosen = READERS[fmt]
    if kind in ("zarr", "folder"):
        assert chosen.mapper is not None
        return chosen.mapper(path, None, config, chosen), fmt
    if kind == "h5ad":
        return _read_h5ad(path, chosen, config), fmt
    cols = config.columns
    text_cols = ((cols.sample, cols.cell_id, cols.cell_type, cols.patient)
                 if chosen.mapper is None else chosen.text_columns)
    if kind == "text":
        raw = read_text_table(path, gz, text_cols, what="cell table", label=chosen.described)
    else:
        try:
            raw = read_parquet_table(path, what="cell table")
        except TableError as err:
            if chosen.mapper is None:
                raise
            raise TableError(f"{str(err).rstrip('.')} (expected {chosen.described}).") from None
    if chosen.mapper is None:
        return MappedTable(raw, cols), fmt
    return chosen.mapper(path, raw, config, chosen), fmt


def _read_h5ad(path: Path, chosen: Reader, config: Config) -> MappedTable:
    """Read an ``.h5ad`` file; a placeholder label is added when a gating panel will label."""
    if chosen.mapper is None:
        mapped = MappedTable(read_h5ad_table(path, config), config.columns)
    else:
        keys = _h5ad_keys(path)
        if keys is None:  # unreadable: the generic reader names the problem
            mapped = MappedTable(read_h5ad_table(path, config), config.columns)
        else:
            mapped = chosen.mapper(path, keys, config, chosen)
    columns = mapped.columns
    if find_column(mapped.raw.frame.columns, columns.cell_type) is None and config.gating:
        mapped.raw.frame[PLACEHOLDER_LABEL] = PLACEHOLDER_LABEL
        mapped = MappedTable(mapped.raw, dataclasses.replace(columns,
                                                             cell_type=PLACEHOLDER_LABEL),
                             mapped.sources)
    return mapped
