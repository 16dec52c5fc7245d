"""Readers of imaging spatial-transcriptomics output folders: Xenium, CosMx, MERSCOPE.

Each folder is **one sample**, named after the folder (a folder of such folders gives one
sample per folder; CosMx fields of view stay one sample, as they are tiles of one section).
Genes become marker columns (counts as in the files, no per-cell normalisation) or, when the
matrix holds more than :data:`metaniche.genes.MAX_DENSE_VALUES` values, a sparse
:class:`metaniche.genes.GeneMatrix` kept with the cells (no gene dropped; see
:mod:`metaniche.genes`); control features are dropped and counted in a warning. Cell types
are not in these outputs: give them with ``[input] cell_types``
(:mod:`metaniche.io.cell_types`) or phenotype with ``[gating]``.

===========  =================================================================================
``xenium``   ``cells.parquet`` / ``cells.csv.gz`` / ``cells.csv`` (``cell_id``, ``x_centroid``,
             ``y_centroid``, µm) + ``cell_feature_matrix.h5`` (10x HDF5, read with h5py;
             float64 ``shape``/``indices``/``indptr`` as written by R are accepted when whole
             numbers), else the MEX folder ``cell_feature_matrix/`` (``matrix.mtx[.gz]``,
             ``barcodes.tsv[.gz]``, ``features.tsv[.gz]``). Only ``Gene Expression``
             features are kept (negative-control probes and codewords, unassigned and
             deprecated codewords are dropped). Cell id: ``cell_id``.
``cosmx``    ``*_exprMat_file.csv`` (``fov``, ``cell_ID``, one column per gene) +
             ``*_metadata_file.csv`` (``fov``, ``cell_ID``, ``CenterX_global_px``,
             ``CenterY_global_px``). Cell id: ``<fov>_<cell_ID>`` (AtoMx's own ``cell_id``
             column, when present, is kept as ``cosmx_cell_id``); rows of ``cell_ID`` 0
             in the expression matrix (transcripts outside cells) are dropped; ``NegPrb*``,
             ``Negative*``, ``SystemControl*`` and ``FalseCode*`` columns are controls.
             Positions are pixels: with ``um_per_unit`` left at 1 they are multiplied by
             :data:`COSMX_UM_PER_PX` (0.18 µm/px) and a warning says so; otherwise by
             ``um_per_unit``.
``merscope`` ``*cell_by_gene.csv`` (cell id in the first column, one column per gene) +
             ``*cell_metadata.csv`` (cell id in the first column, ``center_x``, ``center_y``
             in µm). ``Blank-*`` columns are controls.
===========  =================================================================================

The two files of a pair must hold the same cells (any order); otherwise the reader fails with
one sentence naming both files. Xenium and MERSCOPE positions are µm; ``um_per_unit``
still multiplies them (leave it at 1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from metaniche.config import ColumnNames, Config
from metaniche.genes import GeneMatrix, expression_markers
from metaniche.io._common import ABSENT, MappedTable, Reader, label_or_placeholder, unique_name
from metaniche.io._tables import (
    RawTable,
    TableError,
    file_format,
    list_columns,
    read_parquet_table,
    read_text_table,
    reason,
)

__all__ = ["COSMX_UM_PER_PX", "map_cosmx", "map_merscope", "map_xenium"]

#: µm per CosMx pixel used when ``um_per_unit`` is left at 1: the 0.18 µm/px of the CosMx
#: SMI camera whose fields of view are 5,472 × 3,648 px (985 × 657 µm; NanoString's public
#: NSCLC data, He et al., Nat Biotechnol 2022). Both CosMx sets in the shared data are of
#: that instrument: their fields of view lie 5,472 px apart and local y stays below 3,648 px.
#: Later instruments (4,256 × 4,256-px fields of view, 0.51 mm) have 0.12028 µm/px: set
#: ``um_per_unit = 0.12028`` for them.
COSMX_UM_PER_PX = 0.18

_GENE = "Gene Expression"
_COSMX_CONTROLS = re.compile(r"^(NegPrb|Negative|SystemControl|FalseCode)", re.IGNORECASE)
_MERSCOPE_CONTROLS = re.compile(r"^Blank-", re.IGNORECASE)


def _find(folder: Path, names: tuple[str, ...], pattern: str | None = None) -> Path | None:
    """The first file of ``folder`` named one of ``names`` (or ending in ``pattern``)."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    if pattern is not None:
        hits = sorted(p for p in folder.iterdir() if p.is_file()
                      and re.search(pattern, p.name, re.IGNORECASE))
        if hits:
            return hits[0]
    return None


