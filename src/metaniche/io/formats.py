"""Exports of common tools mapped to the one cell-table contract.

``format = "auto"`` (config key, ``--format``) chooses the reader from the file's content:

1. the generic contract (``"table"``) when the configured ``[columns]`` x and y columns are
   present, so explicit column settings always win;
2. else the first export with one of its signature columns in the header (tested on the raw
   header line, so a file with the wrong delimiter is still recognised and reported as that
   format):

   ========================  =======================================================
   ``inform``                ``Cell X Position`` / ``Cell Y Position`` (inForm cell_seg_data)
   ``halo``                  ``XMin``, ``XMax``, ``YMin``, ``YMax`` (HALO object data)
   ``codex``                 ``X.X``, ``Y.Y`` (CODEX / Goltsev et al. cell table)
   ``cellprofiler``          ``Location_Center_X`` / ``_Y`` (CellProfiler)
   ``mcmicro``               ``X_centroid``, ``Y_centroid`` (MCMICRO quantification)
   ``scimap``                ``.h5ad`` with obs ``X_centroid``/``X_position`` (scimap)
   ``squidpy``               ``.h5ad`` with ``obsm["spatial"]`` (squidpy / scanpy)
   ``spatialdata``           a directory named ``*.zarr`` or holding ``zarr.json`` /
                             ``.zgroup`` (SpatialData store; needs the ``spatialdata``
                             extra; see :mod:`metaniche.io._spatialdata`)
   ========================  =======================================================

3. else the generic reader, which names the missing columns.

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

import dataclasses
import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metaniche.config import ColumnNames, Config
from metaniche.io._tables import RawTable, TableError, file_stem, find_column, reason

__all__ = ["ABSENT", "FORMAT_LABELS", "PLACEHOLDER_LABEL", "MappedTable", "detect_format",
           "map_export", "phenotype_map_for", "read_spatialdata"]

#: What each format is called in messages.
FORMAT_LABELS: dict[str, str] = {
    "table": "cell table",
    "inform": "inForm cell_seg_data export",
    "halo": "HALO object-data export",
    "codex": "CODEX cell table",
    "cellprofiler": "CellProfiler object export",
    "mcmicro": "MCMICRO quantification table",
    "scimap": "scimap AnnData file",
    "squidpy": "squidpy AnnData file",
    "spatialdata": "SpatialData zarr store",
}
#: ``cell_type`` of cells read from an export without phenotypes when a gating panel will
#: label them.
PLACEHOLDER_LABEL = "unassigned"

#: Column name that no table has: marks a contract column the export lacks.
ABSENT = "\x00absent"

_SIGNATURES: list[tuple[str, tuple[str, ...]]] = [
    ("inform", ("Cell X Position", "Cell Y Position")),
    ("halo", ("XMin", "XMax", "YMin", "YMax")),
    ("codex", ("X.X", "Y.Y")),
    ("cellprofiler", ("Location_Center_X", "Location_Center_Y")),
    ("cellprofiler", ("AreaShape_Center_X", "AreaShape_Center_Y")),
    ("mcmicro", ("X_centroid", "Y_centroid")),
]
_SQUIDPY_LABELS = ("cell_type", "cell type", "celltype", "cell_types", "phenotype",
                   "cluster", "clusters", "leiden", "louvain")
_MAX_HEADER = 4 * 1024 * 1024


@dataclass
class MappedTable:
    """A raw export with the column names that map it to the contract.

    Attributes
    ----------
    raw
        The table as read, plus any derived columns (centroid, label, sample).
    columns
        Column names of ``raw`` holding sample, cell id, x, y and cell type.
    sources
        For a derived column (e.g. HALO's box centre), the raw columns it was computed from,
        so that messages show the values as they are in the file.
    """

    raw: RawTable
    columns: ColumnNames
    sources: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


def header_line(path: Path, gz: bool) -> str:
    """Return the first line of a text file ('' when it cannot be read)."""
    try:
        opener = gzip.open if gz else open
        with opener(path, "rb") as handle:  # type: ignore[operator]
            line = handle.readline(_MAX_HEADER)
        return line.decode("utf-8-sig", errors="replace")
    except (OSError, EOFError, ValueError):
        return ""


def detect_format(kind: str, path: Path, gz: bool, config: Config) -> str:
    """Return the format of a file for ``format = "auto"`` (see module docstring).

    ``kind`` is the container (``"text"``, ``"parquet"``, ``"h5ad"``).
    """
    cols = config.columns
    if kind == "text":
        header = header_line(path, gz)
        names = set(re.split(r"[\t,;|]", header.strip()))
        names = {n.strip().strip('"') for n in names}
        if {cols.x, cols.y} <= names:
            return "table"
        for name, signature in _SIGNATURES:
            if any(token in header for token in signature):
                return name
        return "table"
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(path).names)
        except Exception:
            return "table"
        if {cols.x, cols.y} <= names:
            return "table"
        for name, signature in _SIGNATURES:
            if set(signature) & names:
                return name
        return "table"
    return "table"  # h5ad: decided on the obs columns in map_h5ad


def map_export(fmt: str, path: Path, raw: RawTable, config: Config) -> MappedTable:
    """Map a text/Parquet export of format ``fmt`` to the contract's column names.

    Raises
    ------
    TableError
        One sentence naming the format expected and what is missing.
    """
    mapper = {"inform": _inform, "halo": _halo, "codex": _codex,
              "cellprofiler": _cellprofiler, "mcmicro": _mcmicro}[fmt]
    return mapper(path, raw, config)


def _need(path: Path, fmt: str, frame: pd.DataFrame, wanted: dict[str, str]) -> dict[str, str]:
    """Find required columns (role -> name) or raise naming the format and what is missing."""
    found, missing = {}, []
    for role, name in wanted.items():
        hit = find_column(frame.columns, name)
        if hit is None:
            missing.append(f"'{name}' ({role})")
        else:
            found[role] = hit
    if missing:
        shown = ", ".join(_short(str(c)) for c in list(frame.columns)[:8])
        more = "…" if frame.shape[1] > 8 else ""
        names = [str(c) for c in frame.columns]
        buried = any(want in c and want != c for want in wanted.values() for c in names)
        if frame.shape[1] == 1 or buried:
            hint = ("the header does not split into those columns, so the delimiter is "
                    "probably wrong (expected tab, comma or semicolon); export the table again")
        else:
            hint = "export the table again with these columns, or use --format table"
        raise TableError(f"{path}: read as {_article(fmt)} {FORMAT_LABELS[fmt]} but it has no "
                         f"{' and no '.join(missing)} (columns found: {shown}{more}); {hint}.")
    return found


def _short(name: str, limit: int = 40) -> str:
    """A column name cut to ``limit`` characters for messages."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _article(fmt: str) -> str:
    return "an" if fmt in ("inform", "mcmicro") else "a"


def _label_or_placeholder(path: Path, fmt: str, frame: pd.DataFrame, config: Config,
                          what: str) -> str:
    """Add a placeholder label column when a gating panel will phenotype the cells."""
    if not config.gating:
        raise TableError(f"{path}: {_article(fmt)} {FORMAT_LABELS[fmt]} has no cell phenotypes "
                         f"({what}); add a [gating] panel to the config to phenotype the cells "
                         "from their marker columns.")
    frame["cell_type"] = PLACEHOLDER_LABEL
    return "cell_type"


#: Typical µm per pixel, named in the pixel warning of exports whose positions are pixels.
_PIXEL_EXAMPLES = {
    "codex": "0.377 for the CODEX 20× images of Goltsev et al. 2018",
    "cellprofiler": "the microscope's µm per pixel; 1 for imaging mass cytometry",
    "mcmicro": "0.65 for the MCMICRO exemplar-001 CyCIF image; 1 for imaging mass cytometry",
}


def _pixel_warning(path: Path, fmt: str, raw: RawTable, config: Config, x: str,
                   y: str) -> None:
    """Warn that an export's positions are pixels while ``um_per_unit`` is left at 1."""
    if config.um_per_unit != 1.0:
        return
    raw.warnings.append(
        f"{path}: {_article(fmt)} {FORMAT_LABELS[fmt]} gives positions ('{x}', '{y}') in "
        "pixels and um_per_unit is 1, so each pixel is taken as 1 µm; set um_per_unit to the "
        f"image's µm per pixel ({_PIXEL_EXAMPLES[fmt]}).")


def _unique_name(frame: pd.DataFrame, name: str) -> str:
    while name in frame.columns:
        name = "_" + name
    return name


def _inform(path: Path, raw: RawTable, config: Config) -> MappedTable:
    frame = raw.frame
    found = _need(path, "inform", frame, {"centroid x": "Cell X Position",
                                          "centroid y": "Cell Y Position"})
    sample = find_column(frame.columns, "Sample Name")
    cell_id = find_column(frame.columns, "Cell ID")
    label = find_column(frame.columns, "Phenotype")
    if label is None:
        calls = [c for c in frame.columns if str(c).startswith("Phenotype ")]
        if calls:
            label = _unique_name(frame, "cell_type")
            frame[label] = _join_calls(frame[calls], "other")
        else:
            label = _label_or_placeholder(path, "inform", frame, config,
                                          "no 'Phenotype' column")
    tissue = find_column(frame.columns, "Tissue Category")
    if tissue is not None and "tissue_category" not in frame.columns:
        frame.rename(columns={tissue: "tissue_category"}, inplace=True)
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


def _halo(path: Path, raw: RawTable, config: Config) -> MappedTable:
    frame = raw.frame
    found = _need(path, "halo", frame, {"x min": "XMin", "x max": "XMax", "y min": "YMin",
                                        "y max": "YMax"})
    for axis in ("x", "y"):
        lo = pd.to_numeric(frame[found[f"{axis} min"]], errors="coerce")
        hi = pd.to_numeric(frame[found[f"{axis} max"]], errors="coerce")
        frame[_unique_name(frame, f"centroid_{axis}")] = (lo + hi) / 2
    x_col = [c for c in frame.columns if str(c).endswith("centroid_x")][-1]
    y_col = [c for c in frame.columns if str(c).endswith("centroid_y")][-1]
    dyes = _halo_dye_names(frame)
    calls = [c for c in frame.columns
             if re.fullmatch(r"(.+) Positive( Classification)?", str(c))]
    label = find_column(frame.columns, "Phenotype")
    if label is None and calls:
        names, flags = [], []
        for column in calls:
            base = re.fullmatch(r"(.+) Positive( Classification)?", str(column))[1]
            name = dyes.get(base, base)
            if name.upper() == "DAPI":
                continue
            names.append(name)
            flags.append(pd.to_numeric(frame[column], errors="coerce").fillna(0).to_numpy() > 0)
        label = _unique_name(frame, "cell_type")
        if flags:
            matrix = np.column_stack(flags)
            text = np.array([f"{n}+ " for n in names], dtype=object)
            joined = np.array(["".join(text[row]).strip() for row in matrix], dtype=object)
            frame[label] = np.where(joined == "", "negative", joined)
        else:
            frame[label] = "negative"
    elif label is None:
        label = _label_or_placeholder(path, "halo", frame, config,
                                      "no 'Positive' columns and no 'Phenotype' column")
    tissue = find_column(frame.columns, "Classifier Label")
    if tissue is not None and "tissue_category" not in frame.columns:
        frame.rename(columns={tissue: "tissue_category"}, inplace=True)
    sample = find_column(frame.columns, "Image Location")
    if sample is not None:
        loc = frame[sample]
        if loc.notna().all() and (loc.astype(str).str.strip() != "").all():
            frame["image"] = [Path(str(v).replace("\\", "/")).stem for v in loc]
            sample = "image"
        else:
            sample = None
    cell_id = find_column(frame.columns, "Object Id")
    sources = {x_col: (found["x min"], found["x max"]), y_col: (found["y min"], found["y max"])}
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


def _codex(path: Path, raw: RawTable, config: Config) -> MappedTable:
    frame = raw.frame
    found = _need(path, "codex", frame, {"centroid x": "X.X", "centroid y": "Y.Y"})
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
        label = _unique_name(frame, "cell_type")
        frame[label] = labels.to_numpy(dtype=object)
    elif label is None:
        what = ("no phenotype map: give phenotype_map = \"…\" in the config or put "
                f"{file_stem(path)}_phenotypes.txt beside it, or")
        if not config.gating:
            raise TableError(f"{path}: a CODEX cell table has no cell phenotypes ({what} add a "
                             "[gating] panel to phenotype the cells from their markers).")
        label = _label_or_placeholder(path, "codex", frame, config, what)
    sample = find_column(frame.columns, "sample_Xtile_Ytile")
    _pixel_warning(path, "codex", raw, config, found["centroid x"], found["centroid y"])
    return MappedTable(raw, ColumnNames(sample=sample or ABSENT, cell_id=ABSENT,
                                        x=found["centroid x"], y=found["centroid y"],
                                        cell_type=label))


def _cellprofiler(path: Path, raw: RawTable, config: Config) -> MappedTable:
    frame = raw.frame
    prefix = ("Location_Center" if find_column(frame.columns, "Location_Center_X")
              else "AreaShape_Center")
    found = _need(path, "cellprofiler", frame, {"centroid x": f"{prefix}_X",
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
             or _label_or_placeholder(path, "cellprofiler", frame, config,
                                      "CellProfiler exports measure markers only"))
    cell_id = find_column(frame.columns, "ObjectNumber")
    _pixel_warning(path, "cellprofiler", raw, config, found["centroid x"], found["centroid y"])
    return MappedTable(raw, ColumnNames(sample=sample or ABSENT, cell_id=cell_id or ABSENT,
                                        x=found["centroid x"], y=found["centroid y"],
                                        cell_type=label))


def _mcmicro(path: Path, raw: RawTable, config: Config) -> MappedTable:
    frame = raw.frame
    found = _need(path, "mcmicro", frame, {"centroid x": "X_centroid",
                                           "centroid y": "Y_centroid"})
    label = (find_column(frame.columns, "phenotype")
             or find_column(frame.columns, config.columns.cell_type)
             or _label_or_placeholder(path, "mcmicro", frame, config,
                                      "MCMICRO quantification holds marker means only"))
    sample = find_column(frame.columns, "imageid")
    cell_id = find_column(frame.columns, "CellID")
    _pixel_warning(path, "mcmicro", raw, config, found["centroid x"], found["centroid y"])
    return MappedTable(raw, ColumnNames(sample=sample or ABSENT, cell_id=cell_id or ABSENT,
                                        x=found["centroid x"], y=found["centroid y"],
                                        cell_type=label))


def h5ad_columns(path: Path, fmt: str, config: Config) -> tuple[str, ColumnNames]:
    """Decide scimap vs squidpy vs generic for an ``.h5ad`` file and its obs column names.

    Reads only ``obs`` and the ``obsm`` keys (h5py), not the expression matrix.
    """
    cols = config.columns
    try:
        import h5py

        with h5py.File(path, "r") as handle:
            obs = list(handle["obs"].keys()) if "obs" in handle else []
            obsm = list(handle["obsm"].keys()) if "obsm" in handle else []
    except Exception:
        return "table", cols  # the generic reader reports the problem
    if fmt == "auto":
        if find_column(obs, cols.x) and find_column(obs, cols.y):
            return "table", cols
        if any(find_column(obs, c) for c in ("X_centroid", "X_position")):
            fmt = "scimap"
        elif "spatial" in obsm:
            fmt = "squidpy"
        else:
            return "table", cols
    if fmt == "scimap":
        x = find_column(obs, "X_centroid") or find_column(obs, "X_position")
        y = find_column(obs, "Y_centroid") or find_column(obs, "Y_position")
        if x is None or y is None:
            raise TableError(f"{path}: read as a scimap AnnData file but obs has no "
                             "X_centroid/Y_centroid (or X_position/Y_position) columns (obs: "
                             f"{', '.join(obs[:10])}); write them to obs or use --format "
                             "squidpy for obsm['spatial'].")
        label = (find_column(obs, "phenotype") or find_column(obs, cols.cell_type)
                 or ABSENT)
        sample = find_column(obs, "imageid") or find_column(obs, cols.sample) or ABSENT
        cell_id = find_column(obs, "CellID") or ABSENT
        return fmt, ColumnNames(sample=sample, cell_id=cell_id, x=x, y=y, cell_type=label)
    if fmt == "squidpy":
        if "spatial" not in obsm:
            raise TableError(f"{path}: read as a squidpy AnnData file but it has no "
                             "obsm['spatial'] coordinates; store them there or use --format "
                             "scimap for obs X_centroid/Y_centroid.")
        label = next((hit for c in (cols.cell_type, *_SQUIDPY_LABELS)
                      if (hit := find_column(obs, c))), ABSENT)
        sample = next((hit for c in (cols.sample, "library_id", "sample", "sample_id")
                       if (hit := find_column(obs, c))), ABSENT)
        return fmt, ColumnNames(sample=sample, cell_id=ABSENT, x="\0x", y="\0y",
                                cell_type=label)
    raise TableError(f"{path}: an .h5ad file cannot be read as {_article(fmt)} "
                     f"{FORMAT_LABELS[fmt]}; use --format auto, scimap or squidpy.")


def read_spatialdata(path: Path, config: Config) -> MappedTable:
    """Read the cell table of a SpatialData zarr store (needs ``spatialdata``).

    See :mod:`metaniche.io._spatialdata` for which table, coordinates and columns are used.

    Raises
    ------
    InputError
        When the ``spatialdata`` package is not installed (names the install command).
    TableError
        When the store has no table, no positions for its cells, or cannot be read.
    """
    from metaniche.io._spatialdata import read_spatialdata_table

    raw, columns = read_spatialdata_table(path, config)
    return MappedTable(raw, columns)


def with_columns(config: Config, columns: ColumnNames) -> Config:
    """A copy of ``config`` whose ``[columns]`` are ``columns``."""
    return dataclasses.replace(config, columns=columns)
