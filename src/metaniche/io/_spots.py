"""Spot-based spatial transcriptomics: 10x Visium / Visium HD folders and deconvolution tables.

A **spot sample** is one whose rows are spots, each carrying the deconvolved share (or
number) of every cell type; it is declared by ``[spots] proportions`` (see
:class:`metaniche.config.SpotsParams`). Spots are read into the cell-table contract, one row
per spot: ``cell_id`` is the spot barcode, ``x``/``y`` the spot centre in µm and
``cell_type`` the spot's **dominant type** (largest proportion; ties: the first type in the
table's order), so that maps and the contract keep working; the deconvolution itself is kept
as one float column per type named ``SPOT_TYPE_PREFIX + <type>`` (e.g. ``deconv:T-cells``).
The analyses of :mod:`metaniche.analyses.spots` read those columns.

Readers
-------
``visium``
    A 10x Space Ranger ``outs`` folder (or the folder holding it): the expression matrix
    ``filtered_feature_bc_matrix.h5`` (else the MEX folder ``filtered_feature_bc_matrix/``)
    and ``spatial/`` with the spot positions (``tissue_positions.parquet``,
    ``tissue_positions.csv`` with a header, or the headerless ``tissue_positions_list.csv``
    of Space Ranger < 2: barcode, in_tissue, array_row, array_col, pxl_row_in_fullres,
    pxl_col_in_fullres) and ``scalefactors_json.json``. Positions are full-resolution image
    pixels; µm per pixel is ``microns_per_pixel`` when the scale factors give it (Visium HD),
    else ``[spots] diameter_um / spot_diameter_fullres`` (the 55 µm spot diameter of
    Visium: 10x's own rule). ``x`` is the pixel column, ``y`` the pixel row. Every spot of
    the matrix (filtered: under tissue) is one row; genes become marker columns (counts as
    in the file, no per-cell normalisation; only ``Gene Expression`` features), kept sparse
    when the matrix is large (:mod:`metaniche.genes`). A Visium HD ``outs`` folder holds
    ``binned_outputs/square_<bin>um/`` folders of the same layout: ``[spots] hd_bin_um``
    chooses one (default 8 µm); the folder itself can be given too.
AnnData (legacy ST, Slide-seq)
    Read by the ``squidpy`` reader (``obsm["spatial"]``); ``[spots] proportions`` names an
    ``obsm`` key. Coordinates in array or image units are put in µm with ``um_per_unit`` or,
    simpler, ``[spots] pitch_um`` (the centre-to-centre spacing: 200 µm for legacy ST, 100 µm
    for Visium), which rescales so that the median nearest-neighbour spacing equals it.

Deconvolution table
-------------------
``[spots] proportions`` is an ``obsm`` key of the input ``.h5ad`` (a DataFrame whose columns
are the types, or an array whose names are in ``uns["<key>_names"]``) or a CSV/TSV/Parquet
file with the spot id in the column ``spot_id``, ``barcode``, ``cell_id`` or, failing those,
the first column, and one numeric column per type (cell2location's ``q05_cell_abundance_w_sf``
export, RCTD's weights, CARD's ``Proportion_CARD``, stereoscope's ``W.tsv``). Checks, each one
sentence naming the file, the column or spot and the fix: every spot of the input has a row
(an extra row is fine), values are numbers, finite and not negative; with ``kind =
"proportion"`` every row sums to 1 within 0.01 (rows are then rescaled to sum exactly to 1;
a larger deviation asks for ``kind = "abundance"``); a spot whose row is all zero has no
dominant type and is refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from metaniche.config import ColumnNames, Config
from metaniche.io._common import ABSENT, PLACEHOLDER_LABEL, MappedTable, Reader
from metaniche.io._imaging import _GENE, _marker_frame, _read_10x_h5, _read_mex
from metaniche.io._tables import (
    RawTable,
    TableError,
    file_format,
    find_column,
    list_columns,
    read_parquet_table,
    read_text_table,
    reason,
)

__all__ = ["SPOT_TYPE_PREFIX", "VISIUM_SPOT_DIAMETER_UM", "join_spot_proportions",
           "map_visium", "spot_type_columns"]

#: Prefix of the per-type deconvolution columns of a spot sample (``deconv:<type>``).
SPOT_TYPE_PREFIX = "deconv:"
#: Diameter of a 10x Visium spot (µm); with ``spot_diameter_fullres`` it gives µm per pixel.
VISIUM_SPOT_DIAMETER_UM = 55.0
#: Largest deviation of a proportion row's sum from 1 that is rescaled instead of refused.
PROPORTION_SUM_TOLERANCE = 0.01

_KEY = "[spots] proportions"
_POSITION_COLUMNS = ("barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres",
                     "pxl_col_in_fullres")
_ID_COLUMNS = ("spot_id", "barcode", "barcodes", "cell_id", "spot")
_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".gz", ".parquet", ".pq")


def spot_type_columns(columns: pd.Index | list[str]) -> list[str]:
    """The deconvolution columns (``SPOT_TYPE_PREFIX`` + type) among ``columns``, in order."""
    return [str(c) for c in columns if str(c).startswith(SPOT_TYPE_PREFIX)]


# --- Visium / Visium HD folders -------------------------------------------------------------

def _visium_root(path: Path, config: Config, reader: Reader) -> Path:
    """The folder holding the matrix and ``spatial/``: ``path``, its ``outs/`` or, for Visium
    HD, ``binned_outputs/square_<bin>um``."""
    if not path.is_dir():
        raise TableError(f"{path}: is a file, not {reader.described}; point to the Space Ranger "
                         "outs folder holding filtered_feature_bc_matrix.h5 and spatial/.")
    if (path / "outs").is_dir() and not (path / "spatial").is_dir():
        path = path / "outs"
    binned = path / "binned_outputs"
    if binned.is_dir() and not (path / "spatial").is_dir():
        wanted = binned / f"square_{config.spots.hd_bin_um:03d}um"
        if not wanted.is_dir():
            present = sorted(p.name for p in binned.iterdir() if p.is_dir())
            raise TableError(f"{binned}: has no {wanted.name} folder (folders found: "
                             f"{list_columns(present)}); set [spots] hd_bin_um to one of their "
                             "bin sizes.")
        path = wanted
    return path


def _positions(spatial: Path, reader: Reader) -> tuple[Path, pd.DataFrame]:
    """The tissue-positions table of a ``spatial/`` folder, with 10x's column names."""
    for name in ("tissue_positions.parquet", "tissue_positions.csv",
                 "tissue_positions_list.csv"):
        candidate = spatial / name
        if candidate.is_file():
            break
    else:
        found = sorted(p.name for p in spatial.iterdir()) if spatial.is_dir() else []
        raise TableError(f"{spatial}: read as part of {reader.described} but it has no "
                         "tissue_positions.parquet, tissue_positions.csv or "
                         f"tissue_positions_list.csv (files found: {list_columns(found)}); "
                         "copy the spatial/ folder of the same Space Ranger output.")
    try:
        if candidate.suffix == ".parquet":
            frame = read_parquet_table(candidate, what="tissue positions").frame
        else:
            frame = pd.read_csv(candidate, header=None, dtype={0: str})
            if str(frame.iat[0, 0]).strip().lower() == "barcode":
                frame = pd.read_csv(candidate, dtype={"barcode": str})
            elif frame.shape[1] == len(_POSITION_COLUMNS):
                frame.columns = list(_POSITION_COLUMNS)
    except TableError:
        raise
    except Exception as err:
        raise TableError(f"{candidate}: cannot be read as Visium tissue positions "
                         f"({reason(err)}); copy the file of the Space Ranger output again."
                         ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in _POSITION_COLUMNS if c not in frame.columns]
    if missing:
        raise TableError(f"{candidate}: has no column(s) {', '.join(missing)} (columns found: "
                         f"{list_columns(frame.columns)}); Visium tissue positions have the "
                         f"six columns {', '.join(_POSITION_COLUMNS)}: copy the file again.")
    for column in ("pxl_row_in_fullres", "pxl_col_in_fullres"):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise TableError(f"{candidate}: column '{column}' holds "
                             f"{frame[column].iat[row]!r} (row {row + 1}), not a pixel "
                             "position; copy the file of the Space Ranger output again.")
        frame[column] = values.to_numpy(dtype=np.float64)
    return candidate, frame