def _not_found(folder: Path, reader: Reader, what: str, fix: str) -> TableError:
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    return TableError(f"{folder}: read as {reader.described} but it has no {what} (files found: "
                      f"{list_columns(names)}); {fix}.")


def _read_table(path: Path, reader: Reader, text: tuple[str, ...] = ()) -> RawTable:
    kind, gz = file_format(path)
    if kind == "parquet":
        return read_parquet_table(path, what=f"{reader.label} table")
    return read_text_table(path, gz, text, what=f"{reader.label} table",
                           label=reader.described)


def _ids(values: pd.Series) -> np.ndarray:
    """Cell ids as text (integral floats without ``.0``; bytes, as in some Parquet, decoded)."""
    if values.dtype == object and len(values) and isinstance(values.iloc[0], bytes):
        values = values.map(lambda v: v.decode() if isinstance(v, bytes) else v)
    if pd.api.types.is_float_dtype(values.dtype):
        finite = values.dropna()
        if len(finite) == len(values) and np.all(finite == np.round(finite)):
            values = values.astype(np.int64)
    return values.astype(str).to_numpy(dtype=object)


def _column(path: Path, reader: Reader, frame: pd.DataFrame, name: str, fix: str) -> str:
    if name in frame.columns:
        return name
    lower = {str(c).lower(): str(c) for c in frame.columns}
    if name.lower() in lower:
        return lower[name.lower()]
    raise TableError(f"{path}: read as part of {reader.described} but it has no column "
                     f"'{name}' (columns found: {list_columns(frame.columns)}); {fix}.")


def _align(cells_path: Path, matrix_path: Path, cell_ids: np.ndarray,
           matrix_ids: np.ndarray) -> np.ndarray:
    """Row of the matrix for each cell; raises when the two files hold different cells."""
    index = pd.Index(matrix_ids)
    if not index.is_unique:
        dup = pd.unique(matrix_ids[index.duplicated()])[:3]
        raise TableError(f"{matrix_path}: cell ids repeat ({', '.join(map(repr, dup))}); "
                         "use the expression matrix as written by the instrument.")
    where = index.get_indexer(cell_ids)
    missing = cell_ids[where < 0]
    extra = np.setdiff1d(matrix_ids, cell_ids)
    if missing.size or extra.size or cell_ids.size != matrix_ids.size:
        shown = ", ".join(repr(str(v)) for v in (missing if missing.size else extra)[:3])
        raise TableError(
            f"{cells_path}: {missing.size:,} of its {cell_ids.size:,} cells have no row in "
            f"{matrix_path.name} and {extra.size:,} of the matrix's {matrix_ids.size:,} cells "
            f"are not in {cells_path.name} (e.g. {shown}); the two files must come from the "
            "same output: copy both from the same run folder.")
    return where


def _marker_frame(matrix: sp.spmatrix | np.ndarray, genes: list[str], taken: pd.Index,
                  config: Config) -> tuple[pd.DataFrame, GeneMatrix | None]:
    """Genes as dense float64 marker columns, or kept sparse when the matrix is large
    (:func:`metaniche.genes.expression_markers`, normalised as ``[input]
    gene_normalisation`` says); names clashing with cell columns skipped."""
    return expression_markers(matrix, genes, [str(c) for c in taken],
                              config.input.gene_normalisation)


def _finish(path: Path, reader: Reader, config: Config, frame: pd.DataFrame, id_col: str,
            x_col: str, y_col: str, notes: list[str], row_base: int,
            sources: dict[str, tuple[str, ...]] | None = None,
            genes: GeneMatrix | None = None) -> MappedTable:
    label = label_or_placeholder(path, reader, frame, config,
                                 "the output holds no cell types")
    return MappedTable(RawTable(frame, row_base=row_base, warnings=notes, genes=genes),
                       ColumnNames(sample=ABSENT, cell_id=id_col, x=x_col, y=y_col,
                                   cell_type=label), sources or {})


