"""Mappers of the exports of common tools to the one cell-table contract.

Which mapper reads a file, and how ``format = "auto"`` recognises each export, is decided by
the registry :data:`metaniche.io.readers.READERS`; this module holds the mappers only.

Each reader maps the export's own columns to ``sample``, ``cell_id``, ``x``, ``y`` and
``cell_type`` and keeps every other column (marker intensities, morphology, tissue category)
under its own name. Per format:

- **inForm**: sample ``Sample Name``, id ``Cell ID``, centroid ``Cell X/Y Position``
  (µm when the export's area columns say microns, else pixels: a warning asks for
  ``um_per_unit``), label ``Phenotype`` or, in multi-schema exports, the positive calls of the
  ``Phenotype <marker>`` columns joined by spaces (``CD8+ PD1+``; ``other`` when none);
  ``Tissue Category`` becomes ``tissue_category``.
- **HALO**: centroid ``((XMin + XMax) / 2, (YMin + YMax) / 2)``, id ``Object Id``, sample
  ``Image Location`` (file name) when filled; label from the ``<dye> Positive`` calls
  (``Positive Classification`` in newer exports), named by the dye names of ``Analysis
  Inputs`` when given (``Opal 620+ Opal 650+``; ``negative`` when none; the nuclear stain
  DAPI is ignored); ``Classifier Label`` (tissue class) becomes ``tissue_category``.
- **CODEX**: centroid ``X.X``, ``Y.Y`` (pixels, tile-local), ``Z.Z`` kept as ``z``; sample
  ``sample_Xtile_Ytile`` (one tile = one field of view); label from the phenotype map
  (cluster id → label; ``phenotype_map`` config key, else ``<stem>_phenotypes.txt[.gz]``
  beside the table) applied to ``Imaging.phenotype.cluster.ID``.
- **CellProfiler**: centroid ``Location_Center_X/Y`` (else ``AreaShape_Center_X/Y``), id
  ``ObjectNumber``, sample ``<stem>_<ImageNumber>`` when the file holds several images;
  ``Intensity_MeanIntensity_<marker>`` columns are renamed ``<marker>``.
- **MCMICRO**: centroid ``X_centroid``/``Y_centroid``, id ``CellID``, sample the file stem;
  label from a ``phenotype`` column when present.
- **scimap** AnnData: obs ``X_centroid``/``Y_centroid`` or ``X_position``/``Y_position``,
  sample ``imageid``/``ImageId``, label ``phenotype``, id ``CellID`` else ``obs_names``;
  markers from ``X``.
- **squidpy** AnnData: ``obsm["spatial"]``, label the first obs column among
  ``cell_type``, ``cell type``, ``celltype``, ``phenotype``, ``cluster``, ``leiden``,
  ``louvain``; sample ``library_id``/``sample``.

Exports without phenotypes (CellProfiler, MCMICRO, CODEX without a map) need a ``[gating]``
panel; without one the reader says so. With a panel, gating replaces ``cell_type``.
CODEX, CellProfiler and MCMICRO positions are pixels: with ``um_per_unit`` left at 1 the
reader warns (an error would refuse 1-µm-pixel data such as imaging mass cytometry).

Malformed files give one sentence naming the file, the format it was read as, the line,
row or column, and the fix (see :func:`metaniche.io._tables.read_text_table`): an empty or
header-only file, binary content (NUL bytes, a zip/Excel file, gzip without ``.gz``), a
gzip stream that stops early, a short last line ("looks truncated"), a ragged line (field
count differs from the header), rows that do not split on the delimiter, and non-numeric
coordinates (showing the raw value, e.g. a decimal comma, and for HALO the box column).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from metaniche._contract import TISSUE_CATEGORY
from metaniche.config import ColumnNames, Config
from metaniche.io._anndata import read_h5ad_table
from metaniche.io._common import (
    ABSENT,
    LABEL_COLUMNS,
    H5adKeys,
    MappedTable,
    Reader,
    label_or_placeholder,
    need_columns,
    unique_name,
    with_columns,
)
from metaniche.io._tables import RawTable, TableError, file_stem, find_column, reason

__all__ = ["map_cellprofiler", "map_codex", "map_halo", "map_inform", "map_mcmicro",
           "map_scimap", "map_squidpy", "phenotype_map_for"]


def _pixel_warning(path: Path, reader: Reader, raw: RawTable, config: Config, x: str,
                   y: str) -> None:
    """Warn that an export's positions are pixels while ``um_per_unit`` is left at 1."""
    if config.um_per_unit != 1.0:
        return
    raw.warnings.append(
        f"{path}: {reader.described} gives positions ('{x}', '{y}') in pixels and "
        "um_per_unit is 1, so each pixel is taken as 1 µm; set um_per_unit to the image's µm "
        f"per pixel ({reader.pixel_hint}).")