def _um_per_pixel(spatial: Path, config: Config, notes: list[str]) -> float:
    """µm per full-resolution pixel from ``scalefactors_json.json`` (see module docstring)."""
    path = spatial / "scalefactors_json.json"
    if not path.is_file():
        raise TableError(f"{spatial}: has no scalefactors_json.json, so pixels cannot be put in "
                         "µm; copy the spatial/ folder of the same Space Ranger output.")
    try:
        factors = json.loads(path.read_text(encoding="utf-8"))
    except Exception as err:
        raise TableError(f"{path}: is not valid JSON ({reason(err)}); copy the file of the "
                         "Space Ranger output again.") from None
    if not isinstance(factors, dict):
        raise TableError(f"{path}: holds {type(factors).__name__}, not the scale-factor "
                         "object; copy the file of the Space Ranger output again.")
    given = factors.get("microns_per_pixel")
    if isinstance(given, int | float) and given > 0:
        bin_um = factors.get("bin_size_um")
        if isinstance(bin_um, int | float) and abs(bin_um - config.spots.diameter_um) > 1e-6:
            notes.append(f"{path}: bins of {bin_um:g} µm but [spots] diameter_um is "
                         f"{config.spots.diameter_um:g}; set diameter_um = {bin_um:g} and "
                         "square = true so that spot areas are right.")
        return float(given)
    diameter = factors.get("spot_diameter_fullres")
    if not (isinstance(diameter, int | float) and diameter > 0):
        raise TableError(f"{path}: has no positive 'spot_diameter_fullres' (keys found: "
                         f"{list_columns(list(factors))}), so pixels cannot be put in µm; "
                         "copy the file of the Space Ranger output again.")
    return config.spots.diameter_um / float(diameter)