# --- Xenium -------------------------------------------------------------------------------

def map_xenium(path: Path, source: None, config: Config, reader: Reader) -> MappedTable:
    """Read a Xenium output folder (see module docstring) into one flat table.

    Raises
    ------
    TableError
        One sentence naming the folder or file, what is missing or inconsistent, and the fix.
    """
    if not path.is_dir():
        raise TableError(f"{path}: is a file, not {reader.described}; point to the folder "
                         "holding cells.csv.gz and cell_feature_matrix.h5.")
    cells_path = _find(path, ("cells.parquet", "cells.csv.gz", "cells.csv"))
    if cells_path is None:
        raise _not_found(path, reader, "cells.parquet, cells.csv.gz or cells.csv",
                         "copy the cells file of the same Xenium output into the folder")
    raw = _read_table(cells_path, reader, ("cell_id",))
    frame = raw.frame
    frame = frame.drop(columns=[c for c in frame.columns
                                if str(c) == "" or str(c).startswith("Unnamed: ")])
    fix = "use the cells file written by the Xenium instrument"
    id_col = _column(cells_path, reader, frame, "cell_id", fix)
    x_col = _column(cells_path, reader, frame, "x_centroid", fix)
    y_col = _column(cells_path, reader, frame, "y_centroid", fix)
    matrix, barcodes, genes, types, matrix_path = _xenium_matrix(path, reader)
    cell_ids = _ids(frame[id_col])
    rows = _align(cells_path, matrix_path, cell_ids, barcodes)
    notes: list[str] = []
    gene = types == _GENE
    if not gene.all():
        dropped = pd.Series(types[~gene]).value_counts()
        listed = ", ".join(f"{n:,} {t}" for t, n in dropped.items())
        notes.append(f"{matrix_path}: {int((~gene).sum()):,} control features were dropped "
                     f"({listed}); only '{_GENE}' features are kept as genes.")
    matrix = matrix[rows][:, np.flatnonzero(gene)]
    frame = frame.reset_index(drop=True)
    frame[id_col] = cell_ids
    markers, kept = _marker_frame(matrix, [genes[i] for i in np.flatnonzero(gene)],
                                  frame.columns, config)
    frame = pd.concat([frame, markers], axis=1)
    return _finish(path, reader, config, frame, id_col, x_col, y_col, notes, raw.row_base,
                   genes=kept)


def _xenium_matrix(folder: Path, reader: Reader
                   ) -> tuple[sp.csr_matrix, np.ndarray, list[str], np.ndarray, Path]:
    """``(cells × features CSR, barcodes, feature names, feature types, file)``."""
    h5 = folder / "cell_feature_matrix.h5"
    if h5.is_file():
        return (*_read_10x_h5(h5), h5)
    mex = folder / "cell_feature_matrix"
    if mex.is_dir():
        return (*_read_mex(mex, reader), mex)
    raise _not_found(folder, reader, "cell_feature_matrix.h5 or cell_feature_matrix/ folder",
                     "copy the cell-feature matrix of the same Xenium output into the folder")