def _carry_tissue_category(frame: pd.DataFrame, column: str) -> None:
    """Rename the export's tissue-class column to :data:`~metaniche._contract.TISSUE_CATEGORY`."""
    hit = find_column(frame.columns, column)
    if hit is not None and TISSUE_CATEGORY not in frame.columns:
        frame.rename(columns={hit: TISSUE_CATEGORY}, inplace=True)


def map_inform(path: Path, raw: RawTable, config: Config,
               reader: Reader) -> MappedTable:
    """Map an inForm cell_seg_data export to the contract (see the module docstring)."""
    frame = raw.frame
    found = need_columns(path, reader, frame, {"centroid x": "Cell X Position",
                                          "centroid y": "Cell Y Position"})
    sample = find_column(frame.columns, "Sample Name")
    cell_id = find_column(frame.columns, "Cell ID")
    label = find_column(frame.columns, "Phenotype")
    if label is None:
        calls = [c for c in frame.columns if str(c).startswith("Phenotype ")]
        if calls:
            label = unique_name(frame, "cell_type")
            frame[label] = _join_calls(frame[calls], "other")
        else:
            label = label_or_placeholder(path, reader, frame, config,
                                          "no 'Phenotype' column")
    _carry_tissue_category(frame, "Tissue Category")
    microns = any("micron" in str(c).lower() for c in frame.columns)
    if not microns and config.um_per_unit == 1.0:
        raw.warnings.append(
            f"{path}: inForm positions are in pixels (no column mentions microns); set "
            "um_per_unit to the image's µm per pixel (0.497 for Vectra/Polaris at 20×).")
    return MappedTable(raw, ColumnNames(sample=sample or ABSENT, cell_id=cell_id or ABSENT,
                                        x=found["centroid x"], y=found["centroid y"],
                                        cell_type=label))


def _join_calls(calls: pd.DataFrame, none_label: str) -> np.ndarray:
    """Join per-marker positivity calls (``CD8+``/``CD8-`` strings) into one label."""
    parts = []
    for column in calls.columns:
        text = calls[column].astype(str).str.strip()
        parts.append(np.where(text.str.endswith("+"), text + " ", ""))
    joined = pd.Series(np.sum(np.column_stack(parts), axis=1) if parts else "")
    joined = joined.str.strip()
    return joined.where(joined != "", none_label).to_numpy(dtype=object)


def map_halo(path: Path, raw: RawTable, config: Config,
             reader: Reader) -> MappedTable:
    """Map a HALO object-data export to the contract (see the module docstring)."""
    frame = raw.frame
    found = need_columns(path, reader, frame, {"x min": "XMin", "x max": "XMax", "y min": "YMin",
                                        "y max": "YMax"})
    for axis in ("x", "y"):
        lo = pd.to_numeric(frame[found[f"{axis} min"]], errors="coerce")
        hi = pd.to_numeric(frame[found[f"{axis} max"]], errors="coerce")
        frame[unique_name(frame, f"centroid_{axis}")] = (lo + hi) / 2
    x_col = [c for c in frame.columns if str(c).endswith("centroid_x")][-1]
    y_col = [c for c in frame.columns if str(c).endswith("centroid_y")][-1]
    dyes = _halo_dye_names(frame)
    calls = {c: match[1] for c in frame.columns
             if (match := re.fullmatch(r"(.+) Positive( Classification)?", str(c)))}
    label = find_column(frame.columns, "Phenotype")
    if label is None and calls:
        names, flags = [], []
        for column, base in calls.items():
            name = dyes.get(base, base)
            if name.upper() == "DAPI":
                continue
            names.append(name)
            flags.append(pd.to_numeric(frame[column], errors="coerce").fillna(0).to_numpy() > 0)
        label = unique_name(frame, "cell_type")
        if flags:
            matrix = np.column_stack(flags)
            text = np.array([f"{n}+ " for n in names], dtype=object)
            joined = np.array(["".join(text[row]).strip() for row in matrix], dtype=object)
            frame[label] = np.where(joined == "", "negative", joined)
        else:
            frame[label] = "negative"
    elif label is None:
        label = label_or_placeholder(path, reader, frame, config,
                                      "no 'Positive' columns and no 'Phenotype' column")
    _carry_tissue_category(frame, "Classifier Label")
    sample = find_column(frame.columns, "Image Location")
    if sample is not None:
        loc = frame[sample]
        if loc.notna().all() and (loc.astype(str).str.strip() != "").all():
            frame["image"] = [Path(str(v).replace("\\", "/")).stem for v in loc]
            sample = "image"
        else:
            sample = None
    cell_id = find_column(frame.columns, "Object Id")
    sources: dict[str, tuple[str, ...]] = {x_col: (found["x min"], found["x max"]),
                                           y_col: (found["y min"], found["y max"])}
    return MappedTable(raw, ColumnNames(sample=sample or ABSENT, cell_id=cell_id or ABSENT,
                                        x=x_col, y=y_col, cell_type=label), sources)