def map_visium(path: Path, source: None, config: Config, reader: Reader) -> MappedTable:
    """Read a 10x Visium / Visium HD output folder (see module docstring), one row per spot.

    Raises
    ------
    TableError
        One sentence naming the folder or file, what is missing or inconsistent, and the fix.
    """
    root = _visium_root(path, config, reader)
    h5 = root / "filtered_feature_bc_matrix.h5"
    mex = root / "filtered_feature_bc_matrix"
    if h5.is_file():
        matrix, barcodes, genes, types = _read_10x_h5(h5)
        matrix_path = h5
    elif mex.is_dir():
        matrix, barcodes, genes, types = _read_mex(mex, reader)
        matrix_path = mex
    else:
        found = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        raise TableError(f"{root}: read as {reader.described} but it has no "
                         "filtered_feature_bc_matrix.h5 or filtered_feature_bc_matrix/ "
                         f"(files found: {list_columns(found)}); copy the filtered matrix of "
                         "the same Space Ranger output into the folder.")
    spatial = root / "spatial"
    notes: list[str] = []
    positions_path, positions = _positions(spatial, reader)
    scale = _um_per_pixel(spatial, config, notes)
    barcodes = np.asarray(barcodes, dtype=object)
    index = pd.Index(positions["barcode"].astype(str).to_numpy(dtype=object))
    where = index.get_indexer(barcodes) if index.is_unique else None
    if where is None:
        raise TableError(f"{positions_path}: barcodes repeat; copy the file of the Space "
                         "Ranger output again.")
    if (where < 0).any():
        missing = barcodes[where < 0]
        raise TableError(f"{matrix_path}: {missing.size:,} of its {barcodes.size:,} spots have "
                         f"no position in {positions_path.name} (e.g. {str(missing[0])!r}); "
                         "the matrix and spatial/ must come from the same Space Ranger run.")
    rows = positions.iloc[where].reset_index(drop=True)
    frame = pd.DataFrame({
        "cell_id": barcodes,
        "x": rows["pxl_col_in_fullres"].to_numpy(np.float64) * scale,
        "y": rows["pxl_row_in_fullres"].to_numpy(np.float64) * scale,
        "array_row": pd.to_numeric(rows["array_row"], errors="coerce").to_numpy(),
        "array_col": pd.to_numeric(rows["array_col"], errors="coerce").to_numpy(),
    })
    gene = np.asarray(types) == _GENE
    if not gene.all():
        notes.append(f"{matrix_path}: {int((~gene).sum()):,} features that are not "
                     f"'{_GENE}' (antibody capture, probes) were dropped; only genes are kept.")
    keep = np.flatnonzero(gene)
    markers, kept = _marker_frame(matrix[:, keep], [genes[i] for i in keep], frame.columns,
                                  config)
    frame = pd.concat([frame, markers], axis=1)
    if config.spots.proportions:
        frame["cell_type"] = PLACEHOLDER_LABEL  # replaced by the deconvolution's dominant type
    elif config.gating or config.input.cell_types:
        frame["cell_type"] = PLACEHOLDER_LABEL
    else:
        raise TableError(f"{path}: {reader.described} holds no cell types; set [spots] "
                         "proportions to the deconvolution of its spots (an obsm key or a spot "
                         "× type CSV), or [input] cell_types to a table of barcode and label.")
    return MappedTable(RawTable(frame, row_base=1, warnings=notes, genes=kept),
                       ColumnNames(sample=ABSENT, cell_id="cell_id", x="x", y="y",
                                   cell_type="cell_type"))