def _whole(h5: Path, name: str, values: np.ndarray) -> np.ndarray:
    """Integer array from a 10x HDF5 index dataset (float64 accepted when whole numbers)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        if not (np.all(np.isfinite(values)) and np.all(values == np.round(values))):
            raise TableError(f"{h5}: dataset matrix/{name} holds non-integer values; write "
                             "the matrix again with integer indices.")
    return values.astype(np.int64)


def _text(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values],
                    dtype=object)


def _read_10x_h5(h5: Path) -> tuple[sp.csr_matrix, np.ndarray, list[str], np.ndarray]:
    import h5py

    try:
        with h5py.File(h5, "r") as handle:
            group = handle["matrix"]
            data = np.asarray(group["data"][()], dtype=np.float64)
            indices = _whole(h5, "indices", group["indices"][()])
            indptr = _whole(h5, "indptr", group["indptr"][()])
            shape = tuple(int(v) for v in _whole(h5, "shape", group["shape"][()]))
            barcodes = _text(group["barcodes"][()])
            features = group["features"]
            names = _text(features["name"][()])
            types = (_text(features["feature_type"][()]) if "feature_type" in features
                     else np.full(names.size, _GENE, dtype=object))
    except TableError:
        raise
    except Exception as err:
        raise TableError(f"{h5}: cannot be read as a 10x HDF5 matrix ({reason(err)}); it needs "
                         "matrix/data, indices, indptr, shape, barcodes and features/name: "
                         "copy the file of the Xenium output again.") from None
    try:  # 10x: features × cells, compressed by cell (CSC), so its transpose is cells × genes
        matrix = sp.csc_matrix((data, indices, indptr), shape=shape).T.tocsr()
    except ValueError as err:
        raise TableError(f"{h5}: its matrix/data, indices, indptr and shape do not agree "
                         f"({reason(err)}); copy the file of the Xenium output again.") from None
    if matrix.shape != (barcodes.size, names.size):
        raise TableError(f"{h5}: matrix/shape {shape} does not match its {names.size} features "
                         f"and {barcodes.size} barcodes; copy the file again.")
    return matrix, barcodes, list(names), types


def _read_mex(mex: Path, reader: Reader) -> tuple[sp.csr_matrix, np.ndarray, list[str],
                                                  np.ndarray]:
    import scipy.io

    parts = {}
    for stem in ("matrix.mtx", "barcodes.tsv", "features.tsv"):
        found = _find(mex, (stem + ".gz", stem))
        if found is None:
            raise _not_found(mex, reader, f"{stem}.gz", "copy the complete cell_feature_matrix "
                             "folder (matrix.mtx.gz, barcodes.tsv.gz, features.tsv.gz)")
        parts[stem] = found
    try:
        matrix = sp.csr_matrix(scipy.io.mmread(parts["matrix.mtx"])).T.tocsr().astype(
            np.float64)
        barcodes = pd.read_csv(parts["barcodes.tsv"], sep="\t", header=None, dtype=str)
        features = pd.read_csv(parts["features.tsv"], sep="\t", header=None, dtype=str)
    except Exception as err:
        raise TableError(f"{mex}: cannot be read as a 10x MEX matrix ({reason(err)}); copy "
                         "the cell_feature_matrix folder of the Xenium output again.") from None
    names = features.iloc[:, 1 if features.shape[1] > 1 else 0].to_numpy(dtype=object)
    types = (features.iloc[:, 2].to_numpy(dtype=object) if features.shape[1] > 2
             else np.full(len(features), _GENE, dtype=object))
    ids = barcodes.iloc[:, 0].to_numpy(dtype=object)
    if matrix.shape != (ids.size, names.size):
        raise TableError(f"{parts['matrix.mtx']}: is {matrix.shape[1]:,} features × "
                         f"{matrix.shape[0]:,} cells but the folder lists {names.size:,} "
                         f"features and {ids.size:,} barcodes; copy the folder again.")
    return matrix, ids, [str(n) for n in names], types


def _flat_pair(path: Path, reader: Reader, meta: tuple[str, str], expr: tuple[str, str],
               vendor: str) -> tuple[Path, pd.DataFrame, Path]:
    """The metadata table and the expression file of a vendor's flat-file folder (the
    expression matrix is read by :func:`_sparse_expression`).

    ``meta`` and ``expr`` are ``(name shown to the user, file-name pattern)``. Raises a
    :class:`TableError` naming the folder and the missing file when either is absent.
    """
    if not path.is_dir():
        raise TableError(f"{path}: is a file, not {reader.described}; point to the folder "
                         f"holding {expr[0]} and {meta[0]}.")
    found = {}
    for what, pattern in (meta, expr):
        found[what] = _find(path, (), pattern)
        if found[what] is None:
            raise _not_found(path, reader, what, f"copy the {what} of the same {vendor} run "
                             "into the folder")
    meta_path, expr_path = found[meta[0]], found[expr[0]]
    assert meta_path is not None and expr_path is not None
    return meta_path, _read_table(meta_path, reader).frame, expr_path


#: Bytes of CSV text parsed per block by :func:`_sparse_expression` (a block of a 6,000-gene
#: table is ~1,500 rows, densified to ~70 MB at a time).
EXPRESSION_BLOCK_BYTES = 8 << 20


def _sparse_expression(path: Path, reader: Reader, id_names: Sequence[str], fix: str,
                       block_bytes: int | None = None,
                       ) -> tuple[pd.DataFrame, list[str], sp.csr_matrix]:
    """A flat cells × genes CSV (CosMx ``exprMat``, MERSCOPE ``cell_by_gene``) read block by
    block into a sparse matrix, never whole as a dense table.

    ``id_names`` are the identifier columns (found in any case; an empty string stands for
    the first column); every other column is a feature whose values are read as float64
    (empty → NaN). Returns the id columns (as text), the feature names in file order and the
    CSR matrix (float64), rows in file order. Memory is that of the non-zero values plus one
    block (``block_bytes`` of text, default :data:`EXPRESSION_BLOCK_BYTES`); time O(cells ×
    columns) in pyarrow's CSV parser.

    Raises
    ------
    TableError
        The file cannot be parsed, lacks an id column, or holds a non-numeric value in a
        feature column (named, with ``fix``).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    block = block_bytes or EXPRESSION_BLOCK_BYTES
    try:
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=block)) as head:
            names = [str(n) for n in head.schema.names]
    except (pa.ArrowInvalid, OSError) as error:
        raise TableError(f"{path}: could not be read as the expression matrix of "
                         f"{reader.described} ({str(error).splitlines()[0]}); {fix}.") from None
    empty = pd.DataFrame(columns=names)
    ids = [names[0] if not n else _column(path, reader, empty, n, fix) for n in id_names]
    features = [n for n in names if n not in ids]
    convert = pacsv.ConvertOptions(column_types={**{n: pa.string() for n in ids},
                                                 **{n: pa.float64() for n in features}})
    id_parts: list[pd.DataFrame] = []
    blocks: list[sp.csr_matrix] = []
    try:
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=block),
                            convert_options=convert) as stream:
            for batch in stream:
                id_parts.append(pd.DataFrame({n: batch.column(n).to_numpy(zero_copy_only=False)
                                              for n in ids}))
                values = np.empty((batch.num_rows, len(features)))
                for j, name in enumerate(features):
                    values[:, j] = batch.column(name).to_numpy(zero_copy_only=False)
                blocks.append(sp.csr_matrix(values))
    except pa.ArrowInvalid as error:
        raise TableError(f"{path}: a value of the expression matrix is not a number "
                         f"({str(error).splitlines()[0]}); {fix}.") from None
    table = (pd.concat(id_parts, ignore_index=True) if id_parts
             else pd.DataFrame({n: pd.Series(dtype=object) for n in ids}))
    matrix = (sp.vstack(blocks, format="csr") if blocks
              else sp.csr_matrix((0, len(features))))
    return table, features, matrix


