"""Read the cell table of a SpatialData zarr store (needs the ``spatialdata`` extra).

A store is recognised (``--format auto``, and inside an input folder) as a directory whose
name ends in ``.zarr`` or that holds zarr group metadata (``zarr.json`` for zarr v3,
``.zgroup`` for v2) at its top; see
:func:`metaniche.io._tables.is_spatialdata_store`.

Which table: the first table (in the store's order) that annotates an element through
SpatialData's ``region``/``instance_key`` attributes, else the first table.

Coordinates, per cell, in this order:

1. ``table.obsm["spatial"]`` (first two columns) when present (spatialdata-io readers of
   Xenium, CosMx, MERSCOPE write it);
2. else the centroid of the cell's instance in the element the table annotates, computed
   by :func:`spatialdata.get_centroids` in the element's ``global`` coordinate system
   (else its first one), so the element's transformation (e.g. a pixel-to-µm scale) is
   applied: shapes give the geometry centroid (circles: the centre), points the point
   (matched on the points' index), labels the mean pixel position of each label. Table
   rows are matched on (region, instance id).

Coordinates are then multiplied by ``um_per_unit`` like every other reader (SpatialData
does not fix a unit; spatialdata-io's ``global`` system is µm for Xenium and MERSCOPE).
Other columns: ``obs`` columns, and markers from ``X`` (var names, values as stored) as
columns up to :data:`metaniche.genes.MAX_DENSE_VALUES` values, kept sparse beyond
(:mod:`metaniche.genes`). Sample: the configured sample
column when present, else the region when the table annotates several elements (one
field of view each), else the store's name. Cell id: the instance key column.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from metaniche.config import ColumnNames, Config
from metaniche.errors import InputError
from metaniche.genes import GeneMatrix, expression_markers
from metaniche.io._common import (
    ABSENT,
    LABEL_COLUMNS,
    MappedTable,
    Reader,
    label_or_placeholder,
    unique_name,
)
from metaniche.io._tables import (
    RawTable,
    TableError,
    find_column,
    is_spatialdata_store,
    list_columns,
    reason,
)

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["INSTALL_HINT", "is_spatialdata_store", "map_spatialdata"]

#: The command named when the ``spatialdata`` package is missing.
INSTALL_HINT = "pip install 'metaniche[spatialdata]'"


def map_spatialdata(path: Path, source: None, config: Config, reader: Reader) -> MappedTable:
    """Read a SpatialData store into one flat table and the columns of the contract.

    The registry's mapper for zarr stores (``source`` is unused: the store is read here).

    Raises
    ------
    InputError
        When the ``spatialdata`` package is not installed (names the install command).
    TableError
        One sentence naming the store, what is missing (table, coordinates, annotated
        element, instances) and the fix.
    """
    try:
        import spatialdata
    except ImportError:
        raise InputError(f"{path}: looks like a SpatialData zarr store, and reading it needs "
                         f"the spatialdata package, which is not installed; install it with "
                         f"`{INSTALL_HINT}` (or export the table to .h5ad with "
                         "obsm['spatial']).") from None
    if not ((path / "zarr.json").is_file() or (path / ".zgroup").is_file()):
        raise TableError(f"{path}: read as a SpatialData zarr store but it has no zarr.json "
                         "or .zgroup at its top, so it is not a zarr store; point to the store "
                         "written by SpatialData.write (the folder holding zarr.json).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sdata = spatialdata.read_zarr(path)
    except Exception as err:
        raise TableError(f"{path}: cannot be read as a SpatialData zarr store ({reason(err)}); "
                         "check that the store is complete and was written by spatialdata."
                         ) from None
    tables = dict(sdata.tables)
    if not tables:
        raise TableError(f"{path}: the SpatialData store holds no table (elements: "
                         f"{_element_names(sdata)}); add an AnnData table of the cells that "
                         "annotates their shapes, points or labels.")
    name, table = _pick_table(tables)
    attrs = table.uns.get("spatialdata_attrs", {}) or {}
    region_key, instance_key = attrs.get("region_key"), attrs.get("instance_key")
    frame = table.obs.reset_index(drop=True).copy()
    frame.columns = [str(c) for c in frame.columns]
    if len(frame) == 0:
        raise TableError(f"{path}: the SpatialData table '{name}' has no cells (n_obs = 0); "
                         "write the table with its cells.")
    xy = _coordinates(path, sdata, name, table, frame, region_key, instance_key)
    x_col, y_col = unique_name(frame, "x"), unique_name(frame, "y")
    frame[x_col], frame[y_col] = xy[:, 0], xy[:, 1]
    frame, notes, genes = _with_markers(path, frame, table, config)

    raw = RawTable(frame, row_base=1, warnings=notes, genes=genes)
    cols = config.columns
    sample = find_column(frame.columns, cols.sample)
    if sample is None and region_key in frame.columns and frame[region_key].nunique() > 1:
        sample = region_key
    cell_id = instance_key if instance_key in frame.columns else None
    label = next((hit for c in (cols.cell_type, *LABEL_COLUMNS)
                  if (hit := find_column(frame.columns, c))), None)
    if label is None:
        label = label_or_placeholder(path, reader, frame, config,
                                     f"no cell-type column in the obs of table '{name}'")
    return MappedTable(raw, ColumnNames(sample=sample or ABSENT, cell_id=cell_id or ABSENT,
                                        x=x_col, y=y_col, cell_type=label))


def _element_names(sdata) -> str:
    names = [f"{key} ({kind})" for kind in ("images", "labels", "points", "shapes")
             for key in getattr(sdata, kind).keys()]
    return ", ".join(names) or "none"


def _pick_table(tables: dict[str, AnnData]) -> tuple[str, AnnData]:
    for name, table in tables.items():
        attrs = table.uns.get("spatialdata_attrs", {}) or {}
        if attrs.get("region") is not None and attrs.get("instance_key"):
            return name, table
    return next(iter(tables.items()))


def _coordinates(path: Path, sdata, name: str, table, frame: pd.DataFrame,
                 region_key: str | None, instance_key: str | None) -> np.ndarray:
    """``(n, 2)`` cell positions: ``obsm['spatial']``, else annotated-element centroids."""
    if "spatial" in table.obsm:
        arr = np.asarray(table.obsm["spatial"], dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise TableError(f"{path}: obsm['spatial'] of the SpatialData table '{name}' has "
                             f"shape {arr.shape}, not (cells, 2); store x and y there.")
        return arr[:, :2]
    if region_key not in frame.columns or instance_key not in frame.columns:
        raise TableError(
            f"{path}: the SpatialData table '{name}' has no obsm['spatial'] and does not "
            f"annotate shapes, points or labels (no region/instance key; obs columns: "
            f"{list_columns(frame.columns)}), so the cells have no positions; store the "
            "centroids in obsm['spatial'] or parse the table with TableModel.parse(region=…, "
            "region_key=…, instance_key=…).")
    import spatialdata

    xy = np.full((len(frame), 2), np.nan)
    regions = frame[region_key].astype(str).to_numpy()
    instances = frame[instance_key].to_numpy()
    for region in pd.unique(regions):
        element = _element(sdata, region)
        if element is None:
            raise TableError(f"{path}: the SpatialData table '{name}' annotates '{region}' but "
                             f"the store has no shapes, points or labels of that name "
                             f"(elements: {_element_names(sdata)}); write that element or fix "
                             f"the table's '{region_key}' column.")
        system = _coordinate_system(element)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                centroids = spatialdata.get_centroids(element, coordinate_system=system)
                if hasattr(centroids, "compute"):
                    centroids = centroids.compute()
        except Exception as err:
            raise TableError(f"{path}: centroids of SpatialData element '{region}' cannot be "
                             f"computed ({reason(err)}); store the cell centroids in the "
                             "table's obsm['spatial'] instead.") from None
        rows = np.flatnonzero(regions == region)
        lookup = pd.DataFrame(centroids[["x", "y"]].to_numpy(dtype=np.float64),
                              index=pd.Index(centroids.index).astype(str))
        keys = pd.Index(pd.Series(instances[rows]).astype(str))
        found = keys.isin(lookup.index)
        if not found.all():
            missing = pd.unique(keys[~found])[:3]
            raise TableError(
                f"{path}: {int((~found).sum())} cells of the SpatialData table '{name}' (table "
                f"rows {', '.join(str(r + 1) for r in rows[~found][:3])}; {instance_key} "
                f"{', '.join(missing)}) have no instance in element '{region}'; make the "
                f"table's '{instance_key}' match the element's index.")
        xy[rows] = lookup.reindex(keys).to_numpy()
    return xy


def _element(sdata, region: str):
    for kind in ("shapes", "points", "labels"):
        group = getattr(sdata, kind)
        if region in group:
            return group[region]
    return None


def _coordinate_system(element) -> str:
    from spatialdata.transformations import get_transformation

    systems = list(get_transformation(element, get_all=True))
    return "global" if "global" in systems or not systems else systems[0]


def _with_markers(path: Path, frame: pd.DataFrame, table,
                  config: Config) -> tuple[pd.DataFrame, list[str], GeneMatrix | None]:
    """Append ``X`` as marker columns (var names), skipping names taken by obs columns,
    normalised as ``[input] gene_normalisation`` says; a matrix of more than
    :data:`~metaniche.genes.MAX_DENSE_VALUES` values is kept sparse."""
    if table.X is None or table.shape[1] == 0:
        return frame, [], None
    markers, genes = expression_markers(table.X, [str(v) for v in table.var_names],
                                        [str(c) for c in frame.columns],
                                        config.input.gene_normalisation)
    if genes is not None:
        return frame, [], genes
    return pd.concat([frame, markers], axis=1), [], None