# --- the deconvolution table ----------------------------------------------------------------

def _is_table_path(value: str) -> bool:
    return Path(value).suffix.lower() in _TABLE_SUFFIXES or Path(value).is_file()


def _read_table(table: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """``(spot ids as text, type columns)`` of a spot × type table."""
    if not table.is_file():
        raise TableError(f"{table}: {_KEY} file not found; check the path (relative paths are "
                         "from the working directory) or give an obsm key of the .h5ad input.")
    kind, gz = file_format(table)
    if kind == "text":
        frame = read_text_table(table, gz, (), what="deconvolution table",
                                label="a spot × type table").frame
    elif kind == "parquet":
        frame = read_parquet_table(table, what="deconvolution table").frame
    else:
        raise TableError(f"{table}: {_KEY} must be a CSV, TSV or Parquet table (spot id, then "
                         "one column per cell type); export it as CSV.")
    if frame.shape[1] < 2:
        raise TableError(f"{table}: {_KEY} has {frame.shape[1]} column (columns found: "
                         f"{list_columns(frame.columns)}); it needs the spot id and one column "
                         "per cell type, e.g. spot_id,Tumor,CD8_T.")
    id_col = next((hit for c in _ID_COLUMNS if (hit := find_column(frame.columns, c))),
                  str(frame.columns[0]))
    ids = frame[id_col].astype(str).str.strip().to_numpy(dtype=object)
    dup = pd.Index(ids).duplicated()
    if dup.any():
        raise TableError(f"{table}: {_KEY} column '{id_col}' lists spot {ids[dup][0]!r} more "
                         "than once; give each spot one row.")
    return ids, frame.drop(columns=[id_col])


def _read_obsm(path: Path, key: str) -> pd.DataFrame:
    """``obsm[key]`` of an ``.h5ad`` file as a DataFrame (rows in obs order)."""
    kind, _ = file_format(path)
    if kind != "h5ad":
        raise TableError(f"{path}: {_KEY} = {key!r} is read as an obsm key, but this input is "
                         "not an .h5ad file; give the path of a spot × type CSV instead.")
    import h5py
    from anndata.io import read_elem

    try:
        with h5py.File(path, "r") as handle:
            obsm = handle.get("obsm")
            keys = list(obsm.keys()) if obsm is not None else []
            if key not in keys:
                raise TableError(f"{path}: has no obsm[{key!r}] for {_KEY} (obsm keys found: "
                                 f"{list_columns(keys)}); set {_KEY} to one of them or to a "
                                 "spot × type CSV.")
            value = read_elem(obsm[key])
            names_key = f"{key}_names"
            names = (read_elem(handle["uns"][names_key]) if "uns" in handle
                     and names_key in handle["uns"] else None)
    except TableError:
        raise
    except Exception as err:
        raise TableError(f"{path}: obsm[{key!r}] cannot be read ({reason(err)}); write the "
                         "deconvolution to obsm as a DataFrame of spots × types.") from None
    if isinstance(value, pd.DataFrame):
        return value.reset_index(drop=True)
    array = np.asarray(value.toarray() if hasattr(value, "toarray") else value)
    if array.ndim != 2:
        raise TableError(f"{path}: obsm[{key!r}] has shape {array.shape}, not spots × types; "
                         "write the deconvolution as a 2-D DataFrame.")
    if names is None or len(names) != array.shape[1]:
        raise TableError(f"{path}: obsm[{key!r}] is an array without type names; store it as "
                         f"a DataFrame or put its {array.shape[1]} type names in "
                         f"uns['{key}_names'].")
    return pd.DataFrame(array, columns=[str(n) for n in names])


def _check_values(where: str, types: pd.DataFrame, spot_ids: np.ndarray, kind: str,
                  notes: list[str]) -> np.ndarray:
    """The type columns as a float64 matrix, checked and (proportions) rescaled."""
    values = np.empty(types.shape, dtype=np.float64)
    for j, column in enumerate(types.columns):
        numbers = pd.to_numeric(types[column], errors="coerce")
        bad = numbers.isna().to_numpy() | ~np.isfinite(numbers.to_numpy(np.float64))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise TableError(f"{where}: column '{column}' holds {types[column].iat[i]!r} for "
                             f"spot {spot_ids[i]!r}, not a finite number; every cell must "
                             "hold the type's proportion or abundance.")
        values[:, j] = numbers.to_numpy(np.float64)
    negative = values < -1e-9
    if negative.any():
        i, j = (int(v[0]) for v in np.nonzero(negative))
        raise TableError(f"{where}: column '{types.columns[j]}' is {values[i, j]:g} for spot "
                         f"{spot_ids[i]!r}; proportions and abundances cannot be negative.")
    values = np.clip(values, 0.0, None)
    sums = values.sum(axis=1)
    if (sums <= 0).any():
        i = int(np.flatnonzero(sums <= 0)[0])
        raise TableError(f"{where}: spot {spot_ids[i]!r} has no type (its row is all zero); "
                         "remove spots without a deconvolution from the input or the table.")
    if kind == "proportion":
        off = np.abs(sums - 1.0)
        if (off > PROPORTION_SUM_TOLERANCE).any():
            i = int(np.argmax(off))
            raise TableError(f"{where}: the row of spot {spot_ids[i]!r} sums to {sums[i]:.4g}, "
                             "not 1; set [spots] kind = \"abundance\" for cells per spot "
                             "(cell2location), or give proportions.")
        if (off > 1e-6).any():
            notes.append(f"{where}: {int((off > 1e-6).sum()):,} proportion rows summed to "
                         f"1 ± {float(off.max()):.2g} and were rescaled to sum to 1.")
        values = values / sums[:, None]
    return values


def join_spot_proportions(path: Path, mapped: MappedTable, config: Config) -> MappedTable:
    """Add the deconvolution of ``[spots] proportions`` to the spots read from ``path``.

    Returns ``mapped`` unchanged when the key is empty. Otherwise one column per type
    (:data:`SPOT_TYPE_PREFIX` + type) is added, the label column becomes the dominant type,
    the spot id column is the input's (obs_names for AnnData) and, with ``[spots] pitch_um``,
    the coordinates are rescaled to that spacing (see the module docstring).

    Raises
    ------
    TableError
        One sentence naming the file, the column or spot and the fix.
    """
    spots = config.spots
    if not spots.proportions:
        return mapped
    frame = mapped.raw.frame.copy()
    columns = mapped.columns
    notes = list(mapped.raw.warnings)
    id_col = (find_column(frame.columns, columns.cell_id) if columns.cell_id != ABSENT
              else None) or find_column(frame.columns, config.columns.cell_id)
    if _is_table_path(spots.proportions):
        table = Path(spots.proportions)
        table_ids, types = _read_table(table)
        if id_col is None:
            raise TableError(f"{path}: {_KEY} joins the table by spot id but this input has no "
                             f"spot id column '{config.columns.cell_id}' (columns found: "
                             f"{list_columns(frame.columns)}); set [columns] cell_id to the "
                             "column of the spot barcodes.")
        ids = frame[id_col].astype(str).str.strip().to_numpy(dtype=object)
        where = pd.Index(table_ids).get_indexer(ids)
        if (where < 0).any():
            missing = ids[where < 0]
            raise TableError(f"{table}: {missing.size:,} of the {ids.size:,} spots of {path} "
                             f"have no row in it (e.g. {str(missing[0])!r}; its ids are e.g. "
                             f"{str(table_ids[0])!r}); give the deconvolution of this input's "
                             "spots, with the barcodes as spot ids.")
        types = types.iloc[where].reset_index(drop=True)
        source = f"{table} ({_KEY})"
    else:
        types = _read_obsm(path, spots.proportions)
        if len(types) != len(frame):
            raise TableError(f"{path}: obsm[{spots.proportions!r}] has {len(types):,} rows but "
                             f"the input has {len(frame):,} spots; write the deconvolution "
                             "of these spots.")
        source = f"{path} obsm[{spots.proportions!r}]"
        ids = (frame[id_col].astype(str).to_numpy(dtype=object) if id_col is not None
               else np.arange(len(frame)).astype(str).astype(object))
    names = [str(c).strip() for c in types.columns]
    if len(set(names)) != len(names) or "" in names:
        raise TableError(f"{source}: type names must be unique and non-empty (columns found: "
                         f"{list_columns(names)}); rename the columns.")
    values = _check_values(source, types, ids, spots.kind, notes)
    for j, name in enumerate(names):
        frame[SPOT_TYPE_PREFIX + name] = values[:, j]
    label_col = find_column(frame.columns, columns.cell_type) if columns.cell_type != ABSENT \
        else None
    if label_col is None or label_col == id_col:
        label_col = "cell_type"
    frame[label_col] = np.asarray(names, dtype=object)[np.argmax(values, axis=1)]
    if spots.pitch_um > 0:
        _rescale_to_pitch(path, frame, columns, config, notes)
    new_columns = dataclasses.replace(columns, cell_type=label_col,
                                      cell_id=id_col if id_col is not None else columns.cell_id)
    return MappedTable(dataclasses.replace(mapped.raw, frame=frame, warnings=notes),
                       new_columns, mapped.sources)


def _rescale_to_pitch(path: Path, frame: pd.DataFrame, columns: ColumnNames, config: Config,
                      notes: list[str]) -> None:
    """Rescale x/y (in place) so that the median spot spacing, in µm, is ``pitch_um``."""
    x_col, y_col = find_column(frame.columns, columns.x), find_column(frame.columns, columns.y)
    if x_col is None or y_col is None:
        return  # the standardisation names the missing coordinate column
    x = pd.to_numeric(frame[x_col], errors="coerce").to_numpy(np.float64)
    y = pd.to_numeric(frame[y_col], errors="coerce").to_numpy(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    points = np.column_stack([x[ok], y[ok]])
    if len(points) < 2:
        return
    distance, _ = cKDTree(points).query(points, k=2)
    nearest = distance[:, 1]
    nearest = nearest[nearest > 0]
    if nearest.size == 0:
        raise TableError(f"{path}: every spot shares its position with another, so [spots] "
                         "pitch_um cannot scale the coordinates; check the coordinates.")
    spacing = float(np.median(nearest))
    factor = config.spots.pitch_um / (spacing * config.um_per_unit)
    frame[x_col] = x * factor
    frame[y_col] = y * factor
    notes.append(f"{path}: spot coordinates were scaled by {factor:.6g} so that the median "
                 f"spot spacing ({spacing:.4g} units) is [spots] pitch_um = "
                 f"{config.spots.pitch_um:g} µm.")