# --- CosMx --------------------------------------------------------------------------------

def map_cosmx(path: Path, source: None, config: Config, reader: Reader) -> MappedTable:
    """Read a CosMx flat-file folder (see module docstring) into one flat table.

    Raises
    ------
    TableError
        One sentence naming the folder or file, what is missing or inconsistent, and the fix.
    """
    meta_path, meta, expr_path = _flat_pair(
        path, reader, ("*_metadata_file.csv", r"_metadata_file\.csv(\.gz)?$"),
        ("*_exprMat_file.csv", r"_exprMat_file\.csv(\.gz)?$"), "CosMx")
    fix = "use the flat files exported by AtoMx"
    mfov, mcell = (_column(meta_path, reader, meta, c, fix) for c in ("fov", "cell_ID"))
    cx = _column(meta_path, reader, meta, "CenterX_global_px", fix)
    cy = _column(meta_path, reader, meta, "CenterY_global_px", fix)
    expr, genes_all, values = _sparse_expression(expr_path, reader, ("fov", "cell_ID"), fix)
    efov, ecell = expr.columns
    inside = pd.to_numeric(expr[ecell], errors="coerce").to_numpy() != 0
    expr, values = expr.loc[inside].reset_index(drop=True), values[np.flatnonzero(inside)]
    cell_ids = _ids(meta[mfov]).astype(str) + "_" + _ids(meta[mcell]).astype(str)
    expr_ids = _ids(expr[efov]).astype(str) + "_" + _ids(expr[ecell]).astype(str)
    rows = _align(meta_path, expr_path, cell_ids.astype(object), expr_ids.astype(object))
    control = [g for g in genes_all if _COSMX_CONTROLS.match(g)]
    genes = [g for g in genes_all if not _COSMX_CONTROLS.match(g)]
    notes: list[str] = []
    if control:
        notes.append(f"{expr_path}: {len(control):,} negative-control columns ({control[0]}, …) "
                     "were dropped; only gene columns are kept.")
    frame = meta.reset_index(drop=True).copy()
    if "cell_id" in frame.columns:  # AtoMx's own id (c_<slide>_<fov>_<cell>): kept aside
        frame = frame.rename(columns={"cell_id": unique_name(frame, "cosmx_cell_id")})
    id_col = "cell_id"
    frame[id_col] = cell_ids.astype(object)
    scale = 1.0
    if config.um_per_unit == 1.0:
        scale = COSMX_UM_PER_PX
        notes.append(f"{meta_path}: CosMx positions are pixels and um_per_unit is 1, so "
                     f"{COSMX_UM_PER_PX} µm/px (CosMx SMI with 5,472 × 3,648-px fields of view) "
                     "was applied; set um_per_unit = 0.12028 for data of the later "
                     "4,256 × 4,256-px instrument.")
    x_col, y_col = unique_name(frame, "x_um"), unique_name(frame, "y_um")
    frame[x_col] = pd.to_numeric(frame[cx], errors="coerce").to_numpy(dtype=np.float64) * scale
    frame[y_col] = pd.to_numeric(frame[cy], errors="coerce").to_numpy(dtype=np.float64) * scale
    markers, kept = _marker_frame(_columns_of(values, genes_all, genes)[rows], genes,
                                  frame.columns, config)
    frame = pd.concat([frame, markers], axis=1)
    return _finish(path, reader, config, frame, id_col, x_col, y_col, notes, 2,
                   {x_col: (cx,), y_col: (cy,)}, genes=kept)