def _halo_dye_names(frame: pd.DataFrame) -> dict[str, str]:
    """``{"Dye 2": "Opal 620", …}`` from HALO's ``Analysis Inputs`` text, when present."""
    column = find_column(frame.columns, "Analysis Inputs")
    if column is None or frame[column].isna().all():
        return {}
    text = str(frame[column].dropna().iloc[0])
    out = {}
    for part in text.split(";"):
        match = re.fullmatch(r"\s*(Dye \d+):(.*)", part)
        if match and match[2].strip():
            out[match[1]] = match[2].strip()
    return out


def phenotype_map_for(path: Path, config: Config) -> Path | None:
    """The CODEX phenotype map of a cell table: the config's, else a sibling file."""
    if config.phenotype_map:
        return Path(config.phenotype_map)
    stem = file_stem(path)
    for suffix in (".txt", ".txt.gz", ".tsv", ".tsv.gz", ".csv", ".csv.gz"):
        candidate = path.with_name(f"{stem}_phenotypes{suffix}")
        if candidate.is_file():
            return candidate
    return None


def _read_phenotype_map(path: Path) -> dict[str, str]:
    try:
        table = pd.read_csv(path, sep=None, engine="python", header=None, dtype=str,
                            compression="infer")
    except Exception as err:
        raise TableError(f"{path}: CODEX phenotype map cannot be read ({reason(err)}); give "
                         "a two-column table (cluster id, label) without header.") from None
    if table.shape[1] < 2:
        raise TableError(f"{path}: CODEX phenotype map has {table.shape[1]} column; give two "
                         "columns (cluster id, label) separated by tabs or commas.")
    keys = table.iloc[:, 0].str.strip()
    return dict(zip(keys, table.iloc[:, 1].str.strip(), strict=True))


def map_codex(path: Path, raw: RawTable, config: Config,
              reader: Reader) -> MappedTable:
    """Map a CODEX cell-table export to the contract (see the module docstring)."""
    frame = raw.frame
    found = need_columns(path, reader, frame, {"centroid x": "X.X", "centroid y": "Y.Y"})
    z = find_column(frame.columns, "Z.Z")
    if z is not None and "z" not in frame.columns:
        frame.rename(columns={z: "z"}, inplace=True)
    cluster = find_column(frame.columns, "Imaging.phenotype.cluster.ID")
    map_path = phenotype_map_for(path, config)
    label = find_column(frame.columns, "cell_type") or find_column(frame.columns, "phenotype")
    if label is None and cluster is not None and map_path is not None:
        mapping = _read_phenotype_map(map_path)
        ids = frame[cluster].astype("Int64").astype(str)
        labels = ids.map(mapping)
        unknown = ids[labels.isna()].unique()
        if unknown.size:
            raise TableError(f"{path}: CODEX cluster id(s) {', '.join(unknown[:5])} are not in "
                             f"the phenotype map {map_path}; add them to the map.")
        label = unique_name(frame, "cell_type")
        frame[label] = labels.to_numpy(dtype=object)
    elif label is None:
        what = ("no phenotype map: give phenotype_map = \"…\" in the config or put "
                f"{file_stem(path)}_phenotypes.txt beside it, or")
        if not config.gating:
            raise TableError(f"{path}: a CODEX cell table has no cell phenotypes ({what} add a "
                             "[gating] panel to phenotype the cells from their markers).")
        label = label_or_placeholder(path, reader, frame, config, what)
    sample = find_column(frame.columns, "sample_Xtile_Ytile")
    _pixel_warning(path, reader, raw, config, found["centroid x"], found["centroid y"])
    return MappedTable(raw, ColumnNames(sample=sample or ABSENT, cell_id=ABSENT,
                                        x=found["centroid x"], y=found["centroid y"],
                                        cell_type=label))