# --- MERSCOPE -----------------------------------------------------------------------------

def map_merscope(path: Path, source: None, config: Config, reader: Reader) -> MappedTable:
    """Read a MERSCOPE output folder (see module docstring) into one flat table.

    Raises
    ------
    TableError
        One sentence naming the folder or file, what is missing or inconsistent, and the fix.
    """
    meta_path, meta, expr_path = _flat_pair(
        path, reader, ("cell_metadata.csv", r"cell_metadata\.csv(\.gz)?$"),
        ("cell_by_gene.csv", r"cell_by_gene\.csv(\.gz)?$"), "MERSCOPE")
    fix = "use the cell_metadata.csv written by the MERSCOPE pipeline"
    cx = _column(meta_path, reader, meta, "center_x", fix)
    cy = _column(meta_path, reader, meta, "center_y", fix)
    expr, genes_all, values = _sparse_expression(
        expr_path, reader, ("",), "use the cell_by_gene.csv written by the MERSCOPE pipeline")
    mid, eid = str(meta.columns[0]), str(expr.columns[0])
    cell_ids = _ids(meta[mid])
    rows = _align(meta_path, expr_path, cell_ids, _ids(expr[eid]))
    control = [g for g in genes_all if _MERSCOPE_CONTROLS.match(g)]
    genes = [g for g in genes_all if not _MERSCOPE_CONTROLS.match(g)]
    notes: list[str] = []
    if control:
        notes.append(f"{expr_path}: {len(control):,} blank-control columns ({control[0]}, …) "
                     "were dropped; only gene columns are kept.")
    frame = meta.reset_index(drop=True).copy()
    id_col = unique_name(frame, "cell_id")
    frame[id_col] = cell_ids
    if id_col != mid:
        frame = frame.drop(columns=[mid])
    markers, kept = _marker_frame(_columns_of(values, genes_all, genes)[rows], genes,
                                  frame.columns, config)
    frame = pd.concat([frame, markers], axis=1)
    return _finish(path, reader, config, frame, id_col, cx, cy, notes, 2, genes=kept)


def _columns_of(matrix: sp.csr_matrix, names: list[str], wanted: list[str]) -> sp.csr_matrix:
    """The columns ``wanted`` (in that order) of a matrix whose columns are ``names``."""
    where = {n: j for j, n in enumerate(names)}
    return matrix[:, [where[n] for n in wanted]]