def map_cellprofiler(path: Path, raw: RawTable, config: Config,
                     reader: Reader) -> MappedTable:
    """Map a CellProfiler object export to the contract (see the module docstring)."""
    frame = raw.frame
    prefix = ("Location_Center" if find_column(frame.columns, "Location_Center_X")
              else "AreaShape_Center")
    found = need_columns(path, reader, frame, {"centroid x": f"{prefix}_X",
                                                "centroid y": f"{prefix}_Y"})
    renames = {}
    for column in frame.columns:
        match = re.fullmatch(r"Intensity_MeanIntensity_(.+)", str(column))
        if match and match[1] not in frame.columns:
            renames[column] = match[1]
    frame.rename(columns=renames, inplace=True)
    image = find_column(frame.columns, "ImageNumber")
    sample = None
    if image is not None and frame[image].nunique() > 1:
        frame["image"] = [f"{file_stem(path)}_{v}" for v in frame[image].astype(str)]
        sample = "image"
    label = (find_column(frame.columns, "cell_type") or find_column(frame.columns, "phenotype")
             or label_or_placeholder(path, reader, frame, config,
                                      "CellProfiler exports measure markers only"))
    cell_id = find_column(frame.columns, "ObjectNumber")
    _pixel_warning(path, reader, raw, config, found["centroid x"], found["centroid y"])
    return MappedTable(raw, ColumnNames(sample=sample or ABSENT, cell_id=cell_id or ABSENT,
                                        x=found["centroid x"], y=found["centroid y"],
                                        cell_type=label))


def map_mcmicro(path: Path, raw: RawTable, config: Config,
                reader: Reader) -> MappedTable:
    """Map an MCMICRO quantification export to the contract (see the module docstring)."""
    frame = raw.frame
    found = need_columns(path, reader, frame, {"centroid x": "X_centroid",
                                           "centroid y": "Y_centroid"})
    label = (find_column(frame.columns, "phenotype")
             or find_column(frame.columns, config.columns.cell_type)
             or label_or_placeholder(path, reader, frame, config,
                                      "MCMICRO quantification holds marker means only"))
    sample = find_column(frame.columns, "imageid")
    cell_id = find_column(frame.columns, "CellID")
    _pixel_warning(path, reader, raw, config, found["centroid x"], found["centroid y"])
    return MappedTable(raw, ColumnNames(sample=sample or ABSENT, cell_id=cell_id or ABSENT,
                                        x=found["centroid x"], y=found["centroid y"],
                                        cell_type=label))


def map_scimap(path: Path, keys: H5adKeys, config: Config, reader: Reader) -> MappedTable:
    """Read a scimap AnnData file: obs centroids, ``phenotype``, ``imageid``, ``CellID``."""
    cols = config.columns
    obs = keys.obs
    x = find_column(obs, "X_centroid") or find_column(obs, "X_position")
    y = find_column(obs, "Y_centroid") or find_column(obs, "Y_position")
    if x is None or y is None:
        raise TableError(f"{path}: read as {reader.described} but obs has no "
                         "X_centroid/Y_centroid (or X_position/Y_position) columns (obs: "
                         f"{', '.join(obs[:10])}); write them to obs or use --format "
                         "squidpy for obsm['spatial'].")
    label = find_column(obs, "phenotype") or find_column(obs, cols.cell_type) or ABSENT
    sample = find_column(obs, "imageid") or find_column(obs, cols.sample) or ABSENT
    cell_id = find_column(obs, "CellID") or ABSENT
    columns = ColumnNames(sample=sample, cell_id=cell_id, x=x, y=y, cell_type=label)
    return MappedTable(read_h5ad_table(path, with_columns(config, columns)), columns)


def map_squidpy(path: Path, keys: H5adKeys, config: Config, reader: Reader) -> MappedTable:
    """Read a squidpy/scanpy AnnData file: ``obsm['spatial']``, the first label column."""
    cols = config.columns
    if "spatial" not in keys.obsm:
        raise TableError(f"{path}: read as {reader.described} but it has no obsm['spatial'] "
                         "coordinates; store them there or use --format scimap for obs "
                         "X_centroid/Y_centroid.")
    label = next((hit for c in (cols.cell_type, *LABEL_COLUMNS)
                  if (hit := find_column(keys.obs, c))), ABSENT)
    sample = next((hit for c in (cols.sample, "library_id", "sample", "sample_id")
                   if (hit := find_column(keys.obs, c))), ABSENT)
    # obs_names are the ids (read_h5ad_table puts them under the [columns] cell_id name); an
    # absent id column here made the inserted ids match the absent sample column too.
    columns = ColumnNames(sample=sample, cell_id=cols.cell_id, x="\0x", y="\0y",
                          cell_type=label)
    return MappedTable(read_h5ad_table(path, with_columns(config, columns)), columns)
